"""The benchmark harness runs end to end on a CPU (its figures are for GPUs; nothing here is timed)."""

import subprocess
import sys

from conftest import ROOT


def test_bench_fold_runs_on_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fold", "--data", "digits", "--cache-dir", str(tmp_path),
         "--device", "cpu", "--subset", "400", "--epochs", "1", "--paper-steps", "1", "--paper-batch-size", "16"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| fast (convnet, 1 epochs)") for line in lines)
    assert any(line.startswith("| paper (ResNet-50") for line in lines)
    assert "throughput ratio fast / paper" in proc.stdout
    assert "300 train / 100 held out" in proc.stdout
