"""A plan on disk: the task list of a SLURM array (array index = position in "tasks") of one of the stages a
SLURM array runs (``stages.arrays``), which reads it back. ``save`` fixes array index -> task; ``execute`` runs
entry ``index`` of one inside the job."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pipeline import cli, devices, files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.tasks import Plan
from stages import arrays


def save(path: Path, p: Plan, gpu: str) -> Path:
    files.save(
        path,
        {
            "stage": p.stage.name,
            "run_dir": str(Path(p.run.root).resolve()),
            "force": p.force,
            "gpu": gpu,
            "config": dataclasses.asdict(p.config),
            "tasks": [list(t) for t in p.tasks],
        },
    )
    return Path(path)


def load(path: Path) -> dict:
    spec = files.load(path)
    if (
        not isinstance(spec, dict)
        or spec.get("stage") not in arrays()
        or not isinstance(spec.get("tasks"), list)
        or not isinstance(spec.get("config"), dict)
        or not isinstance(spec.get("run_dir"), str)
    ):
        raise PipelineError(f"{path}: not a task list (written by python -m slurm.submit)")
    return spec


def entry(spec: dict, index: int) -> dict:
    """Task ``index`` of a task list, as a self-contained spec (what one array element runs)."""
    if not 0 <= index < len(spec["tasks"]):
        raise PipelineError(f"task index {index}: the list has tasks 0..{len(spec['tasks']) - 1}")
    return {**{k: v for k, v in spec.items() if k != "tasks"}, "task": spec["tasks"][index]}


def describe(one: dict) -> str:
    return arrays()[one["stage"]].describe(tuple(one["task"]))


def execute(one: dict) -> str | None:
    """Run the task of ``entry(...)`` here (a SLURM array element); its log line, None if skipped.

    A training stage's device is ``gpu`` of the spec ('cpu', or an index into the GPUs SLURM gave the
    job; several, "0,1", train the task as DDP ranks), with the job's ``SLURM_CPUS_PER_TASK`` as its CPU threads
    when set; other stages import no torch."""
    stage, run = arrays()[one["stage"]], RunDir(one["run_dir"])
    if not run.root.is_dir():
        raise PipelineError(
            f"{run.root}: the run directory of this task list is gone (moved or removed); "
            f"submit the {stage.name} stage again from where the run is now"
        )
    try:
        config = stage.Config(**one["config"])
    except TypeError as e:
        raise PipelineError(f"task list: config does not fit the {stage.name} stage ({e})") from None
    task = stage.check(run, one["task"], config)
    ctx = None
    if stage.device:
        import torch

        threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
        if threads:
            torch.set_num_threads(threads)
        ctx = devices.TaskContext.on(str(one.get("gpu", "cpu")))
    cli.log(f"{stage.name}: {stage.describe(task)}{f' on {ctx.device}' if ctx else ''} (run {one['run_dir']})")
    made, line = stage.run(run, task, config, ctx, bool(one.get("force")))
    cli.log(line)
    return None if made is store.Outcome.SKIPPED else line
