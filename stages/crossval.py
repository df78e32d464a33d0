"""crossval: train one cross-validation fold per condition; write its held-out probabilities as a shard.

`--fold 0` runs fold 0 of every condition whose shard is missing or stale, one after another in this
process; `--fold all` runs every fold. `--gpus 0,1,2,3` runs them on one worker process per GPU instead
(`--gpus cpu`: one CPU worker)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline import (
    backbones,
    conditions,
    datasets,
    features,
    models,
    options,
    probe,
    recipes,
    store,
    tasks,
    workers,
)
from pipeline.errors import PipelineError
from pipeline.folds import assign_folds
from pipeline.layout import RunDir
from pipeline.options import SEED_MAX, Range, option
from pipeline.recipes import PROBES, RECIPES
from pipeline.rows import Rows

MAX_FOLDS = 100


@dataclass(frozen=True)
class TrainingConfig(options.Options):
    """The options of training a network on a dataset's rows (crossval's folds; the backbone stage's pretraining)."""

    recipe: str = option(
        "airbench",
        "training recipe: airbench (fast), sgd (plain SGD), finetune (pretrained --weights: "
        "the head alone, then the whole network; AdamW), or linear-probe (a logistic regression on "
        "the pooled features of --arch with --weights, computed once per backbone); see "
        "pipeline/recipes.py. It sets the defaults of the options below",
        choices=(*RECIPES, *PROBES),
    )
    arch: str | None = option(
        None,
        "network: one of pipeline/models.py or any torchvision classification model "
        "(resnet18, convnext_tiny, ...); none: the recipe's",
    )
    weights: str | None = options.weights()
    input_size: int | None = options.input_size()
    epochs: int | None = option(None, "training epochs; none: the recipe's", Range(int, 1, 10_000, optional=True))
    batch_size: int | None = option(
        None,
        "training batch size; none: the recipe's (airbench: the batch that makes 36 steps "
        "per epoch on the rows trained on, at most 1,024, with --lr none scaled in proportion)",
        Range(int, 2, 65_536, optional=True),
    )
    lr: float | None = option(
        None,
        "peak learning rate (the new head's, with a fine-tune) on the mean loss; none: the recipe's",
        Range(float, 0, 100, lo_open=True, optional=True),
    )
    weight_decay: float | None = option(
        None,
        "weight decay (airbench: decoupled, the fraction each weight shrinks per "
        "step at the peak; sgd: torch's); none: the recipe's",
        Range(float, 0, 1, optional=True),
    )
    label_smoothing: float | None = option(
        None,
        "label smoothing of the cross-entropy; none: the recipe's",
        Range(float, 0, 1, hi_open=True, optional=True),
    )
    mixup: float | None = option(
        None,
        "MixUp: train on pairs of images blended by a weight drawn from Beta(a, a), a this "
        "value, with their labels blended alike; none: off",
        Range(float, 0, 10, lo_open=True, optional=True),
    )
    tta: str = option(
        "recipe",
        "test-time augmentation of the held-out predictions (each image and its mirror, and both shifted by "
        "1 px, averaged): on, off, or recipe (the recipe's: airbench on, the others off)",
        choices=("recipe", "on", "off"),
    )
    seed: int = option(
        0, "training seed (crossval: fold k trains with seed + 1000 k)", Range(int, 0, SEED_MAX - 1000 * MAX_FOLDS)
    )
    precision: str = options.precision()
    compile: bool = options.compile_()

    def __post_init__(self):
        super().__post_init__()
        if self.recipe in PROBES:
            if self.arch is None or self.weights is None:
                raise PipelineError(
                    f"--recipe {self.recipe}: give --arch and --weights, the backbone whose features it fits"
                )
            if self.mixup is not None:
                raise PipelineError(
                    f"--mixup {self.mixup}: --recipe {self.recipe} fits features, it trains on no images to mix"
                )
            if self.tta != "recipe":
                raise PipelineError(
                    f"--tta {self.tta}: --recipe {self.recipe} predicts from cached features, not from images"
                )
        else:
            if RECIPES[self.recipe].frozen_epochs and self.weights is None:
                raise PipelineError(f"--recipe {self.recipe}: fine-tunes pretrained weights; give --weights")
        if self.arch is not None and self.arch not in models.ARCHS:  # none: the recipe's, one of ours
            backbones.check_arch(self.arch)

    def resolved(self, n_rows: int | None = None) -> TrainingConfig:
        """This config with the recipe's values where it leaves an option at none (``recipes.settle``: with
        ``n_rows``, also the batch that follows the set's size); a probe's as given. What an artifact records."""
        return self if self.recipe in PROBES else dataclasses.replace(self, **self.settled(n_rows))

    def settled(self, n_rows: int | None = None) -> dict:
        """The recipe's options (``recipes.OPTIONS``) as ``resolved`` settles them."""
        return recipes.settle(self.recipe, {k: getattr(self, k) for k in recipes.OPTIONS}, n_rows)

    def recorded(self) -> dict:
        """The config an artifact records (``options.recorded``; of a ``resolved`` config)."""
        return options.recorded(self)

    def training(self, n_rows: int) -> recipes.Training:
        """The training of ``n_rows`` rows with this config (``recipes.resolve``)."""
        names = [f.name for f in dataclasses.fields(recipes.Training) if f.name != "recipe"]
        return recipes.resolve(self.recipe, {k: getattr(self, k) for k in names}, n_rows)


@dataclass(frozen=True)
class CrossvalConfig(TrainingConfig):
    folds: int = option(4, "number of cross-validation folds", Range(int, 2, MAX_FOLDS))
    fold_seed: int = option(0, "seed of the stratified fold assignment", Range(int, 0, SEED_MAX))
    prune_epoch: int | None = option(
        None,
        "after this many epochs, drop the training rows that confident learning "
        "(prune_by_noise_rate) flags on the network's own predictions, and train the "
        "remaining epochs on the rest; none: never",
        Range(int, 1, 10_000, optional=True),
    )

    def __post_init__(self):
        super().__post_init__()
        epochs = None if self.recipe in PROBES else self.settled()["epochs"]
        if self.prune_epoch is not None and (epochs is None or self.prune_epoch >= epochs):
            raise PipelineError(
                f"--prune-epoch {self.prune_epoch}: leaves no epoch to train on the kept rows "
                f"(expected below --epochs {epochs}, and a recipe that trains epochs)"
            )


class Task(NamedTuple):
    """One crossval task: fold ``fold`` of condition ``cond`` (as a list in a SLURM task list)."""

    cond: str
    fold: int


@dataclass(frozen=True)
class Select(tasks.CondSelect):
    fold: str = option("all", "fold index, comma-separated indices, or 'all'")


class Crossval(tasks.TrainingStage):
    name, unit, Select, Config, several_devices = "crossval", "(condition, fold)", Select, CrossvalConfig, True

    def select(self, run: RunDir, select: Select, config: CrossvalConfig) -> list[Task]:
        folds = (
            list(range(config.folds))
            if select.fold == "all"
            else options.int_list(select.fold, Range(int, 0, config.folds - 1), "--fold")
        )
        return [Task(c, k) for c in conditions.names(run, select.cond) for k in folds]

    def check(self, run: RunDir, task: list, config: CrossvalConfig) -> Task:
        if not (
            isinstance(task, list)
            and len(task) == 2
            and task[0] in conditions.registry(run)
            and isinstance(task[1], int)
            and 0 <= task[1] < config.folds
        ):
            raise PipelineError(f"task {task!r}: not a (registered condition, fold < {config.folds}) crossval task")
        return Task(*task)

    def target(self, run: RunDir, task: tuple, config: CrossvalConfig) -> tuple[Path, dict[str, Path], dict]:
        cond, fold = task
        inputs = {"dataset": run.require(run.dataset, "data"), "labels": run.require(run.labels(cond), "noise")}
        sized = config.batch_size is None and config.recipe not in PROBES  # the batch may follow the fold's size
        config = config.resolved(int(self._rows(run, cond, fold, config)[1].sum()) if sized else None)
        recorded = {"fold": fold, **config.recorded()}
        if config.weights is not None:
            recorded["weights_checksum"] = backbones.checksum(config.arch, config.weights)
            inputs["weights"] = store.External(backbones.weights_file(config.arch, config.weights))
        if config.recipe in PROBES:
            inputs["features"] = features.path(run, config.arch, config.weights, config.input_size)
        return run.shard(cond, fold), inputs, recorded

    def run(
        self, run: RunDir, task: tuple, config: CrossvalConfig, ctx, force: bool = False
    ) -> tuple[store.Outcome, str]:
        """A linear probe's features first (once per backbone; a dry run only asks whether they are current)."""
        if config.recipe in PROBES:
            features.produce(run, config.arch, config.weights, config.input_size, ctx.device)
        return super().run(run, task, config, ctx, force)

    def make(self, run: RunDir, task: tuple, config: CrossvalConfig, ctx, ckpt: Path, tag: dict):
        """Train on the other folds' rows (noisy labels), predict fold ``fold``'s rows: the shard."""
        from pipeline.train import Split, effective_precision, train_classifier

        cond, fold = task
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(cond))
        held, train = self._rows(run, cond, fold, config)
        if config.recipe in PROBES:
            if ctx.world > 1:
                raise PipelineError(
                    f"--devices-per-task: --recipe {config.recipe} fits features on one device; leave it out"
                )
            x = store.read(features.path(run, config.arch, config.weights, config.input_size))["train"]
            trained = probe.fit_predict(
                x[train], noisy[train], x[held], ds.num_classes, PROBES[config.recipe], ctx.device
            )
        else:
            training = config.training(int(train.sum()))
            weights = None if config.weights is None else backbones.weights_file(training.arch, config.weights)
            rows = np.flatnonzero(train)  # selected by index, read a batch at a time where they do not fit the device
            data = Split(Rows(ds.train_x, rows), noisy[train], Rows(ds.train_x, held), noisy[held], ds.num_classes)
            trained = train_classifier(
                data,
                training,
                weights=weights,
                prune_epoch=config.prune_epoch,
                seed=config.seed + 1000 * fold,
                ctx=ctx,
                ckpt=ckpt,
                tag=tag,
                label=f"crossval {self.describe(task)}",
            )
            if trained is None:
                return None  # a rank other than 0 of a task on several devices
        probs = trained.probs
        info = {
            "n_train": int(train.sum()),
            "n_heldout": len(held),
            "heldout_acc_noisy": float(np.mean(probs.argmax(1) == noisy[held])),
            "heldout_acc_true": float(np.mean(probs.argmax(1) == ds.train_y[held])),
            "train_s": round(trained.train_s, 3),
            "predict_s": round(trained.predict_s, 3),
            "precision": effective_precision(config.precision, ctx.device),  # what ran; combine refuses a mix
        }
        if ctx.world > 1:
            info["devices"] = ctx.world
        return {"indices": held, "probs": probs.astype(np.float32)}, info

    @staticmethod
    def _rows(run: RunDir, cond: str, fold: int, config: CrossvalConfig) -> tuple[np.ndarray, np.ndarray]:
        """(the held-out rows' indices, a mask of the training rows) of fold ``fold`` of ``cond``."""
        num_classes = len(store.verify(run.dataset)["info"]["classes"])
        fold_of = assign_folds(store.read(run.labels(cond)), config.folds, config.fold_seed, num_classes)
        return np.flatnonzero(fold_of == fold), fold_of != fold

    def describe(self, task: tuple) -> str:
        return f"{task[0]} fold {task[1]}"


STAGE = Crossval()

if __name__ == "__main__":
    workers.main(STAGE)
