"""One crossval fold of the clean condition (0_0): our fast recipe against the paper's, side by side.

    python -m bench.fold                                  # CIFAR-10 JPEG copy from ../shared, GPU 0
    python -m bench.fold --device cpu --subset 2000 --epochs 1 --paper-steps 3   # the harness, on a CPU

Fast recipe: the pipeline's own crossval path (device-resident batches, on-device augmentation,
bf16 autocast and channels_last on GPU). Paper recipe: torchvision ResNet-50, a torchvision
DataLoader with PIL transforms (RandomCrop(pad 4), RandomHorizontalFlip, ToTensor, Normalize),
SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 256, fp32, timed over --paper-steps steps after
a warm-up. Prints a table; never asserts a time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import datasets, devices
from pipeline.folds import assign_folds
from pipeline.layout import RunDir
from pipeline.loader import channel_stats
from pipeline.train import Data, train_classifier

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SHARED_CIFAR = SHARED / "cifar10-jpeg.tar.gz"
PAPER_PSX_0_0 = SHARED / "cl-paper" / "psx" / "cifar10_noisy_labels__frac_zero_noise_rates__0_0__noise_amount__0_0__resnet50_psx.npy"


def paper_heldout_acc(ds: datasets.Dataset, held: np.ndarray) -> str:
    """Accuracy of the paper's own cross-validated ResNet-50 psx (350 epochs) on our held-out rows."""
    if not PAPER_PSX_0_0.exists() or len(ds.train_y) != 50_000:
        return "n/a (needs CIFAR-10 and ../shared)"
    psx = np.load(PAPER_PSX_0_0)
    return f"{100 * np.mean(psx[held].argmax(1) == ds.train_y[held]):.2f}% (its psx, 350 epochs)"


def fold_rows(ds: datasets.Dataset, subset: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of fold 0 of 4 on the clean labels, optionally of a stratified subset."""
    rows = np.arange(len(ds.train_y))
    if subset and subset < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(rows, subset, replace=False))
    fold_of = assign_folds(ds.train_y[rows], 4, seed, ds.num_classes)
    return rows[fold_of != 0], rows[fold_of == 0]


def fast_recipe(ds, train, held, device, args) -> dict:
    timings = {}
    data = Data(ds.train_x[train], ds.train_y[train], ds.train_x[held], ds.train_y[held], ds.num_classes)
    probs = train_classifier(data, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=5e-4, seed=0, device=device, timings=timings)
    return {
        **timings,
        "images_per_s": args.epochs * len(train) / timings["train_s"],
        "heldout_acc": float(np.mean(probs.argmax(1) == ds.train_y[held])),
    }


def paper_recipe(ds, train, device, args) -> dict:
    """Training throughput of the paper's recipe over ``args.paper_steps`` steps (after 3 warm-up steps)."""
    import torchvision
    from PIL import Image
    from torchvision import transforms

    mean, std = channel_stats(ds.train_x[train])
    size = ds.train_x.shape[1]
    tf = transforms.Compose([
        transforms.RandomCrop(size, padding=max(1, size // 8)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist()),
    ])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            x = ds.train_x[train[i]]
            return tf(Image.fromarray(x.squeeze(-1) if x.shape[-1] == 1 else x)), int(ds.train_y[train[i]])

    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(Images(), batch_size=args.paper_batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    net = torchvision.models.resnet50(weights=None, num_classes=ds.num_classes)
    if ds.train_x.shape[-1] != 3:
        net.conv1 = torch.nn.Conv2d(ds.train_x.shape[-1], 64, 7, 2, 3, bias=False)
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    warmup, steps, seen, start = 3, args.paper_steps, 0, None
    batches = iter(loader)
    for step in range(warmup + steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y) if step >= warmup else 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"images_per_s": seen / (time.perf_counter() - start), "steps": steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED_CIFAR), help="a dataset source (see stages.data), e.g. digits")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/bench"), help="run directory holding the decoded dataset cache")
    p.add_argument("--device", default="0", help="CUDA index or cpu")
    p.add_argument("--subset", type=int, default=None, help="use N training images (stratified folds of those)")
    p.add_argument("--arch", default="convnet")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--paper-steps", type=int, default=50)
    p.add_argument("--paper-batch-size", type=int, default=256)
    args = p.parse_args()
    t0 = time.perf_counter()
    device = devices.pick(args.device)
    run = RunDir(args.cache_dir)
    datasets.prepare(run, args.data)
    ds = datasets.cached(run.dataset)
    train, held = fold_rows(ds, args.subset)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fast = fast_recipe(ds, train, held, device, args)
    fast["total_s"] = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    paper = paper_recipe(ds, train, device, args)

    print(f"\none fold: {len(train)} train / {len(held)} held out, {args.data}, on {devices.name(device)}\n")
    print("| recipe | train s | predict s | total s (incl. start-up) | train images/s | held-out acc (true labels) | peak GPU GiB |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fast ({args.arch}, {args.epochs} epochs) | {fast['train_s']:.2f} | {fast['predict_s']:.2f} | {fast['total_s']:.2f} "
          f"| {fast['images_per_s']:,.0f} | {100 * fast['heldout_acc']:.2f}% | {peak:.2f} |")
    print(f"| paper (ResNet-50, DataLoader+PIL, {paper['steps']} steps) | – | – | – | {paper['images_per_s']:,.0f} "
          f"| {paper_heldout_acc(ds, held)} | – |")
    print(f"\nthroughput ratio fast / paper: {fast['images_per_s'] / paper['images_per_s']:.1f}x")


if __name__ == "__main__":
    main()
