"""Every stage on a tiny dataset, then a re-run that must do no work."""

import re
import subprocess
import sys

import numpy as np

from conftest import FAST_COTEACH, FAST_CROSSVAL, ROOT, stage
from pipeline import conditions, store
from pipeline.coteach import METHODS
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS


def artifact_mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file() and "report" not in p.parts}


def test_every_stage_then_rerun_does_nothing(run_copy):
    run = RunDir(run_copy)
    stage("combine", run.root)
    stage("masks", run.root)
    trained = stage("coteach", run.root, *FAST_COTEACH).stdout
    assert re.search(r"^coteach n40_s40 plain seed 0: epoch 2/2 loss \d+\.\d{4} test acc 0\.\d{4}/0\.\d{4} \(\d+\.\d s\)$",
                     trained, re.M)  # one line per epoch: stdout is not a terminal
    out = stage("report", run.root).stdout

    conds = conditions.names(run)
    assert conds == ["n20_s0", "n40_s40"]
    for cond in conds:
        noisy = store.load(run.labels(cond))
        psx = store.load(run.psx(cond))
        assert psx.shape == (len(noisy), 10) and np.allclose(psx.sum(1), 1, atol=1e-5)
        masks = store.load(run.masks(cond))
        assert set(masks) == set(CL_METHODS.values())
        assert all(m.dtype == bool and m.shape == noisy.shape for m in masks.values())
        for method in METHODS:
            metrics = store.load(run.coteach(cond, method, 0))
            assert len(metrics["test_acc"]) == 2 and 0 <= metrics["final_acc"] <= 1
            expected = len(noisy) if method in ("none", "plain") else int(masks[method].sum())
            assert metrics["n_train"] == expected
        assert store.load(run.coteach(cond, "plain", 0))["forget_rate"] == 0
    assert "PBNR" in out and "Co-Teaching alone" in out and "plain training" in out
    assert (run.report_dir / "table.csv").exists()

    before = artifact_mtimes(run.root)
    stage("data", run.root, "--source", "digits")
    stage("noise", run.root, "--conditions", "0.2:0.0,0.4:0.4")
    assert "0 of 6" in stage("crossval", run.root, "--fold", "all", *FAST_CROSSVAL).stdout
    assert "wrote" not in stage("combine", run.root).stdout
    assert "wrote" not in stage("masks", run.root).stdout
    assert "0 of 14" in stage("coteach", run.root, *FAST_COTEACH).stdout
    assert artifact_mtimes(run.root) == before
    imported = subprocess.run([sys.executable, "-X", "importtime", "-m", "stages.coteach", "--run-dir", str(run.root),
                               *FAST_COTEACH], cwd=ROOT, capture_output=True, text=True).stderr
    assert "pipeline.coteach" in imported and not re.search(r"\|\s+(torch|pytorch_lightning|cleanlab)$", imported, re.M)


def test_changed_config_redoes_only_what_depends_on_it(run_copy):
    run = RunDir(run_copy)
    out = stage("crossval", run.root, "--fold", "1", "--cond", "n20_s0", *FAST_CROSSVAL, "--seed", "7")
    assert "1 of 1" in out.stdout
    assert store.verify(run.shard("n20_s0", 1))["config"]["seed"] == 7
    assert store.verify(run.shard("n20_s0", 0))["config"]["seed"] == 0
