"""Every command README.md and docs/*.md show works as written (issue 44). Each is filled in for this machine
(tiny data for the data it names, the CPU for its GPUs), then:

- a ``make`` command is expanded by make itself (``make -n``: the target exists, its variables pass through), and
  every ``python -m`` line it would run is treated as a documented ``python -m`` command;
- a stage (``python -m stages.<name>``) is parsed and planned on a tiny run, up to its first real work: the options,
  the config and its ranges, the run directory, the tasks and which of them are pending (a dry run);
- a benchmark, ``slurm.submit --tasks-only`` and ``--help`` run to the end, on tiny data (their scale flags
  appended: fewer images and epochs, nothing else changed);
- what needs what this machine lacks (a SLURM cluster, a GPU evidence call's GPU) is parsed.

A command that names weights this machine cannot have (``IMAGENET1K_V2``) must fail in the one line that says
which file to pass, not otherwise. ``make demo``, ``make demo-own``, ``make gpu-evidence TINY=1`` and
``make test`` itself run whole in other tests (and CI).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_CROSSVAL, ROOT, stage

from pipeline import conditions
from pipeline.layout import RunDir

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ENTRY = re.compile(r"^(make|python -m|\.venv/bin/python -m) ")
# Weights only a download gives: where the docs name them, the command must say which file to pass instead.
CANNOT_HAVE = re.compile(r"IMAGENET1K_V\d")
NEEDS_FILE = re.compile(r"IMAGENET1K_V\d.*(pass|give|download|file)", re.I)


def documented() -> dict[str, str]:
    """{command: where it is first shown}: the lines of indented code blocks and the inline code spans (which may
    wrap across lines) that start with ``make`` or ``python -m``; ``a && b`` is two commands; comments dropped."""
    found: dict[str, str] = {}

    def add(text: str, where: str) -> None:
        for part in text.split("&&"):
            part = re.sub(r"\s+#.*$", "", part).strip()
            if ENTRY.match(part):
                found.setdefault(part, where)

    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines, 1):
            if line.startswith("    ") and ENTRY.match(line.strip()):
                add(line.strip(), f"{doc.name}:{i}")
        prose = "\n".join(" " if line.startswith("    ") else line for line in lines)
        for span in re.finditer(r"`([^`]+)`", prose):
            text = " ".join(span.group(1).split())
            add(text, f"{doc.name}:{prose[: span.start()].count(chr(10)) + 1}")
    return found


@pytest.fixture(scope="module")
def tiny(folds_run, tmp_path_factory) -> dict[str, Path]:
    """Tiny stand-ins for what the docs name: a digits run that every stage can plan on (conftest's, plus the
    condition n0_s0 the docs name, every stage but coteach and report done), and sources of each kind."""
    from PIL import Image

    root = tmp_path_factory.mktemp("docs")
    run = Path(shutil.copytree(folds_run, root / "run"))
    stage("noise", run, "--conditions", "0:0")
    stage("crossval", run, "--fold", "all", "--cond", "n0_s0", *FAST_CROSSVAL)
    for name in ("combine", "masks", "review"):
        stage(name, run)
    folder, rng = root / "imagefolder", np.random.default_rng(0)
    rows = []
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (folder / split / c).mkdir(parents=True)
            for i in range(6):
                path = folder / split / c / f"{i}.png"
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
                rows.append(f"{path},{c},{split}")
    (root / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    shutil.make_archive(str(root / "imagefolder"), "gztar", folder)
    batches = root / "cifar-10-batches-py"
    batches.mkdir()
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    import pickle

    pickle.dump({"label_names": classes}, open(batches / "batches.meta", "wb"))
    for name in [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]:
        pickle.dump(
            {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))},
            open(batches / name, "wb"),
        )
    import torch

    from pipeline import datasets, models

    torch.save(  # a backbone file of the digits' classes, as if trained on other images (stages.predict)
        {
            "arch": "convnet",
            "state_dict": models.build("convnet", 1, 8, 10).state_dict(),
            "mean": [0.5],
            "std": [0.25],
            "built": [1, 8, 10],
            "classes": [str(c) for c in datasets.cached(RunDir(run).dataset).classes],
        },
        root / "backbone.pt",
    )
    n = 1347  # digits' training rows
    np.save(root / "labels.npy", rng.integers(0, 10, n))
    psx = rng.random((n, 10)).astype(np.float32)
    np.save(root / "psx.npy", psx / psx.sum(1, keepdims=True))
    (root / "psx").mkdir()  # the paper's psx folder: a file per condition, named by its paper key
    for cond in [c for c in conditions.registry(RunDir(run)).values() if c.paper_key]:
        shutil.copy(root / "psx.npy", root / "psx" / f"cifar10__{cond.paper_key.replace('.', '_')}__psx.npy")
    return {
        "run": run,
        "imagefolder": folder,
        "csv": root / "labels.csv",
        "tar": root / "imagefolder.tar.gz",
        "batches": batches,
        "labels": root / "labels.npy",
        "psx": root / "psx.npy",
        "psx_folder": root / "psx",
        "backbone": root / "backbone.pt",
        "root": root,
    }


def filled(command: str, t: dict[str, Path]) -> str:
    """``command`` as run here: its placeholders and data paths filled in with tiny stand-ins, its GPUs the CPU."""
    subs = [
        (r"\s*\[[^\]]*\]", ""),  # [optional parts]
        (r"\b(\w+)(\|\w+)+\b", r"\1"),  # the first of alternatives (combine|masks|review)
        (r"DATA=(<source>|\.\.\.|path/to/imagefolder|path/to/cifar10)(?=\s|$)", f"DATA={t['imagefolder']}"),
        (r"DATA=path/to/labels\.csv", f"DATA={t['csv']}"),
        (r"DATA=path/to/cifar-10-batches-py", f"DATA={t['batches']}"),
        (r"DATA=\.\./shared/data/cifar10-jpeg\.tar\.gz", f"DATA={t['tar']}"),
        (r"PSX=(<folder>|\.\./shared/data/cl-paper/psx)", f"PSX={t['psx_folder']}"),
        (r"PSX=<file\.npy>", f"PSX={t['psx']}"),
        (r"COND=<c>", "COND=n0_s0"),
        (
            r"--cond C --ensemble A\.npy,B\.npy",
            f"--cond n0_s0 --ensemble {t['run'] / 'conditions/n0_s0/psx.npy'},{t['psx']}",
        ),
        (r"WEIGHTS=W(\.pt)?\b", f"WEIGHTS={t['backbone']}"),
        (r"folds,P\.npy", f"folds,{t['psx']}"),
        (r"NAME=file\.npy", f"given={t['labels']}"),
        (r"--remove NAME", "--remove given"),
        (r"reviewed=decisions-<c>\.csv", f"reviewed={t['labels']}"),
        (r"\bGPUS=[0-9,]+", "GPUS=cpu"),
        (r"\bGPU=(\d+|k)\b", "GPU=cpu"),
        (r"\bFOLD=k\b", "FOLD=0"),
        (r"--gpus 0,1,2,3", "--gpus cpu,cpu"),
        (r"\bRUN\b(?!=)", str(t["run"])),
        (r"TASKS \$SLURM_ARRAY_TASK_ID", f"{t['root'] / 'tasks.json'} 0"),
    ]
    for pattern, value in subs:
        command = re.sub(pattern, value, command)
    return command


def expanded(command: str, t: dict[str, Path]) -> list[list[str]]:
    """The ``python -m`` commands a documented command runs: itself, or what ``make -n`` says make would run."""
    argv = shlex.split(command)
    if argv[0] != "make":
        return [["-m", *argv[argv.index("-m") + 1 :]]]
    proc = subprocess.run(
        [*argv, "-n", "-s", f"RUN={t['run']}", f"PY={sys.executable}", "SETUP=", "PYTHON=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{command}: make -n exited {proc.returncode}\n{proc.stderr}"
    said = proc.stdout.replace("\\\n", " ")  # a recipe line continued with a backslash is one command
    lines = [shlex.split(line) for line in said.splitlines() if f"{sys.executable} -m " in line]
    return [line[line.index(sys.executable) + 1 :] for line in lines]


def started(module: str, args: list[str], t: dict[str, Path], tmp: Path, plan: bool = True) -> str:
    """Parse ``python -m module args`` and start it up to its first real work (``plan``: a stage's tasks planned on
    the tiny run); what it says if it refuses."""
    from pipeline import cli, tasks, workers
    from pipeline.errors import PipelineError
    from stages.notebook import STAGES

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            if module.startswith("stages."):
                run = tmp / "run"
                if not run.exists():
                    shutil.copytree(t["run"], run)
                st = STAGES[module.split(".")[1]]
                run_dir, select, config, launch, force = workers.parsed(st, [*args, "--run-dir", str(run)])
                if plan:
                    workers.worker_devices(launch, st) if st.pooled else None
                    tasks.plan(st, cli.run_dir(run_dir), select, config, force, launch.max_tasks)
            else:
                import importlib

                importlib.import_module(module).parser().parse_args(args)
    except SystemExit as e:
        return f"exit {e.code}: {said.getvalue().strip()}"
    except PipelineError as e:
        return f"refused: {e}"
    return ""


# Run to the end here, with these flags appended (argparse keeps the last): the data and device of this machine, and
# fewer images and epochs; every other documented flag, and every default the docs rely on, stays as written.
RUN_WHOLE = {
    "bench.fold": lambda tmp: [*_bench(tmp), "--subset", "300", "--epochs", "1", "--paper-steps", "1"],
    "bench.testset": lambda tmp: [*_bench(tmp), "--epochs", "1"],
    "bench.features": lambda tmp: ["--images", "4"],
}
NO_PYTHON = ("make setup", "make slurm-up")  # a virtualenv; a local SLURM cluster (run by tests/test_slurm.py)
# Commands of the real CIFAR-10 and CIFAR-10N (../shared, absent in CI): their stages parsed, not planned.
NEEDS_SHARED = ("make real-noise",)
PARSED = (
    "stages.",
    "bench.evidence",
    "bench.gpu_kit",
    "bench.real_noise",
    "slurm.",
    "pipeline.demo_own",
)  # parsed, a stage planned


def _bench(tmp: Path) -> list[str]:
    return ["--data", "digits", "--device", "cpu", "--cache-dir", str(tmp / "cache")]


@pytest.mark.parametrize("command", sorted(documented()))
def test_a_documented_command_works_as_written(command, tiny, tmp_path):
    from stages import arrays
    from stages.notebook import STAGES

    names = arrays() if "slurm" in command else STAGES  # make slurm-<stage>: the stages a SLURM array runs
    each = [command.replace("<stage>", s) for s in names] if "<stage>" in command else [command]
    lines = [argv for c in each for argv in expanded(filled(c, tiny), tiny)]
    assert lines or command in NO_PYTHON, f"{command}: runs no python -m command"
    for argv in lines:
        module, args = argv[1], argv[2:]
        if module == "stages":  # python -m stages NAME: python -m stages.NAME
            module, args = f"stages.{args[0]}", args[1:]
        shown = f"{command}: python -m {module} {shlex.join(args)}"
        if module in RUN_WHOLE:
            ran = subprocess.run(
                [sys.executable, "-m", module, *args, *RUN_WHOLE[module](tmp_path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            assert ran.returncode == 0, f"{shown}: exit {ran.returncode}\n{ran.stderr[-3000:]}"
        elif module.startswith(PARSED):
            refused = started(module, args, tiny, tmp_path, plan=command not in NEEDS_SHARED)
            if CANNOT_HAVE.search(shlex.join(args)):
                assert NEEDS_FILE.search(refused) and "\n" not in refused, f"{shown}: {refused!r}"
            else:
                assert refused in ("", "exit 0: "), f"{shown}: {refused}"
        else:
            assert module in ("pytest", "ruff"), f"{shown}: not checked here"  # make test's own, run by CI


def test_every_kind_of_documented_command_is_found():
    """The extraction sees code blocks, inline spans that wrap, ``&&`` chains and every doc page."""
    found = documented()
    assert {
        "make demo",
        "make test",
        "make masks",
        "make report",
        "python -m bench.fold --cond n40_s0 --fold 0",
    } <= set(found)
    assert "make masks PSX=../shared/data/cl-paper/psx" in found  # an inline span that wraps across two lines
    assert {where.split(":")[0] for where in found.values()} >= {"README.md", "benchmarks.md", "slurm.md", "stages.md"}
