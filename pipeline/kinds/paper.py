"""The CL paper's own noisy labels for CIFAR-10: its grid of conditions, its trace rule, and its label
files (shipped as ``data/cl_paper_cifar10_noisy_labels.npz``, or read from its JSON files).

A paper condition is a (sparsity, noise amount) pair. ``sparsity`` is the paper's
``frac_zero_noise_rates``: the fraction of off-diagonal noise rates that are zero. The paper's noise
amounts were multiples of 0.2 computed in floating point (``0.2 * 3 == 0.6000000000000001``, as
``np.arange(0, 1, 0.2)`` gives) and its noise-matrix trace was ``int(K * (1 - noise_amount))``, which
truncates: for K=10 "0.6" gives trace 3, i.e. 70% noise, and "0.8" gives trace 1, 90% noise. The labels
bear this out (the "0.6" files flip 69.9-70.0% of labels). Conditions are named by what they are:
"0.6" -> ``n70_s*``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.kinds.base import CIFAR10_TRAIN_SIZE, cifar10_rows, validate_labels
from pipeline.sources.base import Dataset, source_index

LABELS = Path(__file__).resolve().parent.parent.parent / "data" / "cl_paper_cifar10_noisy_labels.npz"
SPARSITIES = (0.0, 0.2, 0.4, 0.6)
# (sparsity, noise amount) of Table 2's 13 conditions ("paper") and of all 17 label files ("paper-all").
GRID = {
    name: [(0.0, 0.0)] + [(s, n) for n in amounts for s in SPARSITIES]
    for name, amounts in (("paper", (0.2, 0.4, 0.6)), ("paper-all", (0.2, 0.4, 0.6, 0.8)))
}


def file_key(sparsity: float, noise_amount: float) -> str:
    """The paper's file-name stem, e.g. ``frac_zero_noise_rates__0.0__noise_amount__0.6``."""
    return f"frac_zero_noise_rates__{sparsity:.1f}__noise_amount__{noise_amount:.1f}"


def trace(num_classes: int, noise_amount: float) -> int:
    """The noise-matrix trace exactly as the paper computed it (floating-point truncation included)."""
    amount = 0.2 * round(noise_amount / 0.2)  # the paper's float: 0.6 -> 0.6000000000000001
    return int(num_classes * (1 - amount))


def json_file(key: str, json_dir: Path) -> Path:
    return Path(json_dir) / f"cifar10_noisy_labels__{key}.json.gz"


def _json_key_id(key: str) -> str:
    """``.../train/<class>/<stem>.<ext>`` -> ``<class>/<stem>`` (so PNG and JPEG copies match)."""
    parts = key.replace("\\", "/").split("/")
    if len(parts) < 2:
        raise PipelineError(f"label key {key!r}: expected .../<class>/<file>")
    return f"{parts[-2]}/{os.path.splitext(parts[-1])[0]}"


def _read_json(path: Path) -> dict:
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a readable JSON label file ({e})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected an object mapping image paths to labels")
    return data


def import_json(path: Path, ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Noisy labels for the images ``ids`` (``<class>/<stem>``) from one of the paper's JSON files."""
    by_id: dict[str, int] = {}
    for key, label in _read_json(path).items():
        i = _json_key_id(key)
        if i in by_id:
            raise PipelineError(f"{path}: two keys match the image {i} (e.g. {key})")
        by_id[i] = label
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise PipelineError(f"{path}: {len(missing)} images have no label (e.g. {missing[0]})")
    if len(by_id) != len(ids):
        extra = sorted(set(by_id) - set(ids))
        raise PipelineError(f"{path}: {len(extra)} keys match no image (e.g. {extra[0]})")
    try:
        labels = np.array([by_id[i] for i in ids])
    except (TypeError, ValueError) as e:
        raise PipelineError(f"{path}: labels are not integers ({e})") from None
    return validate_labels(labels, len(ids), num_classes, str(path))


def export(json_dir: Path, out: Path = LABELS) -> None:
    """Pack the paper's 17 JSON files into one array file indexed by the original CIFAR-10 index."""
    arrays, true = {}, None
    for sparsity, amount in GRID["paper-all"]:
        key = file_key(sparsity, amount)
        path = json_file(key, json_dir)
        data = _read_json(path)
        ids = [_json_key_id(k) for k in data]
        classes = sorted({i.split("/")[0] for i in ids})
        index = np.array([source_index(i.split("/")[1]) for i in ids])
        if len(classes) != 10 or sorted(index) != list(range(CIFAR10_TRAIN_SIZE)):
            raise PipelineError(f"{path}: keys do not cover CIFAR-10 indices 0..49999 exactly once")
        labels = np.empty(CIFAR10_TRAIN_SIZE, np.uint8)
        labels[index] = validate_labels(np.array(list(data.values())), len(ids), 10, str(path))
        folder = np.empty(CIFAR10_TRAIN_SIZE, np.uint8)
        folder[index] = [classes.index(i.split("/")[0]) for i in ids]
        if true is not None and not np.array_equal(true, folder):
            raise PipelineError(f"{path}: class folders disagree with the other files")
        arrays[key], true = labels, folder
    files.atomic_write(out, lambda f: np.savez_compressed(f, true_labels=true, classes=np.array(classes), **arrays))


class Paper:
    """The CL paper's own noisy labels (the shipped array, or its JSON files with ``--paper-json``)."""

    def sources(self, cond, json_dir: Path | None) -> list[Path]:
        return [json_file(cond.paper_key, json_dir) if json_dir else LABELS]

    def labels(self, cond, ds: Dataset, sources: list[Path], json_dir: Path | None) -> tuple[np.ndarray, None]:
        """The paper's noisy labels for ``cond`` in the dataset's row order."""
        if json_dir is not None:
            return import_json(sources[0], ds.train_ids, ds.num_classes), None
        idx = cifar10_rows(ds, "paper conditions", "; for other data generate conditions (NOISE:SPARSITY)")
        shipped = files.load(LABELS)
        if not np.array_equal(shipped["true_labels"][idx], ds.train_y):
            raise PipelineError(f"{LABELS}: the dataset's classes disagree with CIFAR-10's at the same indices")
        return shipped[cond.paper_key][idx].astype(np.int64), None

    def describe(self, cond) -> str:
        return f"paper noise {cond.noise}, sparsity {cond.sparsity}"


KIND = Paper()
