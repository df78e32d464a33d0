"""Synthetic ImageNet-shaped runs through the real stages: wall time and peak resident memory of each stage, at
several sizes, so how each grows with n shows.

``masks``: n rows x 1,000 classes of 1-pixel images (the masks need rows, not pixels), noisy labels given to the
noise stage, and 4 generated fold shards (out-of-sample-like probabilities: the true class boosted, its rows
20% mislabelled) -> combine -> masks -> review.

``images``: an ImageFolder of n JPEG files (CIFAR-10's test images from ../shared, hard-linked over and over: n
distinct paths, each opened and decoded, resized to --image-size; they are unpacked from ../shared) -> data -> noise -> one crossval fold for one
epoch, its rows streamed from the memory-mapped cache (--device-memory). Most images are the test split (the
cache holds them; the fold trains on the --train rows), so the fold is an epoch on a subset.

Each stage runs as its own process (``python -m stages.<name>``); its peak RSS is the kernel's (``wait4``). With
``--memory-gib G`` every stage runs in a cgroup limited to G GiB (root; cgroup v1 or v2).

    python -m bench.scale masks --rows 320292,640584,1281167 --out docs/results/scale
    python -m bench.scale images --images 50000,100000,200000 --image-size 64 --out /tmp/scale
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import cli, files, store
from pipeline.errors import PipelineError
from pipeline.folds import assign_folds
from pipeline.layout import RunDir
from pipeline.options import Range

ROOT = Path(__file__).resolve().parent.parent
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
FOLDS, NOISE = 4, 0.2


def timed(name: str, run_dir: Path, *args: str, cgroup: Path | None = None) -> dict:
    """Run ``python -m stages.<name> --run-dir RUN ARGS``; its wall seconds and peak RSS (GiB); fails loudly."""
    start = time.perf_counter()
    enter = None if cgroup is None else (lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())))
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}", "--run-dir", str(run_dir), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=enter,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise PipelineError(f"stages.{name} exited {proc.returncode}:\n{out[-3000:]}")
    return {
        "stage": name,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "last_line": out.strip().splitlines()[-2] if out.strip() else "",
    }


def limited(gib: float | None, name: str) -> Path | None:
    """A new memory cgroup limited to ``gib`` GiB under this process's own (v2 or v1), or None without a limit."""
    if gib is None:
        return None
    from pipeline.devices import _cgroup_files

    for folder, limit, _ in _cgroup_files():
        if (folder / limit).exists():
            group = folder / name
            group.mkdir(exist_ok=True)
            (group / limit).write_text(str(int(gib * 2**30)))
            return group
    raise PipelineError("--memory-gib: no writable memory cgroup here (needs root and cgroup v1 or v2)")


def synthetic_masks_run(run: RunDir, n: int, classes: int) -> None:
    """The dataset cache, the given noisy labels, and FOLDS crossval-like shards of a synthetic n x classes run."""
    rng = np.random.default_rng(n)
    true = rng.integers(0, classes, n)
    noisy = np.where(rng.random(n) < NOISE, rng.integers(0, classes, n), true)
    arrays = {
        "train_x": np.zeros((n, 1, 1, 1), np.uint8),
        "train_y": true,
        "train_ids": np.arange(n).astype(str),
        "train_source_index": np.full(n, -1),
        "test_x": np.zeros((0, 1, 1, 1), np.uint8),
        "test_y": np.zeros(0, np.int64),
        "classes": np.array([f"c{k}" for k in range(classes)]),
    }
    info = {"n_train": n, "n_test": 0, "image_shape": [1, 1, 1], "classes": arrays["classes"].tolist()}
    store.produce(
        run.dataset,
        root=run.root,
        stage="data",
        inputs={},
        config={"source": "synthetic", "rows": n, "classes": classes},
        make=lambda: (arrays, info),
    )
    labels = run.root / "noisy.npy"
    files.save(labels, noisy)
    timed("noise", run.root, "--labels", f"synth={labels}")
    fold_of = assign_folds(noisy, FOLDS, 0, classes)
    for k in range(FOLDS):
        held = np.flatnonzero(fold_of == k)

        def shard(held=held):
            probs = np.empty((len(held), classes), np.float32)
            for s in range(0, len(held), 50_000):
                z = rng.standard_normal((min(50_000, len(held) - s), classes), dtype=np.float32)
                z[np.arange(len(z)), true[held[s : s + 50_000]]] += 6
                z = np.exp(z - z.max(1, keepdims=True))
                probs[s : s + len(z)] = z / z.sum(1, keepdims=True)
            return {"indices": held, "probs": probs}, {"precision": "32-true"}

        store.produce(
            run.shard("synth", k),
            root=run.root,
            stage="crossval",
            config={"recipe": "synthetic", "folds": FOLDS, "fold_seed": 0, "fold": k},
            inputs={"dataset": run.dataset, "labels": run.labels("synth")},
            make=shard,
        )


def image_folder(root: Path, n: int, train: int, out: Path) -> None:
    """n JPEG paths under ``root`` (train/ and test/, CIFAR-10's test classes): hard links to its test images
    (unpacked once into ``out`` from ../shared)."""
    import tarfile

    test = out / "cifar10" / "test"
    if not test.is_dir():
        if not CIFAR_TAR.is_file():
            raise PipelineError(f"{CIFAR_TAR}: not found; the images bench needs CIFAR-10's test images (../shared)")
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(
                out, members=[m for m in tar.getmembers() if m.name.startswith("cifar10/test/")], filter="data"
            )
    pool = sorted(test.glob("*/*"))
    for i in range(n):
        src = pool[i % len(pool)]
        split = "train" if i < train else "test"
        folder = root / split / src.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        os.link(src, folder / f"{i}{src.suffix}")


def bench_masks(args) -> list[dict]:
    rows = []
    for n in args.rows:
        run = RunDir(args.out / f"masks-{n}")
        shutil.rmtree(run.root, ignore_errors=True)
        start = time.perf_counter()
        synthetic_masks_run(run, n, args.classes)
        cli.log(f"n={n}: synthetic run made in {time.perf_counter() - start:.0f} s")
        for stage in ("combine", "masks", "review"):
            row = {
                "n": n,
                "classes": args.classes,
                **timed(
                    stage,
                    run.root,
                    *(["--top", "40"] if stage == "review" else []),
                    cgroup=limited(args.memory_gib, f"scale-{stage}"),
                ),
            }
            cli.log(json.dumps(row))
            rows.append(row)
        if not args.keep:
            shutil.rmtree(run.root)
    return rows


def bench_images(args) -> list[dict]:
    rows = []
    for n in args.images:
        work = args.out / f"images-{n}"
        shutil.rmtree(work, ignore_errors=True)
        start = time.perf_counter()
        image_folder(work / "source", n, args.train, args.out)
        cli.log(f"n={n}: {n} image paths made in {time.perf_counter() - start:.0f} s")
        run = work / "run"
        group = limited(args.memory_gib, "scale-images")
        steps = [
            (
                "data",
                "--source",
                str(work / "source"),
                "--image-size",
                str(args.image_size),
                "--workers",
                str(args.workers),
            ),
            ("noise", "--conditions", "0.2:0"),
            (
                "crossval",
                "--fold",
                "0",
                "--recipe",
                args.recipe,
                "--epochs",
                "1",
                "--batch-size",
                str(args.batch_size),
                "--gpu",
                "cpu",
                "--device-memory",
                str(args.device_memory),
            ),
        ]
        for name, *flags in steps:
            row = {"n": n, "image_size": args.image_size, **timed(name, run, *flags, cgroup=group)}
            if name == "data":
                row["cache_gib"] = round((run / "dataset.npz").stat().st_size / 2**30, 2)
            cli.log(json.dumps(row))
            rows.append(row)
        if not args.keep:
            shutil.rmtree(work)
    return rows


def table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k != "last_line"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows])


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("masks", "images"))
    p.add_argument("--out", type=Path, required=True, help="a folder for the runs and results.json")
    p.add_argument("--rows", default="320292,640584,1281167", help="masks: the sizes (rows), comma-separated")
    p.add_argument("--classes", type=Range(int, 2, 1000), default=1000)
    p.add_argument("--images", default="50000,100000,200000", help="images: the sizes (image paths), comma-separated")
    p.add_argument("--train", type=Range(int, 100, 10**9), default=20000, help="images: of them, the training split's")
    p.add_argument("--image-size", type=Range(int, 8, 512), default=64)
    p.add_argument("--workers", type=Range(int, 1, 256), default=2)
    p.add_argument("--recipe", choices=("airbench", "sgd"), default="airbench", help="images: crossval's recipe")
    p.add_argument(
        "--batch-size",
        type=Range(int, 2, 65_536),
        default=64,
        help="images: crossval's batch (its activations, not the data, set the fold's memory)",
    )
    p.add_argument(
        "--device-memory",
        type=Range(float, 0, 1 << 20),
        default=0.05,
        help="images: GiB the fold may hold; its training rows are more, so they stream",
    )
    p.add_argument(
        "--memory-gib",
        type=Range(float, 0.25, 1 << 20, optional=True),
        default=None,
        help="run every stage in a cgroup limited to this many GiB",
    )
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    return p


def main() -> None:
    args = parser().parse_args()
    args.rows = [int(v) for v in args.rows.split(",")]
    args.images = [int(v) for v in args.images.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows = bench_masks(args) if args.what == "masks" else bench_images(args)
    files.save(
        args.out / f"{args.what}.json", {"rows": rows, "memory_gib": args.memory_gib, "host_cpus": os.cpu_count()}
    )
    print(table(rows))


if __name__ == "__main__":
    cli.main(main)
