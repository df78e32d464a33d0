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
