"""Kill -9 at random points, restart, and get exactly what an uninterrupted run gives; determinism; locks."""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT, stage
from pipeline import store
from pipeline.layout import RunDir

SLOW_FOLD = ["--folds", "3", "--epochs", "6", "--batch-size", "64", "--gpu", "cpu", "--cond", "n40_s40", "--fold", "0,1"]


def intact(run: RunDir) -> int:
    """Assert every artifact that has a manifest matches its checksum; return how many there are."""
    manifests = list(run.root.rglob("*.manifest.json"))
    for m in manifests:
        store.read_manifest(m.with_name(m.name[: -len(".manifest.json")]))
    return len(manifests)


def start(run: RunDir, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"stages.{name}", "--run-dir", str(run.root), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_anywhere_loses_nothing_and_changes_nothing(folds_run, tmp_path):
    run = RunDir(shutil.copytree(folds_run, tmp_path / "run"))
    for k in (0, 1):
        run.shard("n40_s40", k).unlink()
        store.manifest_path(run.shard("n40_s40", k)).unlink()
    # The uninterrupted result for these settings, in a second copy.
    clean = RunDir(shutil.copytree(folds_run, tmp_path / "clean"))
    stage("crossval", clean.root, *SLOW_FOLD, "--force")
    stage("combine", clean.root, "--folds", "3", "--cond", "n40_s40")

    rng = random.Random(0)
    kills = 0
    for _ in range(8):
        proc = start(run, "crossval", *SLOW_FOLD)
        time.sleep(rng.uniform(2.0, 9.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        intact(run)
    stage("crossval", run.root, *SLOW_FOLD)
    for _ in range(3):  # kill combine too, mostly during start-up, sometimes while writing
        proc = start(run, "combine", "--folds", "3", "--cond", "n40_s40")
        time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        intact(run)
    stage("combine", run.root, "--folds", "3", "--cond", "n40_s40")
    print(f"\nkills survived: {kills}, artifacts checked intact after each: {intact(run)}")
    assert kills >= 4
    for k in (0, 1):
        a, b = store.load_npz(run.shard("n40_s40", k)), store.load_npz(clean.shard("n40_s40", k))
        assert np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["probs"], b["probs"])
        assert not os.path.exists(f"{run.shard('n40_s40', k)}.ckpt")
    assert np.array_equal(store.load_npy(run.psx("n40_s40")), store.load_npy(clean.psx("n40_s40")))


def test_same_seed_gives_the_same_shard_bytes(run_copy):
    run = RunDir(run_copy)
    before = run.shard("n20_s0", 0).read_bytes()
    stage("crossval", run.root, "--fold", "0", "--cond", "n20_s0", "--folds", "3", "--epochs", "2",
          "--batch-size", "128", "--gpu", "cpu", "--force")
    assert run.shard("n20_s0", 0).read_bytes() == before


def test_a_live_lock_makes_the_second_process_step_aside(run_copy):
    run = RunDir(run_copy)
    run.shard("n20_s0", 2).unlink()
    lock = store.TaskLock(run.shard("n20_s0", 2))
    assert lock.acquire()
    try:
        out = stage("crossval", run.root, "--fold", "2", "--cond", "n20_s0", "--folds", "3", "--epochs", "2",
                    "--batch-size", "128", "--gpu", "cpu").stdout
        assert "is being made by" in out and not run.shard("n20_s0", 2).exists()
    finally:
        lock.release()


def test_a_dead_owners_lock_is_taken_over(run_copy):
    run = RunDir(run_copy)
    run.shard("n20_s0", 2).unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path = f"{run.shard('n20_s0', 2)}.lock"
    with open(lock_path, "w") as f:
        f.write('{"host": "%s", "pid": %d, "since": 0}' % (socket.gethostname(), dead.pid))
    stage("crossval", run.root, "--fold", "2", "--cond", "n20_s0", "--folds", "3", "--epochs", "2",
          "--batch-size", "128", "--gpu", "cpu")
    assert run.shard("n20_s0", 2).exists() and not os.path.exists(lock_path)


def test_sigusr1_stops_with_143_and_the_rerun_resumes(run_copy):
    run = RunDir(run_copy)
    ckpt = f"{run.shard('n20_s0', 0)}.ckpt"
    cmd = [sys.executable, "-m", "stages.crossval", "--run-dir", str(run.root), "--fold", "0", "--cond", "n20_s0",
           "--folds", "3", "--epochs", "200", "--batch-size", "128", "--gpu", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "checkpoint is kept" in err
    assert os.path.exists(ckpt) and not os.path.exists(f"{run.shard('n20_s0', 0)}.lock")
    again = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = again.stdout.readline() + again.stdout.readline()
    again.kill()
    again.wait()
    assert "resuming" in first and "from epoch" in first and " from epoch 0" not in first


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    artifact = tmp_path / "x.npy"
    with open(f"{artifact}.lock", "w") as f:  # held by a live process on another node, same SLURM job
        f.write('{"host": "node-that-died", "pid": 1, "since": 0, "slurm_job": "4242"}')
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    assert not store.TaskLock(artifact).acquire()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    lock = store.TaskLock(artifact)
    assert lock.acquire()
    lock.release()
