"""The local launcher (--gpus / make crossval-all GPUS=...): one worker process per listed device."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_CROSSVAL, ROOT, stage

from pipeline import conditions
from pipeline.errors import PipelineError
from pipeline.layout import RunDir


@pytest.fixture
def run_dir(run_copy) -> RunDir:
    """A copy of the session's digits run (two conditions) without its folds."""
    for folds in run_copy.glob("conditions/*/folds"):
        shutil.rmtree(folds)
    return RunDir(run_copy)


def written(stdout: str) -> list[str]:
    return re.findall(r"wrote (\S+)", stdout)


@pytest.mark.parametrize("workers", [["--gpus", "cpu,cpu"], ["--workers-per-gpu", "2"]], ids=["gpus", "per-gpu"])
def test_two_cpu_workers_run_every_task_exactly_once(run_dir, workers):
    out = stage("crossval", run_dir.root, "--fold", "all", *FAST_CROSSVAL, *workers).stdout
    threads = max(1, os.cpu_count() // 2)
    assert f"6 of 6 (condition, fold) tasks to run on 2 worker(s) (cpu,cpu), {threads} host thread(s) each" in out
    expected = {str(run_dir.shard(c, k)) for c in conditions.names(run_dir) for k in range(3)}
    assert sorted(written(out)) == sorted(expected)  # each shard once
    assert {"worker0[cpu]", "worker1[cpu]"} <= set(re.findall(r"worker\d\[cpu\]", out))
    assert "0 of 6" in stage("crossval", run_dir.root, "--fold", "all", *FAST_CROSSVAL, *workers).stdout


def test_workers_per_gpu_repeats_each_device_and_refuses_nonsense(capsys):
    from pipeline import workers
    from stages import crossval

    def devices(*flags):
        return workers.worker_devices(workers.parsed(crossval.STAGE, list(flags))[3], crossval.STAGE)

    assert devices("--gpus", "0,1", "--workers-per-gpu", "3") == ["0", "1"] * 3
    assert devices("--gpu", "2", "--workers-per-gpu", "4") == ["2"] * 4
    assert devices("--gpu", "2") is None and devices("--gpus", "cpu") == ["cpu"]
    expected = f"expected an integer in [1, {workers.MAX_WORKERS_PER_GPU}]"
    for bad in ("0", "-1", "65"):  # out of range: refused by the options' dataclass, as from Python
        with pytest.raises(PipelineError, match=re.escape(f"--workers-per-gpu {int(bad)}: {expected}")):
            workers.parsed(crossval.STAGE, ["--workers-per-gpu", bad])
    for bad in ("x", "1.5"):  # not an integer: refused by the parser
        with pytest.raises(SystemExit) as stop:
            workers.parsed(crossval.STAGE, ["--workers-per-gpu", bad])
        err = capsys.readouterr().err
        assert (
            stop.value.code == 2 and err.count("\n") == 1 and f"--workers-per-gpu: {bad!r}: expected an integer" in err
        )


def test_failing_task_does_not_stop_the_others_and_rerun_does_only_it(run_dir):
    labels = run_dir.labels("n40_s40")
    good = labels.read_bytes()
    labels.write_bytes(b"not an npy file")
    args = ["--fold", "0,1", *FAST_CROSSVAL, "--gpus", "cpu,cpu"]
    proc = stage("crossval", run_dir.root, *args, ok=False)
    assert sorted(written(proc.stdout)) == sorted(str(run_dir.shard("n20_s0", k)) for k in (0, 1))
    assert len(re.findall(r"FAILED n40_s40 fold \d: \S+labels\.npy: changed since it was made", proc.stdout)) == 2
    assert (
        "2 of 4 crossval task(s) failed" in proc.stderr and "re-running does only what is still pending" in proc.stderr
    )
    before = {k: run_dir.shard("n20_s0", k).stat().st_mtime_ns for k in (0, 1)}

    labels.write_bytes(good)
    out = stage("crossval", run_dir.root, *args).stdout
    assert "2 of 4" in out
    assert sorted(written(out)) == sorted(str(run_dir.shard("n40_s40", k)) for k in (0, 1))
    assert {k: run_dir.shard("n20_s0", k).stat().st_mtime_ns for k in (0, 1)} == before


def test_killed_worker_loses_only_its_task_which_resumes_on_rerun(run_dir):
    args = ["--fold", "all", "--cond", "n20_s0", "--folds", "3", "--epochs", "3", "--batch-size", "128", "--gpu", "cpu"]
    cmd = [sys.executable, "-m", "stages.crossval", "--run-dir", str(run_dir.root), *args, "--gpus", "cpu,cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shard = run_dir.shard("n20_s0", 0)
    ckpt, lock = Path(f"{shard}.ckpt"), Path(f"{shard}.lock")
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), "fold 0 wrote no checkpoint"
        victim = json.loads(lock.read_text())["pid"]
        assert victim != proc.pid
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out + err
    assert re.search(r"worker\d\[cpu\] died \(exit code -9\) while running n20_s0 fold 0", out), out
    assert sorted(written(out)) == sorted(str(run_dir.shard("n20_s0", k)) for k in (1, 2))
    assert ckpt.exists() and not shard.exists()

    again = stage("crossval", run_dir.root, *args, "--gpus", "cpu,cpu").stdout
    assert "1 of 3" in again and written(again) == [str(shard)]
    m = re.search(r"resuming \S+fold0\.npz\.ckpt from epoch (\d+)", again)
    assert m and int(m.group(1)) >= 1, again
    assert not ckpt.exists() and not lock.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the CPU fallback: a machine without CUDA")
def test_without_cuda_every_device_spec_falls_back_to_the_cpu():
    import torch

    from pipeline import devices

    assert devices.pick("0") == devices.pick("cpu") == torch.device("cpu")
    assert devices.parse_gpus("all") == ["cpu"] and devices.name(torch.device("cpu")) == "cpu"
