"""The five Confident Learning methods (via ``cleanlab.filter.find_label_issues``) and detection quality.

A mask is a boolean array over the training rows, True = keep (not flagged as a label error).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.folds import check_probs
from pipeline.layout import RunDir
from pipeline.store import PipelineError

# The paper's name -> cleanlab's ``filter_by``; in the order of the paper's Table 2.
CL_METHODS = {
    "C_confusion": "predicted_neq_given",
    "PBC": "prune_by_class",
    "C_{y~,y*}": "confident_learning",
    "C+NR": "both",
    "PBNR": "prune_by_noise_rate",
}


def find_masks(noisy_labels: np.ndarray, psx: np.ndarray) -> dict[str, np.ndarray]:
    """``{filter_by: keep mask}`` for the five methods."""
    from cleanlab.filter import find_label_issues

    return {
        filter_by: ~find_label_issues(noisy_labels, psx, filter_by=filter_by, n_jobs=1)
        for filter_by in CL_METHODS.values()
    }


def detection(keep: np.ndarray, noisy_labels: np.ndarray, true_labels: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged rows as label errors (None where undefined)."""
    flagged, errors = ~keep, noisy_labels != true_labels
    hits = int((flagged & errors).sum())
    precision = hits / flagged.sum() if flagged.any() else None
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


def resolve_psx(psx: Path | None, run: RunDir, cond: str, paper_key: str | None) -> Path:
    """The probabilities to use: ours, a given file, or the matching file in a folder of the paper's."""
    if psx is None:
        return run.require(run.psx(cond), "combine")
    psx = Path(psx)
    if psx.is_dir():
        stem = (paper_key or "").replace(".", "_")
        found = sorted(psx.glob(f"*{stem}*.npy")) if paper_key else []
        if len(found) != 1:
            raise PipelineError(f"{psx}: no single psx file for condition {cond} (looked for *{stem}*.npy)")
        return found[0]
    if not psx.exists():
        raise PipelineError(f"{psx}: file not found")
    return psx


def run_masks(run: RunDir, cond: str, true_labels: np.ndarray, num_classes: int, psx_path: Path, force: bool = False) -> tuple[Path, bool]:
    """Write ``masks.npz`` (one keep mask per method) for ``cond``; (path, whether work was done)."""
    inputs = {"labels": run.require(run.labels(cond), "noise"), "psx": psx_path}
    config = {"methods": list(CL_METHODS.values())}
    out = run.masks(cond)
    if not force and store.is_current(out, inputs, config):
        return out, False
    start = time.perf_counter()
    noisy = store.load_npy(inputs["labels"])
    psx = store.load_npy(psx_path)
    if len(psx) != len(noisy):
        raise PipelineError(f"{psx_path}: {len(psx)} rows but {len(noisy)} noisy labels")
    psx = check_probs(psx, num_classes, str(psx_path))
    masks = find_masks(noisy, psx)
    store.save_npz(out, **masks)
    info = {
        "psx": str(psx_path),
        "psx_acc_true": float(np.mean(psx.argmax(1) == true_labels)),
        "detection": {m: detection(keep, noisy, true_labels) for m, keep in masks.items()},
    }
    store.write_manifest(out, inputs, config, wall_s=time.perf_counter() - start, info=info)
    return out, True
