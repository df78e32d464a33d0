"""The coteach stage: learn from the rows a CL method keeps, and evaluate on the test set.

A task has two axes: which rows (``none`` = every row, or one of the five CL masks by its cleanlab
name) and which learner (``pipeline.learners``: coteaching, plain, mixup, sce, mae). The default grid
is the CL paper's Table 2: Co-Teaching on each mask's rows and on all rows, plus plain
cross-entropy, Mixup and SCE on all rows (``--learners paper``); ``--learners plain`` (for
example) trains every selected row set with that learner instead ("train on the cleaned rows").
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, models, options, store, tasks
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS
from pipeline.options import SEED_MAX, Range, option

ROWS = ("none", *CL_METHODS.values())
LEARNERS = ("coteaching", "plain", "mixup", "sce", "mae")  # pipeline.learners.CLASSES
# The options each learner reads besides the shared ones (arch, epochs, batch_size, lr, epoch_decay_start).
OWN_OPTIONS = {"coteaching": ("forget_rate", "num_gradual"), "plain": (), "mixup": ("mixup_alpha",),
               "sce": ("sce_alpha", "sce_beta"), "mae": ()}
PAPER_LEARNERS_ON_ALL_ROWS = ("coteaching", "plain", "mixup", "sce")  # Table 2's baselines; the masks get coteaching
SEEDS = Range(int, 0, SEED_MAX)


@dataclass(frozen=True)
class CoteachConfig:
    arch: str = option("convnet", "network of every learner (see pipeline/models.py)", choices=models.ARCHS)
    epochs: int = option(250, "training epochs", Range(int, 1, 10_000))
    batch_size: int = option(128, "training batch size", Range(int, 2, 65_536))
    lr: float = option(0.001, "Adam learning rate", Range(float, 0, 10, lo_open=True))
    epoch_decay_start: int = option(80, "epoch from which the learning rate decays linearly to 0 (and beta1 drops to 0.1)",
                                    Range(int, 0, 10_000))
    num_gradual: int = option(10, "coteaching: epochs over which the forget rate ramps up linearly (at most --epochs)",
                              Range(int, 0, 10_000))
    forget_rate: float | None = option(None, "coteaching: fraction of each batch's largest losses left out; none: half the "
                                             "condition's actual noise rate, as the CL paper did",
                                       Range(float, 0, 1, hi_open=True, optional=True))
    mixup_alpha: float = option(1.0, "mixup: the mixing weight is drawn from Beta(alpha, alpha)", Range(float, 0, 100, lo_open=True))
    sce_alpha: float = option(0.1, "sce: weight of the cross-entropy term (Wang et al.: 0.1 on CIFAR-10)", Range(float, 0, 100))
    sce_beta: float = option(1.0, "sce: weight of the reverse cross-entropy term (Wang et al.: 1.0 on CIFAR-10)", Range(float, 0, 100))
    precision: str = options.precision()
    compile: bool = options.compile_()

    def __post_init__(self):
        options.validate(self)
        if self.forget_rate is not None:
            check_forget_rate(self.forget_rate, self.batch_size, "")
        if self.sce_alpha == 0 and self.sce_beta == 0:
            raise PipelineError("--sce-alpha 0 --sce-beta 0: the loss would be 0 and sce would learn nothing; make one positive")

    def for_task(self, rows: str, learner: str, seed: int, noise_rate: float) -> dict:
        """A task's config: the shared options and its learner's own (another learner's do not make it stale)."""
        own = {k: getattr(self, k) for k in OWN_OPTIONS[learner]}
        if learner == "coteaching":
            own["forget_rate"] = round(noise_rate / 2 if self.forget_rate is None else self.forget_rate, 6)
        shared = {k: v for k, v in asdict(self).items() if k not in {o for opts in OWN_OPTIONS.values() for o in opts}}
        return {**shared, **own, "rows": rows, "learner": learner, "seed": seed}


def check_forget_rate(rate: float, batch: int, where: str) -> None:
    """Co-Teaching keeps int((1 - rate) x batch) examples of a batch: at least one, or it learns nothing.
    ``batch``: the batch that really trains (a mask keeping fewer rows than --batch-size trains on them all)."""
    if int((1 - rate) * batch) < 1:
        raise PipelineError(f"{where}--forget-rate {rate}: keeps no example of a batch of {batch} "
                            f"(Co-Teaching keeps int((1 - rate) x batch)); expected below {1 - 1 / batch:g}")


def _names(spec: str, allowed: tuple[str, ...], flag: str, extra: str = "") -> list[str]:
    names = list(allowed) if spec == "all" else list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    unknown = [m for m in names if m not in allowed]
    if unknown or not names:
        raise PipelineError(f"{flag} {spec!r}: choose from {', '.join(allowed)}, comma-separated, or all{extra}")
    return names


def grid(methods: str, learners: str) -> list[tuple[str, str]]:
    """(rows, learner) pairs: every selected row set x every selected learner; ``learners='paper'``
    pairs each row set with coteaching, and all rows (``none``) also with plain, mixup and sce."""
    rows = _names(methods, ROWS, "--methods")
    if learners == "paper":
        return [(r, lr) for r in rows for lr in (PAPER_LEARNERS_ON_ALL_ROWS if r == "none" else ("coteaching",))]
    return [(r, lr) for r in rows for lr in _names(learners, LEARNERS, "--learners", " or paper")]


class Coteach(tasks.Stage):
    name, unit, Config = "coteach", "(condition, rows, learner, seed)", CoteachConfig

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--methods", default="all",
                       help=f"which rows to train on: comma-separated, from {', '.join(ROWS)} (none = every row), or all")
        p.add_argument("--learners", default="paper",
                       help=f"comma-separated, from {', '.join(LEARNERS)}, or all; paper (default): coteaching on every "
                            "selected row set, and plain, mixup and sce on all rows too (the CL paper's Table 2)")
        p.add_argument("--seeds", default="0", help="comma-separated seeds (trials), each in 0..2147483647")

    def select(self, run: RunDir, conds: list[str], args: argparse.Namespace, config: CoteachConfig) -> list[tuple]:
        pairs, seeds = grid(args.methods, args.learners), options.int_list(args.seeds, SEEDS, "--seeds")
        return [(c, r, lr, s) for c in conds for r, lr in pairs for s in seeds]

    def check(self, run: RunDir, task: list, config: CoteachConfig) -> tuple:
        if not (isinstance(task, list) and len(task) == 4 and task[0] in conditions.registry(run) and task[1] in ROWS
                and task[2] in LEARNERS and isinstance(task[3], int)):
            raise PipelineError(f"task {task!r}: not a (registered condition, rows, learner, seed) coteach task")
        SEEDS.check(task[3])
        return tuple(task)

    def target(self, run: RunDir, task: tuple, config: CoteachConfig) -> tuple[Path, dict[str, Path], dict]:
        cond, rows, learner, seed = task
        loaded = conditions.load(run, cond)
        inputs = {"dataset": run.require(run.dataset, "data"), "labels": loaded.labels}
        if rows != "none":
            inputs["masks"] = run.require(run.masks(cond), "masks")
        return run.coteach(cond, rows, learner, seed), inputs, config.for_task(rows, learner, seed, loaded.noise_rate)

    def make(self, run: RunDir, task: tuple, config: CoteachConfig, device, ckpt: Path, tag: dict):
        """Train one learner on one condition's kept rows: per-epoch test accuracy of its networks."""
        from pipeline.learners import train_learner
        from pipeline.train import Data, effective_precision

        cond, rows, learner, seed = task
        start = time.perf_counter()
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(cond))
        keep = np.ones(len(noisy), bool)
        if rows != "none":
            keep = store.read(run.masks(cond)).get(rows)
            if keep is None or keep.shape != noisy.shape or keep.dtype != bool:
                raise PipelineError(f"{run.masks(cond)}: no boolean mask '{rows}' of {len(noisy)} rows")
        if keep.sum() < 2:
            raise PipelineError(f"{run.masks(cond)}: '{rows}' keeps {int(keep.sum())} of {len(noisy)} rows; too few to train on")
        c = tag["config"]
        if learner == "coteaching":  # checked again against the batch that trains: the kept rows may be fewer
            check_forget_rate(c["forget_rate"], min(c["batch_size"], int(keep.sum())),
                              f"{run.masks(cond)}: '{rows}' keeps {int(keep.sum())} rows: ")
        acc = train_learner(
            Data(ds.train_x[keep], noisy[keep], ds.test_x, ds.test_y, ds.num_classes, np.flatnonzero(keep), len(keep)), learner,
            arch=c["arch"], epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], epoch_decay_start=c["epoch_decay_start"],
            seed=seed, device=device, precision=c["precision"], compile=c["compile"], ckpt=ckpt, tag=tag,
            label=f"coteach {self.describe(task)}",
            **{k: min(c[k], c["epochs"]) if k == "num_gradual" else c[k] for k in OWN_OPTIONS[learner]},
        )
        metrics = {
            "condition": cond, "rows": rows, "learner": learner, "seed": seed, "n_train": int(keep.sum()),
            **{k: c[k] for k in OWN_OPTIONS[learner]},
            "test_acc": acc,  # after every epoch, one value per network (two for coteaching)
            "final_acc": float(np.mean(acc[-1])),  # the last epoch, mean of the networks
            "best_acc": float(np.max(acc)),  # the best epoch of any network, as the CL paper reported
            "best_epoch": int(np.argmax(np.max(acc, axis=1))),
        }
        info = {"seconds": round(time.perf_counter() - start, 3),  # this run's (after a resume: the rest's)
                "precision": effective_precision(config.precision, device)}
        return metrics, info

    def describe(self, task: tuple) -> str:
        return f"{task[0]} {task[1]} x {task[2]} seed {task[3]}"

    def summary(self, run: RunDir, task: tuple, config: CoteachConfig) -> str:
        m = store.load(run.coteach(*task))
        return f"{self.describe(task)}: final {100 * m['final_acc']:.1f}%  best {100 * m['best_acc']:.1f}%"


STAGE = Coteach()
