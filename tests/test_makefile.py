"""The Makefile passes paths with spaces through intact."""

import subprocess

import numpy as np
from conftest import ROOT
from test_datasets import make_imagefolder


def test_paths_with_spaces(tmp_path):
    data = make_imagefolder(
        tmp_path / "my data" / "set 1", {"cat": ["1_cat.png", "2_cat.png"], "dog": ["3_dog.png", "4_dog.png"]}
    )
    run = tmp_path / "my runs" / "run a"
    for target, extra in (("data", [f"DATA={data}"]), ("noise", ["CONDITIONS=0.4:0.0"])):
        proc = subprocess.run(
            ["make", "--no-print-directory", target, f"RUN={run}", *extra], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run / "dataset.npz").exists()
    assert np.load(run / "conditions" / "n40_s0" / "labels.npy").shape == (4,)


def test_the_makefile_runs_the_stages_of_the_one_list():
    """``stages.NAMES`` is the one list: each stage has ``make NAME`` (running ``python -m stages.NAME``), each stage
    a SLURM array runs has ``make slurm-NAME`` (``slurm.submit NAME``), and the Makefile runs no other stage."""
    import re

    from stages import NAMES, arrays

    text = (ROOT / "Makefile").read_text()
    assert set(re.findall(r"-m stages\.(\w+)", text)) == set(NAMES)
    assert set(re.findall(r"^slurm-(\w+):", text, re.M)) - {"up", "down"} == set(arrays())

    def runs(target: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "-s", target, "RUN=r", "DATA=d", "WEIGHTS=w.pt", "PY=python", "SETUP="],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    for name in NAMES:
        assert f"python -m stages.{name} " in runs(name), name
    for name in arrays():
        assert f"python -m slurm.submit {name} " in runs(f"slurm-{name}"), name


def test_python_m_stages_runs_a_stage_of_the_list_by_name(tmp_path):
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stages", *args], cwd=ROOT, capture_output=True, text=True)

    bad = run("bogus")
    assert (
        bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bogus: not a stage (choose from data, " in bad.stderr
    )
    missing = run("masks", "--run-dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and f"{tmp_path / 'none'}: no such run directory" in missing.stderr
    assert "--ensemble" in run("combine", "--help").stdout
