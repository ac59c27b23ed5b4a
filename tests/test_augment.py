"""`data.augment`: uploads as files deliver them, drawn per clip, deterministic, labels untouched."""
import numpy as np
import pytest
import torch

from helpers import TINY_CONFIG, one_line_error
from vmas_lightning.config import VideoAugmentConfig
from vmas_lightning.data.augment import VideoAugment, jpeg_round_trip, source_frame_indices
from vmas_lightning.errors import VMASError

FPS = 9.6
OFF = dict(source_fps=None, upscale=(1.0, 1.0), crop=(1.0, 1.0), pad=0.0, brightness=0.0, contrast=0.0,
           saturation=0.0, range_mixup=0.0, jpeg_quality=None)  # every part left out


def clip_with_cut(num_frames=96, cut=40, size=32):
    """uint8 `[F, size, size, 3]`: dark blue frames, then light ones from frame `cut` on, a textured square."""
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    frames[:cut], frames[cut:] = (20, 40, 110), (200, 160, 60)
    frames[:, 8:20, 8:20] = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    return frames


def only(**parts):
    return VideoAugment(VideoAugmentConfig(**{**OFF, "enabled": True, "probability": 1.0, **parts}), FPS)


@pytest.mark.parametrize("source_fps", [6.0, 9.6, 24.0, 30.0, 60.0])
def test_a_cut_shows_late_as_often_as_a_source_at_that_rate_shows_it(source_fps):
    """Slot j shows a stored frame at or before j (never a cut before its time), the frames run forward,
    and over many phases a cut shows late by about half a source frame in slots (fps / (2 r))."""
    lags = []
    for seed in range(400):
        chosen = source_frame_indices(np.random.default_rng(seed), 96, FPS, source_fps)
        assert np.all(chosen <= np.arange(96)) and np.all(np.diff(chosen) >= 0) and chosen[0] == 0
        lags.append(np.mean(np.arange(96) - chosen))
    expected = 0.5 * FPS / source_fps  # a uniform gap in [0, 1/r), in slots
    assert np.mean(lags) == pytest.approx(expected, rel=0.15, abs=0.02)


def test_a_slower_source_repeats_frames_and_a_faster_one_rarely_does():
    slow = source_frame_indices(np.random.default_rng(0), 96, FPS, 6.0)
    fast = source_frame_indices(np.random.default_rng(0), 96, FPS, 60.0)
    assert np.sum(np.diff(slow) == 0) > 25 and np.sum(np.diff(fast) == 0) < 10


def test_the_same_draw_gives_the_same_upload_and_another_draw_another():
    augment = VideoAugment(VideoAugmentConfig(enabled=True, probability=1.0), FPS)
    frames = clip_with_cut()
    first, again = augment(frames, np.random.default_rng([0, 1, 7, 1])), augment(frames, np.random.default_rng([0, 1, 7, 1]))
    other = augment(frames, np.random.default_rng([0, 1, 8, 1]))
    np.testing.assert_array_equal(first, again)
    assert first.shape == frames.shape and first.dtype == np.uint8
    assert not np.array_equal(first, frames) and not np.array_equal(first, other)


def test_off_means_the_frames_as_stored():
    frames = clip_with_cut()
    assert VideoAugment(VideoAugmentConfig(enabled=False), FPS)(frames, np.random.default_rng(0)) is frames
    assert VideoAugment(VideoAugmentConfig(enabled=True, probability=0.0), FPS)(frames, np.random.default_rng(0)) is frames
    np.testing.assert_array_equal(only()(frames, np.random.default_rng(0)), frames)  # every part at its identity
    kept = [VideoAugment(VideoAugmentConfig(enabled=True, probability=0.8), FPS)(frames, np.random.default_rng(s)) is frames
            for s in range(200)]
    assert 0.1 < np.mean(kept) < 0.3  # a fifth left as stored


def test_each_part_does_what_it_says():
    frames = clip_with_cut()
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    ratios = []
    for seed in range(10):  # a level change within +-30%, the same for every frame of a clip
        brighter = only(brightness=0.3)(frames, np.random.default_rng(seed)).astype(float)
        ratios.append(brighter[:, -4:, -4:].mean(axis=(1, 2, 3)) / frames[:, -4:, -4:].mean(axis=(1, 2, 3)))
    ratios = np.array(ratios)
    assert np.all((ratios > 0.69) & (ratios < 1.31)) and np.abs(ratios - 1).max() > 0.15
    assert np.all(ratios.std(axis=1) < 0.01)
    boxed = only(pad=0.5)(frames, rng())  # black bars, the picture squeezed between them
    dark_rows = (boxed.max(axis=(0, 2, 3)) == 0).sum()
    dark_columns = (boxed.max(axis=(0, 1, 3)) == 0).sum()
    assert max(dark_rows, dark_columns) >= 1 and min(dark_rows, dark_columns) == 0  # bars on one axis only
    soft = only(upscale=(4.0, 4.0))(frames, rng())  # up (linear) and down (area): edges no longer hard
    assert np.abs(soft.astype(int) - frames)[:, 10:18, 7].mean() > 1  # the column beside the square's edge
    np.testing.assert_allclose(soft[:, -4:, -4:].astype(float), frames[:, -4:, -4:].astype(float), atol=1)  # flat areas kept
    compressed = only(jpeg_quality=(30, 30))(frames, rng())
    error = np.abs(compressed.astype(int) - frames)
    assert 0 < error[:, -8:, -8:].mean() < 6 and error[:, 8:20, 8:20].mean() > error[:, -8:, -8:].mean()  # noise suffers most
    assert any(np.array_equal(compressed, jpeg_round_trip(frames, 30, chroma_444=c)) for c in (False, True))
    late = only(source_fps=(24.0, 24.0))(frames, rng())  # frames only chosen among the stored ones
    assert all(any(np.array_equal(image, stored) for stored in frames) for image in late)


def test_range_mixup_squeezes_or_stretches_the_levels():
    grey = np.full((4, 8, 8, 3), 128, np.uint8)
    grey[:, :, :4] = 0
    grey[:, :, 4:6] = 255
    outcomes = {tuple(np.unique(only(range_mixup=1.0)(grey, np.random.default_rng(seed)))) for seed in range(20)}
    assert (16, 126, 235) in outcomes  # full read as limited: 0 -> 16, 255 -> 235
    assert (0, 130, 255) in outcomes  # limited read as full: 128 -> 130, the ends clipped
    assert len(outcomes) == 2


@pytest.mark.parametrize("setting, message", [
    ({"probability": 1.5}, "probability must be in [0, 1]"),
    ({"upscale": (2.0, 1.0)}, "upscale must be [low, high]"),
    ({"source_fps": (0.0, 30.0)}, "source_fps must be [low, high]"),
    ({"jpeg_quality": (0, 90)}, "jpeg_quality must be [low, high]"),
    ({"pad": 0.95}, "pad must be in [0, 0.9]"),
])
def test_bad_settings_are_refused_in_one_line(setting, message):
    with pytest.raises(VMASError, match=message.replace("[", r"\[").replace("]", r"\]")):
        VideoAugmentConfig(**setting)


def test_the_cli_shows_every_setting_and_rejects_a_wrong_one(capsys, tmp_path):
    import yaml

    from vmas_lightning.cli.main import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_CONFIG), "--data.augment.enabled", "true", "--print_config"])
    augment = yaml.safe_load(capsys.readouterr().out)["data"]["augment"]
    assert augment["enabled"] is True and set(augment) == set(VideoAugmentConfig.__dataclass_fields__)
    assert main(["fit", "--config", str(TINY_CONFIG), "--trainer.default_root_dir", str(tmp_path),
                 "--data.augment.upscale", "[3, 2]"]) == 2
    assert "upscale must be [low, high]" in one_line_error(capsys)


def test_training_clips_are_augmented_deterministically_and_their_labels_are_not_touched(demo_data):
    """Two loaders of the same seed (a run and its resumed copy) give the same augmented frames; the
    tokens, beats and overlap labels equal those of the unaugmented stream; validation is never augmented."""
    from vmas_lightning.data.datamodule import VMASDataModule
    from vmas_lightning.data.shards import ShardConfig

    config = ShardConfig.from_configs(TINY_CONFIG)

    def first_batch(split, train, augment):
        module = VMASDataModule(root=str(demo_data), sequence=config.sequence, beats=config.beats, batch_size=4, num_workers=0,
                                shuffle=False, augment=augment)
        return next(iter(module.loader(split, train)))

    on = VideoAugmentConfig(enabled=True, probability=1.0)
    plain, augmented, again = (first_batch("train", True, a) for a in (VideoAugmentConfig(), on, on))
    assert not torch.equal(plain["video"], augmented["video"])
    assert torch.equal(augmented["video"], again["video"])
    for key in ("tokens", "music_beats", "video_beats", "overlap"):
        assert torch.equal(plain[key], augmented[key]), key
    assert plain["id"] == augmented["id"]
    assert torch.equal(first_batch("val", False, VideoAugmentConfig())["video"], first_batch("val", False, on)["video"])
