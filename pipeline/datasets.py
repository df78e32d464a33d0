"""Dataset sources -> one decoded uint8 cache (``dataset.npz``), the root artifact of a run.

Sources, one file each in ``pipeline/sources/``: an ImageFolder root or a ``.tar.gz`` of one
(``imagefolder``), a ``.csv`` of path,label[,split] (``csv_file``), torchvision's ``cifar-10-batches-py``
folder (``cifar_batches``), and ``digits``, scikit-learn's 8x8 digits.

The cache holds ``train_x``/``test_x`` (N, H, W, C) uint8, ``train_y``/``test_y`` (the dataset's
own labels), ``train_ids`` (stable string ids: ``<class>/<file stem>``, or the CSV's path),
``train_source_index`` (the original CIFAR-10 index ``<i>`` where the file name carries one, else -1)
and ``classes`` (2 to 1,000 of them). Pixels: C = 1 when every image is grayscale, else 3 (grayscale
ones repeated); 16-bit images are scaled to 8 bits (not clipped); palette images take their colours;
transparent pixels are composited onto white (as viewers show them); 32-bit integer and float images
are refused. Images must share one size unless ``image_size`` resizes each (antialiased) to N x N.
A row that cannot be used (unreadable image; in a CSV also a missing file, a duplicate path, an
empty field, a class with no training rows) is an error naming the file and line, or with
``skip_bad`` is left out and counted in the manifest.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from pipeline import files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.sources import NAMED, ON_DISK, digits
from pipeline.sources.base import TEST_FRACTION, Dataset, Options, Source

DIGITS = digits.NAME


@functools.lru_cache(maxsize=1)
def _cached(path: Path, stat: tuple) -> Dataset:
    store.verify(path)
    arrays = files.load(path, mapped=True)
    missing = set(Dataset.__dataclass_fields__) - set(arrays)
    if missing:
        raise PipelineError(f"{path}: not a dataset cache (missing {', '.join(sorted(missing))})")
    return Dataset(**{k: arrays[k] for k in Dataset.__dataclass_fields__})


def cached(path: Path) -> Dataset:
    """The verified dataset cache, opened once per process while the file is unchanged: its images memory-mapped
    (read from disk as rows are used, so a cache larger than memory works), the rest loaded."""
    st = os.stat(path)
    return _cached(Path(path), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


def prepare(
    run: RunDir,
    source: str,
    force: bool = False,
    image_size: int | None = None,
    test_fraction: float | None = None,
    skip_bad: bool = False,
    audit_test: bool = False,
    workers: int = 1,
) -> store.Outcome:
    """Decode ``source`` into the run's cache unless it is current (same source, unchanged, same options);
    The manifest counts the rows ``skip_bad`` left out, with the first few reasons. An option
    the source cannot apply is refused (see ``read_source``), so the manifest records only options that acted.
    Images are decoded by ``workers`` processes into ``.data.partial/<config>/`` in the run (memory-mapped, so a
    source larger than memory is decoded in bounded memory), which a killed decode resumes from, then copied
    into the cache a chunk at a time; the folder is removed once the cache is written."""
    where = source if source == DIGITS else str(Path(source).resolve())
    config = {
        "source": where,
        "fingerprint": fingerprint(source),
        "image_size": image_size,
        "test_fraction": TEST_FRACTION if test_fraction is None else test_fraction,
        "skip_bad": skip_bad,
    }
    if audit_test:  # recorded only when set: caches made before the option existed stay current
        config["audit_test"] = True

    staging = run.root / ".data.partial" / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    def make():
        skipped: list[str] = []
        for other in staging.parent.glob("*"):  # a killed decode with other options: not resumable
            if other != staging:
                shutil.rmtree(other, ignore_errors=True)
        ds = read_source(source, image_size, test_fraction, skipped if skip_bad else None, audit_test, staging, workers)
        counts = np.bincount(ds.train_y, minlength=ds.num_classes)
        info = {
            "n_train": len(ds.train_y),
            "n_test": len(ds.test_y),
            "image_shape": list(ds.train_x.shape[1:]),
            "classes": ds.classes.tolist(),
            "train_per_class": {"min": int(counts.min()), "max": int(counts.max())},
            "skipped": len(skipped),
            "skipped_first": skipped[:20],
        }
        return ds.arrays(), info

    try:
        made = store.produce(run.dataset, root=run.root, stage="data", inputs={}, config=config, make=make, force=force)
    except PipelineError:  # the source refused: nothing of it stays (a stopped or killed decode keeps it, to resume)
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # if empty
        raise
    shutil.rmtree(staging.parent, ignore_errors=True)
    return made


def find(source: str) -> tuple[Source, Path]:
    """The source that reads ``source`` (a path, or a name such as ``digits``), and its path."""
    if source in NAMED:
        return NAMED[source], Path(source)
    path = Path(source)
    if not path.exists():
        raise PipelineError(
            f"{source}: no such dataset. Pass DATA=<ImageFolder root with train/ and test/>, "
            f"a .tar.gz of one, a torchvision 'cifar-10-batches-py' folder, a CSV of path,label, or '{DIGITS}'. "
            "Nothing is downloaded."
        )
    return next(s for s in ON_DISK if s.claims(path)), path


def fingerprint(source: str) -> str:
    """What identifies a source's contents cheaply (see each ``Source.fingerprint``)."""
    kind, path = find(source)
    return kind.fingerprint(path)


def read_source(
    source: str,
    image_size: int | None = None,
    test_fraction: float | None = None,
    skipped: list[str] | None = None,
    audit_test: bool = False,
    staging: Path | None = None,
    workers: int = 1,
) -> Dataset:
    """Decode a source into a Dataset. Never downloads. ``skipped``: leave out unusable rows, appending one
    line on each, instead of failing. ``test_fraction`` (None: TEST_FRACTION) applies only to a source without
    a train/test split; an option given to a source that cannot apply it (``--image-size`` to digits,
    ``--test-fraction`` to a split source, ...) is refused, not recorded. ``staging``: a folder to decode into
    (resumable; the images stay there, as ``Rows``, until saved); None: in memory. ``workers``: decoding processes."""
    if image_size is not None and not 1 <= image_size <= 4096:
        raise PipelineError(f"--image-size {image_size}: expected an integer in [1, 4096]")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise PipelineError(f"--test-fraction {test_fraction}: expected a number in (0, 1)")
    kind, path = find(source)
    ds = kind.read(path, Options(image_size, test_fraction, skipped, audit_test, staging, workers))
    return ds if staging is not None else ds.in_memory()
