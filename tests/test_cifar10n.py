"""CIFAR-10N's real human labels as conditions, from a synthetic file shaped like CIFAR-10_human.pt."""

import shutil

import numpy as np
import pytest
import torch
from conftest import stage

from pipeline import conditions, files, report, store
from pipeline.kinds import cifar10n, paper
from pipeline.layout import RunDir

RATES = {"aggre_label": 0.09, "random_label1": 0.17, "random_label2": 0.18, "random_label3": 0.18, "worse_label": 0.40}


def human_file(path, *, tensors=False, drop=None, clean_shift=0, worse=None):
    """Like the official file: a dict of 50,000 labels each, in CIFAR-10's original training order."""
    clean = np.load(paper.LABELS)["true_labels"].astype(np.int64)
    rng = np.random.default_rng(0)
    data = {"clean_label": (clean + clean_shift) % 10}
    for key, rate in RATES.items():
        flip = rng.random(len(clean)) < rate
        data[key] = np.where(flip, (clean + rng.integers(1, 10, len(clean))) % 10, clean)
    if drop:
        del data[drop]
    if tensors:
        data = {k: torch.from_numpy(v) for k, v in data.items()}
    if worse is not None:
        data["worse_label"] = worse(data["worse_label"])
    torch.save(data, path)
    return data


@pytest.fixture
def run(blank_cifar, tmp_path):
    return RunDir(shutil.copytree(blank_cifar, tmp_path / "run"))


@pytest.mark.parametrize("tensors", [False, True], ids=["numpy arrays", "torch tensors"])
def test_cifar10n_labels_become_five_conditions_in_dataset_order(run, tmp_path, tensors):
    data = human_file(tmp_path / "CIFAR-10_human.pt", tensors=tensors)
    out = stage("noise", run.root, "--cifar10n", str(tmp_path / "CIFAR-10_human.pt")).stdout
    assert conditions.names(run) == list(cifar10n.SETS)
    idx = files.load(run.dataset)["train_source_index"]
    for name, key in cifar10n.SETS.items():
        labels = files.load(run.labels(name))
        assert np.array_equal(labels, np.asarray(data[key])[idx])  # row i of ours is CIFAR-10 image idx[i]
        info = store.verify(run.labels(name))["info"]
        expected = float(np.mean(np.asarray(data[key]) != np.asarray(data["clean_label"])))
        assert info["actual_noise_rate"] == pytest.approx(expected) and info["real_human_noise"] is True
        assert np.allclose(np.sum(info["noise_matrix"], axis=0), 1, atol=1e-3)
        assert f"{run.labels(name)}  noise={expected:.3f}" in out
    loaded = conditions.load(run, "c10n_worse")
    assert report.column_heading(loaded) == f"c10n_worse ({100 * loaded.noise_rate:.0f}%, real human noise)"


@pytest.mark.parametrize(
    "bad,expect",
    [
        (dict(clean_shift=1), "clean_label disagrees with the dataset's labels in 50000 of 50000 rows"),
        (dict(drop="worse_label"), "expected a dict with keys clean_label and aggre_label"),
        (dict(worse=lambda v: [[int(x) for x in v[:3]], [1]]), "worse_label: not an array of labels (ValueError"),
        (dict(worse=lambda v: torch.from_numpy(v).bfloat16()), "worse_label: not an array of labels (TypeError"),
        (
            dict(worse=lambda v: torch.from_numpy(v).float() + 0.5),
            "worse_label: labels must be a 1-D integer array, got float32",
        ),
    ],
)
def test_a_cifar10n_file_that_does_not_fit_is_refused_in_one_line(run, tmp_path, bad, expect):
    path = tmp_path / "CIFAR-10_human.pt"
    human_file(path, **bad)
    err = stage("noise", run.root, "--cifar10n", str(path), ok=False).stderr.strip()
    assert err.startswith(f"error: {path}: ") and expect in err and len(err.splitlines()) == 1
    assert not any(run.labels(n).exists() for n in cifar10n.SETS)


def test_a_file_that_would_run_code_is_refused(run, tmp_path):
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": np.zeros(3), "x": shutil.rmtree}, path)  # a global torch.load must not resolve
    err = stage("noise", run.root, "--cifar10n", str(path), ok=False).stderr.strip()
    assert f"{path}: not a CIFAR-10N label file" in err and len(err.splitlines()) == 1


def test_cifar10n_needs_cifar10(folds_run, tmp_path):
    human_file(tmp_path / "h.pt")
    run = RunDir(shutil.copytree(folds_run, tmp_path / "run"))
    err = stage("noise", run.root, "--cifar10n", str(tmp_path / "h.pt"), ok=False).stderr.strip()
    assert "CIFAR-10N conditions need CIFAR-10's 50,000 training images" in err
