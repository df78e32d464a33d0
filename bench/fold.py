"""One crossval fold of one condition: our recipe against the CL paper's, side by side.

    python -m bench.fold --cond n40_s0 --fold 0           # CIFAR-10 JPEG copy from ../shared, GPU 0
    python -m bench.fold --device cpu --data digits --subset 600 --epochs 2 --paper-steps 2   # the harness, on a CPU

Trains fold ``--fold`` of 4 (folds assigned on the condition's noisy labels, as ``crossval`` does)
through the pipeline's own training path with the crossval defaults (``--recipe``, ``--epochs``, ...
override them), then prints:

1. speed: train / predict / total seconds, training images/s and peak GPU memory of our recipe,
   beside the training throughput of the paper's recipe (torchvision ResNet-50, a DataLoader with PIL
   transforms: RandomCrop(pad 4), RandomHorizontalFlip, ToTensor, Normalize; SGD lr 0.1, batch 256,
   fp32; timed over ``--paper-steps`` steps after a warm-up), and their ratio;
2. the held-out rows: accuracy against the true labels, and precision / recall / F1 of each of the
   five CL methods run on those rows alone, for our probabilities and for the paper's cross-validated
   ResNet-50 psx on the SAME rows (CIFAR-10 with ../shared only).

Conditions are the paper's (``n0_s0`` = column ``0_0``, ``n40_s0`` = ``0_4``, ...): the paper's own
labels on CIFAR-10; on other data (e.g. digits) the same noise is generated. ``--json`` writes every
figure; ``--probs`` saves the held-out probabilities. Never asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from pipeline import cli, conditions, datasets, devices, files, store
from pipeline.folds import assign_folds
from pipeline.kinds import paper
from pipeline.kinds.base import CIFAR10_TRAIN_SIZE
from pipeline.kinds.generated import generate
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS, PAPER_PSX, detection, find_masks
from pipeline.options import Range
from stages.crossval import CrossvalConfig

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SHARED_CIFAR = SHARED / "cifar10-jpeg.tar.gz"


def paper_condition(name: str) -> conditions.Condition | None:
    return next((c for c in conditions.parse_conditions("paper-all") if name in (c.name, c.paper_column)), None)


def noisy_labels(
    cond: conditions.Condition, ds: datasets.Dataset, psx_dir: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """(noisy labels, the paper's psx or None): the paper's own on CIFAR-10, else generated with seed 0."""
    if len(ds.train_y) == CIFAR10_TRAIN_SIZE and ds.num_classes == 10:
        labels = paper.KIND.labels(cond, ds, paper.LABELS, None)[0]
        psx = psx_dir / f"cifar10_noisy_labels__{cond.paper_key.replace('.', '_')}__resnet50_psx.npy"
        return labels, np.load(psx, allow_pickle=False) if psx.exists() else None
    return generate(ds.train_y, ds.num_classes, cond.noise, cond.sparsity, seed=0)[0], None


def fold_rows(
    noisy: np.ndarray, num_classes: int, fold: int, subset: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of fold ``fold`` of 4, assigned on the noisy labels (of a random subset)."""
    rows = np.arange(len(noisy))
    if subset and subset < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, subset, replace=False))
    fold_of = assign_folds(noisy[rows], 4, seed, num_classes)
    return rows[fold_of != fold], rows[fold_of == fold]


def heldout_quality(probs: np.ndarray, noisy: np.ndarray, true: np.ndarray) -> dict:
    """Accuracy against the true labels and detection of each CL method run on these rows alone."""
    masks = find_masks(noisy, probs)
    return {
        "acc_true": float(np.mean(probs.argmax(1) == true)),
        "acc_noisy": float(np.mean(probs.argmax(1) == noisy)),
        "detection": {paper: detection(masks[ours], noisy, true) for paper, ours in CL_METHODS.items()},
    }


def paper_recipe(ds, train, device, steps: int, batch_size: int) -> dict:
    """Training throughput of the paper's recipe over ``steps`` steps (after 3 warm-up steps)."""
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    from pipeline.loader import channel_stats

    mean, std = channel_stats(ds.train_x[train])
    size = ds.train_x.shape[1]
    tf = transforms.Compose(
        [
            transforms.RandomCrop(size, padding=max(1, size // 8)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean.tolist(), std.tolist()),
        ]
    )

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            x = ds.train_x[train[i]]
            return tf(Image.fromarray(x.squeeze(-1) if x.shape[-1] == 1 else x)), int(ds.train_y[train[i]])

    batch_size = min(batch_size, len(train))  # a set smaller than one batch (a --subset): one batch of all of it
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        Images(),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    net = torchvision.models.resnet50(weights=None, num_classes=ds.num_classes)
    if ds.train_x.shape[-1] != 3:
        net.conv1 = torch.nn.Conv2d(ds.train_x.shape[-1], 64, 7, 2, 3, bias=False)
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup, seen, start = 3, 0, None
    batches = iter(loader)
    for step in range(warmup + steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        if step == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y) if step >= warmup else 0
    _sync(device)
    return {"images_per_s": seen / (time.perf_counter() - start), "steps": steps, "batch_size": batch_size}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def print_tables(r: dict) -> None:
    ours, paper = r["ours"], r.get("paper_psx")
    print(
        f"\n{r['cond']} fold {r['fold']} of 4: {r['n_train']} train / {r['n_heldout']} held out, {r['data']}, on {r['device']}\n"
    )
    print("| recipe | train s | predict s | total s (incl. start-up) | train images/s | peak GPU GiB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| ours ({r['config']['recipe']}, {r['config']['arch']}, {r['config']['epochs']} epochs, {r['precision']}{', compiled' if r['compile'] else ''}) "
        f"| {r['train_s']:.2f} | {r['predict_s']:.2f} | {r['total_s']:.2f} | {r['images_per_s']:,.0f} | {r['peak_gib']:.2f} |"
    )
    if r.get("paper_images_per_s"):
        print(
            f"| paper (ResNet-50, DataLoader+PIL, batch {r['paper_batch_size']}, {r['paper_steps']} steps) "
            f"| – | – | – | {r['paper_images_per_s']:,.0f} | – |"
        )
        print(f"\nthroughput ratio ours / paper: {r['images_per_s'] / r['paper_images_per_s']:.1f}x")
    if r.get("curve_acc_true"):
        print(
            "\nheld-out accuracy vs true labels after each epoch (no TTA; --watch, its passes counted in train s): "
            + " ".join(_pct(a) for a in r["curve_acc_true"])
        )
    if r.get("pruned"):
        d = r["pruned"]
        print(
            f"\npruned after epoch {d['epoch']}: {d['flagged']} of {r['n_train']} training rows; as label errors: "
            f"precision {_pct(d['precision'])}%, recall {_pct(d['recall'])}%, F1 {_pct(d['f1'])}%"
        )
    print(f"\nheld-out rows ({r['noise_rate']:.1%} of their labels wrong): ours | the paper's psx on the same rows\n")
    print("| | ours | paper's psx |")
    print("|---|---|---|")
    print(f"| accuracy vs true labels, % | {_pct(ours['acc_true'])} | {_pct(paper and paper['acc_true'])} |")
    for method in CL_METHODS:
        a, b = ours["detection"][method], (paper or {}).get("detection", {}).get(method, {})
        cells = [
            f"{_pct(d.get('precision'))} / {_pct(d.get('recall'))} / {_pct(d.get('f1'))}" if d else "–" for d in (a, b)
        ]
        print(f"| {method}: precision / recall / F1, % | {cells[0]} | {cells[1]} |")


def harness_parser(doc: str) -> cli.Parser:
    """The options every bench harness shares: data, cache, device, condition (then its own, then ``with_config``)."""
    p = cli.Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)  # bad flags: one line, exit 2
    p.add_argument("--data", default=str(SHARED_CIFAR), help="a dataset source (see stages.data), e.g. digits")
    p.add_argument(
        "--cache-dir", type=Path, default=Path("runs/bench"), help="run directory holding the decoded dataset cache"
    )
    p.add_argument("--device", default="0", help="CUDA index or cpu")
    p.add_argument(
        "--cond", default="n0_s0", help="one of the paper's conditions: n0_s0 (clean), n40_s0, ... or its column (0_4)"
    )
    return p


def with_config(p: cli.Parser) -> cli.Parser:
    """A harness's parser ``p`` with the crossval config's flags last."""
    cli.add_fields(p, CrossvalConfig, "CrossvalConfig")
    return p


def setup(p: argparse.ArgumentParser):
    """(args, crossval config, condition, device, dataset) from the command line, parsed by ``p``."""
    args = p.parse_args()
    config = cli.fields_from(args, CrossvalConfig)
    cond = paper_condition(args.cond)
    if cond is None:
        p.error(f"--cond {args.cond!r}: not one of the paper's conditions (e.g. n0_s0, n40_s0, n70_s20 or 0_4)")
    try:
        device = devices.pick(args.device)
    except store.PipelineError as e:
        p.error(str(e).replace("--gpu", "--device"))
    run = RunDir(args.cache_dir)
    datasets.prepare(run, args.data)
    return args, config, cond, device, datasets.cached(run.dataset)


def parser() -> cli.Parser:
    p = harness_parser(__doc__)
    p.add_argument("--fold", type=int, choices=range(4), default=0, help="the held-out fold (of 4)")
    p.add_argument(
        "--subset",
        type=Range(int, 1, 10**9, optional=True),
        default=None,
        help="use N training images (folds of those)",
    )
    p.add_argument(
        "--paper-psx", type=Path, default=PAPER_PSX, help="folder of the paper's *_psx.npy (compared where present)"
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="after every epoch, print the held-out accuracy against the true labels (no TTA; costs one pass)",
    )
    p.add_argument(
        "--paper-steps", type=Range(int, 0, 10**6), default=50, help="steps to time the paper's recipe over (0: skip)"
    )
    p.add_argument("--paper-batch-size", type=Range(int, 1, 65_536), default=256)
    p.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument("--probs", type=Path, default=None, help="save the held-out rows and probabilities to this .npz")
    return with_config(p)


def main() -> None:
    t0 = time.perf_counter()
    args, config, cond, device, ds = setup(parser())
    import torch  # torch and Lightning once the arguments are checked: bad input fails in well under a second

    from pipeline.train import Split, effective_precision, train_classifier

    noisy, paper_psx = noisy_labels(cond, ds, args.paper_psx)
    train, held = fold_rows(noisy, ds.num_classes, args.fold, args.subset)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    data = Split(ds.train_x[train], noisy[train], ds.train_x[held], noisy[held], ds.num_classes)
    config = config.resolved(len(train))  # the settings trained with, as recorded below
    trained = train_classifier(
        data,
        config.training(len(train)),
        prune_epoch=config.prune_epoch,
        seed=config.seed,
        ctx=devices.TaskContext(device),
        label=f"bench {cond.name}",
        watch=ds.train_y[held] if args.watch else None,
    )
    probs = trained.probs
    total = time.perf_counter() - t0
    if args.probs:
        files.atomic_write(args.probs, lambda f: np.savez(f, rows=held, probs=probs))
    r = {
        "cond": cond.name,
        "fold": args.fold,
        "data": args.data,
        "device": devices.name(device),
        "compile": config.compile,
        "precision": effective_precision(config.precision, device),
        "config": vars(config),  # the settings trained with
        "n_train": len(train),
        "n_heldout": len(held),
        "noise_rate": float(np.mean(noisy[held] != ds.train_y[held])),
        "train_s": trained.train_s,
        "predict_s": trained.predict_s,
        "total_s": total,
        "images_per_s": config.epochs * len(train) / trained.train_s,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "ours": heldout_quality(probs, noisy[held], ds.train_y[held]),
        "curve_acc_true": trained.curve,
    }
    if config.prune_epoch is not None:
        keep = np.ones(len(train), bool)
        keep[trained.pruned] = False
        r["pruned"] = {"epoch": config.prune_epoch, **detection(keep, noisy[train], ds.train_y[train])}
    if paper_psx is not None:
        r["paper_psx"] = heldout_quality(paper_psx[held].astype(np.float64), noisy[held], ds.train_y[held])
    if args.paper_steps > 0:
        paper = paper_recipe(ds, train, device, args.paper_steps, args.paper_batch_size)
        r.update(
            paper_images_per_s=paper["images_per_s"], paper_steps=paper["steps"], paper_batch_size=paper["batch_size"]
        )
    print_tables(r)
    if args.json:
        files.atomic_write(args.json, lambda f: f.write(json.dumps(r, indent=1, default=float).encode()))


if __name__ == "__main__":
    cli.main(main)  # bad input (a missing --data, a bad --subset): one line, exit 2
