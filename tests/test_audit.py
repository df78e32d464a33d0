"""Auditing a test split (data --audit-test): the source's test images become the rows every stage works on."""

import csv

import numpy as np
from conftest import stage

from pipeline import datasets, demo_own, store
from pipeline.layout import RunDir


def test_a_test_split_is_audited_like_any_dataset_and_has_no_test_set(tmp_path):
    source = demo_own.build(tmp_path / "src", flip=0.1)
    with open(source) as f:
        test_rows = [r["path"] for r in csv.DictReader(f) if r["split"] == "test"]
    run = RunDir(tmp_path / "run")
    out = stage("data", run.root, "--source", str(source), "--image-size", "8", "--audit-test").stdout
    assert f"{len(test_rows)} train / 0 test" in out
    ds = datasets.cached(run.dataset)
    assert list(ds.train_ids) == test_rows and ds.test_x.shape == (0, 8, 8, 1)
    assert store.verify(run.dataset)["config"]["audit_test"] is True
    stage("noise", run.root, "--conditions", "0:0")
    stage(
        "crossval",
        run.root,
        "--fold",
        "all",
        "--folds",
        "3",
        "--recipe",
        "sgd",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--gpu",
        "cpu",
    )
    stage("combine", run.root)
    stage("masks", run.root)
    stage("review", run.root)
    with open(run.label_issues("n0_s0")) as f:
        flagged = list(csv.DictReader(f))
    assert flagged and {r["id"] for r in flagged} <= set(test_rows)
    assert np.isin([int(r["row"]) for r in flagged], np.arange(len(test_rows))).all()
    err = stage("coteach", run.root, "--gpu", "cpu", ok=False).stderr.strip()
    assert (
        err
        == f"error: {run.dataset}: an audit run (data --audit-test) has no test set to evaluate a learner on; coteach needs one"
    )


def test_a_source_without_a_test_split_to_audit_refuses_it(tmp_path):
    err = stage("data", tmp_path / "run", "--source", "digits", "--audit-test", ok=False).stderr.strip()
    assert err.startswith("error: digits: --audit-test does not apply to this source"), err
    folder = tmp_path / "flat"
    for k in range(2):
        (folder / f"c{k}").mkdir(parents=True)
        for i in range(3):
            from PIL import Image

            Image.new("L", (4, 4), 40 * i + 100 * k).save(folder / f"c{k}" / f"{i}.png")
    err = stage("data", tmp_path / "run2", "--source", str(folder), "--audit-test", ok=False).stderr.strip()
    assert err.startswith(
        f"error: {folder}: --audit-test does not apply to this source (it has no test/ folder to audit)"
    ), err
