"""backbone: pretrain a network on every training row of the dataset with a condition's labels (the crossval
recipes and options), and write it as a weights file, backbones/<condition>.pt with its manifest, for
`--weights FILE` in any run (e.g. a linear probe of another dataset: --recipe linear-probe --weights FILE).
Its manifest records the test accuracy against the dataset's own test labels."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import backbones, conditions, datasets, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.recipes import PROBES
from stages.crossval import TrainingConfig


@dataclass(frozen=True)
class BackboneConfig(TrainingConfig):
    def __post_init__(self):
        super().__post_init__()
        if self.recipe in PROBES:
            raise PipelineError(f"--recipe {self.recipe}: a backbone is trained; choose a recipe that trains a network")


class Backbone(tasks.TrainingStage):
    name, Config = "backbone", BackboneConfig

    def target(self, run: RunDir, task: tasks.Cond, config: BackboneConfig) -> tuple[Path, dict[str, Path], dict]:
        inputs = {"dataset": run.require(run.dataset, "data"), "labels": conditions.load(run, task.cond).labels}
        config = config.resolved(len(store.read(inputs["labels"])))
        recorded = config.recorded()
        if config.weights is not None:
            recorded["weights_checksum"] = backbones.checksum(config.arch, config.weights)
            inputs["weights"] = store.External(backbones.weights_file(config.arch, config.weights))
        return run.backbone(task.cond), inputs, recorded

    def make(self, run: RunDir, task: tasks.Cond, config: BackboneConfig, ctx, ckpt: Path, tag: dict):
        """Train on every training row; the weights file (arch, state_dict, input normalisation, how it was built)."""
        import torch

        from pipeline.train import Split, effective_precision, train_classifier

        start = time.perf_counter()
        ds = datasets.cached(run.dataset)
        noisy = store.read(run.labels(task.cond))
        training = config.training(len(noisy))
        weights = None if config.weights is None else backbones.weights_file(training.arch, config.weights)
        trained = train_classifier(
            Split(ds.train_x, noisy, ds.test_x, ds.test_y, ds.num_classes),
            training,
            weights=weights,
            seed=config.seed,
            ctx=ctx,
            ckpt=ckpt,
            tag=tag,
            label=f"backbone {task.cond}",
        )
        _, h, _, c = ds.train_x.shape
        state = {k: v.detach().cpu() for k, v in trained.net.state_dict().items()}
        backbones.check_finite(run.backbone(task.cond), backbones.Weights(state, trained.mean, trained.std))
        buf = io.BytesIO()
        torch.save(
            {
                "arch": training.arch,
                "state_dict": state,
                "mean": trained.mean.tolist(),
                "std": trained.std.tolist(),
                "built": [c, h, ds.num_classes],
                "classes": ds.classes.tolist(),
            },
            buf,
        )
        info = {
            "n_train": len(noisy),
            "test_acc": float(np.mean(trained.probs.argmax(1) == ds.test_y)) if len(ds.test_y) else None,
            "train_s": round(trained.train_s, 3),
            "seconds": round(time.perf_counter() - start, 3),
            "precision": effective_precision(config.precision, ctx.device),
        }
        return buf.getvalue(), info

    def summary(self, run: RunDir, task: tasks.Cond, config: BackboneConfig) -> str:
        info = store.verify(run.backbone(task.cond))["info"]
        acc = "-" if info["test_acc"] is None else f"{100 * info['test_acc']:.2f}%"
        return (
            f"wrote {run.backbone(task.cond)}  ({config.resolved().arch}, test accuracy {acc}, {info['train_s']:.0f} s)"
        )


STAGE = Backbone()

if __name__ == "__main__":
    workers.main(STAGE)
