"""A ``.csv`` with a header and the columns ``path`` (relative to the CSV) and ``label`` (class names, or
integers), and optionally ``split`` (``train`` / ``test``; without it a stratified test fraction is held
out); classes are the training rows' labels (integers sort as numbers)."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.sources.base import Dataset, Options, Source, check_classes, dataset, decode, hold_out, stack
from pipeline.sources.imagefolder import listing_fingerprint


def claims(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _rows(path: Path) -> tuple[list[str], list[dict]]:
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
        raise PipelineError(
            f"{path}: line 1: the header names {', '.join(map(repr, twice))} more than once; which is meant is ambiguous"
        )
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise PipelineError(
            f"{path}: line 1: no {' or '.join(missing)} column (expected a header path,label[,split]; has "
            f"{','.join(header) or 'nothing'})"
        )
    return header, [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in rows]


def read(path: Path, options: Options) -> Dataset:
    decoder, test_fraction = options.decoder(), options.test_fraction
    header, rows = _rows(path)
    if not rows:
        raise PipelineError(f"{path}: no rows under the header")
    has_split = "split" in header
    if has_split and test_fraction is not None:
        Options(test_fraction=test_fraction).only(set(), path, "its split column says which rows are test rows")
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
            decoder.bad(
                f"{where}: {r['path']}: " + ("a directory, not an image file" if file.is_dir() else "file not found")
            )
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
            decoder.bad(
                f"{path}: line {line}: class {r['label']!r} has no training rows (classes: "
                f"{', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
            )
            continue
        kept.append((line, r, file))
    if not kept:
        decoder.none_left(path)  # --skip-bad left nothing: say why
    check_classes(classes, path)  # what the listing alone tells, before any image is decoded
    if options.audit_test and not has_split:
        options.only(
            {"--image-size", "--test-fraction", "--skip-bad"}, path, "it has no split column naming test rows to audit"
        )
    images = decode(
        [(f"{path}: line {line}: {r['path']}", lambda f=file: f.read_bytes()) for line, r, file in kept], decoder, "csv"
    )
    usable = images.kept()
    kept = [kept[i] for i in usable]
    if not kept:
        decoder.none_left(path)
    y = np.array([known[key(r["label"])] for _, r, _ in kept], np.int64)
    if has_split:
        is_test = np.array([r["split"].lower() == "test" for _, r, _ in kept], bool)
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    else:
        train, test = hold_out(y, test_fraction, path, classes)
    x = stack({"train": (images, usable[train]), "test": (images, usable[test])})
    paths = {s: [kept[i][1]["path"] for i in rows] for s, rows in (("train", train), ("test", test))}
    return dataset(
        x,
        {"train": y[train], "test": y[test]},
        paths,
        {s: [os.path.splitext(p)[0] for p in paths[s]] for s in paths},
        classes,
        path,
        options.audit_test,
    )


def fingerprint(path: Path) -> str:
    """The CSV's sha256 and the listing of the files it names."""
    names = sorted({r.get("path", "") for r in _rows(path)[1]})
    return listing_fingerprint(path, names, path.parent, head=files.checksum(path))


SOURCE = Source("CSV", claims=claims, read=read, fingerprint=fingerprint)
