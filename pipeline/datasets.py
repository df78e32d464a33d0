"""Dataset sources -> one decoded uint8 cache (``dataset.npz``), the root artifact of a run.

Sources:
  * an ImageFolder root (a directory, or a ``.tar.gz`` of one): with ``train/`` and ``test/`` of
    class folders, or class folders alone (then a stratified ``test_fraction`` is held out), ordered
    exactly like ``torchvision.datasets.ImageFolder`` (class folder, then path as a string);
    symlinks are followed inside the tree only; every class folder must hold an image;
  * a ``.csv`` with a header and the columns ``path`` (relative to the CSV) and ``label`` (class
    names, or integers), and optionally ``split`` (``train`` / ``test``; without it a stratified
    ``test_fraction`` is held out); classes are the training rows' labels (integers sort as numbers);
  * torchvision's ``cifar-10-batches-py`` folder, put in ImageFolder order (ids ``<class>/<i>_<class>``);
  * ``digits``: scikit-learn's 8x8 digits, split into a fixed stratified train/test.

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

import codecs
import csv
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
from typing import Callable

import numpy as np

from pipeline import store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DIGITS = "digits"
LOG_EVERY = 10_000  # images between progress lines while decoding
MAX_CLASSES = 1000
GRAY_MODES = ("1", "L", "LA", "La")


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


def prepare(run: RunDir, source: str, force: bool = False, image_size: int | None = None, test_fraction: float | None = None,
            skip_bad: bool = False) -> bool:
    """Decode ``source`` into the run's cache unless it is current (same source, unchanged, same options);
    True if made. The manifest counts the rows ``skip_bad`` left out, with the first few reasons. An option
    the source cannot apply is refused (see ``read_source``), so the manifest records only options that acted."""
    where = source if source == DIGITS else str(Path(source).resolve())
    config = {"source": where, "fingerprint": fingerprint(source), "image_size": image_size,
              "test_fraction": TEST_FRACTION if test_fraction is None else test_fraction, "skip_bad": skip_bad}

    def make():
        skipped: list[str] = []
        ds = read_source(source, image_size, test_fraction, skipped if skip_bad else None)
        counts = np.bincount(ds.train_y, minlength=ds.num_classes)
        info = {"n_train": len(ds.train_y), "n_test": len(ds.test_y), "image_shape": list(ds.train_x.shape[1:]),
                "classes": ds.classes.tolist(), "train_per_class": {"min": int(counts.min()), "max": int(counts.max())},
                "skipped": len(skipped), "skipped_first": skipped[:20]}
        return ds.arrays(), info

    return store.produce(run.dataset, stage="data", inputs={}, config=config, make=make, force=force)


def fingerprint(source: str) -> str:
    """What identifies a source's contents cheaply: a file's sha256, a folder's listing of (path, size, mtime)."""
    if source == DIGITS:
        return DIGITS
    path = _existing(source)
    if path.is_file() and not _is_csv(path):
        return store.checksum(path)
    h = hashlib.sha256()
    if path.is_file():  # a CSV and the files it lists
        h.update(store.checksum(path).encode())
        names = sorted({r.get("path", "") for r in _csv_rows(path)[1]})
        folder = path.parent
    else:
        names, folder = sorted(_walk(path)[0]), path
    for name in names:
        try:
            st = os.stat(folder / name)
        except (OSError, ValueError):  # missing, or a NUL in the name: the source's reader names the row
            continue
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


def read_source(source: str, image_size: int | None = None, test_fraction: float | None = None,
                skipped: list[str] | None = None) -> Dataset:
    """Decode a source (see module docstring) into a Dataset. Never downloads. ``skipped``: leave out
    unusable rows, appending one line on each, instead of failing. ``test_fraction`` (None: TEST_FRACTION)
    applies only to a source without a train/test split; an option given to a source that cannot apply it
    (``--image-size`` to digits, ``--test-fraction`` to a split source, ...) is refused, not recorded."""
    if image_size is not None and not 1 <= image_size <= 4096:
        raise PipelineError(f"--image-size {image_size}: expected an integer in [1, 4096]")
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise PipelineError(f"--test-fraction {test_fraction}: expected a number in (0, 1)")
    given = {"--image-size": image_size is not None, "--test-fraction": test_fraction is not None, "--skip-bad": skipped is not None}
    if source == DIGITS:
        _applies(given, set(), "digits", "8x8 images with their own 25% test split, all readable")
        return _digits()
    path = _existing(source)
    if path.is_dir() and ((path / "data_batch_1").exists() or (path / "cifar-10-batches-py").is_dir()):
        folder = path if (path / "data_batch_1").exists() else path / "cifar-10-batches-py"
        _applies(given, set(), folder, "a cifar-10-batches-py folder: 32x32 images with their own test_batch")
        return _cifar_batches(folder)
    decoder = _Decoder(image_size, skipped)
    if path.is_file() and _is_csv(path):
        return _csv_source(path, decoder, test_fraction)
    return _imagefolder(path, decoder, test_fraction)


TEST_FRACTION = 0.2  # held out (stratified) from a source without a train/test split, unless --test-fraction says


def _applies(given: dict[str, bool], applies: set[str], where, why: str) -> None:
    """Refuse the options given that ``where`` cannot apply (a manifest must not record an option that did nothing)."""
    bad = [flag for flag, on in given.items() if on and flag not in applies]
    if bad:
        raise PipelineError(f"{where}: {' and '.join(bad)} {'does' if len(bad) == 1 else 'do'} not apply to this source ({why}); "
                            "leave it out")


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


def _plain_dtype(*args):
    """``numpy.dtype`` for the unpickler: numbers, bytes and strings only (an object dtype could hold anything)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"dtype {dtype} holds Python objects")
    return dtype


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds (dicts, lists, bytes, str, numbers, numpy arrays of plain
    dtypes) and refuses every other global, so a crafted file cannot run code while it is read."""

    def find_class(self, module, name):
        from numpy._core import multiarray

        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _plain_dtype,
                   ("_codecs", "encode"): codecs.encode}  # protocol 2 writes bytes as encode(str, 'latin1')
        for core in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1's and 2's module names
            allowed |= {(core, "_reconstruct"): multiarray._reconstruct, (core, "scalar"): multiarray.scalar}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds no code")
        return allowed[module, name]


def _cifar_batches(folder: Path) -> Dataset:
    def unpickle(name):
        try:
            with open(folder / name, "rb") as f:
                return _BatchUnpickler(f, encoding="latin1").load()
        except IsADirectoryError:
            raise PipelineError(f"{folder / name}: a directory, not a CIFAR-10 batch file") from None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, KeyError, IndexError) as e:
            text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise PipelineError(f"{folder / name}: cannot read CIFAR-10 batch ({text})") from None

    def batch(name):
        """(images NHWC uint8, labels) of one batch file, checked: a dict of N x 3072 bytes and N labels in range."""
        b = unpickle(name)
        try:
            data, labels = np.asarray(b["data"]), np.asarray(b["labels"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
                raise ValueError(f"data {data.dtype} {data.shape} and labels {labels.shape}: expected N x 3072 uint8 and N")
            if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(classes):
                raise ValueError(f"labels must be integers in [0, {len(classes)})")
        except (TypeError, KeyError, IndexError, ValueError) as e:
            raise PipelineError(f"{folder / name}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)

    meta = unpickle("batches.meta")
    classes = np.array(meta.get("label_names", []) if isinstance(meta, dict) else [], dtype=str)
    if len(classes) < 2:
        raise PipelineError(f"{folder / 'batches.meta'}: no list of label_names")
    batches = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    stems = np.array([f"{i}_{classes[c]}" for i, c in enumerate(y)])
    order = np.lexsort((stems, y))  # ImageFolder order: class, then file name as a string
    test_order = np.lexsort((np.array([f"{i}_{classes[c]}" for i, c in enumerate(test_y)]), test_y))
    return Dataset(
        train_x=x[order],
        train_y=y[order],
        train_ids=np.array([f"{classes[y[i]]}/{stems[i]}" for i in order]),
        train_source_index=order.astype(np.int64),
        test_x=test_x[test_order],
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
            raise PipelineError(f"{path}: {_what_file(path, e)}") from None
        # The archive may wrap the layout in a folder (cifar10/train/...): strip up to train/, or, without
        # train/, one folder that holds everything (wrapped/<class>/<image>).
        roots = ["" if n.startswith("train/") else n[: n.index("/train/") + 1] for n in blobs
                 if n.startswith("train/") or "/train/" in n]
        tops = {n.split("/")[0] for n in blobs}
        wrapped = len(tops) == 1 and all(n.count("/") >= 2 for n in blobs)
        prefix = min(roots, key=len) if roots else (f"{tops.pop()}/" if wrapped else "")
        self.blobs = {n[len(prefix):]: b for n, b in blobs.items() if n.startswith(prefix)}
        self.names = list(self.blobs)
        parents = {"/".join(n.split("/")[:i]) for n in self.names for i in range(1, n.count("/") + 1)}
        self.dirs = {d[len(prefix):] for d in dirs if d.startswith(prefix)} | parents

    def read(self, name: str) -> bytes:
        if self.blobs is None:
            return (self.path / name).read_bytes()
        return self.blobs[name]


def imagefolder_index(files: _Files, split: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(classes, [(class index, path relative to the class folder)]) in torchvision ImageFolder order;
    ``split`` "" for class folders at the top."""
    top = f"{split}/" if split else ""
    depth = top.count("/")
    classes = sorted(d.split("/")[depth] for d in files.dirs if d.count("/") == depth and d.startswith(top))
    if not classes:
        raise PipelineError(f"{files.path}: no class folders under {top or 'the top'} (expected {top}<class>/<image>)")
    entries: dict[str, list[str]] = {c: [] for c in classes}
    for name in files.names:
        parts = name.split("/")
        if len(parts) >= depth + 2 and name.startswith(top) and parts[depth] in entries and name.lower().endswith(IMG_EXTENSIONS):
            entries[parts[depth]].append("/".join(parts[depth + 1:]))
    empty = [c for c in classes if not entries[c]]
    if empty:
        raise PipelineError(f"{files.path}/{top}{empty[0]}: class folder holds no images ({', '.join(IMG_EXTENSIONS)})")
    # os.walk visits a folder's files before its subfolders, both sorted: sort by (folder, file name).
    key = lambda rel: (os.path.dirname(rel), os.path.basename(rel))
    return classes, [(c, rel) for c, cls in enumerate(classes) for rel in sorted(entries[cls], key=key)]


class _Decoder:
    """Decodes images to uint8 HWC (C = 1 for grayscale, else 3), resizing to ``image_size`` when set;
    ``skipped`` (a list) collects the reasons for left-out rows instead of failing."""

    def __init__(self, image_size: int | None, skipped: list[str] | None):
        self.image_size, self.skipped = image_size, skipped

    def none_left(self, where) -> None:
        """With nothing usable left, say so (and why the first row was skipped) instead of the error it would cause later."""
        if self.skipped:
            raise PipelineError(f"{where}: --skip-bad left no usable image ({len(self.skipped)} skipped; the first: "
                                f"{self.skipped[0]})")

    def bad(self, message: str) -> None:
        if self.skipped is None:
            raise PipelineError(message)
        self.skipped.append(message)

    def image(self, data: bytes, name: str) -> np.ndarray | None:
        """The image's pixels, or None when it is unusable and skipping."""
        try:
            return self._pixels(data, name)
        except PipelineError as e:
            self.bad(str(e))
            return None

    def _pixels(self, data: bytes, name: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.mode in ("I", "F"):
                    raise PipelineError(f"{name}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} pixels "
                                        f"(mode {im.mode}); convert it to 8 or 16 bits per channel")
                if im.mode.startswith("I;16"):  # scaled to 8 bits, rounding, not clipped
                    im = Image.fromarray(((np.asarray(im).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), "L")
                elif im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                if im.mode in ("LA", "La", "RGBA", "RGBa", "PA"):
                    gray = im.mode in ("LA", "La")
                    rgba = im.convert("RGBA")
                    im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
                    im = im.convert("L" if gray else "RGB")
                im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
                if self.image_size:
                    im = im.resize((self.image_size, self.image_size), Image.Resampling.LANCZOS)  # antialiased
                pixels = np.asarray(im)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            raise PipelineError(f"{name}: unreadable image ({e})") from None
        return pixels[..., None] if pixels.ndim == 2 else pixels


def _stack(splits: dict[str, list[np.ndarray]], names: dict[str, list[str]], where: Path) -> dict[str, np.ndarray]:
    """Each split's images as one (N, H, W, C) array: one size for all, and 3 channels if any is in colour."""
    every = [(im, n) for split in splits for im, n in zip(splits[split], names[split])]
    sizes = {}
    for im, n in every:
        sizes.setdefault(im.shape[:2], n)
    if len(sizes) > 1:
        (a, na), (b, nb) = list(sizes.items())[:2]
        raise PipelineError(f"{where}: images differ in size ({a[1]}x{a[0]} {na}, {b[1]}x{b[0]} {nb}, ...); "
                            "pass --image-size N to resize them all to N x N")
    colour = any(im.shape[-1] == 3 for im, _ in every)
    out = {}
    for split, images in splits.items():
        images = [np.repeat(im, 3, axis=-1) if colour and im.shape[-1] == 1 else im for im in images]
        out[split] = np.stack(images) if images else np.zeros((0, 1, 1, 3 if colour else 1), np.uint8)
    return out


def _split(y: np.ndarray, test_fraction: float | None, where: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), stratified by class, seeded, each in source order."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 2:
        c = int(np.argmin(counts))
        raise PipelineError(f"{where}: class {classes[c]!r} has {counts[c]} image(s); a stratified test split needs 2 "
                            "or more per class (add images, or give the split yourself)")
    try:
        train, test = train_test_split(np.arange(len(y)), test_size=test_fraction or TEST_FRACTION, random_state=0, stratify=y)
    except ValueError as e:
        raise PipelineError(f"{where}: cannot hold out --test-fraction {test_fraction or TEST_FRACTION} stratified ({e})") from None
    return np.sort(train), np.sort(test)


def _check_classes(classes: list[str], where: Path) -> None:
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise PipelineError(f"{where}: {len(classes)} class(es); expected 2 to {MAX_CLASSES}")


def _dataset(x: dict[str, np.ndarray], y: dict[str, np.ndarray], ids: list[str], stems: list[str],
             classes: list[str], where: Path) -> Dataset:
    for split in ("train", "test"):
        if not len(y[split]):
            raise PipelineError(f"{where}: no usable {split} images")
    empty = [classes[k] for k in np.flatnonzero(np.bincount(y["train"], minlength=len(classes)) == 0)]
    if empty:  # e.g. every training image of a class was unreadable and skipped
        raise PipelineError(f"{where}: class(es) {', '.join(map(repr, empty[:5]))}{', ...' if len(empty) > 5 else ''} "
                            "have no usable training images")
    return Dataset(
        train_x=x["train"], train_y=np.asarray(y["train"], np.int64), train_ids=np.array(ids, dtype=str),
        train_source_index=np.array([source_index(os.path.basename(s)) for s in stems], np.int64),
        test_x=x["test"], test_y=np.asarray(y["test"], np.int64), classes=np.array(classes),
    )


def _decode(items: list[tuple[str, Callable[[], bytes]]], decoder: _Decoder, what: str) -> list[np.ndarray | None]:
    """Decode (name, read) pairs, logging a line per ``LOG_EVERY``; None for skipped ones."""
    out, start = [], time.perf_counter()
    for i, (name, read) in enumerate(items, 1):
        out.append(decoder.image(read(), name))
        if i % LOG_EVERY == 0 or i == len(items):
            print(f"decode {what}: {i}/{len(items)} images ({time.perf_counter() - start:.1f} s)", flush=True)
    return out


def _imagefolder(path: Path, decoder: _Decoder, test_fraction: float | None) -> Dataset:
    files = _Files(path)
    has_splits = any(d == "train" for d in files.dirs)
    if has_splits and test_fraction is not None:
        _applies({"--test-fraction": True}, set(), path, "it has train/ and test/ folders")
    found = {}
    for split in ("train", "test") if has_splits else ("",):
        classes, entries = imagefolder_index(files, split)
        names = [f"{split}/{classes[c]}/{rel}" if split else f"{classes[c]}/{rel}" for c, rel in entries]
        images = _decode([(f"{path}/{n}", lambda n=n: files.read(n)) for n in names], decoder, split or "all")
        keep = [i for i, im in enumerate(images) if im is not None]
        if not keep:
            decoder.none_left(f"{path}/{split}" if split else path)
        found[split] = classes, [entries[i] for i in keep], [images[i] for i in keep], [f"{path}/{names[i]}" for i in keep]
    if not has_splits:
        classes, entries, images, names = found[""]
        y = np.array([c for c, _ in entries], np.int64)
        train, test = _split(y, test_fraction, path, classes)
        found = {split: (classes, [entries[i] for i in rows], [images[i] for i in rows], [names[i] for i in rows])
                 for split, rows in (("train", train), ("test", test))}
    train_classes, train_entries = found["train"][:2]
    if found["test"][0] != train_classes:
        raise PipelineError(f"{path}: train/ and test/ have different class folders")
    _check_classes(train_classes, path)
    x = _stack({s: found[s][2] for s in found}, {s: found[s][3] for s in found}, path)
    y = {s: [c for c, _ in found[s][1]] for s in found}
    stems = [os.path.splitext(rel)[0] for _, rel in train_entries]
    return _dataset(x, y, [f"{train_classes[c]}/{s}" for (c, _), s in zip(train_entries, stems)], stems, train_classes, path)


def _what_file(path: Path, error: Exception) -> str:
    """Why ``path`` is no dataset source, by what its first bytes say it is (one line)."""
    with open(path, "rb") as f:
        head = f.read(8)
    kinds = [(b"PK\x03\x04", "a zip archive, not a source: pass a .tar.gz of an ImageFolder, or unpack it and pass the folder"),
             (store.MAGIC[".npy"], "a NumPy .npy file, not a dataset source (a labels or psx file belongs to noise or masks)"),
             (b"\x89PNG", "a single image, not a dataset source: pass the folder of class folders"),
             (b"\xff\xd8\xff", "a single image, not a dataset source: pass the folder of class folders"),
             (b"\x1f\x8b", f"a gzip file that is not a readable tar archive ({str(error).splitlines()[0]})")]
    for magic, what in kinds:
        if head.startswith(magic):
            return what
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file, not a source: a CSV source's name ends in .csv and its header names path and label"
    return "not a directory, a .csv or a readable tar archive of an ImageFolder"


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    """(header, rows) of a CSV source; a missing ``path`` or ``label`` column is an error."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PipelineError(f"{path}: not a readable CSV ({e})") from None
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise PipelineError(f"{path}: line 1: the header names {', '.join(map(repr, twice))} more than once; which is meant is ambiguous")
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise PipelineError(f"{path}: line 1: no {' or '.join(missing)} column (expected a header path,label[,split]; has "
                            f"{','.join(header) or 'nothing'})")
    return header, [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in rows]


def _csv_source(path: Path, decoder: _Decoder, test_fraction: float | None) -> Dataset:
    header, rows = _csv_rows(path)
    if not rows:
        raise PipelineError(f"{path}: no rows under the header")
    has_split = "split" in header
    if has_split and test_fraction is not None:
        _applies({"--test-fraction": True}, set(), path, "its split column says which rows are test rows")
    usable, seen = [], {}
    for line, r in enumerate(rows, 2):
        where = f"{path}: line {line}"
        if not r["path"] or not r["label"]:
            decoder.bad(f"{where}: empty {'path' if not r['path'] else 'label'}")
            continue
        if "\0" in r["path"]:
            decoder.bad(f"{where}: the path contains a NUL byte")
            continue
        if has_split and r["split"].lower() not in ("train", "test"):
            decoder.bad(f"{where}: split {r['split']!r}: expected train or test")
            continue
        file = (path.parent / r["path"]).resolve()
        if file in seen:
            decoder.bad(f"{where}: {r['path']}: the same image as line {seen[file]}")
            continue
        seen[file] = line
        if not file.is_file():
            decoder.bad(f"{where}: {r['path']}: " + ("a directory, not an image file" if file.is_dir() else "file not found"))
            continue
        usable.append((line, r, file))

    labels = [r["label"] for _, r, _ in usable if not has_split or r["split"].lower() == "train"]
    numeric = all(re.fullmatch(r"[+-]?\d+", v) for v in labels)
    classes = sorted(set(labels), key=lambda v: int(v) if numeric else v)
    if numeric:
        classes = [str(int(v)) for v in classes]
    known = {c: i for i, c in enumerate(classes)}
    key = (lambda v: str(int(v)) if re.fullmatch(r"[+-]?\d+", v) else v) if numeric else (lambda v: v)
    kept = []
    for line, r, file in usable:
        if key(r["label"]) not in known:
            decoder.bad(f"{path}: line {line}: class {r['label']!r} has no training rows (classes: "
                        f"{', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
            continue
        kept.append((line, r, file))
    images = _decode([(f"{path}: line {line}: {r['path']}", lambda f=file: f.read_bytes()) for line, r, file in kept],
                     decoder, "csv")
    kept = [(k, im) for k, im in zip(kept, images) if im is not None]
    if not kept:
        decoder.none_left(path)
    _check_classes(classes, path)
    y = np.array([known[key(r["label"])] for (_, r, _), _ in kept], np.int64)
    if has_split:
        is_test = np.array([r["split"].lower() == "test" for (_, r, _), _ in kept], bool)
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    else:
        train, test = _split(y, test_fraction, path, classes)
    ims, names = [im for _, im in kept], [str(file) for (_, _, file), _ in kept]
    x = _stack({"train": [ims[i] for i in train], "test": [ims[i] for i in test]},
               {"train": [names[i] for i in train], "test": [names[i] for i in test]}, path)
    paths = [kept[i][0][1]["path"] for i in train]
    return _dataset(x, {"train": y[train], "test": y[test]}, paths, [os.path.splitext(p)[0] for p in paths], classes, path)
