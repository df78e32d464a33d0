"""Several annotators' labels for the training rows (``--annotators NAME=SOURCE``): a long CSV ``id,annotator,label``
(ids the dataset's, labels its class names; an annotator may skip rows), CIFAR-10N's file (its three workers,
``random_label1..3``), or one file per annotator, ``a.npy,decisions-b.csv,...``: a label file (a label per row in
dataset order, -1 where that annotator skipped the row) or a reviewer's decisions exported from a review page (the
rows marked keep or relabel, with the label after the decision; the others skipped). The condition's labels are their majority vote; ``matrix`` gives every
annotator's labels to the consensus stage (``pipeline.consensus``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError
from pipeline.kinds.cifar10n import read as read_cifar10n
from pipeline.kinds.given import read_decisions
from pipeline.sources.base import Dataset

MISSING = -1  # no label from this annotator for this row
WORKERS = ("random_label1", "random_label2", "random_label3")  # CIFAR-10N's three annotators


def matrix(sources: list[Path], ds: Dataset) -> tuple[np.ndarray, list[str]]:
    """(labels: rows x annotators, ``MISSING`` where one skipped a row; the annotators' names), checked: at least two
    annotators, and a label for every row from at least one."""
    n, k = len(ds.train_y), ds.num_classes
    if len(sources) == 1 and sources[0].suffix.lower() == ".csv" and not _is_decisions(sources[0]):
        labels, names = _long_csv(sources[0], ds)
    elif len(sources) == 1 and sources[0].suffix.lower() == ".pt":
        labels, names = np.stack([read_cifar10n(sources[0], w, ds) for w in WORKERS], 1), list(WORKERS)
    else:
        columns = []
        for path in sources:
            if path.suffix.lower() == ".csv":
                label, decided = read_decisions(path, ds)
                columns.append(np.where(np.isin(decided, ("keep", "relabel")), label, MISSING))
                continue
            v = np.asarray(files.load(path, ".npy"))
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer) or len(v) != n:
                raise PipelineError(
                    f"{path}: expected {n} integer labels (one per training row), got {v.dtype} {v.shape}"
                )
            bad = (v < MISSING) | (v >= k)
            if bad.any():
                i = int(np.argmax(bad))
                raise PipelineError(f"{path}: label {v[i]} at row {i} is outside 0..{k - 1} (or -1: skipped)")
            columns.append(v.astype(np.int64))
        labels, names = np.stack(columns, 1), [p.stem for p in sources]
    where = ",".join(map(str, sources))
    if labels.shape[1] < 2:
        raise PipelineError(f"{where}: {labels.shape[1]} annotator(s); a consensus needs two or more")
    none = np.flatnonzero((labels == MISSING).all(1))
    if len(none):
        raise PipelineError(
            f"{where}: {len(none)} training row(s) have no label from any annotator (first: {ds.train_ids[none[0]]!s})"
        )
    return labels, names


def _is_decisions(path: Path) -> bool:
    """Whether a CSV starts as a review page's decisions export does (else it is read as a long CSV)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), None) == ["row", "id", "label", "decision"]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # the long CSV's reader says what is wrong


def _long_csv(path: Path, ds: Dataset) -> tuple[np.ndarray, list[str]]:
    rows = {str(i): r for r, i in enumerate(ds.train_ids)}
    classes = {str(c): k for k, c in enumerate(ds.classes)}
    given: dict[str, dict[int, tuple[int, int]]] = {}  # annotator -> row -> (label, line)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's byte-order mark allowed
            reader = csv.reader(f)
            if next(reader, None) != ["id", "annotator", "label"]:
                raise PipelineError(f"{path}: line 1: expected the header id,annotator,label")
            for line, fields in enumerate(reader, 2):
                if not fields:
                    continue
                if len(fields) != 3:
                    raise PipelineError(f"{path}: line {line}: expected 3 fields, found {len(fields)}")
                id_, who, label = fields
                if id_ not in rows:
                    raise PipelineError(f"{path}: line {line}: id {id_!r} is not a training row of the dataset")
                if not who:
                    raise PipelineError(f"{path}: line {line}: no annotator named")
                if label not in classes:
                    raise PipelineError(f"{path}: line {line}: label {label!r} is not a class of the dataset")
                row, seen = rows[id_], given.setdefault(who, {})
                if row in seen and seen[row][0] != classes[label]:
                    raise PipelineError(
                        f"{path}: line {line}: annotator {who!r} labels {id_!r} "
                        f"{label!r} here and {str(ds.classes[seen[row][0]])!r} on line {seen[row][1]}"
                    )
                seen[row] = (classes[label], line)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PipelineError(f"{path}: not a readable annotator CSV ({e})") from None
    names = sorted(given)
    labels = np.full((len(rows), len(names)), MISSING, np.int64)
    for j, who in enumerate(names):
        for row, (label, _) in given[who].items():
            labels[row, j] = label
    return labels, names


def as_float(labels: np.ndarray) -> np.ndarray:
    """cleanlab's layout of several annotators' labels: float, NaN where one skipped a row."""
    return np.where(labels == MISSING, np.nan, labels.astype(np.float64))


def majority_vote(labels: np.ndarray, pred_probs: np.ndarray | None = None) -> np.ndarray:
    """cleanlab's majority vote (ties: ``pred_probs``, then the rarer class, then the better annotators, then chance,
    seeded here so the same labels give the same vote)."""
    from cleanlab.multiannotator import get_majority_vote_label

    state = np.random.get_state()
    np.random.seed(0)
    try:
        return get_majority_vote_label(as_float(labels), pred_probs, verbose=False).astype(np.int64)
    finally:
        np.random.set_state(state)


class Annotators:
    """Several annotators' labels (``--annotators``): the condition is their majority vote."""

    def sources(self, cond, json_dir: Path | None) -> list[Path]:
        return [Path(p) for p in cond.source.split(",")]

    def labels(self, cond, ds: Dataset, sources: list[Path], json_dir: Path | None) -> tuple[np.ndarray, None]:
        return majority_vote(matrix(sources, ds)[0]), None

    def describe(self, cond) -> str:
        return f"the majority vote of the annotators in {cond.source}"


KIND = Annotators()
