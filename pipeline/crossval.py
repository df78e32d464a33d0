"""The crossval stage: train one fold of one condition, write its held-out probabilities as a shard."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import datasets, store
from pipeline.folds import assign_folds, assignment_fingerprint
from pipeline.layout import RunDir


@dataclass(frozen=True)
class CrossvalConfig:
    folds: int = 4
    fold_seed: int = 0
    arch: str = "convnet"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0

    def for_fold(self, fold: int) -> dict:
        return {"fold": fold, **asdict(self)}


def inputs(run: RunDir, cond: str) -> dict[str, Path]:
    return {"dataset": run.require(run.dataset, "data"), "labels": run.require(run.labels(cond), "noise")}


def pending(run: RunDir, conds: list[str], folds: list[int], config: CrossvalConfig, force: bool = False) -> list[tuple[str, int]]:
    """(condition, fold) tasks whose shard is missing or stale (all of them with ``force``)."""
    return [
        (c, k) for c in conds for k in folds
        if force or not store.is_current(run.shard(c, k), inputs(run, c), config.for_fold(k))
    ]


def run_fold(run: RunDir, cond: str, fold: int, config: CrossvalConfig, device) -> Path:
    """Train on the other folds' rows (noisy labels), predict fold ``fold``'s rows, write the shard."""
    from pipeline.train import Data, device_name, train_classifier

    start = time.perf_counter()
    ds = datasets.cached(run.require(run.dataset, "data"))
    noisy = store.load_npy(run.labels(cond))
    fold_of = assign_folds(noisy, config.folds, config.fold_seed)
    held = np.flatnonzero(fold_of == fold)
    train = fold_of != fold
    data = Data(ds.train_x[train], noisy[train], ds.train_x[held], noisy[held], ds.num_classes)
    probs = train_classifier(
        data, arch=config.arch, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, seed=config.seed + 1000 * fold, device=device,
    )
    out = run.shard(cond, fold)
    store.save_npz(out, indices=held, probs=probs.astype(np.float32))
    info = {
        "assignment": assignment_fingerprint(fold_of),
        "n_train": int(train.sum()),
        "n_heldout": len(held),
        "heldout_acc_noisy": float(np.mean(probs.argmax(1) == noisy[held])),
        "heldout_acc_true": float(np.mean(probs.argmax(1) == ds.train_y[held])),
    }
    store.write_manifest(out, inputs(run, cond), config.for_fold(fold), wall_s=time.perf_counter() - start,
                         device=device_name(device), info=info)
    return out
