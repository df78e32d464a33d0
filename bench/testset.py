"""The crossval recipe trained on every training image, scored on the test set: the figure airbench94
publishes (94.0% test accuracy on lossless CIFAR-10, 50,000 training images, ~10 epochs), so our
implementation can be held against it on the same footing.

    python -m bench.testset --device cpu --cache-dir runs/cifar --watch     # CIFAR-10 JPEG copy from ../shared
    python -m bench.testset --device cpu --data digits --epochs 2           # the harness, on a CPU

Trains on all training rows with the condition's labels (``--cond``, default clean; see bench.fold)
through the pipeline's own training path and the crossval defaults (``--epochs`` etc. override them),
then prints test accuracy (with the recipe's test-time augmentation) and, with ``--watch``, the
per-epoch curve without it. ``--json`` writes every figure. Never asserts a time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.fold import PAPER_PSX, harness_parser, noisy_labels, setup, with_config
from pipeline import cli, devices, files


def parser() -> cli.Parser:
    p = harness_parser(__doc__)
    p.add_argument(
        "--watch", action="store_true", help="after every epoch, print the test accuracy (no TTA; costs one pass)"
    )
    p.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    return with_config(p)


def main() -> None:
    args, config, cond, device, ds = setup(parser())
    from pipeline.train import Split, train_classifier  # once the arguments are checked (see bench.fold)

    labels, _ = noisy_labels(cond, ds, PAPER_PSX)
    data = Split(ds.train_x, labels, ds.test_x, ds.test_y, ds.num_classes)
    config = config.resolved(len(labels))  # the settings trained with, as recorded below
    start = time.perf_counter()
    trained = train_classifier(
        data,
        config.training(len(labels)),
        prune_epoch=config.prune_epoch,
        seed=config.seed,
        ctx=devices.TaskContext(device),
        label=f"testset {cond.name}",
        watch=ds.test_y if args.watch else None,
    )
    probs, curve = trained.probs, trained.curve
    r = {
        "cond": cond.name,
        "data": args.data,
        "device": devices.name(device),
        "config": vars(config),
        "n_train": len(labels),
        "n_test": len(ds.test_y),
        "noise_rate": float(np.mean(labels != ds.train_y)),
        "train_s": trained.train_s,
        "predict_s": trained.predict_s,
        "total_s": time.perf_counter() - start,
        "test_acc": float(np.mean(probs.argmax(1) == ds.test_y)),
        "curve_test_acc": curve,
    }
    print(
        f"\n{cond.name}: {r['n_train']} train -> {r['n_test']} test, {args.data}, on {r['device']}, "
        f"{config.recipe}/{config.arch} {config.epochs} epochs: test accuracy {100 * r['test_acc']:.2f}% (TTA); "
        f"train {r['train_s']:.0f} s, predict {r['predict_s']:.0f} s"
    )
    if curve:
        print("per epoch, no TTA: " + " ".join(f"{100 * a:.2f}" for a in curve))
    if args.json:
        files.atomic_write(args.json, lambda f: f.write(json.dumps(r, indent=1, default=float).encode()))


if __name__ == "__main__":
    cli.main(main)  # bad input: one line, exit 2
