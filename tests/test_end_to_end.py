"""Every stage on a tiny dataset, then a re-run that must do no work."""

import re
import subprocess
import sys

import numpy as np
from conftest import FAST_COTEACH, FAST_CROSSVAL, ROOT, stage

from pipeline import conditions, files, store
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME
from pipeline.masks import CL_METHODS, read_masks
from stages.coteach import grid


def artifact_mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file() and "report" not in p.parts}


def test_every_stage_then_rerun_does_nothing(run_copy):
    run = RunDir(run_copy)
    stage("combine", run.root)
    stage("masks", run.root)
    trained = stage("coteach", run.root, *FAST_COTEACH).stdout
    # One line per epoch (stdout is not a terminal), with the test accuracy of each network.
    assert re.search(
        r"^coteach n40_s40 none x coteaching seed 0: epoch 2/2 loss \d+\.\d{4} test acc 0\.\d{4}/0\.\d{4} "
        r"\(\d+\.\d s\)$",
        trained,
        re.M,
    )
    assert re.search(
        r"^coteach n40_s40 none x sce seed 0: epoch 2/2 loss \d+\.\d{4} test acc 0\.\d{4} \(", trained, re.M
    )
    out = stage("report", run.root).stdout

    conds = conditions.names(run)
    assert conds == ["n20_s0", "n40_s40"]
    for cond in conds:
        noisy = files.load(run.labels(cond))
        psx = files.load(run.psx(cond))
        assert psx.shape == (len(noisy), 10) and np.allclose(psx.sum(1), 1, atol=1e-5)
        masks = read_masks(run, cond)
        assert set(masks) == set(CL_METHODS.values())
        assert all(m.dtype == bool and m.shape == noisy.shape for m in masks.values())
        assert len(grid("all", "paper")) == 9  # the paper's Table 2: 5 masks x coteaching, all rows x 4 learners
        for rows, learner in grid("all", "paper"):
            metrics = files.load(run.coteach(cond, rows, learner, 0))
            nets = BY_NAME[learner].nets
            assert [len(a) for a in metrics["test_acc"]] == [nets, nets] and 0 <= metrics["final_acc"] <= 1
            assert metrics["n_train"] == (len(noisy) if rows == "none" else int(masks[rows].sum()))
            assert ("forget_rate" in metrics) == (learner == "coteaching")
    for name in (
        "PBNR × Co-Teaching",
        "all rows × Co-Teaching",
        "all rows × cross-entropy",
        "all rows × Mixup",
        "all rows × SCE",
    ):
        assert f"| {name} |" in out
    assert (run.report_dir / "table.csv").exists()

    before = artifact_mtimes(run.root)
    stage("data", run.root, "--source", "digits")
    stage("noise", run.root, "--conditions", "0.2:0.0,0.4:0.4")
    assert "0 of 6" in stage("crossval", run.root, "--fold", "all", *FAST_CROSSVAL).stdout
    assert "wrote" not in stage("combine", run.root).stdout
    assert "wrote" not in stage("masks", run.root).stdout
    assert "0 of 18" in stage("coteach", run.root, *FAST_COTEACH).stdout
    assert artifact_mtimes(run.root) == before
    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stages.coteach", "--run-dir", str(run.root), *FAST_COTEACH],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stderr
    assert "pipeline.learners" in imported and not re.search(
        r"\|\s+(torch|pytorch_lightning|cleanlab)$", imported, re.M
    )


def test_changed_config_redoes_only_what_depends_on_it(run_copy):
    run = RunDir(run_copy)
    out = stage("crossval", run.root, "--fold", "1", "--cond", "n20_s0", *FAST_CROSSVAL, "--seed", "7")
    assert "1 of 1" in out.stdout
    assert store.verify(run.shard("n20_s0", 1))["config"]["seed"] == 7
    assert store.verify(run.shard("n20_s0", 0))["config"]["seed"] == 0


def test_tta_off_is_recorded_and_changes_only_the_predictions(run_copy):
    """--tta off predicts each held-out image once (the airbench recipe averages it with its mirror and shifts):
    the same training, other probabilities, recorded; shards made with the recipe's TTA stay current."""
    run = RunDir(run_copy)
    with_tta = np.load(run.shard("n20_s0", 0))["probs"]
    stage("crossval", run.root, "--fold", "0", "--cond", "n20_s0", *FAST_CROSSVAL, "--tta", "off")
    without = np.load(run.shard("n20_s0", 0))["probs"]
    assert store.verify(run.shard("n20_s0", 0))["config"]["tta"] == "off"
    assert "tta" not in store.verify(run.shard("n20_s0", 1))["config"]  # the recipe's: left out, still current
    assert without.shape == with_tta.shape and not np.allclose(without, with_tta, atol=1e-3)
    assert np.mean(without.argmax(1) == with_tta.argmax(1)) > 0.6  # the same network (random: 0.1)
