"""Frechet distance against scipy, and FAD's known answers and reference-statistics cache."""
import numpy as np
import pytest
import scipy.linalg
import torch

from vmas_lightning.errors import VMASError
from vmas_lightning.metrics import FrechetAudioDistance, frechet_distance, gaussian_from_moments


def scipy_frechet(mu1, sigma1, mu2, sigma2):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    dim = 24
    a = rng.normal(size=(300, dim))
    b = rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim)) * 0.5 + rng.normal(size=dim)
    stats = [a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)]
    ours = frechet_distance(*map(torch.from_numpy, stats)).item()
    assert ours == pytest.approx(scipy_frechet(*stats), rel=1e-6)


def test_frechet_distance_of_a_rank_deficient_gaussian_with_itself_is_zero():
    x = torch.randn(10, 32, dtype=torch.float64)  # fewer samples than dims: singular covariance
    mean, cov = x.mean(0), torch.cov(x.T)
    assert abs(frechet_distance(mean, cov, mean, cov).item()) < 1e-9 * torch.trace(cov).item()


def test_moments_give_mean_and_unbiased_covariance():
    x = torch.randn(50, 6, dtype=torch.float64) * 3 + 2
    mean, cov = gaussian_from_moments(x.sum(0), x.T @ x, x.shape[0])
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(cov, torch.cov(x.T))


def audio(seed, batch=3, seconds=0.5):
    return torch.randn(batch, 1, int(32000 * seconds), generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.fixture(scope="module")
def embedder():
    from vmas_lightning.metrics.embedders import encodec

    return encodec(size="tiny")


def test_fad_of_a_set_with_itself_is_zero_and_of_another_set_positive(embedder):
    fad = FrechetAudioDistance(embedder)
    fad.update(audio(0), audio(0), 32000)
    assert abs(fad.compute().item()) < 1e-12
    other = FrechetAudioDistance(embedder)
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 32000).expand(3, 1, -1)
    other.update(audio(0), tone, 32000)
    assert other.compute().item() > 1e-3


def test_reference_statistics_are_cached_per_embedder_and_reference_set(embedder, tmp_path):
    cache = tmp_path / "fad_reference.pt"
    first = FrechetAudioDistance(embedder, reference_stats_cache=str(cache), reference_set="test-split")
    first.update(audio(0), audio(1), 32000)
    value = first.compute()
    assert cache.is_file()
    cached = FrechetAudioDistance(embedder, reference_stats_cache=str(cache), reference_set="test-split")
    assert cached.cached_reference is not None
    cached.update(audio(0), None, 32000)  # references are not needed any more
    torch.testing.assert_close(cached.compute(), value)
    fresh = FrechetAudioDistance(embedder, reference_stats_cache=str(cache), reference_set="other-split")
    assert fresh.cached_reference is None
    with pytest.raises(VMASError, match="reference_set"):
        FrechetAudioDistance(embedder, reference_stats_cache=str(cache))
