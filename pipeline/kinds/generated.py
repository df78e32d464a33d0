"""Noise drawn with cleanlab's generator (seeded) for a (noise, sparsity) condition."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.sources.base import Dataset


def generate(
    true: np.ndarray, num_classes: int, noise: float, sparsity: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, generating noise matrix) via cleanlab's ``benchmarking.noise_generation``."""
    from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace, generate_noisy_labels

    if noise == 0:
        return true.copy(), np.eye(num_classes)
    py = np.bincount(true, minlength=num_classes) / len(true)
    try:
        nm = generate_noise_matrix_from_trace(
            num_classes,
            num_classes * (1 - noise),
            py=py,
            frac_zero_noise_rates=sparsity,
            valid_noise_matrix=True,
            seed=seed,
        )
    except ValueError as e:
        raise PipelineError(f"noise={noise}, sparsity={sparsity}: cleanlab cannot generate it ({e})") from None
    if nm is None:
        raise PipelineError(
            f"noise={noise}, sparsity={sparsity}: cleanlab found no valid noise matrix for these classes"
        )
    np.random.seed(seed)  # generate_noisy_labels draws from numpy's global generator
    return np.asarray(generate_noisy_labels(true, nm), np.int64), nm


class Generated:
    """Noise drawn with cleanlab's generator (seeded); also returns the generating noise matrix."""

    def sources(self, cond, json_dir: Path | None) -> list[Path]:
        return []

    def labels(self, cond, ds: Dataset, sources: list[Path], json_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        return generate(ds.train_y, ds.num_classes, cond.noise, cond.sparsity, cond.seed)

    def describe(self, cond) -> str:
        return f"generated noise {cond.noise}, sparsity {cond.sparsity}, seed {cond.seed}"


KIND = Generated()
