"""masks: label-error masks of the five CL methods (cleanlab) for every condition, with detection quality;
for conditions with the CL paper's labels also the five methods' detection on the paper's own psx."""

from dataclasses import dataclass
from pathlib import Path

from pipeline import masks, store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import Options, option


@dataclass(frozen=True)
class MasksConfig(Options):
    psx: str | None = option(
        None,
        "use these probabilities instead of the run's psx.npy: a .npy (rows in dataset order; "
        "with --cond naming one condition) or a folder of the paper's *_psx.npy files",
    )
    paper_psx: str = option(
        str(masks.PAPER_PSX),
        "folder of the paper's *_psx.npy files: detection on them for conditions "
        "with the paper's labels, beside ours in the report (skipped when absent)",
    )


class Masks(tasks.Stage):
    name, Config = "masks", MasksConfig

    def select(self, run: RunDir, select: tasks.CondSelect, config: MasksConfig) -> list[tasks.Cond]:
        conds = super().select(run, select, config)
        if config.psx is not None and Path(config.psx).is_file() and len(conds) != 1:
            raise PipelineError(f"--psx {config.psx} is one file: name one condition with --cond")
        return conds

    def run(
        self, run: RunDir, task: tasks.Cond, config: MasksConfig, device, force: bool = False
    ) -> tuple[store.Outcome, str]:
        cond, lines = task.cond, []
        paper = masks.run_paper_detection(run, cond, Path(config.paper_psx), force)
        if paper is not None:
            lines.append(f"{paper.value}: {run.paper_detection(cond)} (on the paper's psx)")
        made = masks.run_masks(run, cond, masks.resolve_psx(config.psx and Path(config.psx), run, cond), force)
        for method, path in masks.mask_paths(run, cond).items():
            d = store.verify(path)["info"]["detection"]
            f1 = "-" if d["f1"] is None else f"{d['f1']:.3f}"
            lines.append(f"{made[method].value}: {path}  keep {d['keep_fraction']:.3f}  F1 {f1}")
        if run.old_masks(cond).exists():
            lines.append(
                f"note: {run.old_masks(cond)} holds the masks of the layout before one file per method; nothing "
                "reads it now (coteach results made from it are stale: make coteach retrains them); remove it"
            )
        return store.Outcome.of([*made.values(), *([paper] if paper is not None else [])]), "\n".join(lines)


STAGE = Masks()

if __name__ == "__main__":
    workers.main(STAGE)
