"""What every data source shares: the decoded ``Dataset``, the ``Source`` protocol, the options a source
may apply, and the decoding helpers (images to uint8 arrays, stacking, a stratified split)."""

from __future__ import annotations

import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.errors import PipelineError

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


@dataclass(frozen=True)
class Options:
    """The options of the data stage a source may apply: ``image_size`` (resize to N x N), ``test_fraction``
    (held out where the source has no split; None: TEST_FRACTION), ``skipped`` (a list: leave unusable rows
    out, one line on each, instead of failing)."""

    image_size: int | None = None
    test_fraction: float | None = None
    skipped: list[str] | None = None
    audit_test: bool = False  # the source's test split becomes the audited (training) rows; no test set is left

    def only(self, applies: set[str], where, why: str) -> None:
        """Refuse the options given that ``where`` cannot apply (a manifest must not record an option that did nothing)."""
        given = {"--image-size": self.image_size is not None, "--test-fraction": self.test_fraction is not None,
                 "--skip-bad": self.skipped is not None, "--audit-test": self.audit_test}
        bad = [flag for flag, on in given.items() if on and flag not in applies]
        if bad:
            raise PipelineError(f"{where}: {' and '.join(bad)} {'does' if len(bad) == 1 else 'do'} not apply to this source "
                                f"({why}); leave it out")

    def decoder(self) -> Decoder:
        return Decoder(self.image_size, self.skipped)


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


def stack(splits: dict[str, list[np.ndarray]], names: dict[str, list[str]], where: Path) -> dict[str, np.ndarray]:
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


def hold_out(y: np.ndarray, test_fraction: float | None, where: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
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


def check_classes(classes: list[str], where: Path) -> None:
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise PipelineError(f"{where}: {len(classes)} class(es); expected 2 to {MAX_CLASSES}")


def dataset(x: dict[str, np.ndarray], y: dict[str, np.ndarray], ids: dict[str, list[str]], stems: dict[str, list[str]],
            classes: list[str], where: Path, audit_test: bool = False) -> Dataset:
    """The Dataset of a file source's splits (``ids``, ``stems``: each split's); ``audit_test``: its test split
    becomes the training rows (what the pipeline audits), with no test set."""
    for split in ("train", "test"):
        if not len(y[split]):
            raise PipelineError(f"{where}: no usable {split} images" + (" to audit (--audit-test)" if audit_test and split == "test" else ""))
    if audit_test:
        x, y = {"train": x["test"], "test": x["test"][:0]}, {"train": y["test"], "test": y["test"][:0]}
        ids, stems = {"train": ids["test"]}, {"train": stems["test"]}
    ids, stems = ids["train"], stems["train"]
    empty = [classes[k] for k in np.flatnonzero(np.bincount(y["train"], minlength=len(classes)) == 0)]
    if empty:  # e.g. every training image of a class was unreadable and skipped
        raise PipelineError(f"{where}: class(es) {', '.join(map(repr, empty[:5]))}{', ...' if len(empty) > 5 else ''} "
                            "have no usable training images")
    return Dataset(
        train_x=x["train"], train_y=np.asarray(y["train"], np.int64), train_ids=np.array(ids, dtype=str),
        train_source_index=np.array([source_index(os.path.basename(s)) for s in stems], np.int64),
        test_x=x["test"], test_y=np.asarray(y["test"], np.int64), classes=np.array(classes),
    )


def decode(items: list[tuple[str, Callable[[], bytes]]], decoder: Decoder, what: str) -> list[np.ndarray | None]:
    """Decode (name, read) pairs, logging a line per ``LOG_EVERY``; None for skipped ones."""
    out, start = [], time.perf_counter()
    for i, (name, read) in enumerate(items, 1):
        out.append(decoder.image(read(), name))
        if i % LOG_EVERY == 0 or i == len(items):
            print(f"decode {what}: {i}/{len(items)} images ({time.perf_counter() - start:.1f} s)", flush=True)
    return out
