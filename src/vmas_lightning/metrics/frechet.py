"""Frechet distance between two Gaussians, in float64 with a symmetric (eigen) matrix square root."""
from __future__ import annotations

import torch


def _psd_eigenvalues(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a symmetric PSD matrix with round-off (below `D * eps * max`) set to 0, so a
    singular covariance does not add `sqrt(round-off)` terms."""
    tolerance = eigenvalues.shape[-1] * torch.finfo(eigenvalues.dtype).eps * eigenvalues.abs().max()
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues))


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * _psd_eigenvalues(eigenvalues).sqrt()) @ eigenvectors.T


def frechet_distance(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> torch.Tensor:
    """`|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))` for means `[D]` and covariances `[D, D]`.

    `tr((S_a S_b)^(1/2))` is the sum of the square roots of the eigenvalues of the symmetric PSD matrix
    `S_a^(1/2) S_b S_a^(1/2)` (same spectrum as `S_a S_b`), so no non-symmetric `sqrtm` (and none of its
    complex round-off) is needed. Returns a float64 scalar.
    """
    mean_a, cov_a, mean_b, cov_b = (x.to(torch.float64) for x in (mean_a, cov_a, mean_b, cov_b))
    sqrt_a = _sqrt_psd((cov_a + cov_a.T) / 2)
    product = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = _psd_eigenvalues(torch.linalg.eigvalsh((product + product.T) / 2)).sqrt().sum()
    diff = mean_a - mean_b
    return diff @ diff + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_sqrt


def gaussian_from_moments(total: torch.Tensor, outer: torch.Tensor, count: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `[D]` and unbiased covariance `[D, D]` from `sum x`, `sum x x^T` and the count (float64)."""
    count = torch.as_tensor(count, dtype=torch.float64, device=total.device)
    if count < 2:
        raise ValueError(f"a Gaussian fit needs at least 2 embeddings, got {int(count)}")
    mean = total.to(torch.float64) / count
    cov = (outer.to(torch.float64) - count * torch.outer(mean, mean)) / (count - 1)
    return mean, cov
