"""predict: a network trained on other images (a weights file of `python -m stages.backbone`, e.g. from a run on
the training split) predicts every row of a condition: out-of-sample probabilities with no cross-validation, the
way cleanlab recommends auditing a test split. Writes conditions/<c>/predicted/<weights>_<checksum>.npy, a psx of
the rows with its provenance (the weights file an input); `combine --ensemble folds,THAT.npy` averages it with
the condition's cross-validated probe, or `masks --psx THAT.npy` uses it alone."""

from __future__ import annotations

import time
from dataclasses import MISSING, dataclass
from pathlib import Path

import numpy as np

from pipeline import backbones, datasets, files, options, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import option

BATCH = 500


@dataclass(frozen=True)
class PredictConfig(options.Options):
    weights: str = option(
        MISSING, "the weights file of a network this pipeline trained (python -m stages.backbone) on these classes"
    )
    tta: str = option(
        "on",
        "test-time augmentation (each image and its mirror, and both shifted by 1 px, averaged): on or off",
        choices=("on", "off"),
    )
    precision: str = options.precision()


class Predict(tasks.Stage):
    name, Config, device = "predict", PredictConfig, True

    def target(self, run: RunDir, cond: str, config: PredictConfig) -> tuple[Path, dict, dict]:
        """(the predicted psx, its inputs, its config), after the weights are checked against this run's rows."""
        dataset, labels = run.require(run.dataset, "data"), run.require(run.labels(cond), "noise")
        weights = Path(config.weights)
        if not weights.is_file():
            raise PipelineError(f"{weights}: file not found (--weights)")
        w = backbones.load(None, weights)
        classes = tuple(store.verify(dataset)["info"]["classes"])
        if w.classes != classes:
            raise PipelineError(
                f"{weights}: its network predicts the classes {', '.join(w.classes or ('(unnamed)',))}; "
                f"this dataset's are {', '.join(classes)}"
            )
        if store.manifest_path(weights).exists():
            trained_on = store.verify(weights)["inputs"].get("dataset", {}).get("checksum")
            if trained_on == files.checksum(dataset):
                raise PipelineError(
                    f"{weights}: trained on this dataset's rows, so its predictions of them are not out of sample; "
                    "train it in a run of other images (e.g. the training split) or cross-validate (make crossval)"
                )
        checksum = files.checksum(weights)
        out = run.predicted(cond, weights, checksum)
        made_with = {"arch": w.arch, "weights_checksum": checksum, "tta": config.tta, "precision": config.precision}
        return out, {"dataset": dataset, "labels": labels, "weights": store.External(weights)}, made_with

    def run(self, run: RunDir, task: tasks.Cond, config: PredictConfig, ctx, force=False):
        out, inputs, made_with = self.target(run, task.cond, config)

        def make():
            from pipeline.loader import Batches
            from pipeline.predict import predict_probs
            from pipeline.train import effective_precision

            start, ds, noisy = time.perf_counter(), datasets.cached(inputs["dataset"]), store.read(inputs["labels"])
            _, h, _, c = ds.train_x.shape
            net, mean, std = backbones.build(made_with["arch"], inputs["weights"], c, h, ds.num_classes)
            backbones.check_input(net, made_with["arch"], c, h, None)
            batches = Batches(ds.train_x, noisy, batch_size=BATCH, ctx=ctx, mean=mean, std=std, train=False)
            precision = effective_precision(config.precision, ctx.device)
            probs = predict_probs(net.to(ctx.device), batches, precision, tta=config.tta == "on")
            return probs, {
                "accuracy_vs_given_labels": float(np.mean(probs.argmax(1) == noisy)),
                "precision": precision,
                "seconds": round(time.perf_counter() - start, 3),
            }

        made = store.produce(
            out, root=run.root, stage=self.name, inputs=inputs, config=made_with, make=make, force=force
        )
        acc = store.verify(out)["info"]["accuracy_vs_given_labels"] if made is not store.Outcome.SKIPPED else None
        return made, f"{made.value}: {out}" + ("" if acc is None else f"  (agrees with the given labels on {acc:.2%})")


STAGE = Predict()

if __name__ == "__main__":
    workers.main(STAGE)
