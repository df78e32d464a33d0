"""The local launcher: one worker process per listed GPU (or CPU), pulling a plan's tasks from a
queue of pending tasks until none is left.

A task that raises is reported and its worker goes on with the next; a worker that dies (killed,
out of memory) is reported, its task counted as failed, and the others go on with the rest of the
queue. Nothing finished is lost: every task writes its own artifact, so re-running does only what
is still pending (and a task cut short resumes from its last epoch's checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import sys
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from pipeline import cli, devices, signals, tasks
from pipeline.errors import PipelineError
from pipeline.options import Options, Range, option

MAX_WORKERS_PER_GPU = 64


@dataclass(frozen=True)
class Launch(Options):
    """Where and how many of a pooled stage's pending tasks run (not recorded: the artifacts are the same)."""

    gpu: str | None = option(
        None,
        "CUDA device index, or 'cpu' (without CUDA: the CPU); tasks run one after another; none: 0 for a stage "
        "that trains, else cpu",
    )
    gpus: str = option(
        "",
        "run the tasks on one worker process per listed CUDA index, e.g. 0,1,2,3 "
        "('cpu': one CPU worker, 'cpu,cpu': two; 'all': every visible GPU)",
    )
    workers_per_gpu: int = option(
        1,
        "worker processes per listed device, each running its own tasks: a small network leaves most of "
        "a large GPU idle, so several tasks at once finish the grid sooner (with --gpu: that one device)",
        Range(int, 1, MAX_WORKERS_PER_GPU),
    )
    devices_per_task: int = option(
        1,
        "devices each task trains on, as Lightning DDP ranks sharing every batch (the same steps as one "
        "device): CUDA devices taken in groups from --gpus, or CPU processes (gloo) with --gpu cpu",
        Range(int, 1, 64),
    )
    device_memory: float | None = option(
        None,
        "GiB of a training's images a device may hold; more are streamed from the (memory-mapped) cache a "
        "batch at a time, with the same batches (none: half a GPU's memory, or half the memory left on the CPU)",
        Range(float, 0, 1 << 20, optional=True),
        metavar="GIB",
    )
    max_tasks: int | None = option(
        None,
        "run at most this many of the pending tasks, in order (the rest stay pending for a later run); none: all",
        Range(int, 1, 10**9, optional=True),
    )

    def __post_init__(self):
        super().__post_init__()
        if self.gpu is not None:
            devices.check_gpu(self.gpu)


def option_classes(stage: tasks.Stage) -> list[tuple[type, tuple[str, ...] | None]]:
    """A stage's options: (dataclass, the fields it takes, None: all) for its task selection, its config and its
    launch (none for a stage whose one task runs here; --devices-per-task where a task may train on several
    devices). Its flags, the notebook and ``main`` take them from here."""
    launch = (
        ()
        if not stage.pooled
        else tuple(f.name for f in dataclasses.fields(Launch) if f.name != "devices_per_task" or stage.several_devices)
    )
    return [(stage.Select, None), (stage.Config, None), (Launch, launch)]


def add_options(p: argparse.ArgumentParser, stage: tasks.Stage, launch: tuple[str, ...] | None = None) -> None:
    """One flag per option of ``stage`` (``option_classes``; ``launch``: these of its launch options)."""
    (select, _), (config, _), (launch_cls, only) = option_classes(stage)
    cli.add_fields(p, select)
    cli.add_fields(p, config, f"{config.__name__} (recorded in each artifact's manifest)")
    cli.add_fields(p, launch_cls, only=only if launch is None else launch)


def parser(stage: tasks.Stage) -> cli.Parser:
    """A stage's flags: run directory, force, and one per option."""
    p = cli.parser(sys.modules[type(stage).__module__].__doc__)
    add_options(p, stage)
    return p


def worker_devices(launch: Launch, stage: tasks.Stage) -> list[str] | None:
    """One entry per worker process (``--gpus`` x ``--workers-per-gpu``, round robin; with ``--devices-per-task``
    each a group, "0,1"), or None: run here on ``--gpu``."""
    gpu, per_task = here(launch, stage), launch.devices_per_task
    gpus = devices.parse_gpus(launch.gpus) if launch.gpus else [gpu] if launch.workers_per_gpu > 1 else None
    if gpus is None:
        if per_task > 1 and gpu != "cpu":
            raise PipelineError(
                f"--devices-per-task {per_task}: name the devices with --gpus (e.g. --gpus 0,1), or use --gpu cpu"
            )
        return None
    return [g for _ in range(launch.workers_per_gpu) for g in devices.group(gpus, per_task)]


def here(launch: Launch, stage: tasks.Stage) -> str:
    """The device of ``--gpu`` (its default: 0 for a stage that trains, else cpu)."""
    return launch.gpu if launch.gpu is not None else "0" if stage.device else "cpu"


def parsed(stage: tasks.Stage, argv: list[str] | None = None) -> tuple:
    """A stage's flags (``argv``; None: the command line's) as ``run``'s arguments after the stage: (run
    directory, task selection, config, launch, force), each option checked by its dataclass."""
    args = parser(stage).parse_args(argv)
    return (args.run_dir, *(cli.fields_from(args, cls) for cls, _ in option_classes(stage)), args.force)


def main(stage: tasks.Stage) -> None:
    """``python -m stages.<name>``: parse the flags, run the stage (see ``cli.main``)."""
    cli.main(lambda: run(stage, *parsed(stage)))


def run(
    stage: tasks.Stage,
    run_dir: str | Path,
    select=None,
    config=None,
    launch: Launch | None = None,
    force: bool = False,
) -> tasks.Result:
    """A stage on ``run_dir``: the tasks ``select`` asks for (a ``stage.Select``; None: its defaults) with ``config``
    (a ``stage.Config``), pending ones one after another here (on ``--gpu``), or on one worker process per entry
    of ``--gpus`` (a stage without a device ignores the device: ``--gpus cpu,cpu`` is two CPU workers); what they
    did. A task that fails is a PipelineError once the others are done."""
    select = stage.Select() if select is None else select
    config = stage.Config() if config is None else config
    launch = Launch() if launch is None else launch
    gpus = worker_devices(launch, stage) if stage.pooled else None
    plan = tasks.plan(stage, cli.run_dir(run_dir, create=stage.creates_run), select, config, force, launch.max_tasks)
    if gpus is None:
        gpu = here(launch, stage)
        return tasks.run_here(plan, devices.group([gpu] * launch.devices_per_task, launch.devices_per_task)[0],
                              launch.device_memory)  # fmt: skip
    gpus = gpus[: len(plan.tasks)]  # no idle workers
    where = (
        f" on {len(gpus)} worker(s) ({','.join(gpus)}), {host_threads(len(gpus))} host thread(s) each" if gpus else ""
    )
    cli.log(f"{stage.name}: {len(plan.tasks)} of {plan.total} {stage.unit} tasks to run{where}")
    result, failed = run_pool(plan, gpus, launch.device_memory)
    if failed:
        raise PipelineError(
            f"{len(failed)} of {len(plan.tasks)} {stage.name} task(s) failed:\n  "
            + "\n  ".join(failed)
            + "\nthe others are done: re-running does only what is still pending"
        )
    return result


def host_threads(workers: int) -> int:
    """torch threads per worker: the cores this process may run on (its affinity: a SLURM allocation's, not the
    whole node's) shared out, so no worker oversubscribes them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # macOS: no affinity
    return max(1, (cores or 1) // workers)


def _worker(gpu: str, threads: int, memory_gib: float | None, plan: tasks.Plan, conn) -> None:
    signals.worker()
    try:
        ctx = _context(gpu, threads, memory_gib) if plan.stage.device else None  # a group "0,1": its tasks' DDP ranks
        conn.send(("ready", None, ""))
        while (i := conn.recv()) is not None:
            try:
                conn.send(("done", i, plan.stage.run(plan.run, plan.tasks[i], plan.config, ctx, plan.force)))
            except Exception as e:  # noqa: BLE001 - reported; the worker goes on with the next task
                if not isinstance(e, (PipelineError, OSError)):
                    traceback.print_exc()
                conn.send(("failed", i, str(e) if isinstance(e, PipelineError) else f"{type(e).__name__}: {e}"))
    except signals.Stopped:
        os._exit(143)


def _context(gpu: str, threads: int, memory_gib: float | None) -> devices.TaskContext:
    import torch

    torch.set_num_threads(threads)  # host threads: a CPU worker's compute, a GPU worker's data and launches
    ctx = devices.TaskContext.on(gpu, memory_gib)
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    return ctx


def run_pool(plan: tasks.Plan, gpus: list[str], memory_gib: float | None = None) -> tuple[tasks.Result, list[str]]:
    """Run ``plan``'s tasks on one worker process per entry of ``gpus`` (``memory_gib``: see ``devices.TaskContext``);
    returns what the tasks done did, and one line per failed task.

    The queue of pending tasks lives here; each worker asks for the next one over its own pipe
    when it is ready, so a worker killed at any moment cannot wedge a lock the others need."""
    if not plan.tasks:
        return tasks.Result(plan.stage.name, [], [], [], plan.total), []
    threads = host_threads(len(gpus))
    spawn = mp.get_context("spawn")
    todo = deque(range(len(plan.tasks)))
    procs, conns = [], []
    for w, gpu in enumerate(gpus):
        ours, theirs = spawn.Pipe()
        p = spawn.Process(
            target=_worker, args=(gpu, threads, memory_gib, plan, theirs), name=f"worker{w}[{gpu}]", daemon=True
        )
        p.start()
        theirs.close()
        procs.append(p)
        conns.append(ours)
    n, done, failed, running, live = len(plan.tasks), 0, [], {}, set(range(len(procs)))
    made: dict[int, tuple] = {}  # task index -> (outcome, line) of each task done

    def what(i: int) -> str:
        return plan.stage.describe(plan.tasks[i])

    def hand_out(w: int) -> None:
        i = todo.popleft() if todo else None
        try:
            conns[w].send(i)
        except OSError:  # it died meanwhile; its death is handled below
            if i is not None:
                todo.appendleft(i)
            return
        if i is not None:
            running[w] = i

    try:
        while live:
            wait([conns[w] for w in live] + [procs[w].sentinel for w in live])
            for w in sorted(live):
                while conns[w].poll():
                    try:
                        kind, i, said = conns[w].recv()  # said: (outcome, line) when done, else why
                    except (EOFError, OSError):
                        break
                    if kind != "ready":
                        running.pop(w, None)
                        if kind == "done":
                            done += 1
                            made[i] = said
                            cli.log(f"[{done + len(failed)}/{n}] {procs[w].name}: {said[1]}")
                        else:
                            failed.append(f"{what(i)}: {said}")
                            cli.log(f"[{done + len(failed)}/{n}] {procs[w].name}: FAILED {what(i)}: {said}")
                    hand_out(w)
                if procs[w].exitcode is None:
                    continue
                live.discard(w)
                if procs[w].exitcode != 0:
                    lost = running.pop(w, None)
                    during = f" while running {what(lost)}" if lost is not None else ""
                    cli.log(f"{procs[w].name} died (exit code {procs[w].exitcode}){during}; the other workers go on")
                    if lost is not None:
                        failed.append(f"{what(lost)}: its worker {procs[w].name} died (exit code {procs[w].exitcode})")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: training stops at the next batch, keeping its last checkpoint
        for p in procs:
            p.join(30)
    if todo:
        failed.append(f"{len(todo)} task(s) never started: every worker died")
    ran = sorted(made)
    return tasks.Result(
        plan.stage.name, [plan.tasks[i] for i in ran], [made[i][0] for i in ran], [made[i][1] for i in ran], plan.total
    ), failed
