"""SLURM arrays through submitit against a real one-node cluster (slurm/local-cluster.sh).

Skipped, with the reason, where the cluster cannot start (no SLURM packages, not root, ...);
.ci/run installs the packages first."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from pipeline import files
from pipeline.layout import RunDir
from stages import crossval

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]  # one cluster: its tests on one worker

CLUSTER = ROOT / "slurm" / "local-cluster.sh"
ON_CPU = ["--gpus-per-task", "0", "--cpus-per-task", "1", "--time", "10", "--poll", "1"]
FAST = ["--folds", "3", "--epochs", "2", "--batch-size", "128"]


@pytest.fixture(scope="session")
def slurm_env():
    """The environment for SLURM clients (SLURM_CONF); starts the local cluster, stops it after if it started it."""
    missing = [b for b in ("sbatch", "squeue", "scancel", "slurmctld", "slurmd", "munged") if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed (no {', '.join(missing)}): apt-get install slurmctld slurmd slurm-client munge"
        )
    was_up = subprocess.run([CLUSTER, "status"], capture_output=True).returncode == 0
    proc = subprocess.run([CLUSTER, "start"], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        reason = " | ".join((proc.stderr + proc.stdout).strip().splitlines()[-3:])
        print(f"SLURM tests skipped: {reason}", file=sys.stderr)
        pytest.skip(f"the local SLURM cluster did not start: {reason}")
    conf = re.search(r"export SLURM_CONF=(\S+)", proc.stdout).group(1)
    yield {**os.environ, "SLURM_CONF": conf}
    if not was_up:
        subprocess.run([CLUSTER, "stop"], capture_output=True)


@pytest.fixture
def noisy_run(run_copy) -> RunDir:
    """A copy of the session's digits run without its folds: data and noise done, crossval pending."""
    for folds in run_copy.glob("conditions/*/folds"):
        shutil.rmtree(folds)
    return RunDir(run_copy)


def submit_cmd(stage_name: str, run: RunDir, *args: str) -> list[str]:
    return [sys.executable, "-m", "slurm.submit", stage_name, "--run-dir", str(run.root), *args]


def submit(env, stage_name: str, run: RunDir, *args: str) -> str:
    proc = subprocess.run(
        submit_cmd(stage_name, run, *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"slurm.submit exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_crossval_array_then_combine_array(slurm_env, noisy_run):
    run, cond = noisy_run, "n20_s0"
    out = submit(slurm_env, "crossval", run, "--cond", cond, *FAST, *ON_CPU, "--wait")
    job = re.search(r"submitted array job (\d+) \(cl-crossval\): 3 task\(s\)", out)
    assert job, out
    assert "all 3 task(s) done" in out
    listing = files.load(run.root / "slurm" / "cl-crossval-tasks.json")
    assert listing["tasks"] == [[cond, 0], [cond, 1], [cond, 2]]
    for k in range(3):  # array index k ran task k, and logged it
        log = (run.root / "slurm" / "logs" / f"{job[1]}_{k}" / f"{job[1]}_{k}_0_log.out").read_text()
        assert f"wrote {run.shard(cond, k)}" in log

    out = submit(
        slurm_env, "combine", run, "--cond", cond, *ON_CPU[2:], "--wait"
    )  # a stage that trains nothing: no GPU asked
    job = re.search(r"submitted job (\d+) \(cl-combine\): 1 task\(s\)", out)
    assert job and "all 1 task(s) done" in out, out
    log = (run.root / "slurm" / "logs" / job[1] / f"{job[1]}_0_log.out").read_text()
    assert f"wrote: {run.psx(cond)}" in log, log
    noisy = files.load(run.labels(cond))
    psx = files.load(run.psx(cond))
    assert psx.shape == (len(noisy), 10) and np.allclose(psx.sum(1), 1, atol=1e-5)

    again = submit(slurm_env, "crossval", run, "--cond", cond, *FAST, *ON_CPU, "--wait")
    assert "nothing to submit: all 3 (condition, fold) tasks are current" in again and "submitted" not in again


def test_signalled_task_is_requeued_and_resumes_from_its_checkpoint(slurm_env, noisy_run):
    run, cond = noisy_run, "n20_s0"
    train = ["--cond", cond, "--fold", "0,1", "--folds", "3", "--epochs", "8", "--batch-size", "128"]
    proc = subprocess.Popen(
        submit_cmd("crossval", run, *train, *ON_CPU, "--wait"),
        cwd=ROOT,
        env=slurm_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    head, job, ckpt = "", None, Path(f"{run.shard(cond, 0)}.ckpt")
    try:
        while job is None and (line := proc.stdout.readline()):
            head += line
            job = re.search(r"submitted array job (\d+)", line)
        assert job, head + proc.stderr.read()
        deadline = time.time() + 600
        while not ckpt.exists() and time.time() < deadline:  # fold 0 finished an epoch
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint after 600 s"
        element = f"{job[1]}_0"
        subprocess.run(["scancel", "--signal=USR1", element], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            if job:
                subprocess.run(["scancel", job[1]], env=slurm_env)
    assert proc.returncode == 0, head + out + err
    assert "all 2 task(s) done" in out

    log = (run.root / "slurm" / "logs" / element / f"{element}_0_log.out").read_text()
    assert "Caught signal SIGUSR1" in log and f"Requeued job {element}" in log, log
    resumed = re.search(r"resuming \S+fold0\.npz\.ckpt from epoch (\d+)", log)
    assert resumed and int(resumed[1]) >= 1, log
    assert log.count("crossval: n20_s0 fold 0 on cpu") == 2  # ran twice: before and after the requeue
    other = (run.root / "slurm" / "logs" / f"{job[1]}_1" / f"{job[1]}_1_0_log.out").read_text()
    assert "resuming" not in other and f"wrote {run.shard(cond, 1)}" in other

    config = crossval.CrossvalConfig(folds=3, epochs=8, batch_size=128)
    assert crossval.STAGE.pending(run, [(cond, 0), (cond, 1)], config) == []  # both shards current
    assert not ckpt.exists()


def test_the_one_sbatch_template_runs_a_task_list_without_submitit(slurm_env, noisy_run):
    """--tasks-only writes the list and prints the sbatch command for slurm/array.sbatch, the template of every
    stage; run as printed (plus --wait), its element makes the task's artifact."""
    run, cond = noisy_run, "n20_s0"
    out = submit(slurm_env, "crossval", run, "--cond", cond, "--fold", "0", *FAST, *ON_CPU, "--tasks-only")
    cmd = shlex.split(out.split("submit it with:\n", 1)[1].strip().splitlines()[0])
    assert cmd[0] == "sbatch" and cmd[-1] == str(ROOT / "slurm" / "array.sbatch") and "--job-name=cl-crossval" in cmd
    env = {**slurm_env, "CL_PYTHON": sys.executable}
    proc = subprocess.run(
        [*cmd[:-1], "--wait", cmd[-1]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = crossval.CrossvalConfig(folds=3, epochs=2, batch_size=128)  # FAST
    assert crossval.STAGE.pending(run, [(cond, 0)], config) == []
