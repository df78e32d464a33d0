"""Kill -9 at random points, restart, and get exactly what an uninterrupted run gives; determinism; locks."""

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, stage

from pipeline import files, store
from pipeline.devices import TaskContext
from pipeline.layout import RunDir
from pipeline.lock import TaskLock
from stages import coteach, crossval

SHORT = ["--folds", "3", "--epochs", "2", "--batch-size", "128", "--gpu", "cpu"]
SLOW_FOLD = [
    "--folds",
    "3",
    "--epochs",
    "4",
    "--batch-size",
    "64",
    "--gpu",
    "cpu",
    "--cond",
    "n40_s40",
    "--fold",
    "all",
]


def intact(run: RunDir) -> int:
    """Assert every artifact that has a manifest matches its checksum; return how many there are."""
    manifests = list(run.root.rglob("*.manifest.json"))
    for m in manifests:
        store.verify(m.with_name(m.name[: -len(".manifest.json")]))
    return len(manifests)


def start(run: RunDir, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}", "--run-dir", str(run.root), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def kill_after_lines(proc: subprocess.Popen, lines: int, rng: random.Random) -> bool:
    """SIGKILL ``proc`` once it has printed ``lines`` progress lines, at once (so inside the checkpoint or
    shard write that follows the line) or after a random fraction of the last epoch's own duration (so
    mid-epoch): the kill points follow the stage's progress, not the clock, however busy the machine is.
    True if the process was still running when killed."""
    seen = 0
    for line in proc.stdout:
        seen += 1
        if seen == lines:
            took = re.search(r"\(([\d.]+) s\)$", line.strip())
            if took and rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.9) * float(took[1]))
            alive = proc.poll() is None
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return alive
    proc.wait()
    return False


def test_sigkill_anywhere_loses_nothing_and_changes_nothing(folds_run, tmp_path):
    run = RunDir(shutil.copytree(folds_run, tmp_path / "run"))
    for k in (0, 1, 2):
        run.shard("n40_s40", k).unlink()
        store.manifest_path(run.shard("n40_s40", k)).unlink()
    # The uninterrupted result for these settings, in a second copy.
    clean = RunDir(shutil.copytree(folds_run, tmp_path / "clean"))
    stage("crossval", clean.root, *SLOW_FOLD, "--force")
    stage("combine", clean.root, "--cond", "n40_s40")

    def work_left() -> bool:
        return any(
            not run.shard("n40_s40", k).exists() or os.path.exists(f"{run.shard('n40_s40', k)}.ckpt") for k in (0, 1, 2)
        )

    # Each try is killed within its first 4 progress lines (of 17: task count, 12 epochs, 3 shards, time), at
    # once or a random fraction of an epoch later. On a busy machine a try can finish before its kill: tries go
    # on until three were killed while working, and if every fold is done first, fold 2 is made again.
    rng = random.Random(0)
    kills = tries = 0
    while tries < 8 or kills < 3:
        tries += 1
        assert tries <= 30, f"{kills} of {tries} tries were killed while working"
        if not work_left():
            run.shard("n40_s40", 2).unlink()
            store.manifest_path(run.shard("n40_s40", 2)).unlink()
        kills += kill_after_lines(start(run, "crossval", *SLOW_FOLD), rng.randint(1, 4), rng)
        intact(run)
    rerun = stage("crossval", run.root, *SLOW_FOLD)
    assert all(run.shard("n40_s40", k).exists() for k in (0, 1, 2)), rerun.stdout
    for _ in range(3):  # kill combine too, mostly during start-up, sometimes while writing (not counted)
        proc = start(run, "combine", "--cond", "n40_s40")
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        intact(run)
    stage("combine", run.root, "--cond", "n40_s40")
    print(f"\nkills survived: {kills} of {tries} tries, artifacts checked intact after each: {intact(run)}")
    for k in (0, 1, 2):
        a, b = files.load(run.shard("n40_s40", k)), files.load(clean.shard("n40_s40", k))
        assert np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["probs"], b["probs"])
        assert not os.path.exists(f"{run.shard('n40_s40', k)}.ckpt")
    assert np.array_equal(files.load(run.psx("n40_s40")), files.load(clean.psx("n40_s40")))


def test_same_seed_gives_the_same_shard_bytes(run_copy):
    run = RunDir(run_copy)
    before = run.shard("n20_s0", 0).read_bytes()
    stage(
        "crossval",
        run.root,
        "--fold",
        "0",
        "--cond",
        "n20_s0",
        "--folds",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--gpu",
        "cpu",
        "--force",
    )
    assert run.shard("n20_s0", 0).read_bytes() == before


def test_a_live_lock_makes_the_second_process_step_aside(run_copy):
    run = RunDir(run_copy)
    run.shard("n20_s0", 2).unlink()
    with TaskLock(run.shard("n20_s0", 2)) as held:
        assert held.held
        out = stage("crossval", run.root, "--fold", "2", "--cond", "n20_s0", *SHORT).stdout
        assert "is being made by" in out and not run.shard("n20_s0", 2).exists()


@pytest.mark.parametrize("owner", ["dead", "reused pid", "silent"])
def test_a_stale_lock_is_taken_over(run_copy, owner):
    run = RunDir(run_copy)
    run.shard("n20_s0", 2).unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid = {"dead": dead.pid, "reused pid": 1, "silent": os.getpid()}[owner]
    started = {"dead": None, "reused pid": -1, "silent": None}[owner]
    lock_path = Path(f"{run.shard('n20_s0', 2)}.lock")
    lock_path.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": started}))
    if owner == "silent":  # a live process whose heartbeat stopped long ago
        os.utime(lock_path, (time.time() - 3600,) * 2)
    stage("crossval", run.root, "--fold", "2", "--cond", "n20_s0", *SHORT)
    assert run.shard("n20_s0", 2).exists() and not lock_path.exists()


def leftovers(run: RunDir) -> list[str]:
    """Temp files and locks left in the run (a clean stop leaves neither)."""
    return [p.name for p in run.root.rglob("*") if p.name.endswith((".tmp", ".lock"))]


@pytest.mark.parametrize(
    "sig,status,then",
    [
        (signal.SIGUSR1, 143, "resume"),
        (signal.SIGINT, 130, "truncate the checkpoint"),
        (signal.SIGTERM, 143, "force"),
    ],
)
def test_a_signal_stops_cleanly_and_the_rerun_resumes_or_starts_afresh(run_copy, sig, status, then):
    run = RunDir(run_copy)
    shard = run.shard("n20_s0", 0)
    ckpt = Path(f"{shard}.ckpt")
    shard.unlink()
    flags = ["--fold", "0", "--cond", "n20_s0", "--folds", "3", "--epochs", "20", "--batch-size", "128", "--gpu", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.crossval", "--run-dir", str(run.root), *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err.strip().splitlines()[-1] == (
        "interrupted; finished artifacts and the last epoch's checkpoint are kept"
        if sig == signal.SIGINT
        else "stopped by a signal; the last epoch's checkpoint is kept: rerun to resume"
    )
    assert ckpt.exists() and not shard.exists() and not leftovers(run)
    if then == "truncate the checkpoint":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    again = stage("crossval", run.root, *flags, *(["--force"] if then == "force" else []))  # the rerun: in this process
    resumed = re.search(r"resuming \S+ from epoch (\d+)", again.stdout)
    if then == "resume":
        assert resumed and int(resumed[1]) >= 1
        assert f": epoch {int(resumed[1]) + 1}/20 " in again.stdout and ": epoch 1/20 " not in again.stdout
    else:
        assert not resumed and ": epoch 1/20 " in again.stdout
    assert ("discarding unreadable checkpoint" in again.stderr) == (then == "truncate the checkpoint")
    assert shard.exists() and not ckpt.exists() and not leftovers(run)


def test_garbage_checkpoint_is_discarded(run_copy):
    run = RunDir(run_copy)
    run.shard("n20_s0", 1).unlink()
    Path(f"{run.shard('n20_s0', 1)}.ckpt").write_bytes(b"\x80garbage")
    proc = stage("crossval", run.root, "--fold", "1", "--cond", "n20_s0", *SHORT)
    assert "warning: discarding unreadable checkpoint" in proc.stderr and run.shard("n20_s0", 1).exists()


@pytest.mark.parametrize("stage_obj", [crossval.STAGE, coteach.STAGE], ids=lambda s: s.name)
def test_a_diverging_training_fails_and_writes_nothing(run_copy, stage_obj, monkeypatch):
    """The options refuse an absurd --lr (a config checks itself whenever it is made or resolved), so the training
    is forced past the checks to make it blow up: crossval's resolved training, coteach's config."""
    run = RunDir(run_copy)
    if stage_obj is crossval.STAGE:
        config, task = crossval.CrossvalConfig(folds=3, epochs=2, batch_size=128), ("n20_s0", 0)
        run.shard("n20_s0", 0).unlink()
        resolve = crossval.TrainingConfig.training
        monkeypatch.setattr(
            crossval.TrainingConfig, "training", lambda self, n: dataclasses.replace(resolve(self, n), lr=1e30)
        )
    else:
        stage("combine", run.root)
        config = coteach.CoteachConfig(epochs=2, batch_size=128, epoch_decay_start=1, num_gradual=1)
        task = ("n20_s0", "none", "coteaching", 0)
        object.__setattr__(config, "lr", 1e30)
    with pytest.raises(
        store.PipelineError, match=r"training diverged: mean loss (nan|inf) in epoch 1; nothing written"
    ):
        stage_obj.run(run, task, config, TaskContext(torch.device("cpu")))
    out = stage_obj.target(run, task, config)[0]
    assert not out.exists() and not store.ckpt_path(out).exists() and not leftovers(run)


@pytest.mark.parametrize("stage_obj", [crossval.STAGE, coteach.STAGE], ids=lambda s: s.name)
def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_same_result(run_copy, stage_obj):
    """The last epoch's checkpoint is on disk but the artifact is not (killed in between): resuming trains
    nothing, and whatever follows the last epoch (the lookahead's final average) must still happen."""
    run = RunDir(run_copy)
    if stage_obj is crossval.STAGE:
        config, task = crossval.CrossvalConfig(folds=3, epochs=2, batch_size=128), ("n20_s0", 0)
    else:
        stage("combine", run.root)
        config = coteach.CoteachConfig(epochs=2, batch_size=128, epoch_decay_start=1, num_gradual=1)
        task = ("n20_s0", "none", "coteaching", 0)
    out, inputs, task_config = stage_obj.target(run, task, config)
    tag = {"config": task_config, "inputs": {k: files.checksum(p) for k, p in inputs.items()}}
    ckpt = run.root / "task.ckpt"
    first, _ = stage_obj.make(run, task, config, TaskContext(torch.device("cpu")), ckpt, tag)
    assert ckpt.exists()
    again, _ = stage_obj.make(run, task, config, TaskContext(torch.device("cpu")), ckpt, tag)
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")


@pytest.fixture
def tiny_disk(folds_run, tmp_path):
    """A copy of the digits run on a tmpfs with room for it and little more (root only)."""
    mount = tmp_path / "disk"
    used = sum(p.stat().st_size for p in folds_run.rglob("*") if p.is_file())
    mount_tmpfs(mount, f"{used // 1024 + 400}k")
    try:
        yield RunDir(shutil.copytree(folds_run, mount / "run"))
    finally:
        subprocess.run(["umount", "-l", str(mount)])


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tiny_disk):
    run = tiny_disk
    shard = run.shard("n20_s0", 0)
    shard.unlink()
    store.manifest_path(shard).unlink()
    err = stage("crossval", run.root, "--fold", "0", "--cond", "n20_s0", *SHORT, ok=False).stderr.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(run.root) in err, err
    assert not shard.exists() and not leftovers(run)
    for art in run.root.rglob("*.manifest.json"):
        store.verify(art.with_name(art.name[: -len(".manifest.json")]))


def test_a_read_only_run_is_one_line(tiny_disk):
    run = tiny_disk
    subprocess.run(["mount", "-o", "remount,ro", str(run.root.parent)], check=True)
    for name, args in (
        ("combine", []),
        ("crossval", ["--fold", "0", *SHORT, "--force"]),
        ("noise", ["--remove", "n20_s0"]),
    ):
        err = stage(name, run.root, *args, ok=False).stderr.strip()
        assert err == f"error: {run.root}: the run directory is not writable", err
