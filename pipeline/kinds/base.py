"""What the kinds of condition share: the label check, CIFAR-10's training set by its original index,
and the kinds whose labels come from the file a condition names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.sources.base import Dataset

CIFAR10_TRAIN_SIZE = 50_000


def validate_labels(labels: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    """Noisy labels as int64 after checking shape and range; ``where`` names the source in errors."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PipelineError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != n:
        raise PipelineError(f"{where}: {len(labels)} labels for {n} training images")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise PipelineError(f"{where}: label {labels[i]} at row {i} is outside 0..{num_classes - 1}")
    return labels.astype(np.int64)


def cifar10_rows(ds: Dataset, what: str, otherwise: str = "") -> np.ndarray:
    """The original CIFAR-10 index of each of the dataset's training rows, after checking that the dataset
    is CIFAR-10's whole training set (labels given by that index, ``what``, need it)."""
    idx = ds.train_source_index
    if ds.num_classes != 10 or len(idx) != CIFAR10_TRAIN_SIZE or sorted(idx) != list(range(CIFAR10_TRAIN_SIZE)):
        raise PipelineError(
            f"{what} need CIFAR-10's 50,000 training images named <i>_<class> (ImageFolder) or "
            f"cifar-10-batches-py{otherwise}"
        )
    return idx


class FromFile:
    """A kind whose labels come from the file the condition names (its ``source``)."""

    def sources(self, cond, json_dir: Path | None) -> list[Path]:
        return [Path(cond.source)]
