"""A backbone's pooled features of every row of a run's dataset: an artifact made once per backbone.

``features/<key>.npz`` holds ``train`` and ``test`` (rows x features, float16): the network of
``backbones.build`` without its head, in eval mode, on batches normalised with the weights' own mean and
std and resized on the device (``input_size``). The key names the backbone (arch, input size, weights
checksum); the config records the weights' checksum, so other weights are another artifact and a
changed file makes what was made from it stale.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline import backbones, cli, datasets, store
from pipeline.layout import RunDir
from pipeline.lock import waiting

BATCH = 256
PROGRESS_EVERY = 10_000  # images between progress lines


def config(arch: str, weights: str, input_size: int | None) -> dict:
    return {
        "arch": arch,
        "weights": weights,
        "weights_checksum": backbones.checksum(arch, weights),
        "input_size": input_size,
    }


def path(run: RunDir, arch: str, weights: str, input_size: int | None) -> Path:
    c = config(arch, weights, input_size)
    return run.features(f"{arch}_{input_size or 'native'}px_{c['weights_checksum'][len('sha256:') :][:12]}")


def produce(run: RunDir, arch: str, weights: str, input_size: int | None, device) -> store.Outcome:
    """Make the features unless current; a process that finds another making them waits for it."""
    out, dataset = path(run, arch, weights, input_size), run.require(run.dataset, "data")
    inputs = {"dataset": dataset, "weights": store.External(backbones.weights_file(arch, weights))}
    made_with = config(arch, weights, input_size)
    if store.is_current(out, inputs, made_with):
        return store.Outcome.CURRENT
    if store.in_dry_run():
        raise store.Pending(out)
    ds = datasets.cached(dataset)
    start = time.perf_counter()
    # built (the weights read and checked) before anything is written
    _, h, _, c = ds.train_x.shape
    net, mean, std = backbones.build(arch, backbones.weights_file(arch, weights), c, h, ds.num_classes)
    net = backbones.prepared(backbones.features(net), c, input_size)
    backbones.check_input(net, arch, c, h, input_size)

    def make():
        arrays = {
            split: extract(net.to(device).eval(), x, mean, std, device, f"features {out.name} {split}")
            for split, x in (("train", ds.train_x), ("test", ds.test_x))
        }
        seconds = time.perf_counter() - start
        n = len(ds.train_x) + len(ds.test_x)
        return arrays, {
            "dim": int(arrays["train"].shape[1]),
            "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 1),
            "device": str(device),
        }

    with waiting(out):
        return store.produce(out, root=run.root, stage="crossval", inputs=inputs, config=made_with, make=make)


def extract(net, images: np.ndarray, mean, std, device, label: str) -> np.ndarray:
    """Pooled features (float16) of uint8 NHWC ``images``, ``BATCH`` at a time, a progress line every ``PROGRESS_EVERY``."""
    import torch

    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    if images.shape[-1] == 1 and m.shape[1] == 3:  # gray images meet colour weights' stats: their mean
        m, s = m.mean(1, keepdim=True), s.mean(1, keepdim=True)
    out, start = [], time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), BATCH):
            x = torch.as_tensor(images[i : i + BATCH], device=device).permute(0, 3, 1, 2).float() / 255
            out.append(net((x - m) / s).float().flatten(1).cpu().numpy().astype(np.float16))
            done = i + len(x)
            if done % PROGRESS_EVERY < BATCH or done == len(images):
                cli.log(f"{label}: {done}/{len(images)} images ({time.perf_counter() - start:.1f} s)")
    return np.concatenate(out) if out else np.zeros((0, 0), np.float16)
