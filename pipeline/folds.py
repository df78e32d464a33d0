"""Stratified fold assignment, fold shards, and combining shards into ``psx``.

A shard (``folds/fold<k>.npz``) holds ``indices`` (rows held out in fold k, ascending) and
``probs`` (their out-of-sample softmax probabilities). ``combine`` accepts the shards only if
together they cover every row exactly once and every row is a probability vector.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline import files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir

# How far a row may sum from 1: float16 rows (the paper's psx) are off by up to 0.014.
PROB_ATOL = {np.dtype(np.float16): 2e-2}
PROB_ATOL_DEFAULT = 1e-3


def assign_folds(noisy_labels: np.ndarray, folds: int, seed: int, num_classes: int) -> np.ndarray:
    """Fold id (0..folds-1) of every row: stratified by noisy label, shuffled with ``seed``."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(noisy_labels, minlength=num_classes)
    if counts.min() < folds:
        c = int(np.argmin(counts))
        raise PipelineError(f"noisy label {c} has only {counts[c]} examples: cannot split it into {folds} folds")
    fold_of = np.empty(len(noisy_labels), np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(noisy_labels)), noisy_labels)):
        fold_of[held] = k
    return fold_of


CHUNK_ENTRIES = 1 << 22  # probabilities checked (in float64: 32 MB) at a time, however long the psx


def check_probs(
    probs: np.ndarray, num_classes: int, where: str, out: np.ndarray | None = None, start: int = 0
) -> np.ndarray:
    """Probabilities as float32 rows summing to 1 (each renormalised in float64), written to ``out`` (default:
    a new array; it may be ``probs`` itself), or a PipelineError naming ``where`` and the row (counted from ``start``)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise PipelineError(f"{where}: expected probabilities of shape (n, {num_classes}), got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise PipelineError(f"{where}: probabilities must be floating point, got {probs.dtype}")
    out = np.empty(probs.shape, np.float32) if out is None else out
    atol, rows = PROB_ATOL.get(probs.dtype, PROB_ATOL_DEFAULT), max(1, CHUNK_ENTRIES // num_classes)
    for s in range(0, len(probs), rows):
        p = probs[s : s + rows].astype(np.float64)
        if not np.isfinite(p).all():
            i = start + s + int(np.argmax(~np.isfinite(p).all(axis=1)))
            raise PipelineError(f"{where}: row {i} contains NaN or inf")
        off = np.abs(p.sum(axis=1) - 1)
        if (p < 0).any() or off.max() > atol:
            i = int(np.argmax(off)) if off.max() > atol else int(np.argmax((p < 0).any(axis=1)))
            raise PipelineError(f"{where}: row {start + s + i} is not a probability vector (sums to {p[i].sum():.4f})")
        out[s : s + len(p)] = p / p.sum(axis=1, keepdims=True)
    return out


def read_probs(path, num_classes: int, where: str) -> np.ndarray:
    """An ``.npy`` of probabilities, read in chunks and checked as ``check_probs`` does: one float32 array in
    memory, never a float64 or mapped copy of the whole."""
    chunks = files.RowChunks(path, CHUNK_ENTRIES)
    if len(chunks.shape) != 2 or chunks.shape[1] != num_classes:
        raise PipelineError(f"{where}: expected probabilities of shape (n, {num_classes}), got {chunks.shape}")
    out = np.empty(chunks.shape, np.float32)
    for start, chunk in chunks:
        check_probs(chunk, num_classes, where, out=out[start : start + len(chunk)], start=start)
    return out


def merge(shards: Iterable[tuple[int, np.ndarray, np.ndarray]], out) -> None:
    """Fill ``out`` (n rows; an array or a ``RowWriter``) from ``(fold, indices, probs)``, one shard at a time;
    every row must be covered exactly once."""
    n = len(out)
    owner = np.full(n, -1, np.int64)
    for k, indices, probs in shards:
        if len(indices) != len(probs):
            raise PipelineError(f"fold {k}: {len(indices)} indices but {len(probs)} probability rows")
        if len(indices) and (indices.min() < 0 or indices.max() >= n):
            raise PipelineError(f"fold {k}: indices outside 0..{n - 1}")
        seen, first = np.unique(indices, return_index=True)
        if len(seen) != len(indices):
            raise PipelineError(f"fold {k}: holds some rows twice (e.g. row {int(np.delete(indices, first)[0])})")
        taken = owner[indices] >= 0
        if taken.any():
            i = int(indices[np.argmax(taken)])
            raise PipelineError(f"row {i} is held out in both fold {owner[i]} and fold {k}")
        owner[indices] = k
        out[indices] = probs
    missing = np.flatnonzero(owner < 0)
    if len(missing):
        raise PipelineError(f"{len(missing)} rows are in no fold's shard (e.g. row {int(missing[0])})")


class RowWriter:
    """A new ``.npy`` of float32 (n, k) at ``path``, written row by row where ``merge`` puts them (runs of adjacent
    rows at once): nothing of it is held in memory or mapped."""

    def __init__(self, path, n: int, k: int):
        self.file, self.n, self.row_bytes = open(path, "r+b"), n, 4 * k
        np.lib.format.write_array_header_1_0(self.file, {"descr": "<f4", "fortran_order": False, "shape": (n, k)})
        self.start = self.file.tell()
        self.file.truncate(self.start + n * self.row_bytes)

    def __len__(self) -> int:
        return self.n

    def __setitem__(self, indices: np.ndarray, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, np.float32)
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1  # indices ascend: each run of adjacent rows is one write
        for lo, hi in zip([0, *breaks], [*breaks, len(indices)]):
            os.pwrite(self.file.fileno(), rows[lo:hi].tobytes(), self.start + int(indices[lo]) * self.row_bytes)

    def close(self) -> None:
        self.file.close()


class Shards:
    """``cond``'s fold shards, checked to verify, to share one crossval config and to be every fold's:
    ``inputs`` (for a manifest), ``config`` (the crossval config they share) and ``merge_into`` (their rows)."""

    def __init__(self, run: RunDir, cond: str):
        self.labels, self.dataset = run.require(run.labels(cond), "noise"), run.require(run.dataset, "data")
        self.paths = run.shards(cond)
        if not self.paths:
            raise PipelineError(f"{cond}: no fold shards in {run.condition_dir(cond) / 'folds'}; run make crossval")
        configs = {}
        for path in self.paths.values():
            manifest = store.verify(path)
            config = dict(manifest["config"])
            config.pop("fold", None)  # which fold it is, ``verify`` checked: its path in the run
            # The precision that ran (auto means bf16 on a GPU, fp32 on the CPU): folds of both do not mix.
            config["precision"] = manifest["info"].get("precision", config.get("precision"))
            configs[str(path)] = config
        self.config = store.same_config(configs, f"{cond}: the fold shards disagree")
        missing = [k for k in range(self.config["folds"]) if k not in self.paths]
        if missing:
            raise PipelineError(
                f"{cond}: missing shard(s) for fold {', '.join(map(str, missing))} of {self.config['folds']} "
                f"({run.shard(cond, missing[0])}); run make crossval FOLD={missing[0]}"
            )
        self.inputs = {f"fold{k}": p for k, p in self.paths.items()}

    def merge_into(self, out, noisy: np.ndarray, num_classes: int) -> None:
        """Every shard's probabilities into ``out`` (``merge``), each checked to hold its fold's rows."""
        fold_of = assign_folds(noisy, self.config["folds"], self.config["fold_seed"], num_classes)

        def parts():  # one shard in memory at a time
            for k, path in sorted(self.paths.items()):
                z = store.read(path)
                if set(z) != {"indices", "probs"}:
                    raise PipelineError(f"{path}: expected arrays 'indices' and 'probs', found {sorted(z)}")
                if not np.array_equal(z["indices"], np.flatnonzero(fold_of == k)):
                    raise PipelineError(f"{path}: its rows are not fold {k}'s rows under the fold assignment")
                probs = z["probs"]
                yield (
                    k,
                    z["indices"],
                    check_probs(probs, num_classes, str(path), out=probs if probs.dtype == np.float32 else None),
                )

        merge(parts(), out)


def combine(run: RunDir, cond: str, force: bool = False) -> store.Outcome:
    """Merge the shards of ``cond`` into ``psx.npy``. The fold count and the crossval
    config come from the shards, which must all verify and share one config."""
    shards = Shards(run, cond)

    def make():
        noisy = store.read(shards.labels)
        num_classes = len(store.verify(shards.dataset)["info"]["classes"])
        staged = files.staging(run.psx(cond))
        writer = RowWriter(staged, len(noisy), num_classes)
        try:
            shards.merge_into(writer, noisy, num_classes)
        finally:
            writer.close()
        hits = sum(
            int(np.sum(chunk.argmax(1) == noisy[s : s + len(chunk)]))
            for s, chunk in files.RowChunks(staged, CHUNK_ENTRIES)
        )
        return files.Staged(staged), {"accuracy_vs_noisy_labels": hits / len(noisy)}

    return store.produce(
        run.psx(cond),
        root=run.root,
        stage="combine",
        inputs={"dataset": shards.dataset, "labels": shards.labels, **shards.inputs},
        config={"crossval": shards.config},
        make=make,
        force=force,
    )


FOLDS = "folds"  # an ensemble member: this condition's own fold shards, merged as combine does


def ensemble(run: RunDir, cond: str, members: list[str], force: bool = False) -> store.Outcome:
    """``cond``'s ``psx.npy`` as the mean of ``members``: out-of-sample psx of the same rows and labels (other
    recipes, backbones, seeds, or networks trained on other images that predict these rows: ``stages.predict``;
    this run's or another's), and ``FOLDS``, this condition's own fold shards. A member that is some run's psx must
    have been made from this dataset and these labels (its manifest says so); every member is an input, so a changed
    one makes the ensemble and all made from it stale. Masks, review and the report read it as any psx."""
    labels, dataset = run.require(run.labels(cond), "noise"), run.require(run.dataset, "data")
    if len(members) < 2:
        raise PipelineError(f"--ensemble: {len(members)} member(s); an ensemble needs two or more")
    named = [m if m == FOLDS else str(Path(m).resolve()) for m in members]
    if len(set(named)) < len(named):
        raise PipelineError(f"--ensemble: {next(m for m in named if named.count(m) > 1)} named twice")
    shards = Shards(run, cond) if FOLDS in members else None
    paths = [Path(m) for m in members if m != FOLDS]
    for m in paths:
        if not m.is_file():
            raise PipelineError(f"{m}: file not found")
        if m.resolve() == run.psx(cond).resolve():
            raise PipelineError(f"{m}: the psx the ensemble replaces; name its fold shards as the member {FOLDS!r}")
        if store.manifest_path(m).exists():
            made = store.verify(m)["inputs"]
            for name, ours in (("dataset", dataset), ("labels", labels)):
                if name not in made or made[name]["checksum"] != files.checksum(ours):
                    raise PipelineError(
                        f"{m}: made from other {name} than {cond}'s ({ours}): an ensemble's members share its rows "
                        "and labels"
                    )

    def make():
        noisy, k = store.read(labels), len(store.verify(dataset)["info"]["classes"])
        n = len(noisy)
        total = np.zeros((n, k), np.float32)
        if shards is not None:
            shards.merge_into(total, noisy, k)
        for m in paths:
            chunks = files.RowChunks(m, CHUNK_ENTRIES)
            if chunks.shape != (n, k):
                raise PipelineError(f"{m}: expected probabilities of shape ({n}, {k}), got {chunks.shape}")
            for start, chunk in chunks:
                total[start : start + len(chunk)] += check_probs(chunk, k, str(m), start=start)
        total /= len(members)
        return total, {"members": len(members), "accuracy_vs_noisy_labels": float(np.mean(total.argmax(1) == noisy))}

    config: dict = {"ensemble": [str(m.resolve()) for m in paths]}
    if shards is not None:
        config["crossval"] = shards.config
    return store.produce(
        run.psx(cond),
        root=run.root,
        stage="combine",
        inputs={
            "dataset": dataset,
            "labels": labels,
            **({} if shards is None else shards.inputs),
            **{f"member{i}": store.External(m) for i, m in enumerate(paths)},
        },
        config=config,
        make=make,
        force=force,
    )
