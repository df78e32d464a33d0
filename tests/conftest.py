"""Shared helpers: run a stage's CLI in this process, and a small digits run built once."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason=f"{SHARED} (shared data) is absent")


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs a worker per core), each worker and every process it starts run on
    one core of their own: the torch threads a stage sets follow the affinity (``workers.host_threads``), so the
    workers never oversubscribe the cores."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if worker and hasattr(os, "sched_setaffinity"):  # Linux; elsewhere the workers share the cores
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
        os.environ["OMP_NUM_THREADS"] = "1"  # torch's default threads in a process that sets none


FAST_CROSSVAL = ["--folds", "3", "--epochs", "2", "--batch-size", "128", "--gpu", "cpu"]
FAST_COTEACH = [
    "--epochs",
    "2",
    "--batch-size",
    "128",
    "--epoch-decay-start",
    "1",
    "--num-gradual",
    "1",
    "--gpu",
    "cpu",
]


@dataclass
class Ran:
    """What a stage's run printed, and its exit status (as ``subprocess.CompletedProcess`` has them)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _captured():
    """stdout and stderr of this process and its children, at the file descriptors, into two strings."""
    out = {}
    sys.stdout.flush(), sys.stderr.flush()
    with tempfile.TemporaryFile("w+") as o, tempfile.TemporaryFile("w+") as e:
        saved = [os.dup(1), os.dup(2)]
        old = sys.stdout, sys.stderr
        os.dup2(o.fileno(), 1), os.dup2(e.fileno(), 2)
        sys.stdout, sys.stderr = o, e
        try:
            yield out
        finally:
            o.flush(), e.flush()
            sys.stdout, sys.stderr = old
            for fd, keep in zip((1, 2), saved):
                os.dup2(keep, fd)
                os.close(keep)
            for name, f in (("stdout", o), ("stderr", e)):
                f.seek(0)
                out[name] = f.read()


def stage(name: str, run_dir: Path, *args: str, ok: bool = True) -> Ran:
    """``python -m stages.<name> --run-dir RUN ARGS``, run in this process as its ``__main__`` does (the same
    parser, ``cli.main`` and exit status, without a new interpreter's seconds of imports); the signal
    handlers and warning hook it sets are put back. Asserts the exit status (0 if ``ok`` else 2)."""
    from pipeline import workers

    module = importlib.import_module(f"stages.{name}")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv, showwarning = sys.argv, warnings.showwarning
    code = 0
    with _captured() as out:
        sys.argv = [str(ROOT / "stages" / f"{name}.py"), "--run-dir", str(run_dir), *args]
        try:
            workers.main(module.STAGE)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # noqa: BLE001 - a bug: a traceback and status 1, as the interpreter would
            traceback.print_exc()
            code = 1
        finally:
            sys.argv, warnings.showwarning = argv, showwarning
            for s, h in handlers.items():
                signal.signal(s, h)
    ran = Ran(code, out["stdout"], out["stderr"])
    assert ran.returncode == (0 if ok else 2), f"stages.{name} exited {ran.returncode}\n{ran.stdout}\n{ran.stderr}"
    return ran


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

    from pipeline import datasets, store
    from pipeline.kinds import paper
    from pipeline.layout import RunDir

    shipped = np.load(paper.LABELS)
    true, classes = shipped["true_labels"].astype(np.int64), [str(c) for c in shipped["classes"]]
    stems = [f"{i}_{classes[true[i]]}" for i in range(len(true))]
    order = np.array(sorted(range(len(true)), key=lambda i: (true[i], stems[i])))  # class folder, then file name
    ds = datasets.Dataset(
        train_x=np.zeros((len(true), 8, 8, 3), np.uint8),
        train_y=true[order],
        train_ids=np.array([f"{classes[true[i]]}/{stems[i]}" for i in order]),
        train_source_index=order,
        test_x=np.zeros((20, 8, 8, 3), np.uint8),
        test_y=np.arange(20) % 10,
        classes=np.array(classes),
    )
    run = RunDir(tmp_path_factory.mktemp("blank_cifar") / "run")
    store.produce(
        run.dataset,
        root=run.root,
        stage="data",
        inputs={},
        config={"source": "blank CIFAR-10"},
        make=lambda: (ds.arrays(), {"classes": classes}),
    )
    return run.root


RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name torchvision's IMAGENET1K_V1 weights have in the hub cache


@pytest.fixture
def resnet18_file(tmp_path) -> Path:
    """Random resnet18 weights in a file (no ImageNet weights exist here), for --weights FILE."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture
def hub(resnet18_file, tmp_path, monkeypatch) -> Path:
    """A torch hub cache (TORCH_HOME) holding random resnet18 weights under IMAGENET1K_V1's file name: a file whose
    bytes are not the ones its name promises (the name carries the first hex digits of their sha256)."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(resnet18_file, checkpoints / RESNET18_FILE)
    return checkpoints


# The review page in headless Chromium through chromedriver (Debian's chromium and chromium-driver, which .ci/run
# installs); without them the browser tests skip and say why.
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
browser_needed = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no chromium and chromedriver (Debian packages chromium, chromium-driver; .ci/run installs them)",
)


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
