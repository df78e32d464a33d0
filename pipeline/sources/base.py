"""What every data source shares: the decoded ``Dataset``, the ``Source`` protocol, the options a source
may apply, and the decoding helpers (images to uint8 arrays, stacking, a stratified split)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import pools
from pipeline.errors import PipelineError
from pipeline.rows import Rows

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LOG_EVERY = 10_000  # images between progress lines while decoding
MAX_CLASSES = 1000
GRAY_MODES = ("1", "L", "LA", "La")
TEST_FRACTION = 0.2  # held out (stratified) from a source without a train/test split, unless --test-fraction says


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

    def in_memory(self) -> Dataset:
        """The same dataset with every array read into memory (the images may be ``Rows`` of a decode's file)."""
        return Dataset(**{k: np.asarray(v) for k, v in self.__dict__.items()})


@dataclass(frozen=True)
class Options:
    """The options of the data stage a source may apply: ``image_size`` (resize to N x N), ``test_fraction``
    (held out where the source has no split; None: TEST_FRACTION), ``skipped`` (a list: leave unusable rows
    out, one line on each, instead of failing)."""

    image_size: int | None = None
    test_fraction: float | None = None
    skipped: list[str] | None = None
    audit_test: bool = False  # the source's test split becomes the audited (training) rows; no test set is left
    staging: Path | None = None  # a folder to decode into (memory-mapped files, resumable); None: in memory
    workers: int = 1  # processes decoding images

    def only(self, applies: set[str], where, why: str) -> None:
        """Refuse the options given that ``where`` cannot apply (a manifest must not record an option that did nothing)."""
        given = {
            "--image-size": self.image_size is not None,
            "--test-fraction": self.test_fraction is not None,
            "--skip-bad": self.skipped is not None,
            "--audit-test": self.audit_test,
        }
        bad = [flag for flag, on in given.items() if on and flag not in applies]
        if bad:
            raise PipelineError(
                f"{where}: {' and '.join(bad)} {'does' if len(bad) == 1 else 'do'} not apply to this source "
                f"({why}); leave it out"
            )

    def decoder(self) -> Decoder:
        return Decoder(self.image_size, self.skipped, self.staging, self.workers)


@dataclass(frozen=True)
class Source:
    """A kind of data source: ``claims(path)`` says whether it reads the existing ``path``; ``read(path, options)``
    decodes it; ``fingerprint(path)`` identifies its contents cheaply (a changed one makes the cache stale)."""

    name: str
    claims: Callable[[Path], bool]
    read: Callable[[Path, Options], Dataset]
    fingerprint: Callable[[Path], str]


def source_index(stem: str) -> int:
    """The original index ``<i>`` of a file named ``<i>_<class>``, else -1."""
    m = re.match(r"(\d+)_", stem)
    return int(m.group(1)) if m else -1


class Decoder:
    """Decodes images to uint8 HWC (C = 1 for grayscale, else 3), resizing to ``image_size`` when set;
    ``skipped`` (a list) collects the reasons for left-out rows instead of failing. ``staging``, ``workers``: see
    ``decode``. The first image decoded sets the size every other must have (``first``: (size, name))."""

    def __init__(
        self, image_size: int | None, skipped: list[str] | None, staging: Path | None = None, workers: int = 1
    ):
        self.image_size, self.skipped, self.staging, self.workers = image_size, skipped, staging, workers
        self.first: tuple[tuple[int, int], str] | None = None

    def none_left(self, where) -> None:
        """With nothing usable left, say so (and why the first row was skipped) instead of the error it would cause later."""
        if self.skipped:
            raise PipelineError(
                f"{where}: --skip-bad left no usable image ({len(self.skipped)} skipped; the first: {self.skipped[0]})"
            )

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
                    raise PipelineError(
                        f"{name}: {'32-bit integer' if im.mode == 'I' else 'floating-point'} pixels "
                        f"(mode {im.mode}); convert it to 8 or 16 bits per channel"
                    )
                if im.mode.startswith("I;16"):  # scaled to 8 bits, rounding, not clipped
                    im = Image.fromarray(
                        ((np.asarray(im).astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), "L"
                    )
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


@dataclass
class Decoded:
    """The images of one ``decode``: (n, H, W, 3) uint8 (grey ones repeated), and each row's ``state``: 0 not yet
    decoded, 1 grey, 3 colour, 2 unusable (left out)."""

    images: np.ndarray
    state: np.ndarray

    GREY, BAD, COLOUR = 1, 2, 3

    def kept(self) -> np.ndarray:
        return np.flatnonzero((self.state == self.GREY) | (self.state == self.COLOUR))


def stack(parts: dict[str, tuple[Decoded, np.ndarray]]) -> dict[str, np.ndarray | Rows]:
    """Each split's rows (``{split: (decoded, rows of it)}``) as one (N, H, W, C) array, read where it lies (a
    memory-mapped decode is not copied): 3 channels if any image of any split is in colour, else 1."""
    colour = any((d.state[rows] == Decoded.COLOUR).any() for d, rows in parts.values())
    return {split: Rows(d.images if colour else d.images[..., :1], rows) for split, (d, rows) in parts.items()}


def hold_out(
    y: np.ndarray, test_fraction: float | None, where: Path, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows), stratified by class, seeded, each in source order."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 2:
        c = int(np.argmin(counts))
        raise PipelineError(
            f"{where}: class {str(classes[c])!r} has {counts[c]} image(s); a stratified test split needs 2 "
            "or more per class (add images, or give the split yourself)"
        )
    try:
        train, test = train_test_split(
            np.arange(len(y)), test_size=test_fraction or TEST_FRACTION, random_state=0, stratify=y
        )
    except ValueError as e:
        raise PipelineError(
            f"{where}: cannot hold out --test-fraction {test_fraction or TEST_FRACTION} stratified ({e})"
        ) from None
    return np.sort(train), np.sort(test)


def check_classes(classes: list[str], where: Path) -> None:
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise PipelineError(f"{where}: {len(classes)} class(es); expected 2 to {MAX_CLASSES}")


def dataset(
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    ids: dict[str, list[str]],
    stems: dict[str, list[str]],
    classes: list[str],
    where: Path,
    audit_test: bool = False,
) -> Dataset:
    """The Dataset of a file source's splits (``ids``, ``stems``: each split's); ``audit_test``: its test split
    becomes the training rows (what the pipeline audits), with no test set."""
    for split in ("train", "test"):
        if not len(y[split]):
            raise PipelineError(
                f"{where}: no usable {split} images"
                + (" to audit (--audit-test)" if audit_test and split == "test" else "")
            )
    if audit_test:
        x, y = {"train": x["test"], "test": x["test"][:0]}, {"train": y["test"], "test": y["test"][:0]}
        ids, stems = {"train": ids["test"]}, {"train": stems["test"]}
    ids, stems = ids["train"], stems["train"]
    empty = [classes[k] for k in np.flatnonzero(np.bincount(y["train"], minlength=len(classes)) == 0)]
    if empty:  # e.g. every training image of a class was unreadable and skipped
        raise PipelineError(
            f"{where}: class(es) {', '.join(map(repr, empty[:5]))}{', ...' if len(empty) > 5 else ''} "
            "have no usable training images"
        )
    return Dataset(
        train_x=x["train"],
        train_y=np.asarray(y["train"], np.int64),
        train_ids=np.array(ids, dtype=str),
        train_source_index=np.array([source_index(os.path.basename(s)) for s in stems], np.int64),
        test_x=x["test"],
        test_y=np.asarray(y["test"], np.int64),
        classes=np.array(classes),
    )


CHUNK = 256  # images per task of a decoding worker
SAVE_EVERY_S = 5.0  # seconds between saves of a resumable decode's progress


def decode(items: list[tuple[str, Callable[[], bytes]]], decoder: Decoder, what: str) -> Decoded:
    """Decode (name, read) pairs into one array, a progress line per ``LOG_EVERY``. With ``decoder.staging`` the
    array is a memory-mapped file there (a source larger than memory is decoded in bounded memory) and the rows
    done are saved as it goes: a decode killed part way resumes where it stopped. ``decoder.workers`` processes
    decode ``CHUNK`` images at a time (forked: the items are shared, not sent)."""
    global _job
    n, start = len(items), time.perf_counter()
    size = _first_size(items, decoder)
    shape = (n, *(size or (1, 1)), 3)
    folder = decoder.staging
    if folder is None:
        images, state, reasons = np.zeros(shape, np.uint8), np.zeros(n, np.uint8), {}
    else:
        images, state, reasons = _resumed(folder, what, shape)
        if state.any():
            print(f"decode {what}: resuming, {int((state > 0).sum())}/{n} images done before", flush=True)
    todo = [s for s in range(0, n, CHUNK) if not state[s : s + CHUNK].all()]
    _job = (items, decoder, images)
    parallel = decoder.workers > 1 and len(todo) > 1
    saved, logged = time.perf_counter(), int((state > 0).sum()) // LOG_EVERY
    try:
        with pools.fork_pool(decoder.workers) if parallel else contextlib.nullcontext() as pool:
            for first, states, bad in pool.imap(_decode_chunk, todo) if pool else map(_decode_chunk, todo):
                state[first : first + len(states)] = states
                reasons.update(bad)
                done = int((state > 0).sum())
                if done // LOG_EVERY > logged or done == n:
                    logged = done // LOG_EVERY
                    print(f"decode {what}: {done}/{n} images ({time.perf_counter() - start:.1f} s)", flush=True)
                if folder is not None and time.perf_counter() - saved > SAVE_EVERY_S:
                    _save_progress(folder, what, images, state, reasons)
                    saved = time.perf_counter()
    finally:
        _job = None
        if folder is not None:  # what was done is kept, however this ends (a SIGKILL loses SAVE_EVERY_S at most)
            _save_progress(folder, what, images, state, reasons)
    if decoder.skipped is not None:
        decoder.skipped.extend(reasons[i] for i in sorted(reasons))
    return Decoded(images, state)


_job: tuple | None = None  # (items, decoder, images) of the running decode, shared with forked workers


def _decode_chunk(first: int) -> tuple[int, np.ndarray, dict[int, str]]:
    """Decode ``CHUNK`` items from ``first`` into the shared images: (first, their states, {row: why unusable})."""
    items, decoder, images = _job
    end = min(first + CHUNK, len(items))
    states, bad = np.zeros(end - first, np.uint8), {}
    for i in range(first, end):
        name, read = items[i]
        skipped: list[str] = []
        im = Decoder(decoder.image_size, skipped if decoder.skipped is not None else None).image(read(), name)
        if im is None:
            states[i - first], bad[i] = Decoded.BAD, skipped[0]
            continue
        if im.shape[:2] != images.shape[1:3]:
            (h, w), other = images.shape[1:3], decoder.first[1]
            raise PipelineError(
                f"{name}: images differ in size ({im.shape[1]}x{im.shape[0]} {name}, {w}x{h} {other}, ...); "
                "pass --image-size N to resize them all to N x N"
            )
        images[i] = im
        states[i - first] = Decoded.COLOUR if im.shape[-1] == 3 else Decoded.GREY
    if isinstance(images, np.memmap):
        images.flush()  # on disk before the progress that counts it
    return first, states, bad


def _first_size(items, decoder: Decoder) -> tuple[int, int] | None:
    """The size every image must have: ``--image-size``, or the first usable image's (shared by all splits)."""
    if decoder.image_size:
        return decoder.image_size, decoder.image_size
    if decoder.first is None:
        for name, read in items:
            im = Decoder(None, []).image(read(), name)
            if im is not None:
                decoder.first = im.shape[:2], name
                break
    return None if decoder.first is None else decoder.first[0]


def _resumed(folder: Path, what: str, shape: tuple) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(images, state, reasons) of a decode into ``folder``: what an earlier, killed one saved, if it had this shape."""
    images_path, state_path, reasons_path = (
        folder / f"{what}{suffix}" for suffix in (".npy", ".state.npy", ".skipped.json")
    )
    try:
        images = np.lib.format.open_memmap(images_path, mode="r+")
        state, reasons = np.load(state_path), {int(k): v for k, v in json.loads(reasons_path.read_text()).items()}
        if images.shape == shape and state.shape == shape[:1]:
            return images, state, reasons
    except (OSError, ValueError):
        pass
    folder.mkdir(parents=True, exist_ok=True)
    for path in (state_path, reasons_path, images_path):
        path.unlink(missing_ok=True)
    return (
        np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=shape),
        np.zeros(shape[0], np.uint8),
        {},
    )


def _save_progress(folder: Path, what: str, images: np.ndarray, state: np.ndarray, reasons: dict[int, str]) -> None:
    from pipeline import files

    images.flush()
    files.save(folder / f"{what}.skipped.json", {str(k): v for k, v in reasons.items()})
    files.save(folder / f"{what}.state.npy", state)
