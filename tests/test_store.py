"""The artifact store's rules on small files: the chain, currency, mixing configs, atomic writes, locks."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import files, lock, store
from pipeline.errors import PipelineError


def chain(tmp_path, n=4):
    """a0 <- a1 <- ... <- a{n-1}: each made from the one before, with config {"k": i}."""
    paths = [tmp_path / f"a{i}.npy" for i in range(n)]
    for i, p in enumerate(paths):
        inputs = {"prev": paths[i - 1]} if i else {}
        assert (
            store.produce(
                p, root=p.parent, stage=f"s{i}", inputs=inputs, config={"k": i}, make=lambda i=i: (np.arange(3) + i, {})
            )
            == store.Outcome.MADE
        )
    return paths


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 3), st.sampled_from(["remade", "overwritten", "truncate", "delete manifest", "garble manifest"]))
def test_a_change_anywhere_up_the_chain_makes_everything_below_stale(tmp_path_factory, where, how):
    paths = chain(tmp_path_factory.mktemp("chain"))
    target = paths[where]
    if how == "remade":  # its stage ran again and made something else: it verifies, what was made from it does not
        inputs = {"prev": paths[where - 1]} if where else {}
        store.produce(
            target,
            root=target.parent,
            stage=f"s{where}",
            inputs=inputs,
            config={"k": where},
            make=lambda: (np.arange(4), {}),
            force=True,
        )
    elif how == "overwritten":
        files.save(target, np.arange(4))  # a valid file, not the one its manifest describes
    elif how == "truncate":
        target.write_bytes(target.read_bytes()[:-5])
    elif how == "delete manifest":
        store.manifest_path(target).unlink()
    else:
        store.manifest_path(target).write_text("{not json")
    first_stale = where + (how == "remade")
    for i, p in enumerate(paths):
        inputs, config = ({"prev": paths[i - 1]} if i else {}), {"k": i}
        if i < first_stale:
            assert store.is_current(p, inputs, config)
            store.verify(p)
        else:
            assert not store.is_current(p, inputs, config)
            with pytest.raises(PipelineError) as e:
                store.read(p)
            assert str(target) in str(e.value) or store.manifest_path(target).name in str(e.value)
    if where < 3 and how == "remade":  # the message names the deepest broken link and what redoes it
        with pytest.raises(
            PipelineError,
            match=rf"a{where + 1}\.npy is stale: \S*a{where}\.npy changed after it was made; rerun make s{where + 1}",
        ):
            store.verify(paths[3])
    if how == "overwritten":
        with pytest.raises(PipelineError, match=rf"a{where}\.npy: changed since it was made .*; rerun make s{where} "):
            store.verify(paths[3])


def test_current_means_same_config_and_same_inputs(tmp_path):
    a, b, c = chain(tmp_path, 3)
    assert store.is_current(b, {"prev": a}, {"k": 1})
    assert not store.is_current(b, {"prev": a}, {"k": 2})
    assert not store.is_current(b, {"prev": c}, {"k": 1})  # another input
    assert not store.is_current(b, {"prev": a, "more": c}, {"k": 1})
    calls = []
    make = lambda: calls.append(1) or (np.arange(3) + 1, {})
    assert (
        store.produce(b, root=b.parent, stage="s1", inputs={"prev": a}, config={"k": 1}, make=make)
        == store.Outcome.CURRENT
        and not calls
    )
    assert (
        store.produce(b, root=b.parent, stage="s1", inputs={"prev": a}, config={"k": 1}, make=make, force=True)
        == store.Outcome.MADE
        and calls
    )


def test_a_stale_input_is_refused_before_making(tmp_path):
    a, b = chain(tmp_path, 2)
    a.write_bytes(a.read_bytes()[:-1])
    with pytest.raises(PipelineError, match=r"a0\.npy: changed since it was made .*rerun make s0"):
        store.produce(
            tmp_path / "x.npy", root=tmp_path, stage="x", inputs={"b": b}, config={}, make=lambda: (np.zeros(1), {})
        )
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nothing_non_finite_is_recorded(tmp_path, bad):
    """An array, an .npz member or a staged .npy with one NaN or infinity: refused in one line, nothing written
    (an earlier version of the artifact kept), however the maker hands it over."""
    values = np.ones((5, 3), np.float16)
    values[3, 1] = bad

    def staged():  # written by the maker into a temp file (combine's psx)
        tmp = files.staging(tmp_path / "s.npy")
        with open(tmp, "wb") as f:
            np.save(f, values)
        return files.Staged(tmp)

    cases = {
        tmp_path / "a.npy": lambda: values,
        tmp_path / "z.npz": lambda: {"train": np.zeros(4, np.float32), "test": values},
        tmp_path / "s.npy": staged,
    }
    for path, value in cases.items():
        with pytest.raises(PipelineError, match=rf"^{path}: 1 of 15 values( in test)? are NaN or infinite"):
            store.produce(path, root=tmp_path, stage="x", inputs={}, config={}, make=lambda v=value: (v(), {}))
        assert not path.exists() and not store.manifest_path(path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the staged file is gone too


def test_a_killed_write_leaves_nothing_once_its_artifact_is_made_again(tmp_path):
    """A writer killed with -9 leaves its temp files (the artifact's and its manifest's); the next ``produce`` of
    that artifact removes them, never a live writer's (here, this process's) nor, elsewhere, a fresh one."""
    from pipeline import lock

    artifact = tmp_path / "psx.npy"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pipeline import files; "
            "[files.staging(p).write_bytes(b'x' * 100) for p in sys.argv[1:]]; os.kill(os.getpid(), 9)",
            str(artifact),
            str(store.manifest_path(artifact)),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert killed.returncode == -9
    left = sorted(tmp_path.glob(".*.tmp"))
    assert len(left) == 2 and all(socket.gethostname() in p.name for p in left)
    live = files.staging(artifact)  # this process is writing it: kept
    files.staged.remove(live)
    old, fresh = time.time() - lock.STALE_S - 60, time.time()
    others = {".psx.npy.1-5@elsewhere.abcd1234.tmp": (old, False), ".psx.npy.2-5@elsewhere.efgh5678.tmp": (fresh, True)}
    others.update({".psx.npy.oldname1.tmp": (old, False), ".psx.npy.oldname2.tmp": (fresh, True)})  # before owners
    for name, (mtime, _) in others.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    other = tmp_path / ".psx.npy.backup.1-5@elsewhere.abcd1234.tmp"  # another artifact's ("psx.npy.backup")
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    ckpt = tmp_path / ".psx.npy.ckpt.tmp"  # a training's checkpoint, killed mid-write (no writer in its name)
    ckpt.write_bytes(b"x")
    store.produce(artifact, root=tmp_path, stage="combine", inputs={}, config={}, make=lambda: (np.ones(2), {}))
    kept = {live.name, other.name, ckpt.name} | {name for name, (_, stays) in others.items() if stays}
    assert {p.name for p in tmp_path.glob(".*.tmp")} == kept
    # a task that holds the artifact's lock: nobody else writes its files, so every leftover of them goes
    store.produce(
        artifact,
        root=tmp_path,
        stage="combine",
        inputs={},
        config={},
        make=lambda: (np.ones(2), {}),
        force=True,
        lock=True,
    )
    assert {p.name for p in tmp_path.glob(".*.tmp")} == {other.name}


def test_a_sealed_manifest_is_trusted_only_as_written(tmp_path):
    """An edit anywhere in a manifest (its info too, which no checksum covered) makes its artifact, and what was
    made from it, stale: remade on the next run. A manifest without a seal (an older run's) reads as before."""
    a, b = chain(tmp_path, 2)
    path = store.manifest_path(a)
    manifest = json.loads(path.read_text())
    assert manifest["seal"].startswith("sha256:")
    path.write_text(json.dumps({**manifest, "info": {"classes": ["edited"]}}))
    with pytest.raises(PipelineError, match=rf"^{path}: edited after it was written .*rerun make s0 to remake a0.npy"):
        store.verify(a)
    with pytest.raises(PipelineError, match=rf"^{b} is stale: {path}: edited after it was written"):
        store.verify(b)
    make = lambda: (np.arange(3), {})
    assert store.produce(a, root=tmp_path, stage="s0", inputs={}, config={"k": 0}, make=make) == store.Outcome.MADE
    store.verify(a)
    del manifest["seal"]  # as an older run wrote it
    path.write_text(json.dumps(manifest))
    assert store.verify(a)["info"] == {} and store.is_current(a, {}, {"k": 0})


def test_the_chain_survives_moving_the_run(tmp_path):
    chain(tmp_path / "here")
    (tmp_path / "here").rename(tmp_path / "there")
    store.verify(tmp_path / "there" / "a3.npy")


def test_same_config_names_the_odd_one_out():
    assert store.same_config({"a": {"e": 1}, "b": {"e": 1}}, "x") == {"e": 1}
    with pytest.raises(PipelineError, match=r"shards: c was made with e=3 \(others: 1\); 2 other\(s\) agree"):
        store.same_config({"a": {"e": 1}, "b": {"e": 1}, "c": {"e": 3}}, "shards")


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.npy"
    files.save(path, np.arange(3))

    def explode(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(PipelineError, match=r"a\.npy: cannot write it \(No space left on device\)"):
        files.atomic_write(path, explode)
    assert np.array_equal(np.load(path), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_writing_under_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match="file/a.npy: cannot write it"):
        files.save(tmp_path / "file" / "a.npy", np.arange(3))


def test_truncated_npy_is_a_clear_error(tmp_path):
    path = tmp_path / "t.npy"
    files.save(path, np.ones((100, 10), np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(PipelineError, match=str(path)):
        files.load(path)


def write_lock(path, **owner):
    path.write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": lock.started_at(os.getpid()), **owner})
    )
    return path


def test_lock_rules(tmp_path, monkeypatch):
    art = tmp_path / "x.npy"
    path = tmp_path / "x.npy.lock"
    assert not lock.is_stale(write_lock(path))  # this very process: alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert lock.is_stale(write_lock(path, pid=dead.pid))  # owner gone
    assert lock.is_stale(write_lock(path, started=12345))  # pid reused by a later process
    write_lock(path)
    os.utime(path, (time.time() - lock.STALE_S - 5,) * 2)
    assert lock.is_stale(path)  # alive but silent: no heartbeat for too long
    assert not lock.is_stale(write_lock(path, host="elsewhere", pid=1))  # another host, fresh heartbeat
    assert lock.is_stale(write_lock(path, host="elsewhere", pid=1, slurm_job="42", slurm_restart="0")) is False
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert not lock.is_stale(path)  # another task of this same run of the job
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert lock.is_stale(path)  # an earlier run of this requeued SLURM job
    monkeypatch.delenv("SLURM_JOB_ID")
    for damaged in ("garbage", ""):
        path.write_text(damaged)
        assert lock.is_stale(path)  # a lock appears whole (linked once written): this one is damaged
    with lock.TaskLock(art) as held:
        assert held.held and json.loads(path.read_text())["pid"] == os.getpid()
        with lock.TaskLock(art) as second:
            assert not second.held and second.owner == f"{socket.gethostname()}:{os.getpid()}"
    assert not path.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # nor the owner files it linked


def test_a_lock_heartbeat_runs_while_held(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.TaskLock(tmp_path / "y.npy") as held:
        os.utime(held.path, (0, 0))
        deadline = time.time() + 30
        while os.stat(held.path).st_mtime == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert os.stat(held.path).st_mtime > 0
