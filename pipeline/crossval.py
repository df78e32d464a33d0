"""The crossval stage: train one fold of one condition, write its held-out probabilities as a shard."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, models, options, store, tasks
from pipeline.folds import assign_folds
from pipeline.layout import RunDir
from pipeline.options import SEED_MAX, Range, option
from pipeline.store import PipelineError

MAX_FOLDS = 100


@dataclass(frozen=True)
class CrossvalConfig:
    folds: int = option(4, "number of cross-validation folds", Range(int, 2, MAX_FOLDS))
    fold_seed: int = option(0, "seed of the stratified fold assignment", Range(int, 0, SEED_MAX))
    arch: str = option("convnet", "network (see pipeline/models.py)", choices=models.ARCHS)
    epochs: int = option(20, "training epochs per fold", Range(int, 1, 10_000))
    batch_size: int = option(256, "training batch size", Range(int, 2, 65_536))
    lr: float = option(0.1, "peak learning rate of SGD (Nesterov), linear warm-up then decay", Range(float, 0, 10, lo_open=True))
    weight_decay: float = option(5e-4, "SGD weight decay", Range(float, 0, 1))
    seed: int = option(0, "training seed (fold k trains with seed + 1000 k)", Range(int, 0, SEED_MAX - 1000 * MAX_FOLDS))

    def __post_init__(self):
        options.validate(self)


class Crossval(tasks.Stage):
    name, unit, Config = "crossval", "(condition, fold)", CrossvalConfig

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--fold", default="all", help="fold index, comma-separated indices, or 'all'")

    def select(self, run: RunDir, conds: list[str], args: argparse.Namespace, config: CrossvalConfig) -> list[tuple]:
        folds = list(range(config.folds)) if args.fold == "all" else \
            options.int_list(args.fold, Range(int, 0, config.folds - 1), "--fold")
        return [(c, k) for c in conds for k in folds]

    def check(self, run: RunDir, task: list, config: CrossvalConfig) -> tuple:
        if not (isinstance(task, list) and len(task) == 2 and task[0] in conditions.registry(run)
                and isinstance(task[1], int) and 0 <= task[1] < config.folds):
            raise PipelineError(f"task {task!r}: not a (registered condition, fold < {config.folds}) crossval task")
        return tuple(task)

    def target(self, run: RunDir, task: tuple, config: CrossvalConfig) -> tuple[Path, dict[str, Path], dict]:
        cond, fold = task
        inputs = {"dataset": run.require(run.dataset, "data"), "labels": run.require(run.labels(cond), "noise")}
        return run.shard(cond, fold), inputs, {"fold": fold, **asdict(config)}

    def make(self, run: RunDir, task: tuple, config: CrossvalConfig, device, ckpt: Path, tag: dict):
        """Train on the other folds' rows (noisy labels), predict fold ``fold``'s rows: the shard."""
        from pipeline.train import Data, train_classifier

        cond, fold = task
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(cond))
        fold_of = assign_folds(noisy, config.folds, config.fold_seed, ds.num_classes)
        held, train = np.flatnonzero(fold_of == fold), fold_of != fold
        data = Data(ds.train_x[train], noisy[train], ds.train_x[held], noisy[held], ds.num_classes)
        timings = {}
        probs = train_classifier(
            data, arch=config.arch, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            weight_decay=config.weight_decay, seed=config.seed + 1000 * fold, device=device,
            ckpt=ckpt, tag=tag, label=f"crossval {self.describe(task)}", timings=timings,
        )
        info = {
            "n_train": int(train.sum()),
            "n_heldout": len(held),
            "heldout_acc_noisy": float(np.mean(probs.argmax(1) == noisy[held])),
            "heldout_acc_true": float(np.mean(probs.argmax(1) == ds.train_y[held])),
            **{k: round(v, 3) for k, v in timings.items()},
        }
        return {"indices": held, "probs": probs.astype(np.float32)}, info

    def describe(self, task: tuple) -> str:
        return f"{task[0]} fold {task[1]}"


STAGE = Crossval()
