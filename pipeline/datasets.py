"""Dataset sources -> one decoded uint8 cache (``dataset.npz``), the root artifact of a run.

Sources:
  * an ImageFolder root (a directory, or a ``.tar.gz`` of one) with ``train/`` and ``test/``,
    ordered exactly like ``torchvision.datasets.ImageFolder`` (class folder, then path as a string);
    symlinks are followed inside the tree only; every class folder must hold an image;
  * torchvision's ``cifar-10-batches-py`` folder, put in that same order (ids ``<class>/<i>_<class>``);
  * ``digits``: scikit-learn's 8x8 digits, split into a fixed stratified train/test.

The cache holds ``train_x``/``test_x`` (N, H, W, C) uint8, ``train_y``/``test_y`` (the dataset's
own labels, taken as true), ``train_ids`` (stable string ids ``<class>/<file stem>``),
``train_source_index`` (the original CIFAR-10 index ``<i>`` where the file name carries one, else -1)
and ``classes``. Pixels: 8-bit modes become RGB; 16-bit ones are scaled to 8 bits (not clipped);
32-bit integer and float images are refused.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.layout import RunDir
from pipeline.store import PipelineError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DIGITS = "digits"
LOG_EVERY = 10_000  # images between progress lines while decoding


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


@functools.lru_cache(maxsize=1)
def _cached(path: Path, stat: tuple) -> Dataset:
    arrays = store.read(path)
    missing = set(Dataset.__dataclass_fields__) - set(arrays)
    if missing:
        raise PipelineError(f"{path}: not a dataset cache (missing {', '.join(sorted(missing))})")
    return Dataset(**{k: arrays[k] for k in Dataset.__dataclass_fields__})


def cached(path: Path) -> Dataset:
    """The verified dataset cache, loaded once per process while the file is unchanged."""
    st = os.stat(path)
    return _cached(Path(path), (st.st_ino, st.st_size, st.st_mtime_ns))


def prepare(run: RunDir, source: str, force: bool = False) -> bool:
    """Decode ``source`` into the run's cache unless it is current (same source, unchanged); True if made."""
    where = source if source == DIGITS else str(Path(source).resolve())
    config = {"source": where, "fingerprint": fingerprint(source)}

    def make():
        ds = read_source(source)
        info = {"n_train": len(ds.train_y), "n_test": len(ds.test_y), "image_shape": list(ds.train_x.shape[1:]),
                "classes": ds.classes.tolist()}
        return ds.arrays(), info

    return store.produce(run.dataset, stage="data", inputs={}, config=config, make=make, force=force)


def fingerprint(source: str) -> str:
    """What identifies a source's contents cheaply: a file's sha256, a folder's listing of (path, size, mtime)."""
    if source == DIGITS:
        return DIGITS
    path = _existing(source)
    if path.is_file():
        return store.checksum(path)
    h = hashlib.sha256()
    for name in sorted(_walk(path)[0]):
        st = os.stat(path / name)
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "listing:" + h.hexdigest()


def _existing(source: str) -> Path:
    path = Path(source)
    if not path.exists():
        raise PipelineError(
            f"{source}: no such dataset. Pass DATA=<ImageFolder root with train/ and test/>, "
            f"a .tar.gz of one, a torchvision 'cifar-10-batches-py' folder, or '{DIGITS}'. Nothing is downloaded."
        )
    return path


def read_source(source: str) -> Dataset:
    """Decode a source (see module docstring) into a Dataset. Never downloads."""
    if source == DIGITS:
        return _digits()
    path = _existing(source)
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
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as e:
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


def _walk(root: Path) -> tuple[list[str], set[str]]:
    """(files, folders) under ``root`` as relative '/' paths. Symlinks are followed while they stay in
    the tree; one that leaves it, is broken, or loops back to a folder above it is an error."""
    top = root.resolve()
    files, dirs = [], set()

    def visit(folder: Path, rel: str, above: tuple[Path, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise PipelineError(f"{folder}: cannot list it ({e.strerror or e})") from None
        for entry in entries:
            path, name = Path(entry.path), f"{rel}{entry.name}"
            real = path.resolve()
            if entry.is_symlink():
                if real != top and top not in real.parents:
                    raise PipelineError(f"{path}: a symlink out of the dataset folder (to {real}); copy the files in instead")
                if not real.exists():
                    raise PipelineError(f"{path}: a broken symlink")
            if entry.is_dir(follow_symlinks=True):
                if real in above:
                    raise PipelineError(f"{path}: a symlink loop (back to {real})")
                dirs.add(name)
                visit(path, f"{name}/", above + (real,))
            elif entry.is_file(follow_symlinks=True):
                files.append(name)

    visit(root, "", (top,))
    return files, dirs


class _Files:
    """Uniform listing/reading of an ImageFolder held in a directory or a tarball."""

    def __init__(self, path: Path):
        self.path = path
        self.blobs = None
        if path.is_dir():
            self.names, self.dirs = _walk(path)
            return
        # A compressed tarball cannot seek cheaply: read it once, in archive order, into memory.
        try:
            with tarfile.open(path) as tar:
                members = tar.getmembers()
                links = [m.name for m in members if m.issym() or m.islnk()]
                if links:
                    raise PipelineError(f"{path}: holds links ({links[0]}, ...); pack the files themselves")
                blobs = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
                dirs = {m.name.rstrip("/") for m in members if m.isdir()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise PipelineError(f"{path}: not a directory or a readable tar archive ({e})") from None
        # The archive may wrap the layout in a folder (cifar10/train/...): strip up to train/.
        roots = ["" if n.startswith("train/") else n[: n.index("/train/") + 1] for n in blobs
                 if n.startswith("train/") or "/train/" in n]
        prefix = min(roots, key=len) if roots else ""
        self.blobs = {n[len(prefix):]: b for n, b in blobs.items() if n.startswith(prefix)}
        self.names = list(self.blobs)
        parents = {"/".join(n.split("/")[:i]) for n in self.names for i in range(1, n.count("/") + 1)}
        self.dirs = {d[len(prefix):] for d in dirs if d.startswith(prefix)} | parents

    def read(self, name: str) -> bytes:
        if self.blobs is None:
            return (self.path / name).read_bytes()
        return self.blobs[name]


def imagefolder_index(files: _Files, split: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(classes, [(class index, path relative to the class folder)]) in torchvision ImageFolder order."""
    classes = sorted(d.split("/")[1] for d in files.dirs if d.count("/") == 1 and d.startswith(f"{split}/"))
    if not classes:
        raise PipelineError(f"{files.path}: no class folders under {split}/ (expected {split}/<class>/<image>)")
    entries: dict[str, list[str]] = {c: [] for c in classes}
    for name in files.names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[0] == split and parts[1] in entries and name.lower().endswith(IMG_EXTENSIONS):
            entries[parts[1]].append("/".join(parts[2:]))
    empty = [c for c in classes if not entries[c]]
    if empty:
        raise PipelineError(f"{files.path}/{split}/{empty[0]}: class folder holds no images ({', '.join(IMG_EXTENSIONS)})")
    # os.walk visits a folder's files before its subfolders, both sorted: sort by (folder, file name).
    key = lambda rel: (os.path.dirname(rel), os.path.basename(rel))
    return classes, [(c, rel) for c, cls in enumerate(classes) for rel in sorted(entries[cls], key=key)]


def _pixels(data: bytes, name: str) -> np.ndarray:
    """An image's pixels as uint8 HWC RGB: 16-bit modes scaled to 8 bits, 32-bit and float modes refused."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode.startswith("I;16"):
                gray = (np.asarray(im).astype(np.uint32) * 255 + 32767) // 65535
                return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
            if im.mode in ("I", "F"):
                raise PipelineError(f"{name}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} pixels "
                                    f"(mode {im.mode}); convert it to 8 or 16 bits per channel")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise PipelineError(f"{name}: unreadable image ({e})") from None


def _imagefolder(path: Path) -> Dataset:
    files = _Files(path)
    out = {}
    for split in ("train", "test"):
        classes, entries = imagefolder_index(files, split)
        images, start = [], time.perf_counter()
        for i, (c, rel) in enumerate(entries, 1):
            name = f"{split}/{classes[c]}/{rel}"
            images.append(_pixels(files.read(name), f"{path}/{name}"))
            if i % LOG_EVERY == 0 or i == len(entries):
                print(f"decode {split}: {i}/{len(entries)} images ({time.perf_counter() - start:.1f} s)", flush=True)
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
