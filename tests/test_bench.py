"""The benchmark harnesses run end to end on a CPU (their figures are for GPUs; nothing here is timed)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_bench_fold_runs_on_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fold", "--data", "digits", "--cache-dir", str(tmp_path), "--cond", "n40_s0",
         "--device", "cpu", "--subset", "400", "--epochs", "1", "--batch-size", "64", "--lr", "0.1",
         "--paper-steps", "1", "--paper-batch-size", "16", "--json", str(tmp_path / "fold.json")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| ours (airbench, airbench, 1 epochs, 32-true)") for line in lines)
    assert any(line.startswith("| paper (ResNet-50") for line in lines)
    assert "throughput ratio ours / paper" in proc.stdout
    assert "n40_s0 fold 0 of 4: 300 train / 100 held out" in proc.stdout
    assert sum(line.startswith(("| C_", "| C+NR", "| PBC", "| PBNR")) for line in lines) == 5
    figures = json.loads((tmp_path / "fold.json").read_text())
    assert 0.3 < figures["noise_rate"] < 0.5  # generated 40% noise on digits (no paper labels there)
    assert set(figures["ours"]["detection"]) == {"C_confusion", "PBC", "C_{y~,y*}", "C+NR", "PBNR"}


def test_bench_testset_trains_on_every_training_row_and_scores_the_test_set(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.testset", "--data", "digits", "--cache-dir", str(tmp_path), "--device", "cpu",
         "--epochs", "3", "--batch-size", "64", "--lr", "0.2", "--watch", "--json", str(tmp_path / "t.json")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads((tmp_path / "t.json").read_text())
    assert (figures["n_train"], figures["n_test"], figures["noise_rate"]) == (1347, 450, 0.0)
    assert len(figures["curve_test_acc"]) == 3 and figures["test_acc"] > 0.3  # 10 classes: chance is 0.1
    assert f"test accuracy {100 * figures['test_acc']:.2f}% (TTA)" in proc.stdout


def test_gpu_evidence_tiny_runs_every_step(tmp_path):
    """``make gpu-evidence TINY=1``: the three steps on digits, then the report and timings in OUT (a generous
    budget: a busy machine must not stop a step)."""
    out = tmp_path / "out"
    proc = subprocess.run(["make", "-s", "gpu-evidence", "TINY=1", f"RUN={tmp_path / 'run'}", f"OUT={out}",
                           f"PY={sys.executable}", "SETUP=", "EVIDENCE_ARGS=--budget-s 7200"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    timings = json.loads((out / "timings.json").read_text())
    assert timings["device"] == "cpu"
    assert len(timings["crossval_s"]) == 6 and all(s > 0 for s in timings["crossval_s"].values())
    assert len(timings["coteach_s"]) == 2 * 9 and all(s > 0 for s in timings["coteach_s"].values())
    assert set(timings["bench"]) == {"bench-n0_s0", "bench-n40_s0", "bench-n0_s0compile", "bench-n40_s0labelsmoothing"}
    assert all(c["rc"] == 0 for c in timings["steps"]), timings["steps"]
    assert (out / "table.md").exists() and (out / "noise_matrices.png").exists()
    # A machine that starts empty: pack, unpack elsewhere, and step b finds every fold current.
    from bench.evidence import pack

    parts = pack(tmp_path / "run-tiny-evidence", out, tmp_path / "pack")
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    again = subprocess.run([sys.executable, "-m", "bench.evidence", "--step", "b", "--tiny", "--unpack", str(tmp_path / "pack"),
                            "--run-dir", str(tmp_path / "run2"), "--out", str(tmp_path / "out2"), "--budget-s", "7200"],
                           cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "crossval: 0 of 6 (condition, fold) tasks to run" in again.stdout, again.stdout[-3000:]
    assert (tmp_path / "out2" / "table.md").exists()
    resumed = json.loads((tmp_path / "out2" / "timings.json").read_text())
    assert resumed["crossval_s"] == timings["crossval_s"] and len(resumed["steps"]) > len(timings["steps"])
