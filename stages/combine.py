"""combine: merge each condition's fold shards into psx.npy (every row covered exactly once). The fold
count and the crossval config come from the shards, which must agree. With --ensemble, one condition's psx.npy is
instead the mean of several psx made elsewhere for its rows and labels."""

from dataclasses import dataclass

from pipeline import folds, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import Options, option


@dataclass(frozen=True)
class CombineConfig(Options):
    ensemble: str | None = option(
        None,
        "comma-separated psx files of one condition (--cond), made with other recipes, backbones or seeds (this "
        "run's or another's, for the same rows and labels; a network's predictions: python -m stages.predict), and "
        "'folds' for the condition's own fold shards: its psx.npy is their mean, an artifact like any other",
    )


class Combine(tasks.Stage):
    name, Config = "combine", CombineConfig

    def select(self, run: RunDir, select: tasks.CondSelect, config: CombineConfig) -> list[tasks.Cond]:
        conds = super().select(run, select, config)
        if config.ensemble is not None and len(conds) != 1:
            raise PipelineError("--ensemble: name the one condition its members are of with --cond")
        return conds

    def run(
        self, run: RunDir, task: tasks.Cond, config: CombineConfig, device, force: bool = False
    ) -> tuple[store.Outcome, str]:
        if config.ensemble is None:
            made = folds.combine(run, task.cond, force)
        else:
            members = [p for p in config.ensemble.split(",") if p]
            made = folds.ensemble(run, task.cond, members, force)
        return made, f"{made.value}: {run.psx(task.cond)}"


STAGE = Combine()

if __name__ == "__main__":
    workers.main(STAGE)
