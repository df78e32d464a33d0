"""Noisy labels made elsewhere (``--labels NAME=FILE``): a ``.npy`` of one label per training row, in dataset
order, or the decisions a person exported from a review page (``pipeline.page``): a CSV with one line per
training row, ``row,id,label,decision``, the label after the decision."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.kinds.base import FromFile, validate_labels
from pipeline.sources.base import Dataset

DECISIONS = ("", "keep", "relabel", "drop")


class Given(FromFile):
    """Noisy labels made elsewhere: a ``.npy`` of one label per training row, or a review page's decisions."""

    def labels(self, cond, ds: Dataset, sources: list[Path], json_dir: Path | None) -> tuple[np.ndarray, None]:
        (source,) = sources
        if source.suffix.lower() == ".csv":
            return decisions(source, ds), None
        return validate_labels(files.load(source, ".npy"), len(ds.train_y), ds.num_classes, str(source)), None

    def describe(self, cond) -> str:
        return f"labels given in {cond.source}"


def decisions(path: Path, ds: Dataset) -> np.ndarray:
    """The labels of a review page's decisions file, after checking that it describes this dataset's training
    rows, each once and in order, by id (a drop keeps its row's label: leaving a row out is the source's)."""
    return read_decisions(path, ds)[0]


def read_decisions(path: Path, ds: Dataset) -> tuple[np.ndarray, list[str]]:
    """(the label of every training row after the decisions, each row's decision: ``DECISIONS``), checked as
    ``decisions`` says."""
    classes = {str(c): k for k, c in enumerate(ds.classes)}
    ids, n = ds.train_ids, len(ds.train_ids)
    labels, decided = np.full(n, -1, np.int64), [""] * n
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark (its CRLF line ends csv reads as is)
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            if next(reader, None) != ["row", "id", "label", "decision"]:
                raise PipelineError(
                    f"{path}: line 1: expected the header row,id,label,decision (a review page's export)"
                )
            blank = None
            for line, fields in enumerate(reader, 2):
                if not fields:  # blank lines end the file (a spreadsheet may add one)
                    blank = blank or line
                    continue
                if blank is not None:
                    raise PipelineError(f"{path}: line {blank}: a blank line before the last row")
                if len(fields) != 4:
                    raise PipelineError(f"{path}: line {line}: expected 4 fields, found {len(fields)}")
                row, id_, label, decision = fields
                if not re.fullmatch(r"[0-9]{1,12}", row) or int(row) >= n:
                    raise PipelineError(
                        f"{path}: line {line}: row {row!r} does not exist (the dataset has {n} training rows)"
                    )
                if int(row) != line - 2:
                    raise PipelineError(
                        f"{path}: line {line}: row {row}, expected row {line - 2} (one line per row, in order)"
                    )
                if id_ != str(ids[int(row)]):
                    raise PipelineError(
                        f"{path}: line {line}: id {id_!r} is not row {row}'s ({str(ids[int(row)])!r}): "
                        "decisions made on another dataset?"
                    )
                if label not in classes:
                    raise PipelineError(f"{path}: line {line}: label {label!r} is not a class of the dataset")
                if decision not in DECISIONS:
                    raise PipelineError(
                        f"{path}: line {line}: decision {decision!r}: expected keep, relabel, drop or empty"
                    )
                labels[int(row)], decided[int(row)] = classes[label], decision
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PipelineError(f"{path}: not a readable decisions CSV ({e})") from None
    if (labels < 0).any():
        raise PipelineError(
            f"{path}: {int((labels < 0).sum())} of {n} training rows missing (from row {int(np.argmax(labels < 0))})"
        )
    return labels, decided


KIND = Given()
