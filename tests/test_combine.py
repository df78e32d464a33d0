"""combine refuses incomplete or damaged shards, naming the fold or file; a damaged psx is refused by masks."""

import shutil

import numpy as np
import pytest
from conftest import stage
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import files, masks, store
from pipeline.errors import PipelineError
from pipeline.folds import merge
from pipeline.layout import RunDir


def test_missing_shard_names_the_fold(run_copy):
    run = RunDir(run_copy)
    run.shard("n40_s40", 2).unlink()
    err = stage("combine", run.root, ok=False).stderr
    assert "n40_s40" in err and "fold 2" in err and "make crossval FOLD=2" in err


def test_truncated_shard_is_refused(run_copy):
    run = RunDir(run_copy)
    shard = run.shard("n20_s0", 1)
    shard.write_bytes(shard.read_bytes()[:-200])
    err = stage("combine", run.root, ok=False).stderr
    assert str(shard) in err
    assert not run.psx("n20_s0").exists()


def test_truncated_psx_is_refused_by_masks(run_copy):
    run = RunDir(run_copy)
    stage("combine", run.root)
    psx = run.psx("n20_s0")
    psx.write_bytes(psx.read_bytes()[:-100])
    err = stage("masks", run.root, "--cond", "n20_s0", ok=False).stderr
    assert str(psx) in err
    assert not any(p.exists() for p in masks.mask_paths(run, "n20_s0").values())


@pytest.mark.parametrize("option", [("--epochs", "1"), ("--fold-seed", "1")])
def test_a_shard_made_with_other_options_is_named_and_refused(run_copy, option):
    run = RunDir(run_copy)
    stage(
        "crossval",
        run.root,
        "--cond",
        "n20_s0",
        "--fold",
        "1",
        "--folds",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--gpu",
        "cpu",
        *option,
    )
    err = stage("combine", run.root, "--cond", "n20_s0", ok=False).stderr.strip()
    name = option[0][2:].replace("-", "_")
    assert err == (
        f"error: n20_s0: the fold shards disagree: {run.shard('n20_s0', 1)} was made with {name}={int(option[1])} "
        f"(others: {2 if name == 'epochs' else 0}); 2 other(s) agree: redo the odd one(s) with the same options, or remove them"
    )
    assert not run.psx("n20_s0").exists()


def test_a_leftover_shard_of_another_fold_count_is_named(run_copy):
    run = RunDir(run_copy)
    extra = run.shard("n20_s0", 3)
    shutil.copy(run.shard("n20_s0", 0), extra)
    manifest = files.load(store.manifest_path(run.shard("n20_s0", 0)))
    store.write_manifest(
        extra,
        {
            **manifest,
            "artifact": "conditions/n20_s0/folds/fold3.npz",
            "config": {**manifest["config"], "fold": 3, "folds": 4},
        },
    )
    err = stage("combine", run.root, "--cond", "n20_s0", ok=False).stderr
    assert f"{extra} was made with fold_seed" not in err and f"{extra} was made with folds=4 (others: 3)" in err


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 40), st.integers(1, 5), st.randoms(use_true_random=False))
def test_merge_is_independent_of_assignment_and_order(n, k, rnd):
    fold_of = [rnd.randrange(k) for _ in range(n)]
    probs = np.random.default_rng(n).dirichlet(np.ones(3), n).astype(np.float32)
    shards = {f: (np.flatnonzero(np.array(fold_of) == f), None) for f in range(k)}
    shards = {f: (idx, probs[idx]) for f, (idx, _) in shards.items()}
    order = list(shards)
    rnd.shuffle(order)
    out = lambda: np.empty((n, 3), np.float32)
    merged = out()
    merge(((f, *shards[f]) for f in order), merged)
    assert np.array_equal(merged, probs)
    victim = rnd.randrange(n)
    f = fold_of[victim]
    dropped = {**shards, f: tuple(a[shards[f][0] != victim] for a in shards[f])}
    with pytest.raises(PipelineError, match="in no fold"):
        merge(((f, *s) for f, s in dropped.items()), out())
    other = (f + 1) % k
    if other != f:
        dup = {**shards, other: (np.append(shards[other][0], victim), np.vstack([shards[other][1], probs[victim]]))}
        with pytest.raises(PipelineError, match="both fold"):
            merge(((f, *s) for f, s in dup.items()), out())


def test_an_ensemble_psx_is_an_artifact_of_its_members(run_copy, tmp_path):
    """Two psx of n20_s0's rows and labels (another run's, and a plain file of other probabilities): their mean is
    n20_s0's psx, read by masks and review as any; a changed member makes it stale; a member of other labels, or of
    another shape, is refused in one line."""
    from pipeline import report

    run = RunDir(run_copy)
    other = RunDir(shutil.copytree(run.root, tmp_path / "other"))
    stage("combine", other.root)
    stage("combine", run.root)
    plain = tmp_path / "plain.npy"
    psx = store.read(run.psx("n20_s0"))
    np.save(plain, (psx + np.roll(psx, 1, axis=1)) / 2)  # other probabilities of the same rows
    members = [other.psx("n20_s0"), plain]
    stage("combine", run.root, "--cond", "n20_s0", "--ensemble", ",".join(map(str, members)))
    mean = (store.read(other.psx("n20_s0")) + np.load(plain)) / 2
    assert np.allclose(store.read(run.psx("n20_s0")), mean, atol=1e-6)
    assert store.verify(run.psx("n20_s0"))["config"]["ensemble"] == [str(m.resolve()) for m in members]
    stage("masks", run.root, "--cond", "n20_s0")
    stage("review", run.root, "--cond", "n20_s0")
    _, md = report.write(run, ["n20_s0"])
    assert '"ensemble": [' in md  # the report names the members where it names the crossval config
    assert "0 of 1" in stage("combine", run.root, "--cond", "n20_s0", "--ensemble", ",".join(map(str, members))).stdout
    np.save(plain, np.roll(np.load(plain), 1, axis=0))  # a member changes: the ensemble and the masks are stale
    err = stage("masks", run.root, "--cond", "n20_s0", ok=False).stderr
    assert f"is stale: {plain} changed after it was made" in err
    for bad, message in (
        (other.psx("n40_s40"), f"{other.psx('n40_s40')}: made from other labels than n20_s0's"),
        (tmp_path / "short.npy", "short.npy: expected probabilities of shape (1347, 10), got (5, 10)"),
    ):
        np.save(tmp_path / "short.npy", np.full((5, 10), 0.1))
        err = stage("combine", run.root, "--cond", "n20_s0", "--ensemble", f"{plain},{bad}", ok=False).stderr
        assert len(err.strip().splitlines()) == 1 and message in err, err
    err = stage("combine", run.root, "--ensemble", f"{plain},{plain}", ok=False).stderr
    assert "name the one condition" in err
