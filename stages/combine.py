"""combine: merge each condition's fold shards into psx.npy (every row covered exactly once). The fold
count and the crossval config come from the shards, which must agree."""

from pipeline import folds, store, tasks, workers
from pipeline.layout import RunDir


class Combine(tasks.Stage):
    name = "combine"

    def run(self, run: RunDir, task: tasks.Cond, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        made = folds.combine(run, task.cond, force)
        return made, f"{made.value}: {run.psx(task.cond)}"


STAGE = Combine()

if __name__ == "__main__":
    workers.main(STAGE)
