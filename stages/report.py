"""report: our test accuracy per (rows, learner) beside the CL paper's Table 2 (final and best epoch, mean ± std over seeds),
label-error detection on this run's psx and on the paper's (made by masks), and plots (report/*.md, *.csv, *.png). Only
results whose whole chain of artifacts is current are shown; stale ones are listed."""

import argparse
from typing import NamedTuple

from pipeline import conditions, options, report, store, tasks, workers
from pipeline.layout import RunDir
from stages.coteach import SEEDS


class Task(NamedTuple):
    """The one task: the report on these conditions and seeds (None: every seed found)."""

    conds: tuple[str, ...]
    seeds: tuple[int, ...] | None
    paper_table: str


class Report(tasks.Stage):
    name, unit, pooled = "report", "(run)", False

    def add_args(self, p: argparse.ArgumentParser) -> None:
        super().add_args(p)
        p.add_argument(
            "--seeds", default="", help="comma-separated seeds (trials) to aggregate (default: every seed found)"
        )
        p.add_argument(
            "--paper-table",
            choices=tuple(report.PAPER_TABLES),
            default="published",
            help="the paper's cells to compare with: published (its Table 2, default) or trial1 (trial 1 of 10 "
            "of its Co-Teaching runs)",
        )

    def select(self, run: RunDir, args: argparse.Namespace, config) -> list[Task]:
        seeds = tuple(options.int_list(args.seeds, SEEDS, "--seeds")) if args.seeds else None
        return [Task(tuple(conditions.names(run, args.cond)), seeds, args.paper_table)]

    def run(self, run: RunDir, task: Task, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        files, text = report.write(run, list(task.conds), task.seeds and list(task.seeds), task.paper_table)
        return store.Outcome.MADE, text + "\nwrote: " + ", ".join(str(f) for f in files)


STAGE = Report()

if __name__ == "__main__":
    workers.main(STAGE)
