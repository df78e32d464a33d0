"""The stage protocol of the sharded training stages, and their task lists.

A training stage (``crossval.STAGE``, ``coteach.STAGE``) is one ``Stage`` object: its config
dataclass, the options that select its tasks, each task's artifact with its inputs and config
(``target``), how to make it (``make``) and how to name it (``describe``). Whatever runs tasks (the
stage itself, one after another; the local one-process-per-GPU pool, ``pipeline.workers``; a SLURM
array, ``slurm`` through ``pipeline.tasklist``) takes them from ``plan`` and runs one with ``Stage.run``.
"""

from __future__ import annotations

import abc
import argparse
from dataclasses import dataclass
from pathlib import Path

from pipeline import cli, conditions, devices, store
from pipeline.layout import RunDir
from pipeline.options import Range


class Stage(abc.ABC):
    """One training stage. Subclasses set ``name``, ``unit`` and ``Config`` and implement the abstract
    methods; a task is the stage's own NamedTuple of JSON values, the condition first."""

    name: str
    unit: str  # what a task is, e.g. "(condition, fold)"
    Config: type

    @abc.abstractmethod
    def add_args(self, p: argparse.ArgumentParser) -> None:
        """Flags that select tasks (besides --cond)."""

    @abc.abstractmethod
    def select(self, run: RunDir, conds: list[str], args: argparse.Namespace, config) -> list[tuple]:
        """Every task the parsed flags ask for."""

    @abc.abstractmethod
    def check(self, run: RunDir, task: list, config) -> tuple:
        """A task read from a task list, as a tuple, or a PipelineError when it is not one of this stage's."""

    @abc.abstractmethod
    def target(self, run: RunDir, task: tuple, config) -> tuple[Path, dict[str, Path], dict]:
        """(artifact, its inputs, its config) of a task."""

    @abc.abstractmethod
    def make(self, run: RunDir, task: tuple, config, device, ckpt: Path, tag: dict) -> tuple[object, dict]:
        """Train for a task: (the artifact's contents, facts for its manifest). Resumes from ``ckpt``."""

    @abc.abstractmethod
    def describe(self, task: tuple) -> str:
        """A task in words, e.g. 'n20_s0 fold 1'."""

    def summary(self, run: RunDir, task: tuple, config) -> str:
        """One line on a finished task."""
        return f"wrote {self.target(run, task, config)[0]}"

    def pending(self, run: RunDir, tasks: list[tuple], config, force: bool = False) -> list[tuple]:
        """The tasks whose artifact is not current (all of them with ``force``)."""
        return [t for t in tasks if force or not store.is_current(*self.target(run, t, config))]

    def run(self, run: RunDir, task: tuple, config, device, force: bool = False) -> store.Outcome:
        """Make a task's artifact under its lock."""
        out, inputs, task_config = self.target(run, task, config)
        tag = {"config": task_config, "inputs": {k: store.checksum(p) for k, p in inputs.items()}}
        return store.produce(out, stage=self.name, inputs=inputs, config=task_config, force=force, lock=True,
                             device=devices.name(device),
                             make=lambda: self.make(run, task, config, device, store.ckpt_path(out), tag))

    def outcome(self, run: RunDir, task: tuple, config, made: store.Outcome) -> str:
        """The log line of a task's ``run``."""
        if made is store.Outcome.SKIPPED:
            return f"{self.describe(task)}: skipped, another process is making it"
        return self.summary(run, task, config) if made is store.Outcome.MADE else f"current: {self.target(run, task, config)[0]}"


def add_args(p: argparse.ArgumentParser, stage: Stage) -> None:
    """The flags that choose a stage's tasks (conditions, and the stage's own) and its config."""
    cli.add_condition_arg(p)
    stage.add_args(p)
    p.add_argument("--max-tasks", type=Range(int, 1, 10**9, optional=True), default=None,
                   help="run at most this many of the pending tasks, in order (the rest stay pending for a later run); "
                        "none: all")
    cli.add_config_args(p, stage.Config)


@dataclass(frozen=True)
class Plan:
    """A stage's pending tasks (``tasks``) out of the ``total`` asked for, with the config to run them."""

    stage: Stage
    run: RunDir
    config: object
    tasks: list[tuple]
    total: int
    force: bool = False


def plan(args: argparse.Namespace, stage: Stage) -> Plan:
    """The pending tasks of what ``args`` (parsed with ``add_args`` and ``cli.parser``) asks for."""
    run = cli.run_dir(args)
    config = cli.config_from(args, stage.Config)
    every = stage.select(run, conditions.names(run, args.cond), args, config)
    todo = stage.pending(run, every, config, args.force)[: args.max_tasks]
    return Plan(stage, run, config, todo, len(every), args.force)


def run_here(p: Plan, gpu: str) -> None:
    """Run a plan's tasks one after another in this process, on ``gpu`` (a CUDA index or 'cpu')."""
    device = devices.pick(gpu) if p.tasks else None  # nothing to do: no torch import
    cli.log(f"{p.stage.name}: {len(p.tasks)} of {p.total} {p.stage.unit} tasks to run" + (f" on {device}" if device else ""))
    for i, task in enumerate(p.tasks, 1):
        made = p.stage.run(p.run, task, p.config, device, p.force)
        cli.log(f"[{i}/{len(p.tasks)}] {p.stage.outcome(p.run, task, p.config, made)}")
