"""data: decode a dataset source into the run's uint8 cache (dataset.npz)."""

from dataclasses import MISSING, dataclass
from typing import NamedTuple

from pipeline import datasets, store, tasks, workers
from pipeline.layout import RunDir
from pipeline.options import Options, Range, option


@dataclass(frozen=True)
class DataConfig(Options):
    source: str = option(
        MISSING,
        "an ImageFolder root (or .tar.gz of one): train/ and test/ of class folders, or class folders "
        "alone; a CSV of path,label[,split]; a cifar-10-batches-py folder; or 'digits'",
    )
    image_size: int | None = option(
        None,
        "resize every image (antialiased) to N x N; none: keep the size, which all images must share "
        "(refused for digits and cifar-10-batches-py, which have one size)",
        Range(int, 1, 4096, optional=True),
    )
    test_fraction: float | None = option(
        None,
        "held out as the test set, stratified by class, for a source without a train/test split "
        f"(none: {datasets.TEST_FRACTION}); refused for a source with one",
        Range(float, 0, 1, lo_open=True, hi_open=True, optional=True),
    )
    audit_test: bool = option(
        False,
        "audit the source's test split: its test images become the rows every stage works on (the "
        "training rows), and no test set is left; pretrain a backbone on the training split in another "
        "run (python -m stages.backbone) and probe or fine-tune from it",
    )
    workers: int = option(
        1,
        "processes decoding images (the cache is the same for any number; a killed decode resumes)",
        Range(int, 1, 256),
    )
    skip_bad: bool = option(
        False,
        "leave out unusable rows (unreadable or missing image, duplicate path, unknown class, ...) "
        "and count them in the manifest, instead of stopping at the first",
    )


class Task(NamedTuple):
    """The one task: decode ``source`` (with the config's options)."""

    source: str


class Data(tasks.Stage):
    name, unit, pooled, creates_run = "data", "(run)", False, True
    Select, Config = tasks.NoSelect, DataConfig

    def select(self, run: RunDir, select, config: DataConfig) -> list[Task]:
        return [Task(config.source)]

    def run(
        self, run: RunDir, task: Task, config: DataConfig, device, force: bool = False
    ) -> tuple[store.Outcome, str]:
        c = config
        made = datasets.prepare(
            run, task.source, force, c.image_size, c.test_fraction, c.skip_bad, c.audit_test, c.workers
        )
        info = store.verify(run.dataset)["info"]
        skipped = (
            f"; {info['skipped']} unusable row(s) left out (first: {info['skipped_first'][0]})"
            if info.get("skipped")
            else ""
        )
        return made, (
            f"{made.value}: {run.dataset}  {info['n_train']} train / {info['n_test']} test, "
            f"{len(info['classes'])} classes, images {'x'.join(map(str, info['image_shape']))}{skipped}"
        )

    def describe(self, task: Task) -> str:
        return task.source


STAGE = Data()

if __name__ == "__main__":
    workers.main(STAGE)
