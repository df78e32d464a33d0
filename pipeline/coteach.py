"""The coteach stage: Co-Teaching on the rows a CL method keeps, evaluated on the test set.

Methods: the five CL masks (by cleanlab ``filter_by`` name), ``none`` (Co-Teaching on every row:
"Co-Teaching alone") and ``plain`` (no pruning, no Co-Teaching: the same two networks trained
independently with forget rate 0).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import datasets, store
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS
from pipeline.store import PipelineError

METHODS = (*CL_METHODS.values(), "none", "plain")


@dataclass(frozen=True)
class CoteachConfig:
    arch: str = "convnet"
    epochs: int = 250
    batch_size: int = 128
    lr: float = 0.001
    epoch_decay_start: int = 80
    num_gradual: int = 10
    forget_rate: float | None = None  # None: half the condition's actual noise rate, as the CL paper did

    def for_task(self, method: str, seed: int, noise_rate: float) -> dict:
        forget = 0.0 if method == "plain" else (noise_rate / 2 if self.forget_rate is None else self.forget_rate)
        return {**asdict(self), "forget_rate": round(forget, 6), "method": method, "seed": seed}


def parse_methods(spec: str) -> list[str]:
    methods = [m.strip() for m in spec.split(",") if m.strip()] if spec != "all" else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PipelineError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)} or all)")
    return methods


def noise_rate(run: RunDir, cond: str) -> float:
    return store.read_manifest(run.require(run.labels(cond), "noise"))["info"]["actual_noise_rate"]


def inputs(run: RunDir, cond: str, method: str) -> dict[str, Path]:
    out = {"dataset": run.require(run.dataset, "data"), "labels": run.require(run.labels(cond), "noise")}
    if method in CL_METHODS.values():
        out["masks"] = run.require(run.masks(cond), "masks")
    return out


def pending(run: RunDir, conds: list[str], methods: list[str], seeds: list[int], config: CoteachConfig,
            force: bool = False) -> list[tuple[str, str, int]]:
    """(condition, method, seed) tasks whose metrics are missing or stale (all of them with ``force``)."""
    out = []
    for c in conds:
        rate = noise_rate(run, c)
        out += [
            (c, m, s) for m in methods for s in seeds
            if force or not store.is_current(run.coteach(c, m, s), inputs(run, c, m), config.for_task(m, s, rate))
        ]
    return out


def run_task(run: RunDir, cond: str, method: str, seed: int, config: CoteachConfig, device, force: bool = False) -> Path | None:
    """Train Co-Teaching for one (condition, method, seed); write per-epoch test accuracy as JSON.

    Resumes from ``<metrics>.ckpt`` when one of this task exists; returns None without doing
    anything while another process holds the task's lock.
    """
    from pipeline.train import Data, device_name, train_coteaching

    out, task_inputs = run.coteach(cond, method, seed), inputs(run, cond, method)
    task = config.for_task(method, seed, noise_rate(run, cond))
    with store.TaskLock(out) as lock:
        if not lock.must_make(task_inputs, task, force):
            return out if lock.held else None
        start = time.perf_counter()
        ds = datasets.cached(task_inputs["dataset"])
        noisy = store.load_npy(task_inputs["labels"])
        keep = np.ones(len(noisy), bool)
        if method in CL_METHODS.values():
            store.read_manifest(task_inputs["masks"])  # refuses a corrupt or replaced file
            keep = store.load_npz(task_inputs["masks"])[method]
            if keep.shape != noisy.shape or keep.dtype != bool:
                raise PipelineError(f"{task_inputs['masks']}: mask '{method}' is {keep.dtype} {keep.shape}, "
                                    f"expected bool ({len(noisy)},)")
        ckpt = Path(f"{out}.ckpt")
        acc = train_coteaching(
            Data(ds.train_x[keep], noisy[keep], ds.test_x, ds.test_y, ds.num_classes),
            arch=config.arch, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            forget_rate=task["forget_rate"], num_gradual=min(config.num_gradual, config.epochs),
            epoch_decay_start=config.epoch_decay_start, seed=seed, device=device,
            ckpt=ckpt, tag={"config": task, "inputs": store.fingerprints(task_inputs)}, heartbeat=lock.heartbeat,
        )
        metrics = {
            "condition": cond,
            "method": method,
            "seed": seed,
            "n_train": int(keep.sum()),
            "forget_rate": task["forget_rate"],
            "test_acc": acc,  # [net1, net2] after every epoch
            "final_acc": float(np.mean(acc[-1])),  # mean of the two networks at the last epoch
            "best_acc": float(np.max(acc)),  # best epoch of either network, as the paper reported
            "best_epoch": int(np.argmax(np.max(acc, axis=1))),
        }
        store.save_json(out, metrics)
        store.write_manifest(out, task_inputs, task, wall_s=time.perf_counter() - start, device=device_name(device))
        ckpt.unlink(missing_ok=True)
    return out
