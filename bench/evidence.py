"""GPU evidence in up to three time-boxed runs that resume one another (``make gpu-evidence STEP=a|b|c``).

    python -m bench.evidence --step a        # GPU test; bench.fold on n0_s0 and n40_s0 (compiled or not, smoothing or not)
    python -m bench.evidence --step b        # crossval + combine + masks for the paper's 13 conditions, time-boxed
    python -m bench.evidence --step c        # coteach: 13 conditions x the paper's 9 (rows, learner), seed 0, time-boxed; then the report
    python -m bench.evidence --step all --tiny   # every step on digits on this machine, in about a minute

Each step stops its stage with SIGTERM at ``--budget-s`` (the stage keeps its finished artifacts and the
last epoch's checkpoint; the next run resumes) and then writes what it has into ``--out``: the report
(table.md, CSVs, PNGs), ``timings.json`` (per-fold and per-task seconds from the artifacts' manifests,
the bench.fold figures, each step's wall time) and ``commands.json`` (every command run and its exit
status), with the GPU's name.

Between runs on a machine that starts empty: ``--pack DIR`` ends a run by writing the run directory
and ``--out`` as ``DIR/evidence.tar.gz.NN`` parts of at most 15 MiB (``dataset.npz``, ``psx.npy`` and
the report stay behind: they are rebuilt), and ``--unpack DIR``
starts the next from such parts. ``--shared`` is the folder holding ``data/cifar10-jpeg.tar.gz`` and
the paper's psx (``data/cl-paper/psx``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from pipeline import conditions, store
from pipeline.layout import RunDir

ROOT = Path(__file__).resolve().parent.parent
PART_BYTES = 15 * 2**20
# --tiny: the same steps on digits, small enough for a CPU test.
TINY = {
    "data": "digits", "conditions": "0.2:0.0,0.4:0.4", "device": "cpu", "folds": "3",
    "bench": ["--subset", "600", "--epochs", "2", "--batch-size", "64", "--lr", "0.1", "--paper-steps", "1",
              "--paper-batch-size", "16"],
    "crossval": ["--epochs", "2", "--batch-size", "64", "--lr", "0.1"],
    "coteach": ["--epochs", "1", "--batch-size", "64", "--epoch-decay-start", "1", "--num-gradual", "1"],
}
FULL = {
    "data": "{shared}/data/cifar10-jpeg.tar.gz", "conditions": "paper", "device": "0", "folds": "4", "bench": [], "crossval": [],
    # Co-Teaching's own recipe (Adam, the paper's schedule) scaled from 250 to 50 epochs.
    "coteach": ["--epochs", "50", "--epoch-decay-start", "16", "--num-gradual", "2"],
}


class Evidence:
    """Runs commands within a deadline and records them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.plan = {k: v.format(shared=args.shared) if isinstance(v, str) else v for k, v in (TINY if args.tiny else FULL).items()}
        self.run, self.out = RunDir(args.run_dir), Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + args.budget_s
        self.commands = _read_json(self.out / "commands.json", [])

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def call(self, *argv: str, step: str, stop_at: float | None = None) -> int:
        """Run ``python -m argv``; SIGTERM at ``stop_at`` s left (then 30 s grace); record the outcome."""
        cmd = [sys.executable, "-m", *argv]
        start, limit = time.monotonic(), max(1.0, self.left() - (stop_at or 0))
        proc = subprocess.Popen(cmd, cwd=ROOT)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        self.commands.append({"step": step, "command": " ".join(cmd[1:]), "rc": rc, "seconds": round(time.monotonic() - start, 1),
                              "stopped_by_budget": time.monotonic() - start >= limit})
        print(f"[evidence {step}] rc {rc} in {self.commands[-1]['seconds']} s: {' '.join(argv)}", flush=True)
        return rc

    def stage(self, name: str, *argv: str, step: str, stop_at: float | None = None) -> int:
        return self.call(f"stages.{name}", "--run-dir", str(self.run.root), *argv, step=step, stop_at=stop_at)

    def prepare(self, step: str) -> None:
        self.stage("data", "--source", self.plan["data"], step=step)
        self.stage("noise", "--conditions", self.plan["conditions"], step=step)

    def step_a(self) -> None:
        if not self.args.tiny:
            self.call("pytest", "-q", "tests/test_gpu.py", step="a")
        variants = [("n0_s0", []), ("n40_s0", []), ("n0_s0", ["--compile"]), ("n40_s0", ["--label-smoothing", "0"])]
        for cond, extra in variants:
            if self.left() < 60:
                break
            name = f"bench-{cond}{''.join(e.strip('-').replace('-', '') for e in extra[:1])}"
            self.call("bench.fold", "--data", self.plan["data"], "--cache-dir", str(self.run.root), "--device", self.plan["device"],
                      "--cond", cond, "--json", str(self.out / f"{name}.json"), "--paper-psx", f"{self.args.shared}/data/cl-paper/psx",
                      *self.plan["bench"], *extra, step="a")

    def step_b(self) -> None:
        self.prepare("b")
        self.stage("crossval", "--fold", "all", "--folds", self.plan["folds"], "--gpu", self.plan["device"],
                   *self.plan["crossval"], step="b", stop_at=45)
        self.stage("combine", step="b")
        self.stage("masks", step="b")

    def step_c(self) -> None:
        self.prepare("c")
        self.stage("combine", step="c")  # no-ops where current; rebuild psx.npy if it did not travel
        self.stage("masks", step="c")
        self.stage("coteach", "--methods", "all", "--seeds", "0", "--gpu", self.plan["device"], *self.plan["coteach"],
                   step="c", stop_at=40)

    def write(self) -> None:
        """The report and every figure so far into ``--out``."""
        if self.run.registry.exists():
            self.stage("report", step="report")
            for f in sorted(self.run.report_dir.glob("*")) if self.run.report_dir.exists() else []:
                shutil.copy2(f, self.out / f.name)
        timings = {
            "device": _device_name(),
            "date": datetime.date.today().isoformat(),
            "crossval_s": _seconds(self.run, "shard"),
            "coteach_s": _seconds(self.run, "coteach"),
            "bench": {p.stem: _read_json(p, None) for p in sorted(self.out.glob("bench-*.json"))},
            "steps": self.commands,
        }
        _write_json(self.out / "timings.json", timings)
        _write_json(self.out / "commands.json", self.commands)
        print(f"[evidence] wrote {self.out}", flush=True)


def pack(run_dir: Path, out: Path, into: Path) -> list[Path]:
    """The run directory and ``out`` as ``into/evidence.tar.gz.NN`` parts (what a later run needs)."""
    def keep(info: tarfile.TarInfo):
        name = Path(info.name).name
        skip = name.startswith(("dataset.npz", "psx.npy")) or "/report/" in f"/{info.name}/" or name.endswith(".tmp")
        return None if skip else info

    into.mkdir(parents=True, exist_ok=True)
    blob = into / "evidence.tar.gz"
    with tarfile.open(blob, "w:gz") as tar:
        tar.add(run_dir, arcname="run", filter=keep)
        tar.add(out, arcname="out")
    data, parts = blob.read_bytes(), []
    blob.unlink()
    for old in into.glob("evidence.tar.gz.*"):
        old.unlink()
    for i in range(0, max(1, len(data)), PART_BYTES):
        parts.append(into / f"evidence.tar.gz.{i // PART_BYTES:02d}")
        store.atomic_write(parts[-1], lambda f, chunk=data[i:i + PART_BYTES]: f.write(chunk))
    return parts


def unpack(source: Path, run_dir: Path, out: Path) -> None:
    """Restore what ``pack`` wrote into ``run_dir`` and ``out``."""
    import io

    parts = sorted(source.glob("evidence.tar.gz.*"))
    if not parts:
        raise SystemExit(f"{source}: no evidence.tar.gz.NN parts to resume from")
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts)), mode="r:gz") as tar:
        for member in tar.getmembers():
            top, _, rest = member.name.partition("/")
            if top not in ("run", "out") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
                raise SystemExit(f"{source}: unexpected entry {member.name!r} in the evidence archive")
            target = (run_dir if top == "run" else out) / rest
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                os.utime(target, (member.mtime, member.mtime))


def _seconds(run: RunDir, kind: str) -> dict:
    """``{task: seconds}`` from the manifests of the finished crossval shards or coteach results."""
    out = {}
    if not run.registry.exists():
        return out
    for cond in conditions.names(run):
        if kind == "shard":
            paths = list(run.shards(cond).values())
        else:
            paths = sorted(p for p in (run.condition_dir(cond) / "coteach").glob("*/*/seed*.json") if p.name.count(".") == 1)
        for path in paths:
            try:
                manifest = store.verify(path)
            except store.PipelineError:
                continue
            info = manifest["info"]
            task = f"{cond}/{path.stem}" if kind == "shard" else f"{cond}/{path.parent.parent.name}/{path.parent.name}/{path.stem}"
            out[task] = info.get("train_s", 0) + info.get("predict_s", 0) if kind == "shard" else info.get("seconds")
    return out


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write_json(path: Path, value) -> None:
    store.atomic_write(path, lambda f: f.write(json.dumps(value, indent=1).encode()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", choices=("a", "b", "c", "all"), required=True, help="which run (all: a, b and c in one)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/evidence"), help="the pipeline's run directory (carried between runs)")
    p.add_argument("--out", type=Path, default=Path(f"docs/results/gpu-{datetime.date.today().isoformat()}"),
                   help="where the report, timings.json and commands.json go")
    p.add_argument("--budget-s", type=float, default=540, help="wall seconds for this run, writing included (default 9 minutes)")
    p.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder with data/cifar10-jpeg.tar.gz and data/cl-paper/psx")
    p.add_argument("--unpack", type=Path, default=None, help="first restore the run directory and --out from a previous run's --pack")
    p.add_argument("--pack", type=Path, default=None, help="finally write the run directory and --out as parts into this folder")
    p.add_argument("--tiny", action="store_true", help="digits on the CPU, a few epochs: the harness itself, in about a minute")
    args = p.parse_args()
    if args.budget_s <= 60:
        p.error("--budget-s: expected more than 60 seconds")
    if args.unpack:
        unpack(args.unpack, args.run_dir, args.out)
    ev = Evidence(args)
    for step in ("a", "b", "c") if args.step == "all" else (args.step,):
        getattr(ev, f"step_{step}")()
    ev.write()
    if args.pack:
        print("[evidence] packed: " + ", ".join(str(p) for p in pack(args.run_dir, args.out, args.pack)), flush=True)


if __name__ == "__main__":
    main()
