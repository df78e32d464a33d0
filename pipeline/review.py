"""Label issues to look at: a ranked CSV and a gallery of the flagged images, per condition.

``label_issues.csv`` has one row per example that any of the five CL methods flags, lowest label
quality first (``cleanlab.rank.get_label_quality_scores``, self-confidence: the probability the
out-of-sample model gives the given label): rank, row (in the dataset's training order), id (the
source's path or id), the given label, the suggested label (argmax of psx), the score, which methods
flag it, and the true label where the run knows it (conditions whose labels differ from the
dataset's own, e.g. the paper's noisy CIFAR-10 labels; empty for your own labels as given).
``label_issues.png`` shows the first ``top`` of them as a grid of tiles, "given -> suggested" under
each (and the true label where known); ``by_class`` adds ``label_issues/<given class>.png``, one gallery per given class.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, plots, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS, mask_paths, masks_psx, read_masks, read_masks_psx

def issues(noisy: np.ndarray, psx: np.ndarray, masks: dict[str, np.ndarray]) -> list[dict]:
    """The flagged rows (by any method), lowest label quality first: row, given, suggested, score, flagged_by."""
    from cleanlab.rank import get_label_quality_scores

    scores = get_label_quality_scores(noisy, psx)
    flagged_by = {paper: ~masks[ours] for paper, ours in CL_METHODS.items()}
    rows = np.flatnonzero(np.any(list(flagged_by.values()), axis=0))
    rows = rows[np.lexsort((rows, scores[rows]))]  # ascending score; ties by row
    return [{"row": int(i), "given": int(noisy[i]), "suggested": int(psx[i].argmax()), "score": float(scores[i]),
             "flagged_by": [m for m, f in flagged_by.items() if f[i]]} for i in rows]


def _csv_bytes(found: list[dict], ids: np.ndarray, classes: np.ndarray, true: np.ndarray | None) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "row", "id", "given_label", "suggested_label", "label_quality", "flagged_by", "true_label"])
    for rank, f in enumerate(found, 1):
        w.writerow([rank, f["row"], ids[f["row"]], classes[f["given"]], classes[f["suggested"]], f"{f['score']:.6f}",
                    " ".join(f["flagged_by"]), "" if true is None else classes[true[f["row"]]]])
    return buf.getvalue().encode()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "class"


def run_review(run: RunDir, cond: str, top: int = 40, by_class: bool = False,
               force: bool = False) -> tuple[store.Outcome, list[Path]]:
    """Write ``label_issues.csv`` and ``label_issues.png`` (and per-class galleries) for ``cond``: (outcome, the files)."""
    if top < 1:
        raise PipelineError(f"--top {top}: expected an integer >= 1")
    loaded = conditions.load(run, cond)
    # The ranking and suggestions come from the psx the masks were made from (the run's, or masks --psx FILE's).
    psx, psx_checksum = masks_psx(run, cond)
    masks = {m: run.require(path, "masks") for m, path in mask_paths(run, cond).items()}
    inputs = {"dataset": run.require(run.dataset, "data"), "labels": loaded.labels, **{f"mask_{m}": p for m, p in masks.items()}}
    config = {"psx": str(psx.resolve()), "psx_checksum": psx_checksum} if psx_checksum else {}
    if psx_checksum is None:
        inputs["psx"] = psx
    csv_path, png_path = run.label_issues(cond), run.label_issues(cond).with_suffix(".png")

    def make_csv():
        ds, noisy = datasets.cached(inputs["dataset"]), store.read(loaded.labels)
        rows = issues(noisy, read_masks_psx(psx, psx_checksum).astype(np.float64), read_masks(run, cond))
        true = ds.train_y if np.any(noisy != ds.train_y) else None  # the dataset's labels are the truth only then
        info = {"flagged": len(rows), "true_labels_known": true is not None}
        return _csv_bytes(rows, ds.train_ids, ds.classes, true), info

    made = [store.produce(csv_path, root=run.root, stage="review", inputs=inputs, config=config, make=make_csv, force=force)]
    written = [csv_path]
    listed = list(csv.DictReader(io.StringIO(store.read(csv_path).decode())))

    def make_png(rows: list[dict], title: str):
        ds = datasets.cached(inputs["dataset"])
        shown = rows[:top]
        images = ds.train_x[[int(r["row"]) for r in shown]] if shown else ds.train_x[:0]
        captions = [f"{r['given_label']} -> {r['suggested_label']}" + (f"\n(true: {r['true_label']})" if r["true_label"] else "")
                    for r in shown]
        return plots.gallery(images, captions, title), {"tiles": len(shown)}

    what = f"{cond}: {len(listed)} flagged by a CL method; the {min(top, len(listed))} lowest label quality (given -> suggested)"
    made.append(store.produce(png_path, root=run.root, stage="review", inputs={**inputs, "label_issues": csv_path}, config={"top": top},
                              make=lambda: make_png(listed, what), force=force))
    written.append(png_path)
    if by_class:
        classes = list(datasets.cached(inputs["dataset"]).classes)
        for name in dict.fromkeys(r["given_label"] for r in listed):
            path = run.label_issues(cond).parent / "label_issues" / f"{classes.index(name)}_{_safe(name)}.png"
            mine = [r for r in listed if r["given_label"] == name]
            title = f"{cond}, given class {name}: {len(mine)} flagged; the {min(top, len(mine))} lowest label quality"
            made.append(store.produce(path, root=run.root, stage="review", inputs={**inputs, "label_issues": csv_path},
                                      config={"top": top, "class": name}, make=lambda m=mine, t=title: make_png(m, t),
                                      force=force))
            written.append(path)
    return store.Outcome.of(made), written
