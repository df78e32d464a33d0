"""report: our test accuracy per (rows, learner) beside the CL paper's Table 2 (final and best epoch, mean ± std over seeds),
label-error detection on this run's psx and on the paper's (made by masks), and plots (report/*.md, *.csv, *.png). Only
results whose whole chain of artifacts is current are shown; stale ones are listed."""

from dataclasses import dataclass
from typing import NamedTuple

from pipeline import conditions, options, report, store, tasks, workers
from pipeline.layout import RunDir
from pipeline.options import option
from stages.coteach import SEEDS


@dataclass(frozen=True)
class ReportConfig(options.Options):
    seeds: str = option("", "comma-separated seeds (trials) to aggregate (default: every seed found)")
    paper_table: str = option(
        "published",
        "the paper's cells to compare with: published (its Table 2, default) or trial1 (trial 1 of 10 "
        "of its Co-Teaching runs)",
        choices=tuple(report.PAPER_TABLES),
    )


class Task(NamedTuple):
    """The one task: the report on these conditions and seeds (None: every seed found)."""

    conds: tuple[str, ...]
    seeds: tuple[int, ...] | None
    paper_table: str


class Report(tasks.Stage):
    name, unit, pooled, Config = "report", "(run)", False, ReportConfig

    def select(self, run: RunDir, select: tasks.CondSelect, config: ReportConfig) -> list[Task]:
        seeds = tuple(options.int_list(config.seeds, SEEDS, "--seeds")) if config.seeds else None
        return [Task(tuple(conditions.names(run, select.cond)), seeds, config.paper_table)]

    def run(self, run: RunDir, task: Task, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        files, text = report.write(run, list(task.conds), task.seeds and list(task.seeds), task.paper_table)
        return store.Outcome.MADE, text + "\nwrote: " + ", ".join(str(f) for f in files)


STAGE = Report()

if __name__ == "__main__":
    workers.main(STAGE)
