"""coteach: learners (pipeline/learners/, see --learners) on the rows each CL method keeps, or on
all rows; test accuracy after every epoch. Default grid: the CL paper's Table 2 (see --learners).

`--gpus 0,1,2,3` runs the (condition, rows, learner, seed) tasks on one worker process per GPU (`--gpus cpu`:
one CPU worker) instead of one after another on `--gpu`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline import backbones, conditions, datasets, features, files, models, options, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME, LEARNERS
from pipeline.masks import ROWS, rows_inputs
from pipeline.options import SEED_MAX, Range, option
from pipeline.rows import Rows

SEEDS = Range(int, 0, SEED_MAX)


@dataclass(frozen=True)
class SharedConfig(options.Options):
    """The options of every learner; ``CoteachConfig`` adds each learner's own."""

    arch: str = option(
        "convnet", "network of every learner: one of pipeline/models.py or any torchvision classification model"
    )
    weights: str | None = options.weights()
    input_size: int | None = options.input_size()
    features: bool = option(
        False,
        "every network is a logistic head (one linear layer) on the pooled features of --arch "
        "with --weights, computed once per backbone (as the linear probe's): seconds per task",
    )
    epochs: int = option(250, "training epochs", Range(int, 1, 10_000))
    batch_size: int = option(128, "training batch size", Range(int, 2, 65_536))
    lr: float = option(0.001, "Adam learning rate", Range(float, 0, 10, lo_open=True))
    epoch_decay_start: int = option(
        80, "epoch from which the learning rate decays linearly to 0 (and beta1 drops to 0.1)", Range(int, 0, 10_000)
    )
    precision: str = options.precision()
    compile: bool = options.compile_()

    def __post_init__(self):
        super().__post_init__()
        if self.arch not in models.ARCHS:
            backbones.check_arch(self.arch)
        if self.features and self.weights is None:
            raise PipelineError(
                "--features: give --weights (and --arch), the backbone whose features the heads learn from"
            )
        for spec in LEARNERS:
            if spec.check:
                spec.check(self.own(spec.name), self.batch_size, "")

    def own(self, learner: str) -> dict:
        """A learner's own options, as configured."""
        return {k: getattr(self, k) for k in BY_NAME[learner].options}

    def for_task(self, rows: str, learner: str, seed: int, noise_rate: float) -> dict:
        """A task's config: the shared options and its learner's own (another learner's do not make it stale)."""
        spec = BY_NAME[learner]
        own = spec.resolve(self.own(learner), noise_rate) if spec.resolve else self.own(learner)
        shared = {
            k: v for k, v in options.recorded(self).items() if k in {f.name for f in dataclasses.fields(SharedConfig)}
        }
        if self.weights is not None:
            shared["weights_checksum"] = backbones.checksum(self.arch, self.weights)
        return {**shared, **own, "rows": rows, "learner": learner, "seed": seed}


def _annotation(f: dataclasses.Field) -> type:
    """A learner option's type, from its range (None allowed where its default is None)."""
    rng = f.metadata.get("range")
    kind = rng.kind if rng is not None else type(f.default)
    return kind | None if f.default is None else kind


# The coteach stage's config: the shared options, then each learner's own as its spec declares them, in
# ``LEARNERS`` order (a learner added to pipeline/learners brings its options here, and its flags).
CoteachConfig = dataclasses.make_dataclass(
    "CoteachConfig",
    [(name, _annotation(f), f) for spec in LEARNERS for name, f in spec.options.items()],
    bases=(SharedConfig,),
    frozen=True,
)
CoteachConfig.__module__ = __name__  # where pickle finds it (a worker process receives configs pickled)


def _names(spec: str, allowed: tuple[str, ...], flag: str, extra: str = "") -> list[str]:
    names = list(allowed) if spec == "all" else list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    unknown = [m for m in names if m not in allowed]
    if unknown or not names:
        raise PipelineError(f"{flag} {spec!r}: choose from {', '.join(allowed)}, comma-separated, or all{extra}")
    return names


def grid(methods: str, learners: str) -> list[tuple[str, str]]:
    """(rows, learner) pairs: every selected row set x every selected learner; ``learners='paper'``
    pairs all rows (``none``) with the paper's baselines and each mask's rows with its cleaned learners."""
    rows = _names(methods, ROWS, "--methods")
    if learners == "paper":
        return [
            (r, spec.name)
            for r in rows
            for spec in LEARNERS
            if (spec.paper_baseline if r == "none" else spec.paper_cleaned)
        ]
    return [(r, lr) for r in rows for lr in _names(learners, tuple(BY_NAME), "--learners", " or paper")]


class Task(NamedTuple):
    """One coteach task: ``learner`` on condition ``cond``'s ``rows`` (a CL method's id, or none), seed ``seed``."""

    cond: str
    rows: str
    learner: str
    seed: int


@dataclass(frozen=True)
class Select(tasks.CondSelect):
    methods: str = option(
        "all", f"which rows to train on: comma-separated, from {', '.join(ROWS)} (none = every row), or all"
    )
    learners: str = option(
        "paper",
        f"comma-separated, from {', '.join(BY_NAME)}, or all; paper (default): the CL paper's Table 2, "
        f"{', '.join(s.name for s in LEARNERS if s.paper_baseline)} on all rows and "
        f"{', '.join(s.name for s in LEARNERS if s.paper_cleaned)} on every selected mask's rows",
    )
    seeds: str = option("0", "comma-separated seeds (trials), each in 0..2147483647")


class Coteach(tasks.TrainingStage):
    name, unit, Select, Config = "coteach", "(condition, rows, learner, seed)", Select, CoteachConfig

    def select(self, run: RunDir, select: Select, config: CoteachConfig) -> list[Task]:
        if store.verify(run.require(run.dataset, "data"))["info"].get("n_test") == 0:  # the data stage records it
            raise PipelineError(
                f"{run.dataset}: an audit run (data --audit-test) has no test set to evaluate a learner "
                "on; coteach needs one"
            )
        pairs, seeds = grid(select.methods, select.learners), options.int_list(select.seeds, SEEDS, "--seeds")
        return [Task(c, r, lr, s) for c in conditions.names(run, select.cond) for r, lr in pairs for s in seeds]

    def check(self, run: RunDir, task: list, config: CoteachConfig) -> Task:
        if not (
            isinstance(task, list)
            and len(task) == 4
            and task[0] in conditions.registry(run)
            and task[1] in ROWS
            and task[2] in BY_NAME
            and isinstance(task[3], int)
        ):
            raise PipelineError(f"task {task!r}: not a (registered condition, rows, learner, seed) coteach task")
        SEEDS.check(task[3])
        return Task(*task)

    def target(self, run: RunDir, task: tuple, config: CoteachConfig) -> tuple[Path, dict[str, Path], dict]:
        cond, rows, learner, seed = task
        noise_rate = conditions.load(run, cond).noise_rate
        feats = features.path(run, config.arch, config.weights, config.input_size) if config.features else None
        weights = backbones.weights_file(config.arch, config.weights) if config.weights and not feats else None
        return (
            run.coteach(cond, rows, learner, seed),
            rows_inputs(run, cond, rows, feats, weights),
            config.for_task(rows, learner, seed, noise_rate),
        )

    def run(
        self, run: RunDir, task: tuple, config: CoteachConfig, ctx, force: bool = False
    ) -> tuple[store.Outcome, str]:
        """With ``--features``, the backbone's features first (once per backbone; a dry run only asks whether they are current)."""
        if config.features:
            features.produce(run, config.arch, config.weights, config.input_size, ctx.device)
        return super().run(run, task, config, ctx, force)

    def make(self, run: RunDir, task: tuple, config: CoteachConfig, ctx, ckpt: Path, tag: dict):
        """Train one learner on one condition's kept rows: per-epoch test accuracy of its networks."""
        from pipeline.learners import training
        from pipeline.train import Split, effective_precision

        cond, rows, learner, seed = task
        start = time.perf_counter()
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(cond))
        keep, where = np.ones(len(noisy), bool), run.labels(cond) if rows == "none" else run.mask(cond, rows)
        if rows != "none":
            keep = store.read(where)
            if keep.shape != noisy.shape or keep.dtype != bool:
                raise PipelineError(f"{where}: not a boolean mask of {len(noisy)} rows")
        if keep.sum() < 2:
            raise PipelineError(f"{where}: '{rows}' keeps {int(keep.sum())} of {len(noisy)} rows; too few to train on")
        spec = BY_NAME[learner]
        own = {k: tag["config"][k] for k in spec.options}  # resolved for this task (``for_task``)
        if spec.check:  # checked again on the task: resolved options, and the kept rows may be fewer than a batch
            spec.check(
                own, min(config.batch_size, int(keep.sum())), f"{where}: '{rows}' keeps {int(keep.sum())} rows: "
            )
        batches = dict(batch_size=config.batch_size, seed=seed, ctx=ctx)
        if config.features:
            x = store.read(features.path(run, config.arch, config.weights, config.input_size))
            inputs = training.features(
                Split(
                    x["train"][keep], noisy[keep], x["test"], ds.test_y, ds.num_classes, np.flatnonzero(keep), len(keep)
                ),
                **batches,
            )
        else:
            weights = None if config.weights is None else backbones.weights_file(config.arch, config.weights)
            inputs = training.images(
                Split(
                    Rows(ds.train_x, np.flatnonzero(keep)),
                    noisy[keep],
                    ds.test_x,
                    ds.test_y,
                    ds.num_classes,
                    np.flatnonzero(keep),
                    len(keep),
                ),
                arch=config.arch,
                weights=weights,
                input_size=config.input_size,
                **batches,
            )
        acc = training.train_learner(
            spec,
            inputs,
            epochs=config.epochs,
            lr=config.lr,
            epoch_decay_start=config.epoch_decay_start,
            seed=seed,
            ctx=ctx,
            precision=config.precision,
            compile=config.compile,
            ckpt=ckpt,
            tag=tag,
            label=f"coteach {self.describe(task)}",
            **own,
        )
        metrics = {
            "condition": cond,
            "rows": rows,
            "learner": learner,
            "seed": seed,
            "n_train": int(keep.sum()),
            **own,
            "test_acc": acc,  # after every epoch, one value per network (two for coteaching)
            "final_acc": float(np.mean(acc[-1])),  # the last epoch, mean of the networks
            "best_acc": float(np.max(acc)),  # the best epoch of any network, as the CL paper reported
            "best_epoch": int(np.argmax(np.max(acc, axis=1))),
        }
        info = {
            "seconds": round(time.perf_counter() - start, 3),  # this run's (after a resume: the rest's)
            "precision": effective_precision(config.precision, ctx.device),
        }
        return metrics, info

    def describe(self, task: tuple) -> str:
        return f"{task[0]} {task[1]} x {task[2]} seed {task[3]}"

    def summary(self, run: RunDir, task: tuple, config: CoteachConfig) -> str:
        m = files.load(run.coteach(*task))
        return f"{self.describe(task)}: final {100 * m['final_acc']:.1f}%  best {100 * m['best_acc']:.1f}%"


STAGE = Coteach()

if __name__ == "__main__":
    workers.main(STAGE)
