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


def test_a_network_of_the_training_split_predicts_the_audited_rows_ensembled_with_the_folds(tmp_path):
    """stages.predict: a backbone trained in a run of the training split predicts every audited test row (a psx with
    provenance); combine --ensemble folds,THAT averages it with the cross-validated shards; masks and review read it.
    A changed weights file makes it stale. Refused in one line, nothing written: weights trained on these rows,
    weights of other classes, a plain state_dict, the ensemble's own psx as a member."""
    import shutil

    import torch

    source = demo_own.build(tmp_path / "src", flip=0.1)
    train, audit = RunDir(tmp_path / "train"), RunDir(tmp_path / "audit")
    for run, extra in ((train, []), (audit, ["--audit-test"])):
        stage("data", run.root, "--source", str(source), "--image-size", "8", *extra)
        stage("noise", run.root, "--conditions", "0:0")
    fast = ["--recipe", "sgd", "--epochs", "3", "--batch-size", "32", "--gpu", "cpu"]
    stage("backbone", train.root, "--cond", "n0_s0", *fast)
    stage("crossval", audit.root, "--fold", "all", "--folds", "3", *fast)
    weights = tmp_path / "w.pt"
    shutil.copy(train.backbone("n0_s0"), weights)  # an outside file: an input all the same
    out = stage("predict", audit.root, "--weights", str(weights), "--gpu", "cpu").stdout
    (predicted,) = (audit.condition_dir("n0_s0") / "predicted").glob("*.npy")
    assert f"wrote: {predicted}" in out and "agrees with the given labels on" in out
    probs, given = np.load(predicted), store.read(audit.labels("n0_s0"))
    assert probs.shape == (len(given), 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.mean(probs.argmax(1) == given) > 0.5  # the training split's network reads the test digits
    assert "0 of 1" in stage("predict", audit.root, "--weights", str(weights), "--gpu", "cpu").stdout
    stage("combine", audit.root)
    folds = store.read(audit.psx("n0_s0"))
    stage("combine", audit.root, "--cond", "n0_s0", "--ensemble", f"folds,{predicted}")
    assert np.allclose(store.read(audit.psx("n0_s0")), (folds + probs) / 2, atol=1e-6)
    stage("masks", audit.root)
    stage("review", audit.root)
    assert audit.label_issues("n0_s0").exists()

    state = torch.load(weights, weights_only=True)
    torch.save({**state, "classes": [f"c{i}" for i in range(10)]}, tmp_path / "other.pt")
    torch.save(state["state_dict"], tmp_path / "plain.pt")
    before = sorted(p for p in audit.root.rglob("*"))
    for run, flags, message in (
        (train, ["--weights", str(train.backbone("n0_s0"))], "trained on this dataset's rows"),
        (audit, ["--weights", str(tmp_path / "other.pt")], "its network predicts the classes c0, c1"),
        (audit, ["--weights", str(tmp_path / "plain.pt")], "plain.pt: not a backbone this pipeline wrote"),
        (audit, ["--weights", str(tmp_path / "none.pt")], "none.pt: file not found"),
    ):
        err = stage("predict", run.root, *flags, "--gpu", "cpu", ok=False).stderr.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    err = stage(
        "combine", audit.root, "--cond", "n0_s0", "--ensemble", f"{predicted},{audit.psx('n0_s0')}", ok=False
    ).stderr.strip()
    assert "the psx the ensemble replaces; name its fold shards as the member 'folds'" in err, err
    assert sorted(p for p in audit.root.rglob("*")) == before
    torch.save({**state, "mean": [0.4]}, weights)  # the weights change: what was predicted with them is stale
    err = stage("masks", audit.root, ok=False).stderr
    assert f"{weights} changed after it was made" in err, err
