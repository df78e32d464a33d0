"""Condition naming, paper labels, generated noise, and label validation."""

import numpy as np
import pytest

from conftest import stage
from pipeline import conditions
from pipeline.store import PipelineError


def test_paper_conditions_are_named_by_their_actual_noise():
    shipped = np.load(conditions.PAPER_LABELS)
    conds = conditions.parse_conditions("paper-all")
    assert len(conds) == 17 and len(conditions.parse_conditions("paper")) == 13
    for cond in conds:
        actual = np.mean(shipped[cond.paper_key] != shipped["true_labels"])
        assert abs(actual - cond.noise) < 0.005, (cond, actual)
    assert conditions.paper_condition(0.2, 0.6).name == "n70_s20"
    assert conditions.paper_condition(0.2, 0.6).paper_column == "2_6"


def test_generated_noise_matches_the_request():
    true = np.repeat(np.arange(10), 2000)
    noisy, nm = conditions.generate(true, 10, 0.4, 0.4, seed=3)
    assert abs(np.mean(noisy != true) - 0.4) < 0.02
    assert np.allclose(nm.sum(axis=0), 1)
    off = nm[~np.eye(10, dtype=bool)]
    assert np.mean(off == 0) >= 0.4 - 1e-9  # sparsity: at least this fraction of zero noise rates
    again, _ = conditions.generate(true, 10, 0.4, 0.4, seed=3)
    assert np.array_equal(noisy, again)


@pytest.mark.parametrize("labels,message", [
    (np.array([0, 1, 10]), "outside 0..9"),
    (np.array([0, -1, 2]), "outside 0..9"),
    (np.array([0, 1]), "2 labels for 3"),
    (np.array([0.0, 1.0, 2.0]), "integer"),
])
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(PipelineError, match=message):
        conditions.validate_labels(labels, 3, 10, "x.npy")


def test_noise_stage_labels_from_npy(tmp_path):
    run = tmp_path / "run"
    stage("data", run, "--source", "digits")
    err = stage("noise", run, "--conditions", "paper", ok=False).stderr
    assert "paper conditions need CIFAR-10" in err
    true = np.load(run / "dataset.npz")["train_y"]
    good = tmp_path / "good.npy"
    np.save(good, (true + 1) % 10)
    stage("noise", run, "--labels", f"shifted={good}")
    manifest = (run / "conditions" / "shifted" / "labels.npy.manifest.json").read_text()
    assert '"actual_noise_rate": 1.0' in manifest
