"""The five Confident Learning methods, computed as the CL paper's reproduction did, and detection quality.

A mask is a boolean array over the training rows, True = keep (not flagged as a label error).

| paper's name | our id | cleanlab call (flags) |
|---|---|---|
| C_confusion | ``predicted_neq_given`` | ``filter.find_label_issues(s, psx, filter_by="predicted_neq_given")`` |
| PBC | ``prune_by_class`` | ``filter.find_label_issues(..., filter_by="prune_by_class")`` |
| C_{y~,y*} | ``confident_joint`` | ``count.compute_confident_joint(s, psx, return_indices_of_off_diagonals=True)[1]`` |
| C+NR | ``both`` | ``filter.find_label_issues(..., filter_by="both")`` |
| PBNR | ``prune_by_noise_rate`` | ``filter.find_label_issues(..., filter_by="prune_by_noise_rate")`` |

C_{y~,y*} is the off-diagonal of the confident joint, not ``filter_by="confident_learning"``: cleanlab 2
adds rules of its own there (on the paper's psx its masks differ from the paper's in up to 3.5% of rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, store
from pipeline.errors import PipelineError
from pipeline.folds import check_probs
from pipeline.layout import RunDir

# The paper's name -> our id (a cleanlab ``filter_by`` where one matches); in the order of the paper's Table 2.
CL_METHODS = {
    "C_confusion": "predicted_neq_given",
    "PBC": "prune_by_class",
    "C_{y~,y*}": "confident_joint",
    "C+NR": "both",
    "PBNR": "prune_by_noise_rate",
}


def confident_joint_issues(noisy_labels: np.ndarray, psx: np.ndarray) -> np.ndarray:
    """C_{y~,y*}: True for the rows counted off the diagonal of the confident joint."""
    from cleanlab.count import compute_confident_joint

    _, off_diagonal = compute_confident_joint(noisy_labels, psx, return_indices_of_off_diagonals=True)
    flagged = np.zeros(len(noisy_labels), bool)
    flagged[np.asarray(off_diagonal, dtype=np.int64)] = True
    return flagged


def find_masks(noisy_labels: np.ndarray, psx: np.ndarray) -> dict[str, np.ndarray]:
    """``{method id: keep mask}`` for the five methods."""
    from cleanlab.filter import find_label_issues

    def flagged(method: str) -> np.ndarray:
        if method == "confident_joint":
            return confident_joint_issues(noisy_labels, psx)
        return find_label_issues(noisy_labels, psx, filter_by=method, n_jobs=1)

    return {method: ~flagged(method) for method in CL_METHODS.values()}


def detection(keep: np.ndarray, noisy_labels: np.ndarray, true_labels: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged rows as label errors (None where undefined: also precision
    when no label is known to be wrong, e.g. your labels as given, whose truth the run does not know)."""
    flagged, errors = ~keep, noisy_labels != true_labels
    hits = int((flagged & errors).sum())
    precision = hits / flagged.sum() if flagged.any() and errors.any() else None
    recall = hits / errors.sum() if errors.any() else None
    f1 = None if precision is None or recall is None else (2 * precision * recall / (precision + recall) if hits else 0.0)
    return {
        "flagged": int(flagged.sum()),
        "kept": int(keep.sum()),
        "keep_fraction": float(keep.mean()),
        "errors": int(errors.sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def resolve_psx(psx: Path | None, run: RunDir, cond: str) -> Path | None:
    """Probabilities made elsewhere: a given file, or the matching file in a folder of the paper's
    (by the condition's paper key); None (the run's own psx) when ``psx`` is None."""
    if psx is None:
        return None
    psx = Path(psx)
    if psx.is_dir():
        key = conditions.registry(run)[cond].paper_key
        stem = (key or "").replace(".", "_")
        found = sorted(psx.glob(f"*{stem}*.npy")) if key else []
        if len(found) != 1:
            raise PipelineError(f"{psx}: no single psx file for condition {cond} (looked for *{stem}*.npy)")
        return found[0]
    if not psx.is_file():
        raise PipelineError(f"{psx}: file not found")
    return psx


def masks_psx(run: RunDir, cond: str) -> tuple[Path, str | None]:
    """The psx ``cond``'s masks were made from, and its checksum then (None: the run's own psx, an artifact
    whose manifest says the rest): what a reader of the masks must read beside them."""
    config = store.verify(run.require(run.masks(cond), "masks"))["config"]
    if config["psx"] == "combine":
        return run.require(run.psx(cond), "combine"), None
    return Path(config["psx"]), config["psx_checksum"]


def read_masks_psx(path: Path, checksum: str | None) -> np.ndarray:
    """The contents of ``masks_psx``'s file, refused if it changed since the masks were made from it."""
    if checksum is None:
        return store.read(path)
    if not path.is_file() or store.checksum(path) != checksum:
        raise PipelineError(f"{path}: changed or gone since the masks were made from it; run make masks PSX={path} again")
    return store.load(path)


def detect(noisy: np.ndarray, true: np.ndarray, psx: np.ndarray, where: str, num_classes: int) -> tuple[dict, dict]:
    """(keep masks, detection per method) of the five methods on ``psx`` after checking it against the labels."""
    if len(psx) != len(noisy):
        raise PipelineError(f"{where}: {len(psx)} rows but {len(noisy)} noisy labels")
    masks = find_masks(noisy, check_probs(psx, num_classes, where))
    return masks, {m: detection(keep, noisy, true) for m, keep in masks.items()}


def run_masks(run: RunDir, cond: str, psx: Path | None = None, force: bool = False) -> bool:
    """Write ``masks.npz`` (one keep mask per method) for ``cond`` from its psx (``psx``: a file made
    elsewhere, see ``resolve_psx``); True if made."""
    loaded = conditions.load(run, cond)
    inputs = {"dataset": run.require(run.dataset, "data"), "labels": loaded.labels}
    config = {"methods": list(CL_METHODS.values()), "psx": "combine" if psx is None else str(psx.resolve()),
              "psx_checksum": None if psx is None else store.checksum(psx)}
    if psx is None:
        inputs["psx"] = run.require(run.psx(cond), "combine")

    def make():
        ds = datasets.cached(inputs["dataset"])
        probs = store.read(inputs["psx"]) if psx is None else store.load(psx)
        masks, found = detect(store.read(loaded.labels), ds.train_y, probs, str(inputs.get("psx", psx)), ds.num_classes)
        return masks, {"psx_acc_true": float(np.mean(probs.argmax(1) == ds.train_y)), "detection": found}

    return store.produce(run.masks(cond), stage="masks", inputs=inputs, config=config, make=make, force=force)
