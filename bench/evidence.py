"""GPU evidence in ONE call: the figures that matter, in priority order, within ``--budget-s`` (480 s).

    python -m bench.evidence --shared .cache/shared --out $OUT     # on the GPU machine (make gpu-kit prints it all)
    python -m bench.evidence --tiny --out runs/tiny/out             # the same steps on digits on the CPU, in minutes

(a) ``tests/test_gpu.py``; (b) ``bench.fold`` on n40_s0 fold 0, plain and ``--compile``: images/s beside the
paper recipe's, peak memory, held-out accuracy and detection beside the paper's psx; (c) crossval of the
paper's 13 conditions x 4 folds on the one GPU: calibration rounds of W tasks on W workers (W = 1, 2, 4, 8),
the rest on the fastest W, time-boxed; then combine + masks for every condition whose folds all finished;
(d) coteach on those conditions (the paper's 9 (rows, learner) each, seed 0) at the epoch count that fits
what is left, from a 2-epoch probe in a scratch run directory; (e) the report, and the whole grid's time on
one GPU extrapolated from the measured rates.

A step out of time is stopped with SIGTERM (stages keep finished artifacts). After every step ``--out``
holds: ``summary.md`` (headline figures against the targets), ``timings.json`` (every figure),
``log.txt`` (every command's output), and after (e) ``table.md`` and ``report.tar.gz`` (the report folder
and the bench JSONs): five files, one folder, as the device returns them.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from pipeline import cli, conditions, files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME
from pipeline.options import Range
from stages.coteach import grid

ROOT = Path(__file__).resolve().parent.parent
# What the full run reads from --shared: the tarball, and the paper's psx of bench.fold's condition (n40_s0).
SHARED_FILES = (
    "data/cifar10-jpeg.tar.gz",
    "data/cl-paper/psx/cifar10_noisy_labels__frac_zero_noise_rates__0_0__noise_amount__0_4__resnet50_psx.npy",
)
PAPER_COTEACH = {"epochs": 250, "epoch_decay_start": 80, "num_gradual": 10}  # Han et al., as the CL paper ran it
TASKS_PER_CONDITION = collections.Counter(
    learner for _, learner in grid("all", "paper")
)  # the paper's 9: Table 2's columns
TARGETS = {"fold_s": 10, "speedup": 20, "crossval_52_s": 180, "grid_s": 900}
# The fraction of the budget still left when each step must stop: (a) and (b) get the first 45%, crossval the
# next 25%, coteach the rest but the last 25 s, which the report and the files take.
STOP = {"a": 0.80, "b": 0.55, "c": 0.30}
REPORT_S = 25
FULL = {
    "data": "{shared}/data/cifar10-jpeg.tar.gz",
    "conditions": "paper",
    "device": "0",
    "folds": 4,
    "workers": (1, 2, 4, 8),
    "bench": [],
    "crossval": [],
    "coteach": [],
    "max_epochs": PAPER_COTEACH["epochs"],
}
# --tiny: the FULL plan's own steps and arguments on digits on the CPU, scaled down only in data size and epochs
# (so a default the full plan relies on, e.g. the batch that follows the set's size, is rehearsed as it will run).
TINY = {
    **FULL,
    "data": "digits",
    "conditions": "0.2:0.0,0.4:0.4",
    "device": "cpu",
    "folds": 3,
    "workers": (1, 2),
    "bench": [*FULL["bench"], "--subset", "600", "--epochs", "1", "--paper-steps", "1"],
    "crossval": [*FULL["crossval"], "--epochs", "1"],
    "max_epochs": 2,
}


class Evidence:
    """Runs the steps within a deadline; every figure goes into ``self.fig``."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.tiny = args, args.tiny
        self.plan = {
            k: v.format(shared=args.shared) if isinstance(v, str) else v
            for k, v in (TINY if args.tiny else FULL).items()
        }
        self.run, self.out = RunDir(args.run_dir), Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = self.run.root.parent / f"{self.run.root.name}-work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.start, self.budget = time.monotonic(), args.budget_s
        self.complete: list[str] = []  # the conditions whose folds all finished (step c)
        self.fig = {
            "device": _device_name(),
            "date": datetime.date.today().isoformat(),
            "budget_s": args.budget_s,
            "tiny": args.tiny,
            "commands": [],
            "bench": {},
            "crossval": {},
            "coteach": {},
            "extrapolation": {},
        }
        self.log = open(self.out / "log.txt", "a")

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def call(self, step: str, *argv: str, stop_left: float = REPORT_S) -> tuple[int | None, float, str]:
        """``python -m argv``, stopped with SIGTERM once only ``stop_left`` s of the budget are left (30 s grace);
        (exit status or None if there was no time, seconds, its output)."""
        limit = self.left() - stop_left
        if limit < 5:
            self.fig["commands"].append({"step": step, "command": " ".join(argv), "rc": None, "note": "no time left"})
            return None, 0.0, ""
        capture, start = self.work / "output.txt", time.monotonic()
        with open(capture, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
        seconds, text = time.monotonic() - start, capture.read_text(errors="replace")
        self.log.write(f"\n$ python -m {' '.join(argv)}\n{text}[rc {rc}, {seconds:.1f} s]\n")
        self.log.flush()
        self.fig["commands"].append(
            {
                "step": step,
                "command": " ".join(argv),
                "rc": rc,
                "seconds": round(seconds, 1),
                "stopped_by_budget": seconds >= limit,
            }
        )
        print(
            f"[evidence {step} {time.monotonic() - self.start:5.0f} s] rc {rc} in {seconds:.1f} s: {' '.join(argv)}",
            flush=True,
        )
        return rc, seconds, text

    def stage(self, step: str, name: str, *argv: str, run: RunDir | None = None, stop_left: float = REPORT_S):
        return self.call(step, f"stages.{name}", "--run-dir", str((run or self.run).root), *argv, stop_left=stop_left)

    def stop_at(self, step: str) -> float:
        return STOP[step] * self.budget

    # (a) ------------------------------------------------------------------------------------------------
    def step_a(self) -> None:
        rc, seconds, text = self.call(
            "a", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py", stop_left=self.stop_at("a")
        )
        last = text.strip().splitlines()[-1] if text.strip() else ""
        self.fig["gpu_tests"] = {"rc": rc, "seconds": round(seconds, 1), "result": last}

    # (b) ------------------------------------------------------------------------------------------------
    def step_b(self) -> None:
        for name, extra in (("plain", []), ("compiled", ["--compile", "--paper-steps", "0"])):
            path = self.work / f"bench-{name}.json"
            path.unlink(missing_ok=True)
            rc, _, _ = self.call(
                "b",
                "bench.fold",
                "--data",
                self.plan["data"],
                "--cache-dir",
                str(self.run.root),
                "--device",
                self.plan["device"],
                "--cond",
                "n40_s0",
                "--fold",
                "0",
                "--json",
                str(path),
                "--paper-psx",
                f"{self.args.shared}/data/cl-paper/psx",
                *self.plan["bench"],
                *extra,
                stop_left=self.stop_at("b"),
            )
            r = _read_json(path, None)
            if r is not None:
                r.pop("curve_acc_true", None)
                self.fig["bench"][name] = r

    # (c) ------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.stage("c", "data", "--source", self.plan["data"])
        self.stage("c", "noise", "--conditions", self.plan["conditions"])

    def crossval(self, *argv: str, stop_left: float):
        return self.stage(
            "c",
            "crossval",
            "--fold",
            "all",
            "--folds",
            str(self.plan["folds"]),
            "--gpu",
            self.plan["device"],
            *self.plan["crossval"],
            *argv,
            stop_left=stop_left,
        )

    def step_c(self) -> None:
        self.prepare()
        cv, stop = self.fig["crossval"], self.stop_at("c")
        cv["rounds"] = []
        for w in self.plan["workers"]:
            before = self.done_folds()
            rc, seconds, _ = self.crossval("--workers-per-gpu", str(w), "--max-tasks", str(w), stop_left=stop)
            if rc != 0:
                break
            done = self.done_folds() - before
            cv["rounds"].append(
                {"workers": w, "tasks": done, "wall_s": round(seconds, 1), "tasks_per_s": done / seconds}
            )
        rounds = [r for r in cv["rounds"] if r["tasks"]]
        cv["workers"] = max(rounds, key=lambda r: r["tasks_per_s"])["workers"] if rounds else 1
        before = self.done_folds()
        rc, seconds, _ = self.crossval("--workers-per-gpu", str(cv["workers"]), stop_left=stop)
        if rc is not None:
            cv["rest"] = {
                "workers": cv["workers"],
                "tasks": self.done_folds() - before,
                "wall_s": round(seconds, 1),
                "rc": rc,
            }
        cv["fold_s"] = _seconds(self.run, "shard")
        cv["images_per_s"] = _images_per_s(self.run)
        self.complete = [c for c in conditions.names(self.run) if self.done_folds(c) == self.plan["folds"]]
        cv["complete_conditions"] = self.complete
        if self.complete:
            self.stage("c", "combine", "--cond", ",".join(self.complete))
            self.stage(
                "c", "masks", "--cond", ",".join(self.complete), "--paper-psx", f"{self.args.shared}/data/cl-paper/psx"
            )

    def done_folds(self, cond: str | None = None) -> int:
        """Finished (verifying) shards of ``cond`` (or of every condition)."""
        if not self.run.registry.exists():
            return 0
        return sum(
            _verifies(p) for c in ([cond] if cond else conditions.names(self.run)) for p in self.run.shards(c).values()
        )

    # (d) ------------------------------------------------------------------------------------------------
    def step_d(self) -> None:
        ct, conds = self.fig["coteach"], self.complete
        if not conds:
            ct["note"] = "no condition has all its folds: nothing to train on"
            return
        workers = self.fig["crossval"].get("workers", 1)
        probe = self.probe(workers)
        ct["probe"] = probe
        if not probe.get("epoch_s"):
            ct["note"] = "the probe measured nothing"
            return
        reserve = (
            1.15  # planning margin: the probe ran on unmasked rows, the grid adds start-up and the last tasks' tail
        )
        start_s = probe["start_s"]
        for k in range(len(conds), 0, -1):
            epochs = _epochs_that_fit(self.left() - REPORT_S - start_s, k, workers, probe, reserve)
            if epochs >= 1:
                break
        else:
            ct["note"] = f"not even one epoch of one condition's 9 tasks fits in the {self.left():.0f} s left"
            return
        epochs = min(epochs, self.plan["max_epochs"])
        schedule = _schedule(epochs)
        ct.update(conditions=conds[:k], workers=workers, **schedule)
        before = set(_seconds(self.run, "coteach"))
        _, seconds, _ = self.stage(
            "d",
            "coteach",
            "--cond",
            ",".join(conds[:k]),
            "--methods",
            "all",
            "--learners",
            "paper",
            "--seeds",
            "0",
            "--gpu",
            self.plan["device"],
            "--workers-per-gpu",
            str(workers),
            *[x for key, v in schedule.items() for x in (f"--{key.replace('_', '-')}", str(v))],
            *self.plan["coteach"],
        )
        ct["task_s"] = _seconds(self.run, "coteach")
        ct["wall_s"], ct["tasks"] = round(seconds, 1), len(set(ct["task_s"]) - before)

    def probe(self, workers: int) -> dict:
        """2-epoch coteaching and plain tasks, ``workers`` at once, in a scratch run on the same dataset:
        per-epoch seconds of each (the second epoch's, under the same contention) and a task's fixed cost."""
        scratch = RunDir(self.work / "probe")
        shutil.rmtree(scratch.root, ignore_errors=True)
        scratch.root.mkdir(parents=True)
        for src in (self.run.dataset, store.manifest_path(self.run.dataset)):
            shutil.copy2(src, scratch.root / src.relative_to(self.run.root))
        self.stage("d", "noise", "--conditions", "0.2:0.0", run=scratch)
        seeds = ",".join(str(s) for s in range(max(1, workers // 2)))
        rc, seconds, text = self.stage(
            "d",
            "coteach",
            "--methods",
            "none",
            "--learners",
            "coteaching,plain",
            "--seeds",
            seeds,
            "--epochs",
            "2",
            "--epoch-decay-start",
            "1",
            "--num-gradual",
            "1",
            "--gpu",
            self.plan["device"],
            "--workers-per-gpu",
            str(workers),
            *self.plan["coteach"],
            run=scratch,
        )
        epoch_s: dict[str, list[float]] = {}
        for learner, secs in re.findall(r"coteach \S+ none x (\w+) seed \d+: epoch 2/2 .*\(([\d.]+) s\)", text):
            epoch_s.setdefault(learner, []).append(float(secs))
        tasks = _seconds(scratch, "coteach")
        per_task = sum(tasks.values()) / len(tasks) if tasks else 0.0
        epoch = {k: sum(v) / len(v) for k, v in epoch_s.items()}
        mean_epoch = sum(epoch.values()) / len(epoch) if epoch else 0.0
        return {
            "rc": rc,
            "wall_s": round(seconds, 1),
            "workers": workers,
            "tasks": len(tasks),
            "epoch_s": epoch,
            "task_overhead_s": max(0.0, per_task - 2 * mean_epoch),
            "start_s": max(0.0, seconds - (max(tasks.values()) if tasks else 0.0)),
        }

    # (e) ------------------------------------------------------------------------------------------------
    def step_e(self) -> None:
        if self.run.registry.exists():
            self.stage("e", "report", "--seeds", "0", stop_left=0)
        report = self.run.report_dir
        if (report / "table.md").exists():
            shutil.copy2(report / "table.md", self.out / "table.md")
        with tarfile.open(self.out / ".report.tar.gz.tmp", "w:gz") as tar:
            if report.exists():
                tar.add(report, arcname="report")
            for p in sorted(self.work.glob("bench-*.json")):
                tar.add(p, arcname=f"bench/{p.name}")
        (self.out / ".report.tar.gz.tmp").replace(self.out / "report.tar.gz")

    # figures --------------------------------------------------------------------------------------------
    def write(self) -> None:
        """timings.json and summary.md as they stand (after every step)."""
        self.fig["extrapolation"] = extrapolate(self.fig)
        self.fig["elapsed_s"] = round(time.monotonic() - self.start, 1)
        _write(self.out / "timings.json", json.dumps(self.fig, indent=1, default=float))
        _write(self.out / "summary.md", summary(self.fig))


def _epochs_that_fit(seconds: float, conds: int, workers: int, probe: dict, reserve: float) -> int:
    """Epochs E such that ``conds`` x the paper's 9 tasks, ``workers`` at once, take at most ``seconds``."""
    per_epoch, fixed = 0.0, 0.0
    for learner, n in TASKS_PER_CONDITION.items():
        per_epoch += n * conds * _epoch_s(probe, learner)
        fixed += n * conds * probe["task_overhead_s"]
    return max(0, math.floor((seconds * workers / reserve - fixed) / per_epoch)) if per_epoch > 0 else 0


def _epoch_s(probe: dict, learner: str) -> float:
    """A probe's epoch seconds for ``learner``; an unmeasured one from the measured learner with the fewest
    networks, per network."""
    e = probe["epoch_s"]
    if learner in e:
        return e[learner]
    if not e:
        return 0.0
    measured = min(e, key=lambda name: BY_NAME[name].nets)
    return BY_NAME[learner].nets * e[measured] / BY_NAME[measured].nets


def _schedule(epochs: int) -> dict:
    """The paper's Co-Teaching schedule (250 epochs, decay from 80, forget rate ramp 10) scaled to ``epochs``."""
    return {
        "epochs": epochs,
        "epoch_decay_start": round(PAPER_COTEACH["epoch_decay_start"] * epochs / PAPER_COTEACH["epochs"]),
        "num_gradual": max(1, min(epochs, round(PAPER_COTEACH["num_gradual"] * epochs / PAPER_COTEACH["epochs"]))),
    }


def extrapolate(fig: dict) -> dict:
    """The whole Table 2 grid (13 conditions: 52 folds, 117 coteach tasks) on one GPU at the measured rates."""
    out, cv, ct = {}, fig["crossval"], fig["coteach"]
    rest = cv.get("rest") or {}
    rate = (
        rest["tasks"] / rest["wall_s"]
        if rest.get("tasks")
        else max((r["tasks_per_s"] for r in cv.get("rounds", [])), default=0)
    )
    if rate:
        out["crossval_52_folds_s"] = round(52 / rate, 1)
        out["crossval_rate_from"] = (
            "the run after calibration" if rest.get("tasks") else "the fastest calibration round"
        )
    probe = ct.get("probe") or {}
    if probe.get("epoch_s"):
        w = probe["workers"]
        for epochs in sorted({ct.get("epochs", 0), PAPER_COTEACH["epochs"]} - {0}):
            task_s = sum(
                13 * n * (probe["task_overhead_s"] + epochs * _epoch_s(probe, lr))
                for lr, n in TASKS_PER_CONDITION.items()
            )
            out[f"coteach_117_tasks_{epochs}_epochs_s"] = round(task_s / w, 1)
    if ct.get("tasks"):
        out["coteach_117_tasks_measured_rate_s"] = round(117 * ct["wall_s"] / ct["tasks"], 1)
    if "crossval_52_folds_s" in out and f"coteach_117_tasks_{PAPER_COTEACH['epochs']}_epochs_s" in out:
        out["grid_250_epochs_s"] = round(
            out["crossval_52_folds_s"] + out[f"coteach_117_tasks_{PAPER_COTEACH['epochs']}_epochs_s"], 1
        )
    if "crossval_52_folds_s" in out and ct.get("epochs"):
        out[f"grid_{ct['epochs']}_epochs_s"] = round(
            out["crossval_52_folds_s"] + out[f"coteach_117_tasks_{ct['epochs']}_epochs_s"], 1
        )
    return out


def summary(fig: dict) -> str:
    """The headline figures, each beside its target, in markdown."""
    lines = [
        *(f"**{e}**" for e in fig.get("errors", [])),
        f"# GPU evidence: {fig['device']}, {fig['date']}" + (" (TINY: digits on the CPU)" if fig["tiny"] else ""),
        "",
        f"One call of `python -m bench.evidence` with a budget of {fig['budget_s']:.0f} s; "
        f"{fig.get('elapsed_s', 0):.0f} s used. Every command, its exit status and seconds are in timings.json.",
        "",
    ]
    t = fig.get("gpu_tests")
    if t:
        lines += [f"(a) tests/test_gpu.py: rc {t['rc']}, {t['seconds']} s: {t['result']}", ""]
    rows = []
    for name, r in fig["bench"].items():
        total = r["train_s"] + r["predict_s"]
        ratio = r["images_per_s"] / r["paper_images_per_s"] if r.get("paper_images_per_s") else None
        rows.append(
            f"| {name} ({r.get('precision', '?')}) | {r['train_s']:.2f} + {r['predict_s']:.2f} = {total:.2f}"
            f"{_vs(total, TARGETS['fold_s'], '<=')} | {r['images_per_s']:,.0f} | "
            f"{'–' if ratio is None else f'{ratio:.1f}x' + _vs(ratio, TARGETS['speedup'], '>=')} | {r['peak_gib']:.2f} | "
            f"{100 * r['ours']['acc_true']:.2f} | {_f1(r['ours'])} | {_f1(r.get('paper_psx'))} |"
        )
    if rows:
        lines += [
            "(b) bench.fold n40_s0 fold 0 (train + predict s, target <= 10; ours / paper recipe's training images/s, "
            "target >= 20x); held-out accuracy vs true labels; F1 % of C_confusion, C_{y~,y*}, PBC, PBNR, C+NR "
            "(ours | the paper's psx on the same rows)",
            "",
            "| run | train + predict s | images/s | vs paper | peak GiB | acc % | F1 ours | F1 paper psx |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    cv = fig["crossval"]
    if cv.get("rounds"):
        lines += [
            "(c) crossval calibration: W tasks on W workers of one device",
            "",
            "| workers | tasks | wall s | tasks/s |",
            "|---|---|---|---|",
            *(f"| {r['workers']} | {r['tasks']} | {r['wall_s']} | {r['tasks_per_s']:.3f} |" for r in cv["rounds"]),
            "",
            f"kept {cv.get('workers')} workers; rest: {cv.get('rest')}; folds done: {len(cv.get('fold_s', {}))}; "
            f"conditions complete: {len(cv.get('complete_conditions', []))}",
            "",
        ]
    ct = fig["coteach"]
    if ct:
        lines += [
            f"(d) coteach: {ct.get('note') or ''}"
            + (
                f"{len(ct.get('conditions', []))} conditions x 9 tasks at "
                f"{ct.get('epochs')} epochs (decay from {ct.get('epoch_decay_start')}, ramp {ct.get('num_gradual')}) on "
                f"{ct.get('workers')} workers: {ct.get('tasks', 0)} tasks in {ct.get('wall_s', 0)} s"
                if ct.get("epochs")
                else ""
            ),
            f"probe: {json.dumps(ct.get('probe'), default=float)}",
            "",
        ]
    ex = fig["extrapolation"]
    if ex:
        lines += ["(e) the whole grid on one GPU at the measured rates", ""]
        for key, value in ex.items():
            target = {
                "crossval_52_folds_s": ("<=", TARGETS["crossval_52_s"]),
                "grid_250_epochs_s": ("<=", TARGETS["grid_s"]),
            }.get(key)
            lines.append(
                f"- {key}: {value}" + (_vs(value, target[1], target[0]) if target and isinstance(value, float) else "")
            )
        lines.append("")
    return "\n".join(lines)


def _vs(value: float, target: float, how: str) -> str:
    ok = value <= target if how == "<=" else value >= target
    return f" ({'meets' if ok else 'misses'} {how} {target})"


def _f1(q: dict | None) -> str:
    return (
        "–"
        if not q
        else " / ".join(f"{100 * d['f1']:.1f}" if d.get("f1") is not None else "–" for d in q["detection"].values())
    )


def _verifies(path: Path) -> bool:
    try:
        store.verify(path)
        return True
    except store.PipelineError:
        return False


def _manifests(run: RunDir, kind: str):
    """(task name, manifest) of each verifying crossval shard or coteach result."""
    if not run.registry.exists():
        return
    for cond in conditions.names(run):
        if kind == "shard":
            paths = list(run.shards(cond).values())
        else:
            paths = sorted(
                p for p in (run.condition_dir(cond) / "coteach").glob("*/*/seed*.json") if p.name.count(".") == 1
            )
        for path in paths:
            try:
                manifest = store.verify(path)
            except store.PipelineError:
                continue
            yield (
                (
                    f"{cond}/{path.stem}"
                    if kind == "shard"
                    else f"{cond}/{path.parent.parent.name}/{path.parent.name}/{path.stem}"
                ),
                manifest,
            )


def _seconds(run: RunDir, kind: str) -> dict:
    """``{task: seconds}``: a shard's train + predict seconds, a coteach result's seconds."""
    return {
        task: round(
            m["info"].get("train_s", 0) + m["info"].get("predict_s", 0) if kind == "shard" else m["info"]["seconds"], 3
        )
        for task, m in _manifests(run, kind)
    }


def _images_per_s(run: RunDir) -> dict:
    """``{fold: training images per second}`` (epochs x training rows / train seconds)."""
    return {
        task: round(m["config"]["epochs"] * m["info"]["n_train"] / m["info"]["train_s"])
        for task, m in _manifests(run, "shard")
    }


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write(path: Path, text: str) -> None:
    files.atomic_write(path, lambda f: f.write(text.encode()))


def parser() -> cli.Parser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=Path("runs/evidence"), help="the pipeline's run directory")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(f"docs/results/gpu-{datetime.date.today().isoformat()}"),
        help="where summary.md, timings.json, log.txt, table.md and report.tar.gz go",
    )
    p.add_argument(
        "--budget-s",
        type=Range(float, 120, 86_400),
        default=480,
        help="wall seconds for the whole call, writing included",
    )
    p.add_argument(
        "--shared",
        default=str(ROOT.parent / "shared"),
        help="folder with data/cifar10-jpeg.tar.gz and data/cl-paper/psx",
    )
    p.add_argument(
        "--tiny", action="store_true", help="digits on the CPU, a few epochs: the harness itself, in minutes"
    )
    p.add_argument(
        "--require-shared",
        action="store_true",
        help="first check that --shared holds what the full run reads (the kit's command: a missing file fails at once)",
    )
    return p


def run(args: argparse.Namespace) -> None:
    """The steps, each recorded whatever it ends in; --out and the run directory are checked before any runs."""
    if args.require_shared:
        for f in SHARED_FILES:
            if not (Path(args.shared) / f).is_file():
                raise PipelineError(f"{Path(args.shared) / f}: missing (make gpu-kit copies it into .cache/shared)")
    for folder, flag in ((args.out, "--out"), (args.run_dir, "--run-dir")):
        cli.writable_dir(folder, f"{flag} folder")
    ev = Evidence(args)
    for step in "abcde":
        try:
            getattr(ev, f"step_{step}")()
        except Exception as e:  # noqa: BLE001 - recorded; the later steps still run and the figures so far are kept
            ev.fig.setdefault("errors", []).append(f"step {step}: {type(e).__name__}: {e}")
            print(f"[evidence {step}] error: {type(e).__name__}: {e}", flush=True)
        ev.write()
    print(summary(ev.fig), flush=True)


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
