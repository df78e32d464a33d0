"""Shared helpers: run a stage as a subprocess (the real CLI), and a small digits run built once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason=f"{SHARED} (shared data) is absent")

FAST_CROSSVAL = ["--folds", "3", "--epochs", "2", "--batch-size", "128", "--gpu", "cpu"]
FAST_COTEACH = ["--epochs", "2", "--batch-size", "128", "--epoch-decay-start", "1", "--num-gradual", "1", "--gpu", "cpu"]


def stage(name: str, run_dir: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """``python -m stages.<name> --run-dir RUN ARGS``; asserts the exit status (0 if ``ok`` else 2)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{name}", "--run-dir", str(run_dir), *args],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == (0 if ok else 2), f"stages.{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="session")
def folds_run(tmp_path_factory) -> Path:
    """digits, two generated conditions, all three folds trained (fast settings). Treat as read-only."""
    run = tmp_path_factory.mktemp("folds") / "run"
    stage("data", run, "--source", "digits")
    stage("noise", run, "--conditions", "0.2:0.0,0.4:0.4")
    stage("crossval", run, "--fold", "all", *FAST_CROSSVAL)
    return run


@pytest.fixture
def run_copy(folds_run, tmp_path) -> Path:
    """A private copy of ``folds_run`` to change."""
    return Path(shutil.copytree(folds_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def blank_cifar(tmp_path_factory) -> Path:
    """A run whose dataset is CIFAR-10's training set as far as labels go (the true labels shipped in
    data/, rows in ImageFolder order, original indices known) with blank 8x8 images: the paper's
    conditions and CIFAR-10N files apply to it without ../shared. Treat as read-only."""
    import numpy as np

    from pipeline import conditions, datasets, store
    from pipeline.layout import RunDir

    shipped = np.load(conditions.PAPER_LABELS)
    true, classes = shipped["true_labels"].astype(np.int64), [str(c) for c in shipped["classes"]]
    stems = [f"{i}_{classes[true[i]]}" for i in range(len(true))]
    order = np.array(sorted(range(len(true)), key=lambda i: (true[i], stems[i])))  # class folder, then file name
    ds = datasets.Dataset(
        train_x=np.zeros((len(true), 8, 8, 3), np.uint8), train_y=true[order],
        train_ids=np.array([f"{classes[true[i]]}/{stems[i]}" for i in order]), train_source_index=order,
        test_x=np.zeros((20, 8, 8, 3), np.uint8), test_y=np.arange(20) % 10, classes=np.array(classes))
    run = RunDir(tmp_path_factory.mktemp("blank_cifar") / "run")
    store.produce(run.dataset, stage="data", inputs={}, config={"source": "blank CIFAR-10"},
                  make=lambda: (ds.arrays(), {"classes": classes}))
    return run.root
