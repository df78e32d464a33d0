"""Rows of an image array selected by index, read when used: how a fold or a split of a memory-mapped dataset
cache is passed around without copying it."""

from __future__ import annotations

import numpy as np


class Rows:
    """Rows ``index`` of ``images`` (e.g. a fold's rows of a memory-mapped cache), without copying them: a
    batch's rows are read when it is gathered. Indexing and ``np.asarray`` give arrays, as a copy would."""

    def __init__(self, images: np.ndarray, index: np.ndarray):
        self.images, self.index = images, np.asarray(index, np.int64)
        self.shape, self.dtype = (len(self.index), *images.shape[1:]), images.dtype
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx) -> np.ndarray:
        return gather(self.images, self.index[idx])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return gather(self.images, self.index)


def gather(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]``, read in ascending row order (a memory-mapped file is read forward)."""
    rows = np.asarray(rows)
    if rows.ndim == 0 or len(rows) < 2:
        return images[rows]
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), images.dtype)
    out[order] = images[rows[order]]
    return out
