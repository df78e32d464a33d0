"""Condition naming, paper labels, generated noise, and label validation."""

from pathlib import Path

import numpy as np
import pytest
from conftest import stage
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import conditions, files, store
from pipeline.errors import PipelineError
from pipeline.kinds import paper
from pipeline.kinds.base import validate_labels
from pipeline.kinds.generated import generate


def test_paper_conditions_are_named_by_their_actual_noise():
    shipped = np.load(paper.LABELS)
    conds = conditions.parse_conditions("paper-all")
    assert len(conds) == 17 and len(conditions.parse_conditions("paper")) == 13
    for cond in conds:
        actual = np.mean(shipped[cond.paper_key] != shipped["true_labels"])
        assert abs(actual - cond.noise) < 0.005, (cond, actual)
    assert conditions.paper_condition(0.2, 0.6).name == "n70_s20"
    assert conditions.paper_condition(0.2, 0.6).paper_column == "2_6"


def test_generated_noise_matches_the_request():
    true = np.repeat(np.arange(10), 2000)
    noisy, nm = generate(true, 10, 0.4, 0.4, seed=3)
    assert abs(np.mean(noisy != true) - 0.4) < 0.02
    assert np.allclose(nm.sum(axis=0), 1)
    off = nm[~np.eye(10, dtype=bool)]
    assert np.mean(off == 0) >= 0.4 - 1e-9  # sparsity: at least this fraction of zero noise rates
    again, _ = generate(true, 10, 0.4, 0.4, seed=3)
    assert np.array_equal(noisy, again)


@pytest.mark.parametrize(
    "labels,message",
    [
        (np.array([0, 1, 10]), "outside 0..9"),
        (np.array([0, -1, 2]), "outside 0..9"),
        (np.array([0, 1]), "2 labels for 3"),
        (np.array([0.0, 1.0, 2.0]), "integer"),
    ],
)
def test_bad_labels_are_refused(labels, message):
    with pytest.raises(PipelineError, match=message):
        validate_labels(labels, 3, 10, "x.npy")


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


@pytest.fixture
def digits_run(folds_run, tmp_path):
    """A digits run with only its dataset (the registry and conditions of folds_run removed)."""
    import shutil

    from pipeline.layout import RunDir

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    for suffix in ("", ".manifest.json"):
        shutil.copy(f"{folds_run / 'dataset.npz'}{suffix}", run.root)
    return run


def test_the_registry_adds_updates_and_removes_only_when_asked(digits_run, tmp_path):
    run = digits_run
    gen = lambda spec, seed=0: conditions.parse_conditions(spec, 10, seed)
    conditions.update(run, gen("0.2:0.0"), [])
    conditions.update(run, gen("0.4:0.4"), [])  # another list: added, nothing dropped
    assert list(conditions.registry(run)) == ["n20_s0", "n40_s40"]
    first = run.labels("n20_s0").read_bytes()
    assert conditions.update(run, gen("0.2:0.0"), []) == [
        (gen("0.2:0.0")[0], store.Outcome.CURRENT)
    ]  # same: nothing redone
    conditions.update(run, gen("0.2:0.0", seed=5), [])  # same name, new seed: updated in place
    assert conditions.registry(run)["n20_s0"].seed == 5 and run.labels("n20_s0").read_bytes() != first
    conditions.update(run, gen("0.3:0.0,0.304:0.0"), [])  # close rates: distinct names
    assert list(conditions.registry(run)) == ["n20_s0", "n40_s40", "n30_s0", "n30.4_s0"]
    conditions.update(run, [], ["n40_s40"])
    assert "n40_s40" not in conditions.registry(run) and run.labels("n40_s40").exists()  # files are kept
    given = tmp_path / "given.npy"
    np.save(given, files.load(run.labels("n30_s0")))
    before = run.registry.read_bytes()
    with pytest.raises(
        PipelineError,
        match=r"condition n30_s0 exists as generated noise 0.3, sparsity 0.0, seed 0; "
        r"--remove n30_s0 first",
    ):
        conditions.update(run, [conditions.given(f"n30_s0={given}")], [])
    with pytest.raises(PipelineError, match="n25_s0 is given twice"):
        conditions.update(run, gen("0.25:0,0.25:0.0"), [])
    assert run.registry.read_bytes() == before and not run.labels("n25_s0").exists()
    conditions.update(run, [conditions.given(f"n30_s0={given}")], ["n30_s0"])  # explicit: remove, then add
    assert conditions.registry(run)["n30_s0"].kind == "given"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_a_condition_name_is_never_a_path(name):
    try:
        conditions.check_name(name)
    except PipelineError:
        return
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name.strip() == name and name
    assert Path(name).name == name and name not in (".", "..")


@pytest.mark.parametrize("noise,sparsity", [(0.2, 0.0), (0.6, 0.8), (0.85, 0.2), (0.0, 0.888)])
def test_what_the_parser_accepts_cleanlab_can_generate(noise, sparsity):
    (cond,) = conditions.parse_conditions(f"{noise}:{sparsity}", 10)
    true = np.repeat(np.arange(10), 100)
    noisy, _ = generate(true, 10, cond.noise, cond.sparsity, seed=1)
    assert abs(np.mean(noisy != true) - noise) < 0.08


def test_noise_stages_started_together_each_register_their_conditions(run_copy):
    """The registry is shared by every noise process on a run directory: none of their additions is lost."""
    import subprocess
    import sys

    from conftest import ROOT

    from pipeline import conditions
    from pipeline.layout import RunDir

    before = conditions.names(RunDir(run_copy))
    specs = ["0.1:0.0", "0.3:0.0", "0.5:0.0", "0.3:0.2"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "stages.noise", "--run-dir", str(run_copy), "--conditions", spec],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(specs), outs
    names = conditions.names(RunDir(run_copy))
    added = {c.name for spec in specs for c in conditions.parse_conditions(spec)}
    assert set(names) == set(before) | added and len(names) == len(before) + len(specs)
    assert not (RunDir(run_copy).registry.parent / "conditions.json.lock").exists()


def test_a_refused_noise_command_writes_nothing(run_copy, tmp_path):
    """Every label file is read and checked before the registry or any labels change."""
    from pipeline.layout import RunDir

    run = RunDir(run_copy)
    before, n = run.registry.read_bytes(), len(files.load(run.labels("n20_s0")))
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, np.arange(n) % 10)
    np.save(bad, np.full(n, 99))
    for args in (
        ["--remove", "n20_s0", "--labels", f"x={bad}"],
        ["--labels", f"ok={good}", "--labels", f"y={bad}"],
        ["--conditions", "0.3:0.0", "--labels", f"y={bad}"],
    ):
        err = stage("noise", run.root, *args, ok=False).stderr.strip()
        assert err == f"error: {bad}: label 99 at row 0 is outside 0..9", err
        assert run.registry.read_bytes() == before
        assert not any(run.labels(c).exists() for c in ("ok", "x", "y", "n30_s0"))
    stage("noise", run.root, "--remove", "n20_s0", "--labels", f"ok={good}")
    assert list(conditions.registry(run)) == ["n40_s40", "ok"]


@pytest.mark.parametrize(
    "save,found",
    [(lambda p, a: np.savez(p, labels=a), "an .npz file"), (lambda p, a: np.savetxt(p, a, fmt="%d"), "a text file")],
)
def test_labels_of_another_format_are_named(run_copy, tmp_path, save, found):
    labels = tmp_path / "labels.npz"
    save(labels, files.load(run_copy / "conditions" / "n20_s0" / "labels.npy"))
    err = stage("noise", run_copy, "--labels", f"mine={labels}", ok=False).stderr.strip()
    assert err == f"error: {labels}: {found}, not the .npy file expected here", err
