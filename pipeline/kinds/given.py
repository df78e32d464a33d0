"""Noisy labels made elsewhere: a ``.npy`` of one label per training row, in dataset order (``--labels NAME=FILE``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.kinds.base import FromFile, validate_labels
from pipeline.sources.base import Dataset


class Given(FromFile):
    """Noisy labels made elsewhere: a ``.npy`` of one label per training row, in dataset order."""

    def labels(self, cond, ds: Dataset, source: Path | None, json_dir: Path | None) -> tuple[np.ndarray, None]:
        return validate_labels(store.load(source, ".npy"), len(ds.train_y), ds.num_classes, str(source)), None

    def describe(self, cond) -> str:
        return f"labels given in {cond.source}"


KIND = Given()
