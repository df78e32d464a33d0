"""The benchmark harnesses run end to end on a CPU (their figures are for GPUs; nothing here is timed)."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import ROOT

from pipeline.layout import RunDir


def test_bench_fold_runs_on_cpu(tmp_path):
    """With the recipe's own batch (the batch that follows the set's size: no --batch-size, no --lr)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fold",
            "--data",
            "digits",
            "--cache-dir",
            str(tmp_path),
            "--cond",
            "n40_s0",
            "--device",
            "cpu",
            "--subset",
            "400",
            "--epochs",
            "1",
            "--paper-steps",
            "1",
            "--paper-batch-size",
            "16",
            "--json",
            str(tmp_path / "fold.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| ours (airbench, airbench, 1 epochs, 32-true)") for line in lines)
    assert any(line.startswith("| paper (ResNet-50") for line in lines)
    assert "throughput ratio ours / paper" in proc.stdout
    assert "n40_s0 fold 0 of 4: 300 train / 100 held out" in proc.stdout
    assert sum(line.startswith(("| C_", "| C+NR", "| PBC", "| PBNR")) for line in lines) == 5
    figures = json.loads((tmp_path / "fold.json").read_text())
    assert (figures["config"]["batch_size"], figures["paper_batch_size"]) == (16, 16)  # 300 rows: at least MIN_BATCH
    assert 0.3 < figures["noise_rate"] < 0.5  # generated 40% noise on digits (no paper labels there)
    assert set(figures["ours"]["detection"]) == {"C_confusion", "PBC", "C_{y~,y*}", "C+NR", "PBNR"}


def test_bench_testset_trains_on_every_training_row_and_scores_the_test_set(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.testset",
            "--data",
            "digits",
            "--cache-dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--lr",
            "0.2",
            "--watch",
            "--json",
            str(tmp_path / "t.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads((tmp_path / "t.json").read_text())
    assert (figures["n_train"], figures["n_test"], figures["noise_rate"]) == (1347, 450, 0.0)
    assert len(figures["curve_test_acc"]) == 3 and figures["test_acc"] > 0.3  # 10 classes: chance is 0.1
    assert f"test accuracy {100 * figures['test_acc']:.2f}% (TTA)" in proc.stdout


def test_gpu_evidence_tiny_runs_every_step_in_one_call(tmp_path):
    """``make gpu-evidence TINY=1``: steps (a)-(e) on digits in one call (a generous budget: a busy machine must
    not stop a step); what comes back is at most 8 files of at most 16 MiB in one folder."""
    import tarfile

    out = tmp_path / "out"
    proc = subprocess.run(
        [
            "make",
            "-s",
            "gpu-evidence",
            "TINY=1",
            f"RUN={tmp_path / 'run'}",
            f"OUT={out}",
            f"PY={sys.executable}",
            "SETUP=",
            "EVIDENCE_ARGS=--budget-s 7200",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["log.txt", "report.tar.gz", "summary.md", "table.md", "timings.json"]
    assert all((out / f).is_file() and (out / f).stat().st_size <= 16 * 2**20 for f in files)
    fig = json.loads((out / "timings.json").read_text())
    assert fig["device"] == "cpu" and "errors" not in fig
    assert fig["commands"] and all(c["rc"] == 0 for c in fig["commands"]), fig["commands"]
    assert set(fig["bench"]) == {"plain", "compiled"} and fig["bench"]["compiled"]["compile"] is True
    cv = fig["crossval"]
    assert [(r["workers"], r["tasks"]) for r in cv["rounds"]] == [(1, 1), (2, 2)] and cv["rest"]["tasks"] == 3
    assert len(cv["fold_s"]) == 6 and all(s > 0 for s in cv["fold_s"].values()) and len(cv["complete_conditions"]) == 2
    ct = fig["coteach"]
    assert (ct["epochs"], ct["tasks"], len(ct["task_s"])) == (2, 18, 18) and set(ct["probe"]["epoch_s"]) == {
        "coteaching",
        "plain",
    }
    ex = fig["extrapolation"]
    assert ex["crossval_52_folds_s"] > 0 and ex["grid_250_epochs_s"] > ex["grid_2_epochs_s"] > 0
    summary = (out / "summary.md").read_text()
    assert "(c) crossval calibration" in summary and "grid_250_epochs_s" in summary
    with tarfile.open(out / "report.tar.gz") as tar:
        names = tar.getnames()
    assert "report/table.md" in names and {"bench/bench-plain.json", "bench/bench-compiled.json"} <= set(names)


def test_the_coteach_epochs_chosen_fit_the_time_left():
    from bench.evidence import PAPER_COTEACH, _epochs_that_fit, _schedule

    assert _schedule(250) == PAPER_COTEACH and _schedule(25) == {"epochs": 25, "epoch_decay_start": 8, "num_gradual": 1}
    probe = {"epoch_s": {"coteaching": 2.0, "plain": 1.0}, "task_overhead_s": 3.0}
    # 9 tasks per condition: 6 coteaching (2 s/epoch) + 3 single (1 s/epoch) = 15 s per epoch, 27 s fixed.
    assert _epochs_that_fit(15 * 10 + 27, 1, 1, probe, 1.0) == 10
    assert _epochs_that_fit((15 * 10 + 27) / 4, 1, 4, probe, 1.0) == 10  # four workers at once
    assert _epochs_that_fit(20, 1, 1, probe, 1.0) == 0
    assert (
        _epochs_that_fit(2 * (15 * 10 + 27), 2, 1, {**probe, "epoch_s": {"coteaching": 2.0}}, 1.0) == 10
    )  # plain = half


def test_the_gpu_kit_carries_what_the_gpu_machine_lacks_and_its_command_fits(tmp_path):
    from bench import gpu_kit

    need = gpu_kit.missing()
    assert {"cleanlab", "submitit", "termcolor"} <= set(need) and not set(need) & gpu_kit.gpu_machine()
    assert {"torch", "pytorch-lightning", "scikit-learn", "pandas", "scipy"} <= gpu_kit.gpu_machine()
    assert len(gpu_kit.COMMAND) <= gpu_kit.COMMAND_CHARS and "--no-index" in gpu_kit.COMMAND
    out = tmp_path / "out"
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "summary.md").write_text("ok")
    assert gpu_kit.check_out(out) == []
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "odd name.txt").write_text("x")
    for i in range(8):
        (out / f"f{i}.txt").write_text("x")
    problems = gpu_kit.check_out(out)
    assert problems[0] == "11 files (at most 8)" and any("folders down" in p for p in problems)
    assert any(p.startswith("odd name.txt: a name") for p in problems)


def test_bad_input_to_a_bench_harness_is_one_line_and_exit_status_2(tmp_path):
    cases = [
        ("bench.fold", ["--data", str(tmp_path / "absent")], "no such dataset"),
        ("bench.fold", ["--subset", "x"], "--subset: 'x': expected an integer"),
        ("bench.fold", ["--subset", "-5"], "--subset: '-5': expected an integer"),
        ("bench.fold", ["--device", "gpu7"], "--device 'gpu7': expected a CUDA device index"),
        ("bench.fold", ["--cond", "n99"], "--cond 'n99': not one of the paper's conditions"),
        ("bench.fold", ["--paper-steps", "-1"], "--paper-steps: '-1'"),
        ("bench.testset", ["--data", str(tmp_path / "absent")], "no such dataset"),
        ("bench.testset", ["--epochs", "0"], "--epochs 0: expected an integer in [1, 10000]"),
    ]
    for module, flags, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", module, "--data", "digits", "--device", "cpu", "--cache-dir", str(tmp_path), *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (
            flags,
            proc.stderr,
        )


def mount_tmpfs_ro(path) -> None:
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({proc.stderr.strip() or 'not root'})")


def test_the_tools_fail_like_the_stages(tmp_path, monkeypatch, capsys):
    """bench.evidence and bench.gpu_kit: bad input is one line and exit status 2, before any work."""
    file = tmp_path / "file"
    file.write_text("x")
    ro = tmp_path / "ro"
    mount_tmpfs_ro(ro)
    try:
        cases = [
            (["--budget-s", "nan"], "--budget-s: 'nan': expected a finite number in [120, 86400]"),
            (["--budget-s", "inf"], "--budget-s: 'inf'"),
            (["--out", str(ro)], f"{ro}: the --out folder is not writable"),
            (["--out", str(file / "out")], f"{file / 'out'}: cannot create the --out folder (Not a directory)"),
        ]
        for flags, message in cases:
            proc = subprocess.run(
                [sys.executable, "-m", "bench.evidence", "--tiny", "--run-dir", str(tmp_path / "run"), *flags],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (flags, proc.stderr)
    finally:
        subprocess.run(["umount", "-l", str(ro)])

    from bench import gpu_kit
    from pipeline import cli, signals

    monkeypatch.setattr(gpu_kit, "ROOT", tmp_path)
    monkeypatch.setattr(signals, "catch", lambda: None)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    (tmp_path / gpu_kit.WHEELS).write_text("not a folder")
    with pytest.raises(SystemExit) as e:
        cli.main(gpu_kit.kit)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err == (
        f"error: {tmp_path / gpu_kit.WHEELS}: a file where the kit's folder goes; move it "
        "away and run make gpu-kit again"
    ), err


def test_real_noise_measures_every_method_and_the_ranking_against_the_truth(run_copy, tmp_path):
    from conftest import stage

    stage("combine", run_copy)
    stage("masks", run_copy)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.real_noise", "--run-dir", str(run_copy), "--json", str(tmp_path / "r.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    results = {r["condition"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert set(results) == {"n20_s0", "n40_s40"}
    r = results["n40_s40"]
    assert 0.3 < r["true_noise_rate"] < 0.5 and 0.5 < r["ranking"]["auroc"] <= 1
    assert set(r["methods"]) == {"C_confusion", "PBC", "C_{y~,y*}", "C+NR", "PBNR"}
    assert np.allclose(np.sum(r["true_noise_matrix"], axis=0), 1, atol=1e-3)
    assert f"| n40_s40 | {100 * r['true_noise_rate']:.1f}% / {100 * r['estimated_noise_rate']:.1f}% |" in proc.stdout
    # one fold's held-out rows alone, from its shard: the five methods run on those rows only
    proc = subprocess.run(
        [sys.executable, "-m", "bench.real_noise", "--run-dir", str(run_copy), "--cond", "n40_s40", "--fold", "1"]
        + ["--json", str(tmp_path / "f.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (fold,) = json.loads((tmp_path / "f.json").read_text())
    held = np.load(RunDir(run_copy).shard("n40_s40", 1))["indices"]
    assert fold["condition"] == "n40_s40 fold 1" and fold["rows"] == len(held) < r["rows"]
    assert all(m["flagged"] + m["kept"] == len(held) for m in fold["methods"].values())
    assert "| n40_s40 fold 1 |" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bench.real_noise", "--run-dir", str(run_copy), "--fold", "-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--fold" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
