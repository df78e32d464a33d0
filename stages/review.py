"""review: the label issues to look at, per condition: label_issues.csv (every example a CL method flags,
ranked by cleanlab's label quality score, with the given and suggested label) and label_issues.png (a
gallery of the first --top of them, "given -> suggested" under each; --by-class: one per given class); where the
psx is a linear probe's, Datalab's outliers and near-duplicates in its features: data_issues.csv, outliers.png,
near_duplicates.png."""

from dataclasses import dataclass

from pipeline import review, store, tasks, workers
from pipeline.layout import RunDir
from pipeline.options import Options, Range, option


@dataclass(frozen=True)
class ReviewConfig(Options):
    top: int = option(40, "images in each gallery, lowest label quality first", Range(int, 1, 10_000))
    by_class: bool = option(False, "also one gallery per given class: label_issues/<k>_<class>.png")


class Review(tasks.Stage):
    name, Config = "review", ReviewConfig

    def run(
        self, run: RunDir, task: tasks.Cond, config: ReviewConfig, device, force: bool = False
    ) -> tuple[store.Outcome, str]:
        made, files = review.run_review(run, task.cond, config.top, config.by_class, force)
        with open(files[0]) as f:
            flagged = sum(1 for _ in f) - 1
        data = [f for f in files if f.name == "data_issues.csv"]
        per_class = sum(f.parent.name == "label_issues" for f in files)
        line = f"{made.value}: {task.cond}: {flagged} label issues: {files[0]}, gallery {files[1]}"
        line += f" (+{per_class} per class)" if per_class else ""
        if data:
            info = store.verify(data[0])["info"]
            line += f"; {info['outliers']} outliers, {info['near_duplicates']} near-duplicates: {data[0]}"
        return made, line + f"; review page {files[-1]}"


STAGE = Review()

if __name__ == "__main__":
    workers.main(STAGE)
