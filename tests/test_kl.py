"""KL divergence between label distributions: known answers and MusicGen's segmentation."""
import math

import pytest
import torch

from vmas_lightning.metrics import KLDivergence, kl_divergence


def test_kl_of_identical_distributions_is_zero_and_matches_the_formula():
    p = torch.softmax(torch.randn(4, 527, dtype=torch.float64), dim=-1)
    assert torch.all(kl_divergence(p, p) == 0)
    target, pred = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.9, 0.1], dtype=torch.float64)
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(target, pred).item() == pytest.approx(expected, abs=1e-5)


@pytest.fixture(scope="module")
def metric_factory():
    from vmas_lightning.metrics.classifiers import ast

    classifier = ast(pretrained=None)
    return lambda: KLDivergence(classifier)


def noise(seed, batch=2, seconds=1.0, sample_rate=32000):
    return torch.randn(batch, 1, int(seconds * sample_rate), generator=torch.Generator().manual_seed(seed)) * 0.1


def test_same_audio_gives_zero_and_different_audio_positive(metric_factory):
    metric = metric_factory()
    metric.update(noise(0), noise(0), 32000)
    out = metric.compute()
    assert out["kl"].item() == 0 and out["kl_gen_ref"].item() == 0
    metric = metric_factory()
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(32000) / 32000).expand(2, 1, -1)
    metric.update(noise(0), tone, 32000)
    out, per_clip = metric.compute(), metric.per_clip()
    assert out["kl"].item() > 0 and out["kl_gen_ref"].item() > 0
    torch.testing.assert_close(per_clip["kl"].mean(), out["kl"])


def test_long_clips_are_split_without_padding_and_short_tails_dropped(metric_factory):
    metric = metric_factory()
    sample_rate = metric.classifier.sample_rate
    segments = metric.segment(torch.zeros(1, 1, int(sample_rate * 20.1)), sample_rate)[0]
    assert [len(s) for s in segments] == [10 * sample_rate] * 2  # the 0.1-s tail is dropped
    segments = metric.segment(torch.zeros(1, 1, int(sample_rate * 23)), sample_rate)[0]
    assert [len(s) for s in segments] == [10 * sample_rate] * 2 + [3 * sample_rate]
    assert metric.segment(torch.zeros(1, 1, 1000), sample_rate) == [[]]
