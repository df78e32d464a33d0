"""data: decode a dataset source into the run's uint8 cache (dataset.npz)."""

import argparse
from typing import NamedTuple

from pipeline import datasets, store, tasks, workers
from pipeline.layout import RunDir
from pipeline.options import Range


class Task(NamedTuple):
    """The one task: decode ``source`` with these options."""

    source: str
    image_size: int | None
    test_fraction: float | None
    skip_bad: bool
    audit_test: bool
    workers: int


class Data(tasks.Stage):
    name, unit, pooled, creates_run = "data", "(run)", False, True

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--source",
            required=True,
            help="an ImageFolder root (or .tar.gz of one): train/ and test/ of class folders, or class folders "
            "alone; a CSV of path,label[,split]; a cifar-10-batches-py folder; or 'digits'",
        )
        p.add_argument(
            "--image-size",
            type=Range(int, 1, 4096, optional=True),
            default=None,
            help="resize every image (antialiased) to N x N; none: keep the size, which all images must share "
            "(refused for digits and cifar-10-batches-py, which have one size)",
        )
        p.add_argument(
            "--test-fraction",
            type=Range(float, 0, 1, lo_open=True, hi_open=True, optional=True),
            default=None,
            help="held out as the test set, stratified by class, for a source without a train/test split "
            f"(none: {datasets.TEST_FRACTION}); refused for a source with one",
        )
        p.add_argument(
            "--audit-test",
            action="store_true",
            help="audit the source's test split: its test images become the rows every stage works on (the "
            "training rows), and no test set is left; pretrain a backbone on the training split in another "
            "run (python -m stages.backbone) and probe or fine-tune from it",
        )
        p.add_argument(
            "--workers",
            type=Range(int, 1, 256),
            default=1,
            help="processes decoding images (the cache is the same for any number; a killed decode resumes)",
        )
        p.add_argument(
            "--skip-bad",
            action="store_true",
            help="leave out unusable rows (unreadable or missing image, duplicate path, unknown class, ...) "
            "and count them in the manifest, instead of stopping at the first",
        )

    def select(self, run: RunDir, args: argparse.Namespace, config) -> list[Task]:
        return [Task(args.source, args.image_size, args.test_fraction, args.skip_bad, args.audit_test, args.workers)]

    def run(self, run: RunDir, task: Task, config, device, force: bool = False) -> tuple[store.Outcome, str]:
        made = datasets.prepare(
            run, task.source, force, task.image_size, task.test_fraction, task.skip_bad, task.audit_test, task.workers
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
