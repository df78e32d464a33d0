"""Dataset sources -> one decoded uint8 cache (``dataset.npz``).

Sources:
  * an ImageFolder root (a directory, or a ``.tar.gz`` of one) with ``train/`` and ``test/``,
    ordered exactly like ``torchvision.datasets.ImageFolder`` (class folder, then path as a string);
  * torchvision's ``cifar-10-batches-py`` folder, put in that same order (ids ``<class>/<i>_<class>``);
  * ``digits``: scikit-learn's 8x8 digits, split into a fixed stratified train/test.

The cache holds ``train_x``/``test_x`` (N, H, W, C) uint8, ``train_y``/``test_y`` (the dataset's
own labels, taken as true), ``train_ids`` (stable string ids ``<class>/<file stem>``),
``train_source_index`` (the original CIFAR-10 index ``<i>`` where the file name carries one, else -1)
and ``classes``.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline import store
from pipeline.store import PipelineError, load_npz

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DIGITS = "digits"


@dataclass
class Dataset:
    train_x: np.ndarray
    train_y: np.ndarray
    train_ids: np.ndarray
    train_source_index: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)


def load(path: Path) -> Dataset:
    arrays = load_npz(path)
    missing = set(Dataset.__dataclass_fields__) - set(arrays)
    if missing:
        raise PipelineError(f"{path}: not a dataset cache (missing {', '.join(sorted(missing))})")
    return Dataset(**arrays)


@functools.lru_cache(maxsize=1)
def _cached(path: Path, mtime_ns: int) -> Dataset:
    return load(path)


def cached(path: Path) -> Dataset:
    """``load(path)``, once per process while the file is unchanged (a worker runs many tasks)."""
    return _cached(Path(path), Path(path).stat().st_mtime_ns)


def prepare(path: Path, source: str, force: bool = False) -> bool:
    """Decode ``source`` into the cache at ``path`` unless it is already there; True if work was done."""
    config = {"source": source if source == DIGITS else str(Path(source).resolve())}
    if not force and store.is_current(path, {}, config):
        return False
    start = time.perf_counter()
    ds = read_source(source)
    store.save_npz(path, **ds.arrays())
    info = {"train": list(ds.train_x.shape), "test": list(ds.test_x.shape), "classes": ds.classes.tolist()}
    store.write_manifest(path, {}, config, wall_s=time.perf_counter() - start, info=info)
    return True


def read_source(source: str) -> Dataset:
    """Decode a source (see module docstring) into a Dataset. Never downloads."""
    if source == DIGITS:
        return _digits()
    path = Path(source)
    if not path.exists():
        raise PipelineError(
            f"{source}: no such dataset. Pass DATA=<ImageFolder root with train/ and test/>, "
            f"a .tar.gz of one, a torchvision 'cifar-10-batches-py' folder, or '{DIGITS}'. "
            "Nothing is downloaded."
        )
    if path.is_dir() and (path / "data_batch_1").exists():
        return _cifar_batches(path)
    if path.is_dir() and (path / "cifar-10-batches-py").is_dir():
        return _cifar_batches(path / "cifar-10-batches-py")
    return _imagefolder(path)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    idx = np.arange(len(images))
    train, test = train_test_split(idx, test_size=0.25, random_state=0, stratify=digits.target)
    train, test = np.sort(train), np.sort(test)
    return Dataset(
        train_x=images[train],
        train_y=digits.target[train].astype(np.int64),
        train_ids=np.array([f"{digits.target[i]}/{i}" for i in train]),
        train_source_index=train.astype(np.int64),
        test_x=images[test],
        test_y=digits.target[test].astype(np.int64),
        classes=np.array([str(c) for c in range(10)]),
    )


def _cifar_batches(folder: Path) -> Dataset:
    def unpickle(name):
        try:
            with open(folder / name, "rb") as f:
                return pickle.load(f, encoding="latin1")
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            raise PipelineError(f"{folder / name}: cannot read CIFAR-10 batch ({e})") from None

    classes = np.array(unpickle("batches.meta")["label_names"])
    batches = [unpickle(f"data_batch_{i}") for i in range(1, 6)]
    test = unpickle("test_batch")
    to_nhwc = lambda data: np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    x = np.concatenate([to_nhwc(b["data"]) for b in batches])
    y = np.concatenate([b["labels"] for b in batches]).astype(np.int64)
    stems = np.array([f"{i}_{classes[c]}" for i, c in enumerate(y)])
    order = np.lexsort((stems, y))  # ImageFolder order: class, then file name as a string
    test_y = np.asarray(test["labels"], np.int64)
    test_order = np.lexsort((np.array([f"{i}_{classes[c]}" for i, c in enumerate(test_y)]), test_y))
    return Dataset(
        train_x=x[order],
        train_y=y[order],
        train_ids=np.array([f"{classes[y[i]]}/{stems[i]}" for i in order]),
        train_source_index=order.astype(np.int64),
        test_x=to_nhwc(test["data"])[test_order],
        test_y=test_y[test_order],
        classes=classes,
    )


def source_index(stem: str) -> int:
    """The original index ``<i>`` of a file named ``<i>_<class>``, else -1."""
    m = re.match(r"(\d+)_", stem)
    return int(m.group(1)) if m else -1


class _Files:
    """Uniform listing/reading of an ImageFolder held in a directory or a tarball."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs = None
        if path.is_dir():
            self.names = [
                os.path.relpath(os.path.join(d, f), path).replace(os.sep, "/")
                for d, _, files in os.walk(path, followlinks=True)
                for f in files
            ]
            return
        # A compressed tarball cannot seek cheaply: read it once, in archive order, into memory.
        try:
            with tarfile.open(path) as tar:
                blobs = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PipelineError(f"{path}: not a directory or a readable tar archive ({e})") from None
        # The archive may wrap the layout in a folder (cifar10/train/...): strip up to train/.
        roots = ["" if n.startswith("train/") else n[: n.index("/train/") + 1] for n in blobs
                 if n.startswith("train/") or "/train/" in n]
        prefix = min(roots, key=len) if roots else ""
        self.blobs = {n[len(prefix):]: b for n, b in blobs.items() if n.startswith(prefix)}
        self.names = list(self.blobs)

    def read(self, name: str) -> bytes:
        if self.blobs is None:
            return (self.path / name).read_bytes()
        return self.blobs[name]


def imagefolder_index(files: _Files, split: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(classes, [(class index, relative path)]) in torchvision ImageFolder order."""
    entries = {}
    for name in files.names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[0] == split and name.lower().endswith(IMG_EXTENSIONS):
            entries.setdefault(parts[1], []).append("/".join(parts[2:]))
    if not entries:
        raise PipelineError(f"{files.path}: no images under {split}/<class>/ (expected an ImageFolder layout)")
    classes = sorted(entries)
    # os.walk visits a folder's files before its subfolders, both sorted: sort by (folder, file name).
    key = lambda rel: (os.path.dirname(rel), os.path.basename(rel))
    return classes, [(c, rel) for c, cls in enumerate(classes) for rel in sorted(entries[cls], key=key)]


def _decode(files: _Files, split: str, cls: str, rel: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    name = f"{split}/{cls}/{rel}"
    try:
        with Image.open(io.BytesIO(files.read(name))) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise PipelineError(f"{files.path}/{name}: unreadable image ({e})") from None


def _imagefolder(path: Path) -> Dataset:
    files = _Files(path)
    out = {}
    for split in ("train", "test"):
        classes, entries = imagefolder_index(files, split)
        images = [
            _decode(files, split, classes[c], rel)
            for c, rel in tqdm(entries, desc=f"decode {split}", unit="img", disable=None, mininterval=1)
        ]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise PipelineError(f"{path}/{split}: images differ in size ({sorted(shapes)[:3]}...); resize them first")
        out[split] = classes, entries, np.stack(images)
    train_classes, train_entries, train_x = out["train"]
    test_classes, test_entries, test_x = out["test"]
    if train_classes != test_classes:
        raise PipelineError(f"{path}: train/ and test/ have different class folders")
    stems = [os.path.splitext(rel)[0] for _, rel in train_entries]
    return Dataset(
        train_x=train_x,
        train_y=np.array([c for c, _ in train_entries], np.int64),
        train_ids=np.array([f"{train_classes[c]}/{s}" for (c, _), s in zip(train_entries, stems)]),
        train_source_index=np.array([source_index(os.path.basename(s)) for s in stems], np.int64),
        test_x=test_x,
        test_y=np.array([c for c, _ in test_entries], np.int64),
        classes=np.array(train_classes),
    )
