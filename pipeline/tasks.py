"""The work units of the sharded stages, and running one: (condition, fold) for crossval,
(condition, method, seed) for coteach.

Whatever runs them (the stage itself, one task after another; the local one-process-per-GPU
launcher, ``pipeline.workers``; a SLURM array, ``slurm``) gets its list from ``plan``, which asks
the stage's own ``pending`` (the one rule for what is left to do), and runs a task with ``run``.
A plan saved with ``save`` fixes array index -> task for a SLURM array; ``execute`` runs entry
``index`` of one inside the job.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import cli, coteach, crossval, store
from pipeline.layout import RunDir
from pipeline.store import PipelineError

STAGES = ("crossval", "coteach")
CONFIGS = {"crossval": crossval.CrossvalConfig, "coteach": coteach.CoteachConfig}


def add_args(p: argparse.ArgumentParser, stage: str) -> None:
    """The options that choose a stage's tasks: conditions, folds or methods and seeds, and its config."""
    cli.add_condition_arg(p)
    if stage == "crossval":
        p.add_argument("--fold", default="all", help="fold index, comma-separated indices, or 'all'")
    else:
        p.add_argument("--methods", default="all", help=f"comma-separated, from {', '.join(coteach.METHODS)}, or all")
        p.add_argument("--seeds", type=cli.int_list, default=[0], help="comma-separated seeds (trials)")
    cli.add_config_args(p, CONFIGS[stage])


@dataclass(frozen=True)
class Plan:
    """A stage's pending tasks (``tasks``) out of the ``total`` asked for, with the config to run them."""

    stage: str
    run: RunDir
    config: object
    tasks: list[tuple]
    total: int
    force: bool = False


def plan(args: argparse.Namespace, stage: str) -> Plan:
    """The pending tasks of what ``args`` (parsed with ``add_args`` and ``cli.parser``) asks for."""
    run, config = cli.run_dir(args), cli.config_from(args, CONFIGS[stage])
    conds = run.conditions(args.cond)
    if stage == "crossval":
        folds = list(range(config.folds)) if args.fold == "all" else cli.int_list(args.fold)
        bad = [k for k in folds if not 0 <= k < config.folds]
        if bad:
            raise PipelineError(f"--fold {bad[0]}: folds are 0..{config.folds - 1}")
        todo, total = crossval.pending(run, conds, folds, config, args.force), len(conds) * len(folds)
    else:
        methods = coteach.parse_methods(args.methods)
        todo = coteach.pending(run, conds, methods, args.seeds, config, args.force)
        total = len(conds) * len(methods) * len(args.seeds)
    return Plan(stage, run, config, [tuple(t) for t in todo], total, args.force)


def unit(stage: str) -> str:
    return "(condition, fold)" if stage == "crossval" else "(condition, method, seed)"


def describe(stage: str, task: tuple) -> str:
    return f"{task[0]} fold {task[1]}" if stage == "crossval" else f"{task[0]} {task[1]} seed {task[2]}"


def run(stage: str, run_dir: RunDir, task: tuple, config, device, force: bool = False) -> Path | None:
    """Run one task; its artifact, or None when another process holds the task (see run_fold)."""
    if stage == "crossval":
        cond, fold = task
        return crossval.run_fold(run_dir, cond, int(fold), config, device, force)
    cond, method, seed = task
    return coteach.run_task(run_dir, cond, method, int(seed), config, device, force)


def summary(stage: str, task: tuple, out: Path | None) -> str:
    """One line on a finished task."""
    if out is None:
        return f"{describe(stage, task)}: skipped, another process is making it"
    if stage == "coteach":
        m = store.load_json(out)
        return f"{describe(stage, task)}: final {100 * m['final_acc']:.1f}%  best {100 * m['best_acc']:.1f}%"
    return f"wrote {out}"


# A plan on disk: the task list of a SLURM array (array index = position in "tasks").

def to_json(p: Plan, gpu: str) -> dict:
    return {
        "stage": p.stage, "run_dir": str(Path(p.run.root).resolve()), "config": dataclasses.asdict(p.config),
        "force": p.force, "gpu": gpu, "tasks": [list(t) for t in p.tasks],
    }


def save(path: Path, p: Plan, gpu: str) -> Path:
    store.save_json(path, to_json(p, gpu))
    return Path(path)


def load(path: Path) -> dict:
    spec = store.load_json(path)
    if not isinstance(spec, dict) or spec.get("stage") not in STAGES or not isinstance(spec.get("tasks"), list):
        raise PipelineError(f"{path}: not a task list (written by python -m slurm.submit)")
    return spec


def entry(spec: dict, index: int) -> dict:
    """Task ``index`` of a task list, as a self-contained spec (what one array element runs)."""
    if not 0 <= index < len(spec["tasks"]):
        raise PipelineError(f"task index {index}: the list has tasks 0..{len(spec['tasks']) - 1}")
    return {**{k: v for k, v in spec.items() if k != "tasks"}, "task": spec["tasks"][index]}


def execute(one: dict) -> str | None:
    """Run the task of ``entry(...)`` here (a SLURM array element); the artifact's path, None if skipped.

    The device is ``gpu`` of the spec ('cpu', or an index into the GPUs SLURM gave the job); the CPU
    threads are the job's ``SLURM_CPUS_PER_TASK`` when set."""
    import torch

    from pipeline.train import pick_device

    stage, task = one["stage"], tuple(one["task"])
    config = CONFIGS[stage](**one["config"])
    threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
    if threads:
        torch.set_num_threads(threads)
    device = pick_device(str(one["gpu"]))
    cli.log(f"{stage}: {describe(stage, task)} on {device} (run {one['run_dir']})")
    out = run(stage, RunDir(one["run_dir"]), task, config, device, one.get("force", False))
    cli.log(summary(stage, task, out))
    return None if out is None else str(out)


def run_here(p: Plan, gpu: str) -> None:
    """Run a plan's tasks one after another in this process, on ``gpu`` (a CUDA index or 'cpu')."""
    from pipeline.train import pick_device

    device = pick_device(gpu)
    cli.log(f"{p.stage}: {len(p.tasks)} of {p.total} {unit(p.stage)} tasks to run on {device}")
    for i, task in enumerate(p.tasks, 1):
        out = run(p.stage, p.run, task, p.config, device, p.force)
        cli.log(f"[{i}/{len(p.tasks)}] {summary(p.stage, task, out)}")
