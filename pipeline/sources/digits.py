"""``digits``: scikit-learn's 8x8 digits (1,797 images, 10 classes), split into a fixed stratified train/test;
the embedded default data, named rather than found on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.sources.base import Dataset, Options, Source

NAME = "digits"


def read(path: Path, options: Options) -> Dataset:
    options.only(set(), NAME, "8x8 images with their own 25% test split, all readable")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    idx = np.arange(len(images))
    train, test = train_test_split(idx, test_size=0.25, random_state=0, stratify=digits.target)
    train, test = np.sort(train), np.sort(test)
    return Dataset(
        train_x=images[train],
        train_y=digits.target[train].astype(np.int64),
        train_ids=np.array([f"{digits.target[i]}/{i}" for i in train]),
        train_source_index=train.astype(np.int64),
        test_x=images[test],
        test_y=digits.target[test].astype(np.int64),
        classes=np.array([str(c) for c in range(10)]),
    )


SOURCE = Source(NAME, claims=lambda path: False, read=read, fingerprint=lambda path: NAME)
