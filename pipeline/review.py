"""Label issues to look at: a ranked CSV and a gallery of the flagged images, per condition.

``label_issues.csv`` has one row per example that any of the five CL methods flags, lowest label
quality first (``cleanlab.rank.get_label_quality_scores``, self-confidence: the probability the
out-of-sample model gives the given label): rank, row (in the dataset's training order), id (the
source's path or id), the given label, the suggested label (argmax of psx), the score, which methods
flag it, and the true label where the run knows it (conditions whose labels differ from the
dataset's own, e.g. the paper's noisy CIFAR-10 labels; empty for your own labels as given).
``label_issues.png`` shows the first ``top`` of them as a grid of tiles, "given -> suggested" under
each (and the true label where known); ``by_class`` adds ``label_issues/<given class>.png``, one gallery per given class.

Where the psx comes from a linear probe, the backbone's features of every row are in the run, and cleanlab's
Datalab checks them for two other kinds of issue: ``data_issues.csv`` lists the outliers (rows far from every
other in feature space) and near-duplicates (rows with a near-identical neighbour, ``near_duplicate_of``),
with galleries ``outliers.png`` and ``near_duplicates.png`` (each image beside its nearest duplicate).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, files, page, plots, store
from pipeline.consensus import annotator_sources
from pipeline.errors import PipelineError
from pipeline.folds import CHUNK_ENTRIES
from pipeline.kinds import annotators
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS, check_masks_psx, mask_paths, masks_psx, read_masks, read_masks_psx


def label_quality(noisy: np.ndarray, psx: Path) -> tuple[np.ndarray, np.ndarray]:
    """(each row's label quality: ``cleanlab.rank.get_label_quality_scores``, self-confidence; its argmax class) from
    the psx file, read in chunks (both are row by row, so the chunks change nothing)."""
    from cleanlab.rank import get_label_quality_scores

    scores, suggested = np.empty(len(noisy)), np.empty(len(noisy), np.int64)
    for start, chunk in files.RowChunks(psx, CHUNK_ENTRIES):
        end = start + len(chunk)
        scores[start:end], suggested[start:end] = get_label_quality_scores(noisy[start:end], chunk), chunk.argmax(1)
    return scores, suggested


def issues(noisy: np.ndarray, scores: np.ndarray, suggested: np.ndarray, masks: dict[str, np.ndarray]) -> list[dict]:
    """The flagged rows (by any method), lowest label quality first: row, given, suggested, score, flagged_by."""
    flagged_by = {paper: ~masks[ours] for paper, ours in CL_METHODS.items()}
    rows = np.flatnonzero(np.any(list(flagged_by.values()), axis=0))
    rows = rows[np.lexsort((rows, scores[rows]))]  # ascending score; ties by row
    return [
        {
            "row": int(i),
            "given": int(noisy[i]),
            "suggested": int(suggested[i]),
            "score": float(scores[i]),
            "flagged_by": [m for m, f in flagged_by.items() if f[i]],
        }
        for i in rows
    ]


def _csv_bytes(found: list[dict], ids: np.ndarray, classes: np.ndarray, true: np.ndarray | None) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "row", "id", "given_label", "suggested_label", "label_quality", "flagged_by", "true_label"])
    for rank, f in enumerate(found, 1):
        w.writerow(
            [
                rank,
                f["row"],
                ids[f["row"]],
                classes[f["given"]],
                classes[f["suggested"]],
                f"{f['score']:.6f}",
                " ".join(f["flagged_by"]),
                "" if true is None else classes[true[f["row"]]],
            ]
        )
    return buf.getvalue().encode()


def features_of(run: RunDir, cond: str) -> Path | None:
    """The features the psx of ``cond``'s masks was fitted on (a linear probe's: the crossval shards record
    them as an input), or None (a network's psx, or a psx from elsewhere)."""
    if masks_psx(run, cond)[1] is not None:
        return None
    found = {
        os.path.normpath(shard.parent / record["path"])
        for shard in run.shards(cond).values()
        if (record := store.verify(shard)["inputs"].get("features"))
    }
    return Path(found.pop()) if len(found) == 1 else None


def data_issues(features: np.ndarray, noisy: np.ndarray, psx: np.ndarray) -> list[dict]:
    """Datalab's outliers and near-duplicates among the rows of ``features``: outliers first, then the
    near-duplicates, each by ascending score (most severe first); a row's near-duplicates, its nearest first."""
    from cleanlab import Datalab

    try:
        lab = Datalab({"label": noisy}, label_name="label", verbosity=0)
    except ImportError:
        raise PipelineError(
            "outliers and near-duplicates need cleanlab's Datalab: pip install 'cleanlab[datalab]' (make setup does)"
        ) from None
    lab.find_issues(
        features=features.astype(np.float32), pred_probs=psx, issue_types={"outlier": {}, "near_duplicate": {}}
    )
    found, info = lab.get_issues(), lab.get_info("near_duplicate")
    sets, nearest = info["near_duplicate_sets"], info["nearest_neighbor"]
    outlier, duplicate = found["is_outlier_issue"].to_numpy(), found["is_near_duplicate_issue"].to_numpy()
    o_score, d_score = found["outlier_score"].to_numpy(), found["near_duplicate_score"].to_numpy()
    rows = sorted(
        np.flatnonzero(outlier | duplicate), key=lambda i: (not outlier[i], o_score[i] if outlier[i] else d_score[i], i)
    )
    return [
        {
            "row": int(i),
            "outlier": bool(outlier[i]),
            "near_duplicate": bool(duplicate[i]),
            "outlier_score": float(o_score[i]),
            "near_duplicate_score": float(d_score[i]),
            "near_duplicate_of": sorted(map(int, sets[i]), key=lambda j: j != nearest[i]) if duplicate[i] else [],
        }
        for i in rows
    ]


def _data_issues_csv(found: list[dict], ids: np.ndarray, classes: np.ndarray, noisy: np.ndarray) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["rank", "row", "id", "given_label", "issue", "outlier_score", "near_duplicate_score", "near_duplicate_of"]
    )
    for rank, f in enumerate(found, 1):
        issue = " ".join(k for k in ("outlier", "near_duplicate") if f[k])
        w.writerow(
            [
                rank,
                f["row"],
                ids[f["row"]],
                classes[noisy[f["row"]]],
                issue,
                f"{f['outlier_score']:.6f}",
                f"{f['near_duplicate_score']:.6f}",
                " ".join(map(str, f["near_duplicate_of"])),
            ]
        )
    return buf.getvalue().encode()


def _data_issue_galleries(run: RunDir, cond: str, dataset: Path, csv_path: Path, top: int, force: bool) -> list:
    """``outliers.png`` and ``near_duplicates.png`` (each image beside its nearest duplicate) from ``data_issues.csv``."""
    listed = list(csv.DictReader(io.StringIO(store.read(csv_path).decode())))
    inputs = {"dataset": dataset, "data_issues": csv_path}

    def outliers():
        ds = datasets.cached(dataset)
        shown = [r for r in listed if "outlier" in r["issue"].split()][:top]
        return plots.gallery(
            ds.train_x[np.array([int(r["row"]) for r in shown], dtype=int)],
            [f"row {r['row']}: {r['given_label']}\nscore {float(r['outlier_score']):.3f}" for r in shown],
            f"{cond}: {len(shown)} of the outliers, most isolated first",
        ), {"tiles": len(shown)}

    def pairs():
        ds = datasets.cached(dataset)
        shown = [r for r in listed if r["near_duplicate_of"]]
        shown = [r for r in shown if int(r["row"]) < int(r["near_duplicate_of"].split()[0])][: max(1, top // 2)]
        rows = [k for r in shown for k in (int(r["row"]), int(r["near_duplicate_of"].split()[0]))]
        rows = np.array(rows, dtype=int)
        labels = ds.classes[store.read(run.labels(cond))[rows]]
        return plots.gallery(
            ds.train_x[rows],
            [f"row {k}: {label}" for k, label in zip(rows, labels)],
            f"{cond}: {len(shown)} near-duplicate pairs, each image beside its duplicate",
        ), {"tiles": len(rows)}

    folder = csv_path.parent
    return [
        (
            store.produce(
                folder / f"{name}.png",
                root=run.root,
                stage="review",
                inputs={**inputs, "labels": run.labels(cond)} if name == "near_duplicates" else inputs,
                config={"top": top},
                make=make,
                force=force,
            ),
            folder / f"{name}.png",
        )
        for name, make in (("outliers", outliers), ("near_duplicates", pairs))
    ]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "class"


def run_review(
    run: RunDir, cond: str, top: int = 40, by_class: bool = False, force: bool = False
) -> tuple[store.Outcome, list[Path]]:
    """Write ``label_issues.csv`` and ``label_issues.png`` (and per-class galleries) for ``cond``: (outcome, the files)."""
    if top < 1:
        raise PipelineError(f"--top {top}: expected an integer >= 1")
    loaded = conditions.load(run, cond)
    # The ranking and suggestions come from the psx the masks were made from (the run's, or masks --psx FILE's).
    psx, psx_checksum = masks_psx(run, cond)
    masks = {m: run.require(path, "masks") for m, path in mask_paths(run, cond).items()}
    inputs = {
        "dataset": run.require(run.dataset, "data"),
        "labels": loaded.labels,
        **{f"mask_{m}": p for m, p in masks.items()},
    }
    config = {"psx": str(psx.resolve()), "psx_checksum": psx_checksum} if psx_checksum else {}
    inputs["psx"] = psx if psx_checksum is None else store.External(psx)
    csv_path, png_path = run.label_issues(cond), run.label_issues(cond).with_suffix(".png")

    def make_csv():
        ds, noisy = datasets.cached(inputs["dataset"]), store.read(loaded.labels)
        check_masks_psx(psx, psx_checksum)
        rows = issues(noisy, *label_quality(noisy, psx), read_masks(run, cond))
        true = ds.train_y if np.any(noisy != ds.train_y) else None  # the dataset's labels are the truth only then
        info = {"flagged": len(rows), "true_labels_known": true is not None}
        return _csv_bytes(rows, ds.train_ids, ds.classes, true), info

    made = [
        store.produce(csv_path, root=run.root, stage="review", inputs=inputs, config=config, make=make_csv, force=force)
    ]
    written = [csv_path]
    listed = list(csv.DictReader(io.StringIO(store.read(csv_path).decode())))

    def make_png(rows: list[dict], title: str):
        ds = datasets.cached(inputs["dataset"])
        shown = rows[:top]
        images = ds.train_x[[int(r["row"]) for r in shown]] if shown else ds.train_x[:0]
        captions = [
            f"{r['given_label']} -> {r['suggested_label']}"
            + (f"\n(true: {r['true_label']})" if r["true_label"] else "")
            for r in shown
        ]
        return plots.gallery(images, captions, title), {"tiles": len(shown)}

    what = f"{cond}: {len(listed)} flagged by a CL method; the {min(top, len(listed))} lowest label quality (given -> suggested)"
    made.append(
        store.produce(
            png_path,
            root=run.root,
            stage="review",
            inputs={**inputs, "label_issues": csv_path},
            config={"top": top},
            make=lambda: make_png(listed, what),
            force=force,
        )
    )
    written.append(png_path)
    if by_class:
        classes = list(datasets.cached(inputs["dataset"]).classes)
        for name in dict.fromkeys(r["given_label"] for r in listed):
            path = run.label_issues(cond).parent / "label_issues" / f"{classes.index(name)}_{_safe(name)}.png"
            mine = [r for r in listed if r["given_label"] == name]
            title = f"{cond}, given class {name}: {len(mine)} flagged; the {min(top, len(mine))} lowest label quality"
            made.append(
                store.produce(
                    path,
                    root=run.root,
                    stage="review",
                    inputs={**inputs, "label_issues": csv_path},
                    config={"top": top, "class": name},
                    make=lambda m=mine, t=title: make_png(m, t),
                    force=force,
                )
            )
            written.append(path)
    data_csv = None
    if (feats := features_of(run, cond)) is not None:
        extra = _data_issues(run, cond, inputs, feats, psx, psx_checksum, top, force)
        made += [m for m, _ in extra]
        written += [p for _, p in extra]
        data_csv = extra[0][1]
    page_path = csv_path.with_suffix(".html")
    made.append(_page(run, cond, page_path, inputs, csv_path, data_csv, force))
    written.append(page_path)
    return store.Outcome.of(made), written


def _page(run: RunDir, cond: str, path: Path, inputs: dict, csv_path: Path, data_csv: Path | None, force: bool):
    """``label_issues.html`` (``pipeline.page``): a card per row flagged by a CL method or, where the run has
    them, as an outlier or near-duplicate."""
    page_inputs = {"dataset": inputs["dataset"], "labels": inputs["labels"], "label_issues": csv_path}
    if data_csv is not None:
        page_inputs["data_issues"] = data_csv
    sources = annotator_sources(run, cond)
    for i, source in enumerate(sources or []):
        page_inputs[f"annotators{i}"] = store.External(source)

    def make():
        ds, labels = datasets.cached(inputs["dataset"]), store.read(inputs["labels"])
        index = {str(c): k for k, c in enumerate(ds.classes)}
        cards = {}
        for r in csv.DictReader(io.StringIO(store.read(csv_path).decode())):
            cards[int(r["row"])] = {
                "row": int(r["row"]),
                "given": index[r["given_label"]],
                "suggested": index[r["suggested_label"]],
                "score": float(r["label_quality"]),
                "methods": r["flagged_by"].split(),
                "true": index[r["true_label"]] if r["true_label"] else None,
                "outlier": False,
                "near_duplicate_of": [],
            }
        if data_csv is not None:
            for r in csv.DictReader(io.StringIO(store.read(data_csv).decode())):
                row = int(r["row"])
                card = cards.setdefault(
                    row,
                    {
                        "row": row,
                        "given": int(labels[row]),
                        "suggested": None,
                        "score": None,
                        "methods": [],
                        "true": None,
                        "outlier": False,
                        "near_duplicate_of": [],
                    },
                )
                card["outlier"] = "outlier" in r["issue"].split()
                card["near_duplicate_of"] = [int(j) for j in r["near_duplicate_of"].split()]
        flagged = len(cards)
        cards = dict(list(cards.items())[: page.MAX_CARDS])  # the CSV's order: lowest label quality first
        if sources:  # what each annotator said of a card's row (a skipped row: nothing)
            given, names = annotators.matrix(sources, ds)
            for row, card in cards.items():
                card["annotators"] = [[n, int(y)] for n, y in zip(names, given[row]) if y != annotators.MISSING]
        shown = sorted({*cards, *(j for c in cards.values() for j in c["near_duplicate_of"][:1])})
        images = {row: page.thumbnail(ds.train_x[row]) for row in shown}
        html = page.render(
            cond,
            [str(c) for c in ds.classes],
            [str(i) for i in ds.train_ids],
            labels.tolist(),
            list(cards.values()),
            images,
            key=f"{cond}:{files.checksum(csv_path)[len('sha256:') :][:16]}",
            flagged=flagged if flagged > len(cards) else None,
        )
        return html, {"cards": len(cards), "flagged": flagged}

    config = {"page": page.PAGE, "max_cards": page.MAX_CARDS}
    return store.produce(path, root=run.root, stage="review", inputs=page_inputs, config=config, make=make, force=force)


def _data_issues(
    run: RunDir, cond: str, inputs: dict, feats: Path, psx: Path, psx_checksum: str | None, top: int, force: bool
) -> list:
    """``data_issues.csv`` from the features (Datalab), and its galleries: [(outcome, file)]."""
    csv_path = run.label_issues(cond).with_name("data_issues.csv")
    inputs = {"dataset": inputs["dataset"], "labels": inputs["labels"], "psx": psx, "features": feats}

    def make():
        ds, noisy = datasets.cached(inputs["dataset"]), store.read(inputs["labels"])
        found = data_issues(store.read(feats)["train"], noisy, read_masks_psx(psx, psx_checksum))
        info = {
            "outliers": sum(f["outlier"] for f in found),
            "near_duplicates": sum(f["near_duplicate"] for f in found),
        }
        return _data_issues_csv(found, ds.train_ids, ds.classes, noisy), info

    made = store.produce(csv_path, root=run.root, stage="review", inputs=inputs, config={}, make=make, force=force)
    return [(made, csv_path), *_data_issue_galleries(run, cond, inputs["dataset"], csv_path, top, force)]
