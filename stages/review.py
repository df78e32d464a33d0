"""review: the label issues to look at, per condition: label_issues.csv (every example a CL method flags,
ranked by cleanlab's label quality score, with the given and suggested label) and label_issues.png (a
gallery of the first --top of them, "given -> suggested" under each; --by-class: one per given class)."""

from dataclasses import dataclass

from pipeline import review, store, tasks, workers
from pipeline.layout import RunDir
from pipeline.options import Range, option


@dataclass(frozen=True)
class ReviewConfig:
    top: int = option(40, "images in each gallery, lowest label quality first", Range(int, 1, 10_000))
    by_class: bool = option(False, "also one gallery per given class: label_issues/<k>_<class>.png")


class Review(tasks.Stage):
    name, Config = "review", ReviewConfig

    def run(self, run: RunDir, task: tasks.Cond, config: ReviewConfig, device, force: bool = False) -> tuple[store.Outcome, str]:
        made, files = review.run_review(run, task.cond, config.top, config.by_class, force)
        with open(files[0]) as f:
            flagged = sum(1 for _ in f) - 1
        return made, (f"{made.value}: {task.cond}: {flagged} label issues: {files[0]}, gallery {files[1]}"
                      + (f" (+{len(files) - 2} per class)" if len(files) > 2 else ""))


STAGE = Review()

if __name__ == "__main__":
    workers.main(STAGE)
