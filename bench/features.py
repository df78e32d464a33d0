"""Feature extraction throughput of a backbone: images per second through ``features.extract`` (the linear
probe's one pass over a dataset), random weights, on random 32 px images resized on the device.

    python -m bench.features --arch resnet18 resnet50 --input-size 224 --images 512 --device cpu

Prints one line per network; never asserts a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline import backbones, cli, devices, features
from pipeline.options import Range


def main(args: argparse.Namespace) -> None:
    import torch

    device = devices.pick(args.device)
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    for arch in args.arch:
        backbones.check_arch(arch)
        net, _, _ = backbones.build(arch, None, 3, 32, 10)
        net = backbones.prepared(backbones.features(net), 3, args.input_size).to(device).eval()
        features.extract(net, images[: features.BATCH // 4], *backbones.IMAGENET, device, f"{arch} warm-up")
        start = time.perf_counter()
        out = features.extract(net, images, *backbones.IMAGENET, device, arch)
        seconds = time.perf_counter() - start
        cli.log(
            f"{arch} at {args.input_size} px on {device} ({torch.get_num_threads()} threads): {len(images) / seconds:.1f} "
            f"images/s ({len(images)} images in {seconds:.1f} s, {out.shape[1]} features each)"
        )


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", default=["resnet18", "resnet50"], help="networks to time")
    p.add_argument("--input-size", type=Range(int, 8, 1024), default=224, help="pixels the images are resized to")
    p.add_argument("--images", type=Range(int, 1, 1_000_000), default=512, help="images to time")
    p.add_argument("--device", default="cpu", help="CUDA device index, or cpu")
    return p


if __name__ == "__main__":
    cli.main(lambda: main(parser().parse_args()))
