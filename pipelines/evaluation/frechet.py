"""The Fréchet distance between Gaussians fitted to two feature sets: the formula behind FID, written out
so that `fd_clip` needs no FID package (numpy only, no I/O)."""

from __future__ import annotations

import numpy as np


def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features``, an array of shape [num_samples, dim]."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least two feature vectors of shape [num_samples, dim], got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """d² = ‖μ_a − μ_b‖² + Tr(Σ_a) + Tr(Σ_b) − 2 Tr((Σ_a Σ_b)^½).

    Tr((Σ_a Σ_b)^½) is computed as Tr((Σ_a^½ Σ_b Σ_a^½)^½), whose argument is symmetric positive
    semi-definite, so the result is real and stable even when the covariances are singular (fewer samples
    than dimensions), where FID code based on a general matrix square root needs an ε offset.
    """
    mean_a, mean_b = np.atleast_1d(mean_a), np.atleast_1d(mean_b)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    root_a = _psd_sqrt(cov_a)
    cross_values = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_cross_root = np.sqrt(np.clip(cross_values, 0, None)).sum()
    difference = mean_a - mean_b
    distance = difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross_root
    return float(max(distance, 0.0))


def feature_frechet_distance(features_a, features_b) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets."""
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))
