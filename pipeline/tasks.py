"""The stage protocol every stage (``stages/<name>.py``) follows, and the plan of tasks they share.

A stage is one ``Stage`` object: the options that select its tasks (its ``Select`` dataclass), its config
dataclass, its tasks (``select``, typed NamedTuples, a condition first where a task is per condition), how to
run one (``run``: its outcome and its log line) and how to name one (``describe``). The per-condition
loop, the log lines and the dispatch are written once: ``run_here`` runs a plan's tasks one after
another, ``pipeline.workers`` on one process per device, and a SLURM array (``stages.tasklist``) one
per array element. Only tasks with work to do are pending (what
``--max-tasks`` counts): a dry run of the task finds an artifact that is not current. A ``TrainingStage``
(crossval, coteach) makes one artifact per task: it says what the artifact is (``target``) and how to
train it (``make``), and each is made under its lock.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline import cli, conditions, ddp, devices, files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import Options, option


@dataclass(frozen=True)
class NoConfig(Options):
    """The config of a stage without options of its own."""


@dataclass(frozen=True)
class NoSelect(Options):
    """The selection of a stage whose one task its config describes."""


@dataclass(frozen=True)
class CondSelect(Options):
    """The tasks of a per-condition stage: every registered condition, or those named."""

    cond: str = option("", "comma-separated conditions to narrow to; empty: all")


class Cond(NamedTuple):
    """A task of a per-condition stage: condition ``cond``."""

    cond: str


class Stage(abc.ABC):
    """One stage. By default a task is one registered condition (``--cond`` narrows them), run on
    the CPU; subclasses set ``name`` and implement ``run``."""

    name: str
    unit = "(condition)"  # what a task is
    Select: type = CondSelect  # the options that choose its tasks
    Config: type = NoConfig
    device = False  # tasks train on a device (--gpu / --gpus pick it); else they run on the CPU, without torch
    pooled = True  # tasks may run on worker processes (--gpus) and --max-tasks applies; else the one task runs here
    creates_run = False  # the stage may start a run directory
    several_devices = False  # a task may train on several devices (--devices-per-task, ``pipeline.ddp``)

    def select(self, run: RunDir, select, config) -> list[tuple]:
        """Every task ``select`` (a ``Select``) asks for."""
        return [Cond(c) for c in conditions.names(run, select.cond)]

    def check(self, run: RunDir, task: list, config) -> tuple:
        """A task read from a task list, or a PipelineError when it is not one of this stage's."""
        if not (isinstance(task, list) and len(task) == 1 and task[0] in conditions.registry(run)):
            raise PipelineError(f"task {task!r}: not a (registered condition) {self.name} task")
        return Cond(*task)

    def pending(self, run: RunDir, tasks: list[tuple], config, force: bool = False) -> list[tuple]:
        """The tasks with work to do (all of them with ``force``; a stage that is not pooled runs its one task
        anyway): those a dry run (``store.dry_run``) finds an artifact to make in, or an error."""
        if force or not self.pooled:
            return tasks
        return [t for t in tasks if not self._current(run, t, config)]

    def _current(self, run: RunDir, task: tuple, config) -> bool:
        try:
            with store.dry_run():
                self.run(run, task, config, None)
            return True
        except (store.Pending, PipelineError, OSError):  # running it says what is wrong
            return False

    @abc.abstractmethod
    def run(self, run: RunDir, task: tuple, config, ctx, force: bool = False) -> tuple[store.Outcome, str]:
        """Run one task: its outcome (``Outcome.of`` its artifacts') and its log line(s). ``ctx``: where it runs
        (a ``devices.TaskContext``; None for a stage without a device)."""

    def describe(self, task: tuple) -> str:
        """A task in words, e.g. 'n20_s0'."""
        return " ".join(map(str, task))


class TrainingStage(Stage):
    """A stage whose task trains one artifact on a device, resuming from its checkpoint."""

    device = True

    @abc.abstractmethod
    def target(self, run: RunDir, task: tuple, config) -> tuple[Path, dict[str, Path], dict]:
        """(artifact, its inputs, its config) of a task."""

    @abc.abstractmethod
    def make(self, run: RunDir, task: tuple, config, ctx, ckpt: Path, tag: dict) -> tuple[object, dict]:
        """Train for a task: (the artifact's contents, facts for its manifest). Resumes from ``ckpt``."""

    def summary(self, run: RunDir, task: tuple, config) -> str:
        """The log line of a task just made."""
        return f"wrote {self.target(run, task, config)[0]}"

    def pending(self, run: RunDir, tasks: list[tuple], config, force: bool = False) -> list[tuple]:
        """The tasks whose artifact is not current (all of them with ``force``), and those whose current
        artifact has a checkpoint left beside it (running them removes it)."""
        return [
            t
            for t in tasks
            if force
            or not store.is_current(*(target := self.target(run, t, config)))
            or store.ckpt_path(target[0]).exists()
        ]

    def run(self, run: RunDir, task: tuple, config, ctx, force: bool = False) -> tuple[store.Outcome, str]:
        """Make a task's artifact under its lock (on every device of ``ctx``, see ``ddp.on_devices``)."""
        out, inputs, task_config = self.target(run, task, config)
        tag = {"config": task_config, "inputs": {k: files.checksum(p) for k, p in inputs.items()}}
        made = store.produce(
            out,
            root=run.root,
            stage=self.name,
            inputs=inputs,
            config=task_config,
            force=force,
            lock=True,
            device=devices.name(ctx.device),
            make=lambda: ddp.on_devices(ctx, self.make, run, task, config, store.ckpt_path(out), tag),
        )
        if made is store.Outcome.SKIPPED:
            return made, f"{self.describe(task)}: skipped, another process is making it"
        return made, self.summary(run, task, config) if made is store.Outcome.MADE else f"current: {out}"


@dataclass(frozen=True)
class Plan:
    """A stage's pending tasks (``tasks``) out of the ``total`` asked for, with the config to run them."""

    stage: Stage
    run: RunDir
    config: object
    tasks: list[tuple]
    total: int
    force: bool = False


def plan(stage: Stage, run: RunDir, select, config, force: bool = False, max_tasks: int | None = None) -> Plan:
    """The pending tasks ``select`` asks for (at most ``max_tasks`` of them)."""
    every = stage.select(run, select, config)
    todo = stage.pending(run, every, config, force)[:max_tasks]  # a stage that is not pooled: its one task
    return Plan(stage, run, config, todo, len(every), force)


@dataclass(frozen=True)
class Result:
    """What running a stage did: each task run, with its outcome (``store.Outcome``: made, current, or skipped
    while another process makes it) and its summary line, in ``tasks`` order; ``total``: the tasks asked for
    (those already current before the run were not run)."""

    stage: str
    tasks: list[tuple]
    outcomes: list[store.Outcome]
    lines: list[str]
    total: int


def run_here(p: Plan, gpu: str = "cpu", memory_gib: float | None = None) -> Result:
    """Run a plan's tasks one after another in this process (a training stage's on ``gpu``: a CUDA index or 'cpu', or
    a group of them, "0,1", as DDP ranks; ``memory_gib``: see ``devices.TaskContext``)."""
    ctx = devices.TaskContext.on(gpu, memory_gib) if p.tasks and p.stage.device else None  # no work: no torch import
    if p.stage.pooled:
        cli.log(
            f"{p.stage.name}: {len(p.tasks)} of {p.total} {p.stage.unit} tasks to run"
            + (f" on {ctx.device}" if ctx else "")
        )
    outcomes, lines = [], []
    for i, task in enumerate(p.tasks, 1):
        outcome, line = p.stage.run(p.run, task, p.config, ctx, p.force)
        cli.log(f"[{i}/{len(p.tasks)}] {line}" if p.stage.pooled else line)
        outcomes.append(outcome)
        lines.append(line)
    return Result(p.stage.name, list(p.tasks), outcomes, lines, p.total)
