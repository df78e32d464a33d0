"""Task lists and what a stage counts as pending, without a cluster: every array element says what it did,
a list whose run directory is gone says so, and --max-tasks takes the first pending tasks of every stage."""

import dataclasses
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, stage

import stages
from pipeline import files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from stages import tasklist

WORDS = {o.value for o in store.Outcome}


def entry(run: RunDir, name: str, task: list) -> dict:
    """One array element's spec of stage ``name`` (default config), as ``tasklist.entry`` gives it."""
    s = stages.arrays()[name]
    return {
        "stage": name,
        "run_dir": str(run.root),
        "force": False,
        "gpu": "cpu",
        "config": dataclasses.asdict(s.Config()),
        "task": task,
    }


@pytest.mark.parametrize("name", ["combine", "masks", "review"])
def test_every_array_element_says_what_it_did(run_copy, name):
    run = RunDir(run_copy)
    for before in ("combine", "masks")[: ("combine", "masks", "review").index(name)]:
        stage(before, run.root, "--cond", "n20_s0")
    for word in ("wrote", "current"):
        line = tasklist.execute(entry(run, name, ["n20_s0"]))
        assert {ln.split(":")[0] for ln in line.splitlines()} == {word}, line


def test_a_task_list_whose_run_directory_is_gone_says_so(run_copy, tmp_path):
    run = RunDir(run_copy)
    listing = tmp_path / "tasks.json"
    spec = entry(run, "crossval", ["n20_s0", 0])
    files.save(listing, {**{k: v for k, v in spec.items() if k != "task"}, "tasks": [spec["task"]]})
    shutil.move(run.root, tmp_path / "moved")
    with pytest.raises(PipelineError, match=f"{run.root}: the run directory of this task list is gone"):
        tasklist.execute(tasklist.entry(tasklist.load(listing), 0))
    proc = subprocess.run(
        [sys.executable, "-m", "slurm.task", str(listing), "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {run.root}: the run directory of this task list is gone (moved or removed); submit the crossval "
        "stage again from where the run is now"
    ], proc.stderr


def test_max_tasks_takes_the_first_pending_tasks_of_every_stage(run_copy):
    run = RunDir(run_copy)
    for name, made in (("combine", run.psx), ("masks", lambda c: run.mask(c, "both")), ("review", run.label_issues)):
        stage(name, run.root, "--cond", "n20_s0")
        out = stage(name, run.root, "--max-tasks", "1").stdout
        assert f"{name}: 1 of 2 (condition) tasks to run" in out and str(made("n40_s40")) in out, out
        assert f"{name}: 0 of 2 (condition) tasks to run" in stage(name, run.root, "--max-tasks", "1").stdout
        assert f"{name}: 2 of 2 (condition) tasks to run" in stage(name, run.root, "--max-tasks", "5", "--force").stdout
