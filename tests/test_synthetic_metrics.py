"""The demo's calibrated evaluation: ideal on the clips' own music, near chance on another clip's music;
the beat alignment against shifted music tells the cut-on-note music from the same music shifted."""
import numpy as np
import pytest
import torch

from helpers import DEMO_CONFIG, DEMO_STYLE_NET
from vmas_lightning.beats import BeatConfig, frames_flow, video_beats
from vmas_lightning.config_file import load_config
from vmas_lightning.data.demo import STYLES, synthesize_clip
from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.metrics import BeatAlignment, EvaluationSuite
from vmas_lightning.metrics.demo_style import demo_style_classifier
from vmas_lightning.metrics.mv_align import frames_peaks
from vmas_lightning.metrics.suite import results_table
from vmas_lightning.metrics.synthetic import count_matches, note_pitch_classes, pitch_class

STYLE = {"name": "demo_style", "pretrained": str(DEMO_STYLE_NET)}


def test_count_matches_is_one_to_one_within_the_tolerance():
    assert count_matches([0.99, 2.04, 3.2], [1.0, 2.0, 3.0], 0.05) == 2
    assert count_matches([1.0, 1.01, 1.02], [1.0], 0.05) == 1  # one onset per cut
    assert count_matches([1.0], [0.98, 1.03], 0.05) == 1  # one cut per onset
    assert count_matches([], [1.0], 0.05) == count_matches([1.0], [], 0.05) == 0


def test_pitch_classes_of_known_notes():
    assert [pitch_class(f) for f in (261.63, 277.18, 440.0, 146.83, 880.0)] == [0, 1, 9, 2, 9]
    sr = 32000
    t = np.arange(sr) / sr
    wav = np.where(t < 0.5, np.sin(2 * np.pi * 196.0 * t), np.sin(2 * np.pi * 329.63 * t)).astype(np.float32)
    assert note_pitch_classes(wav, sr, [0.0, 0.5]) == [7, 4]  # G3, E4


@pytest.fixture(scope="module")
def held_out():
    """Six test clips of a seed the style network never heard (it is fitted on seed 0's training split),
    with the MV-Align peaks and the video beats (`BeatConfig()`) of their frames."""
    sequence = load_config(DEMO_CONFIG, trainer=False).model.sequence
    clips = [synthesize_clip(7, "test", i, sequence) for i in range(6)]
    audio = torch.from_numpy(np.stack([c["audio"] for c in clips]))[:, None]
    beats = BeatConfig()
    video = {
        "peaks": [frames_peaks(c["frames"], sequence.fps) for c in clips],
        "beats": torch.from_numpy(np.stack([
            video_beats(frames_flow(c["frames"], sequence.fps, beats), sequence.num_tokens, sequence.token_rate,
                        beats.peak_window, beats.min_flow, beats.min_prominence) for c in clips])),
    }
    return sequence, clips, audio, video


def evaluate(sequence, clips, audio, video, reference):
    suite = EvaluationSuite(STYLE, STYLE, token_rate=sequence.token_rate)
    suite.update(audio, reference, sequence.sample_rate, video["peaks"], None, None,
                 ids=[c["id"] for c in clips], metas=[c["meta"] for c in clips], video_beats=video["beats"])
    return suite.compute()


def test_ground_truth_scores_ideal_and_another_clip_scores_near_chance(held_out):
    sequence, clips, audio, video = held_out
    assert len({c["meta"]["style"] for c in clips}) >= 3
    truth = evaluate(sequence, clips, audio, video, audio)
    assert truth["style_accuracy"] == 1.0 and truth["onset_f1"] == 1.0
    assert truth["onsets_per_clip"] == truth["true_onsets_per_clip"]
    assert abs(truth["fad"]) < 0.01 and abs(truth["kl"]) < 1e-9  # FAD: float error of a rank-deficient covariance
    other = evaluate(sequence, clips, audio.roll(1, dims=0), video, audio)
    different_style = np.mean([a["meta"]["style"] != b["meta"]["style"] for a, b in zip(clips, clips[-1:] + clips[:-1])])
    assert other["style_accuracy"] == pytest.approx(1 - different_style)  # right only where the styles agree
    assert other["onset_f1"] < 0.6 and other["kl"] > 1.0
    assert truth["alignment_z"] > 2.5 and other["alignment_z"] < 1.0  # the beat alignments (test below)
    assert truth["onset_alignment_z"] > 2.5 and other["onset_alignment_z"] < 1.0
    assert truth["mv_align_protocol"] == "model_rate_frames"  # demo clips: their frames are all there is
    assert truth["paper_protocol"] is False and "not the paper" in truth["note"]
    table = results_table({**other, "reference_rows": {"ground_truth": truth}}, name="another clip")
    header, _, truth_row, other_row = table.splitlines()
    assert header.startswith("| audio | FAD | KL | MV-Align | align z | align %ile | onset align z | style acc | onset F1 |"
                             " onsets/clip | true onsets/clip |")
    assert truth_row.startswith("| ground truth |") and "| 1.00 | 1.00 |" in truth_row
    assert other_row.startswith("| **another clip** |")


def test_cut_on_note_music_aligns_with_the_cuts_and_shifted_or_other_music_does_not(held_out):
    """Known answer of `alignment_z` / `alignment_percentile` and of their onset-strength twins
    (`vmas beats`'s scores in `vmas test`): the clips' own music, whose notes start at the cuts, is
    far above its own shifts (z 3.3 and 3.6, 98th-99th percentile on these clips); the same music
    0.5 s late and another clip's music are not."""
    sequence, clips, audio, video = held_out

    def alignment(music):
        metric = BeatAlignment(token_rate=sequence.token_rate)
        metric.update(music, sequence.sample_rate, video["beats"])
        return {key: value.item() for key, value in metric.compute().items()}

    own = alignment(audio)
    assert own["alignment_z"] > 2.5 and own["alignment_percentile"] > 95, own
    assert own["onset_alignment_z"] > 2.5 and own["onset_alignment_percentile"] > 95, own  # 3.6, 97.6
    for shifted in (alignment(audio.roll(round(0.5 * sequence.sample_rate), dims=-1)), alignment(audio.roll(1, dims=0))):
        for score in ("alignment", "onset_alignment"):  # -0.3 to 0.4, 42-64
            assert shifted[f"{score}_z"] < 1.0 and shifted[f"{score}_percentile"] < 75, shifted
            assert own[f"{score}_z"] > shifted[f"{score}_z"] + 2


def test_style_classifier_labels_and_wrong_files(tmp_path):
    classifier = demo_style_classifier(str(DEMO_STYLE_NET))
    assert classifier.labels == tuple(s.name for s in STYLES) and classifier.num_labels == 4
    with pytest.raises(MissingWeightsError, match="vmas demo-assets"):
        demo_style_classifier(str(tmp_path / "missing.pt"))
    torch.save({"format": "vmas-mel-rvq"}, tmp_path / "codec.pt")
    with pytest.raises(VMASError, match="not a demo_style network"):
        demo_style_classifier(str(tmp_path / "codec.pt"))
