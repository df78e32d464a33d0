"""noise: add or update conditions (the paper's noisy labels, generated with cleanlab, CIFAR-10N's human labels,
given, or several annotators' majority vote) in the run's registry, conditions.json, writing each one's labels; --remove drops one from the registry."""

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline import conditions, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import SEED_MAX, Options, Range, option


@dataclass(frozen=True)
class NoiseConfig(Options):
    conditions: str = option(
        "", "'paper' (Table 2's 13), 'paper-all' (17), or NOISE:SPARSITY,... to generate with cleanlab"
    )
    labels: tuple[str, ...] = option(
        (),
        "a condition whose labels are given: a .npy of one label per training row (dataset order), "
        "or the decisions CSV a review page (label_issues.html) exported",
        metavar="NAME=FILE",
    )
    annotators: tuple[str, ...] = option(
        (),
        "a condition of several annotators' labels, their majority vote: a CSV of id,annotator,label "
        "(annotators may skip rows), one .npy per annotator (a label per training row, -1: skipped), or "
        "CIFAR-10N's file (its three workers); make consensus then weighs them with the model",
        metavar="NAME=FILE[,FILE...]",
    )
    cifar10n: str | None = option(
        None,
        "add CIFAR-10N's real human labels (c10n_aggre, c10n_random1..3, c10n_worse) from its official "
        "file (github.com/UCSC-REAL/cifar-10-100n); needs CIFAR-10's own training set as the data",
        metavar="CIFAR-10_human.pt",
    )
    remove: tuple[str, ...] = option(
        (), "drop this condition from the registry (its files stay on disk)", metavar="NAME"
    )
    paper_json: str | None = option(
        None, "read paper conditions from the paper's JSON files in this folder instead of data/"
    )
    seed: int = option(0, "seed of generated noise", Range(int, 0, SEED_MAX))


class Task(NamedTuple):
    """The one task: one update of the registry (see ``conditions.update``)."""

    add: tuple[conditions.Condition, ...]
    remove: tuple[str, ...]
    paper_json: Path | None


class Noise(tasks.Stage):
    name, unit, pooled, Select, Config = "noise", "(run)", False, tasks.NoSelect, NoiseConfig

    def select(self, run: RunDir, select, config: NoiseConfig) -> list[Task]:
        c = config
        if not (c.conditions or c.labels or c.annotators or c.cifar10n or c.remove):
            raise PipelineError("give --conditions, --labels, --annotators, --cifar10n and/or --remove")
        info = store.verify(run.require(run.dataset, "data"))["info"]
        add = conditions.parse_conditions(c.conditions, len(info["classes"]), c.seed) if c.conditions else []
        add += [conditions.given(spec) for spec in c.labels]
        add += [conditions.annotated(spec) for spec in c.annotators]
        add += conditions.from_cifar10n(c.cifar10n) if c.cifar10n else []
        return [Task(tuple(add), c.remove, c.paper_json and Path(c.paper_json))]

    def run(self, run: RunDir, task: Task, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        done, lines = conditions.update(run, list(task.add), list(task.remove), task.paper_json, force), []
        for cond, made in done:
            lines.append(
                f"{made.value}: {run.labels(cond.name)}  noise="
                f"{store.verify(run.labels(cond.name))['info']['actual_noise_rate']:.3f}"
            )
        lines += [
            f"removed {name} from {run.registry} (its files in {run.condition_dir(name)} are kept)"
            for name in task.remove
        ]
        lines.append(f"conditions: {', '.join(conditions.registry(run)) or 'none'}")
        return store.Outcome.of(made for _, made in done), "\n".join(lines)

    def describe(self, task: Task) -> str:
        return ", ".join(c.name for c in task.add) or "remove " + ", ".join(task.remove)


STAGE = Noise()

if __name__ == "__main__":
    workers.main(STAGE)
