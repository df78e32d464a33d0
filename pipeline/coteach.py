"""The coteach stage: Co-Teaching on the rows a CL method keeps, evaluated on the test set.

Methods: the five CL masks (by cleanlab ``filter_by`` name), ``none`` (Co-Teaching on every row:
"Co-Teaching alone") and ``plain`` (no pruning, no Co-Teaching: the same two networks trained
independently with forget rate 0).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, models, options, store, tasks
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS
from pipeline.options import SEED_MAX, Range, option
from pipeline.store import PipelineError

METHODS = (*CL_METHODS.values(), "none", "plain")
SEEDS = Range(int, 0, SEED_MAX)


@dataclass(frozen=True)
class CoteachConfig:
    arch: str = option("convnet", "network of both Co-Teaching networks (see pipeline/models.py)", choices=models.ARCHS)
    epochs: int = option(250, "training epochs", Range(int, 1, 10_000))
    batch_size: int = option(128, "training batch size", Range(int, 2, 65_536))
    lr: float = option(0.001, "Adam learning rate", Range(float, 0, 10, lo_open=True))
    epoch_decay_start: int = option(80, "epoch from which the learning rate decays linearly to 0 (and beta1 drops to 0.1)",
                                    Range(int, 0, 10_000))
    num_gradual: int = option(10, "epochs over which the forget rate ramps up linearly (at most --epochs)", Range(int, 0, 10_000))
    forget_rate: float | None = option(None, "fraction of each batch's largest losses left out; none: half the condition's "
                                             "actual noise rate, as the CL paper did", Range(float, 0, 1, hi_open=True, optional=True))

    def __post_init__(self):
        options.validate(self)

    def for_task(self, method: str, seed: int, noise_rate: float) -> dict:
        forget = 0.0 if method == "plain" else (noise_rate / 2 if self.forget_rate is None else self.forget_rate)
        return {**asdict(self), "forget_rate": round(forget, 6), "method": method, "seed": seed}


def parse_methods(spec: str) -> list[str]:
    methods = list(METHODS) if spec == "all" else list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise PipelineError(f"--methods {spec!r}: choose from {', '.join(METHODS)}, comma-separated, or all")
    return methods


class Coteach(tasks.Stage):
    name, unit, Config = "coteach", "(condition, method, seed)", CoteachConfig

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--methods", default="all", help=f"comma-separated, from {', '.join(METHODS)}, or all")
        p.add_argument("--seeds", default="0", help="comma-separated seeds (trials), each in 0..2147483647")

    def select(self, run: RunDir, conds: list[str], args: argparse.Namespace, config: CoteachConfig) -> list[tuple]:
        methods, seeds = parse_methods(args.methods), options.int_list(args.seeds, SEEDS, "--seeds")
        return [(c, m, s) for c in conds for m in methods for s in seeds]

    def check(self, run: RunDir, task: list, config: CoteachConfig) -> tuple:
        if not (isinstance(task, list) and len(task) == 3 and task[0] in conditions.registry(run) and task[1] in METHODS
                and isinstance(task[2], int)):
            raise PipelineError(f"task {task!r}: not a (registered condition, method, seed) coteach task")
        SEEDS.check(task[2])
        return tuple(task)

    def target(self, run: RunDir, task: tuple, config: CoteachConfig) -> tuple[Path, dict[str, Path], dict]:
        cond, method, seed = task
        loaded = conditions.load(run, cond)
        inputs = {"dataset": run.require(run.dataset, "data"), "labels": loaded.labels}
        if method in CL_METHODS.values():
            inputs["masks"] = run.require(run.masks(cond), "masks")
        return run.coteach(cond, method, seed), inputs, config.for_task(method, seed, loaded.noise_rate)

    def make(self, run: RunDir, task: tuple, config: CoteachConfig, device, ckpt: Path, tag: dict):
        """Co-Teaching for one (condition, method, seed): per-epoch test accuracy of both networks."""
        from pipeline.train import Data, train_coteaching

        cond, method, seed = task
        start = time.perf_counter()
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(cond))
        keep = np.ones(len(noisy), bool)
        if method in CL_METHODS.values():
            keep = store.read(run.masks(cond)).get(method)
            if keep is None or keep.shape != noisy.shape or keep.dtype != bool:
                raise PipelineError(f"{run.masks(cond)}: no boolean mask '{method}' of {len(noisy)} rows")
        if keep.sum() < 2:
            raise PipelineError(f"{run.masks(cond)}: '{method}' keeps {int(keep.sum())} of {len(noisy)} rows; too few to train on")
        forget_rate = tag["config"]["forget_rate"]
        acc = train_coteaching(
            Data(ds.train_x[keep], noisy[keep], ds.test_x, ds.test_y, ds.num_classes),
            arch=config.arch, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            forget_rate=forget_rate, num_gradual=min(config.num_gradual, config.epochs),
            epoch_decay_start=config.epoch_decay_start, seed=seed, device=device,
            ckpt=ckpt, tag=tag, label=f"coteach {self.describe(task)}",
        )
        metrics = {
            "condition": cond,
            "method": method,
            "seed": seed,
            "n_train": int(keep.sum()),
            "forget_rate": forget_rate,
            "test_acc": acc,  # [net1, net2] after every epoch
            "final_acc": float(np.mean(acc[-1])),  # mean of the two networks at the last epoch
            "best_acc": float(np.max(acc)),  # best epoch of either network, as the paper reported
            "best_epoch": int(np.argmax(np.max(acc, axis=1))),
        }
        return metrics, {"seconds": round(time.perf_counter() - start, 3)}  # this run's (after a resume: the rest's)

    def describe(self, task: tuple) -> str:
        return f"{task[0]} {task[1]} seed {task[2]}"

    def summary(self, run: RunDir, task: tuple, config: CoteachConfig) -> str:
        m = store.load(run.coteach(*task))
        return f"{self.describe(task)}: final {100 * m['final_acc']:.1f}%  best {100 * m['best_acc']:.1f}%"


STAGE = Coteach()
