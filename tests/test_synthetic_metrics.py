"""The demo's calibrated evaluation: ideal on the clips' own music, near chance on another clip's music."""
import numpy as np
import pytest
import torch

from conftest import DEMO_CONFIG, DEMO_STYLE_NET
from vmas_lightning.config_file import dataclass_from, read_config
from vmas_lightning.data.demo import STYLES, synthesize_clip
from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.metrics import EvaluationSuite
from vmas_lightning.metrics.demo_style import demo_style_classifier
from vmas_lightning.metrics.suite import results_table
from vmas_lightning.metrics.synthetic import count_matches, note_pitch_classes, pitch_class
from vmas_lightning.sequence import SequenceConfig

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
    """Six test clips of a seed the style network never heard (it is fitted on seed 0's training split)."""
    sequence = dataclass_from(SequenceConfig, read_config(DEMO_CONFIG)["model"]["sequence"], "sequence")
    clips = [synthesize_clip(7, "test", i, sequence) for i in range(6)]
    audio = torch.from_numpy(np.stack([c["audio"] for c in clips]))[:, None]
    frames = torch.from_numpy(np.stack([c["frames"] for c in clips]))
    return sequence, clips, audio, frames


def evaluate(sequence, clips, audio, frames, reference):
    suite = EvaluationSuite(STYLE, STYLE)
    suite.update(audio, reference, sequence.sample_rate, frames, sequence.fps, None, None,
                 ids=[c["id"] for c in clips], metas=[c["meta"] for c in clips])
    return suite.compute()


def test_ground_truth_scores_ideal_and_another_clip_scores_near_chance(held_out):
    sequence, clips, audio, frames = held_out
    assert len({c["meta"]["style"] for c in clips}) >= 3
    truth = evaluate(sequence, clips, audio, frames, audio)
    assert truth["style_accuracy"] == 1.0 and truth["onset_f1"] == 1.0
    assert truth["onsets_per_clip"] == truth["true_onsets_per_clip"]
    assert abs(truth["fad"]) < 0.01 and abs(truth["kl"]) < 1e-9  # FAD: float error of a rank-deficient covariance
    other = evaluate(sequence, clips, audio.roll(1, dims=0), frames, audio)
    different_style = np.mean([a["meta"]["style"] != b["meta"]["style"] for a, b in zip(clips, clips[-1:] + clips[:-1])])
    assert other["style_accuracy"] == pytest.approx(1 - different_style)  # right only where the styles agree
    assert other["onset_f1"] < 0.6 and other["kl"] > 1.0
    assert truth["paper_protocol"] is False and "not the paper" in truth["note"]
    table = results_table({**other, "reference_rows": {"ground_truth": truth}}, name="another clip")
    header, _, truth_row, other_row = table.splitlines()
    assert header.startswith("| audio | FAD | KL | MV-Align | style acc | onset F1 | onsets/clip | true onsets/clip |")
    assert truth_row.startswith("| ground truth |") and "| 1.00 | 1.00 |" in truth_row
    assert other_row.startswith("| **another clip** |")


def test_style_classifier_labels_and_wrong_files(tmp_path):
    classifier = demo_style_classifier(str(DEMO_STYLE_NET))
    assert classifier.labels == tuple(s.name for s in STYLES) and classifier.num_labels == 4
    with pytest.raises(MissingWeightsError, match="vmas demo-assets"):
        demo_style_classifier(str(tmp_path / "missing.pt"))
    torch.save({"format": "vmas-mel-rvq"}, tmp_path / "codec.pt")
    with pytest.raises(VMASError, match="not a demo_style network"):
        demo_style_classifier(str(tmp_path / "codec.pt"))
