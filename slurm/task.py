"""Run one element of a SLURM array: task INDEX of a task list written by ``python -m slurm.submit``.

    python -m slurm.task RUN/slurm/cl-crossval-tasks.json $SLURM_ARRAY_TASK_ID

This is what the ``.sbatch`` templates run; ``Task`` is the same thing as a submitit callable.
A task cut short (SIGUSR1/SIGTERM) keeps its last epoch's checkpoint; run again (requeued), it
resumes from there.
"""

from __future__ import annotations

import argparse

import submitit

from pipeline import cli
from stages import tasklist


class Task(submitit.helpers.Checkpointable):
    """``Task()(entry)`` runs one task list entry (``tasklist.entry``). On submitit's preemption signal
    the job is requeued with the same call (``checkpoint``, inherited): training state is not
    pickled here, the task resumes from its own per-epoch checkpoint file."""

    def __call__(self, entry: dict) -> str | None:
        return tasklist.execute(entry)

    def checkpoint(self, entry: dict) -> submitit.helpers.DelayedSubmission:
        cli.log(f"requeueing {entry['stage']} {tasklist.describe(entry)}: it resumes from its last epoch's checkpoint")
        return super().checkpoint(entry)


def parser() -> argparse.ArgumentParser:
    p = cli.Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", help="task list (JSON) written by python -m slurm.submit --tasks-only")
    p.add_argument("index", type=int, help="which task: the array index, $SLURM_ARRAY_TASK_ID")
    return p


def run(args) -> None:
    tasklist.execute(tasklist.entry(tasklist.load(args.tasks), args.index))


if __name__ == "__main__":
    cli.main(lambda: run(parser().parse_args()))
