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


def run_fold(run: RunDir, cond: str, fold: int, config: CrossvalConfig, device, force: bool = False) -> Path | None:
    """Train on the other folds' rows (noisy labels), predict fold ``fold``'s rows, write the shard.

    Resumes from ``<shard>.ckpt`` (written every epoch) when one of this task exists; returns None
    without doing anything while another process holds the task's lock.
    """
    from pipeline.train import Data, device_name, train_classifier

    out, task_inputs, task_config = run.shard(cond, fold), inputs(run, cond), config.for_fold(fold)
    with store.TaskLock(out) as lock:
        if not lock.must_make(task_inputs, task_config, force):
            return out if lock.held else None
        start = time.perf_counter()
        ds = datasets.cached(task_inputs["dataset"])
        noisy = store.load_npy(task_inputs["labels"])
        fold_of = assign_folds(noisy, config.folds, config.fold_seed, ds.num_classes)
        held = np.flatnonzero(fold_of == fold)
        train = fold_of != fold
        data = Data(ds.train_x[train], noisy[train], ds.train_x[held], noisy[held], ds.num_classes)
        ckpt, timings = Path(f"{out}.ckpt"), {}
        probs = train_classifier(
            data, arch=config.arch, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            weight_decay=config.weight_decay, seed=config.seed + 1000 * fold, device=device,
            ckpt=ckpt, tag={"config": task_config, "inputs": store.fingerprints(task_inputs)}, heartbeat=lock.heartbeat,
            timings=timings,
        )
        store.save_npz(out, indices=held, probs=probs.astype(np.float32))
        info = {
            "assignment": assignment_fingerprint(fold_of),
            "n_train": int(train.sum()),
            "n_heldout": len(held),
            "heldout_acc_noisy": float(np.mean(probs.argmax(1) == noisy[held])),
            "heldout_acc_true": float(np.mean(probs.argmax(1) == ds.train_y[held])),
            **{k: round(v, 3) for k, v in timings.items()},
        }
        store.write_manifest(out, task_inputs, task_config, wall_s=time.perf_counter() - start,
                             device=device_name(device), info=info)
        ckpt.unlink(missing_ok=True)
    return out
