"""The five Confident Learning methods, computed as the CL paper's reproduction did, and detection quality.

A mask is a boolean array over the training rows, True = keep (not flagged as a label error); each
method's is its own artifact (``masks/<id>.npy``), so a task that trains on one depends on that one only.

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

import warnings
from pathlib import Path

import numpy as np

from pipeline import conditions, datasets, files, store
from pipeline.errors import PipelineError
from pipeline.folds import check_probs, read_probs
from pipeline.layout import RunDir

PAPER_PSX = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cl-paper" / "psx"
# The paper's name -> our id (a cleanlab ``filter_by`` where one matches); in the order of the paper's Table 2.
CL_METHODS = {
    "C_confusion": "predicted_neq_given",
    "PBC": "prune_by_class",
    "C_{y~,y*}": "confident_joint",
    "C+NR": "both",
    "PBNR": "prune_by_noise_rate",
}
ROWS = ("none", *CL_METHODS.values())  # the row sets a learner trains on: every row, or a method's kept rows


BLOCK_FLOATS = 1 << 26  # psx entries (256 MB of float32) a method works on at once: cleanlab copies a block 2-3 times


class Finder:
    """The five methods' keep masks on one psx, in memory bounded by the psx and a block, whatever its size.

    cleanlab's ``find_label_issues`` copies the psx whole twice (its rows by class, and in ``_reduce_issues``)
    beside the psx itself: 3x its size. Here the confident joint (cleanlab's ``compute_confident_joint``,
    calibrated, as ``find_label_issues`` computes it) is counted once over all rows, then every method runs
    ``find_label_issues`` on blocks of whole classes, given that joint (its ``confident_joint`` argument). Each of
    those methods decides a row from its class's rows and the joint only (pruning by class or noise rate ranks
    within a class; the final check and C_confusion look at the row alone), so the masks are those of one call on
    all rows (``tests/test_paper.py`` checks it against single calls)."""

    def __init__(self, noisy_labels: np.ndarray, psx: np.ndarray, block_floats: int = BLOCK_FLOATS):
        from cleanlab.count import compute_confident_joint

        self.noisy, self.psx = noisy_labels, psx
        self.joint, off_diagonal = compute_confident_joint(noisy_labels, psx, return_indices_of_off_diagonals=True)
        self.off_diagonal = np.asarray(off_diagonal, dtype=np.int64)
        self.blocks = class_blocks(noisy_labels, psx.shape[1], max(1, block_floats // psx.shape[1]))

    def mask(self, method: str) -> np.ndarray:
        """The keep mask of one method (by our id)."""
        from cleanlab.filter import find_label_issues

        flagged = np.zeros(len(self.noisy), bool)
        if method == "confident_joint":  # C_{y~,y*}: the rows counted off the diagonal of the confident joint
            flagged[self.off_diagonal] = True
            return ~flagged
        for rows in self.blocks:
            whole = len(rows) == len(self.noisy)
            with warnings.catch_warnings():  # a block lacks the other classes: "too few examples" of each, by design
                warnings.filterwarnings("ignore", "May not flag all label issues in class")
                flagged[rows] = find_label_issues(
                    self.noisy if whole else self.noisy[rows],
                    self.psx if whole else self.psx[rows],
                    filter_by=method,
                    confident_joint=self.joint,
                    n_jobs=1,
                )
        return ~flagged


def class_blocks(noisy_labels: np.ndarray, num_classes: int, max_rows: int) -> list[np.ndarray]:
    """The rows in blocks of whole classes, in class order: each of at least 2 classes (cleanlab's minimum) and,
    where classes allow, at most ``max_rows`` rows (a class larger than that is a block of its own with one more)."""
    counts = np.bincount(noisy_labels, minlength=num_classes)
    groups, group, rows = [], [], 0
    for k in np.flatnonzero(counts):
        if group and len(group) >= 2 and rows + counts[k] > max_rows:
            groups.append(group)
            group, rows = [], 0
        group.append(k)
        rows += counts[k]
    if len(group) >= 2 or not groups:
        groups.append(group)
    else:
        groups[-1] += group
    if len(groups) == 1:
        return [np.arange(len(noisy_labels))]
    block_of = np.empty(num_classes, np.int64)
    for b, g in enumerate(groups):
        block_of[g] = b
    order = np.argsort(block_of[noisy_labels], kind="stable")
    return np.split(order, np.cumsum([counts[g].sum() for g in groups])[:-1])


def find_masks(noisy_labels: np.ndarray, psx: np.ndarray) -> dict[str, np.ndarray]:
    """``{method id: keep mask}`` for the five methods."""
    finder = Finder(noisy_labels, psx)
    return {m: finder.mask(m) for m in CL_METHODS.values()}


def detection(keep: np.ndarray, noisy_labels: np.ndarray, true_labels: np.ndarray) -> dict:
    """Precision, recall and F1 of the flagged rows as label errors (None where undefined: also precision
    when no label is known to be wrong, e.g. your labels as given, whose truth the run does not know)."""
    flagged, errors = ~keep, noisy_labels != true_labels
    hits = int((flagged & errors).sum())
    precision = hits / flagged.sum() if flagged.any() and errors.any() else None
    recall = hits / errors.sum() if errors.any() else None
    f1 = (
        None
        if precision is None or recall is None
        else (2 * precision * recall / (precision + recall) if hits else 0.0)
    )
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
    whose manifest says the rest): what a reader of the masks must read beside them. Every method's mask
    must come from the same one."""
    configs = {str(p): store.verify(run.require(p, "masks"))["config"] for p in mask_paths(run, cond).values()}
    config = store.same_config(
        {k: {"psx": c["psx"], "psx_checksum": c["psx_checksum"]} for k, c in configs.items()}, f"{cond}'s masks"
    )
    if config["psx"] == "combine":
        return run.require(run.psx(cond), "combine"), None
    return Path(config["psx"]), config["psx_checksum"]


def rows_inputs(
    run: RunDir, cond: str, rows: str, features: Path | None = None, weights: Path | None = None
) -> dict[str, Path]:
    """What training on ``rows`` (of ``ROWS``) of ``cond`` reads: the dataset, the labels, that mask only, a
    backbone's ``features`` where the learner trains on them, and the ``weights`` file it starts from."""
    inputs = {"dataset": run.require(run.dataset, "data"), "labels": conditions.load(run, cond).labels}
    if rows != "none":
        inputs["mask"] = run.require(run.mask(cond, rows), "masks")
    if features is not None:
        inputs["features"] = features
    if weights is not None:
        inputs["weights"] = store.External(weights)
    return inputs


def mask_paths(run: RunDir, cond: str) -> dict[str, Path]:
    """``{method id: its mask artifact}`` of ``cond``, in the paper's order."""
    return {m: run.mask(cond, m) for m in CL_METHODS.values()}


def read_masks(run: RunDir, cond: str) -> dict[str, np.ndarray]:
    """``{method id: keep mask}`` of ``cond``, each verified."""
    return {m: store.read(path) for m, path in mask_paths(run, cond).items()}


def check_masks_psx(path: Path, checksum: str | None) -> None:
    """Refuse ``masks_psx``'s file if it changed since the masks were made from it."""
    if checksum is None:
        store.verify(path)
    elif not path.is_file() or files.checksum(path) != checksum:
        raise PipelineError(
            f"{path}: changed or gone since the masks were made from it; run make masks PSX={path} again"
        )


def read_masks_psx(path: Path, checksum: str | None) -> np.ndarray:
    """The contents of ``masks_psx``'s file, memory-mapped (see ``files.load``), once ``check_masks_psx`` passes."""
    check_masks_psx(path, checksum)
    return files.load(path, ".npy", mapped=True)


def detect(noisy: np.ndarray, true: np.ndarray, psx: np.ndarray, where: str, num_classes: int) -> tuple[dict, dict]:
    """(keep masks, detection per method) of the five methods on ``psx`` after checking it against the labels."""
    psx = checked_psx(psx, noisy, where, num_classes)
    masks = find_masks(noisy, psx)
    return masks, {m: detection(keep, noisy, true) for m, keep in masks.items()}


def checked_psx(psx: np.ndarray, noisy: np.ndarray, where: str, num_classes: int) -> np.ndarray:
    if len(psx) != len(noisy):
        raise PipelineError(f"{where}: {len(psx)} rows but {len(noisy)} noisy labels")
    return check_probs(psx, num_classes, where)


def run_masks(run: RunDir, cond: str, psx: Path | None = None, force: bool = False) -> dict[str, store.Outcome]:
    """Write each method's keep mask for ``cond`` from its psx (``psx``: a file made elsewhere, see
    ``resolve_psx``), with its detection quality in the manifest; ``{method: outcome}``."""
    loaded = conditions.load(run, cond)
    inputs = {"dataset": run.require(run.dataset, "data"), "labels": loaded.labels}
    if psx is None:
        inputs["psx"] = run.require(run.psx(cond), "combine")
    else:
        inputs["psx_file"] = store.External(psx)  # a file from elsewhere: masks made from it stale once it changes
    where = str(inputs.get("psx", psx))
    read: dict = {}

    def finder() -> Finder:
        """The labels and the psx, read and checked once (in chunks) for every method made."""
        if not read:
            ds = datasets.cached(inputs["dataset"])
            noisy = store.read(loaded.labels)
            if psx is None:
                store.verify(inputs["psx"])
            probs = read_probs(inputs.get("psx", psx), ds.num_classes, where)
            if len(probs) != len(noisy):
                raise PipelineError(f"{where}: {len(probs)} rows but {len(noisy)} noisy labels")
            read.update(true=ds.train_y, finder=Finder(noisy, probs), acc=float(np.mean(probs.argmax(1) == ds.train_y)))
        return read["finder"]

    def make(method: str):
        found = finder()
        keep = found.mask(method)
        return keep, {"psx_acc_true": read["acc"], "detection": detection(keep, found.noisy, read["true"])}

    config = {
        "psx": "combine" if psx is None else str(psx.resolve()),
        "psx_checksum": None if psx is None else files.checksum(psx),
    }
    return {
        m: store.produce(
            path,
            root=run.root,
            stage="masks",
            inputs=inputs,
            config={**config, "method": m},
            make=lambda m=m: make(m),
            force=force,
        )
        for m, path in mask_paths(run, cond).items()
    }


def run_paper_detection(run: RunDir, cond: str, psx_dir: Path, force: bool = False) -> store.Outcome | None:
    """Write ``cond``'s detection by the five methods on the CL paper's own psx (``psx_dir``, a folder of its
    ``*_psx.npy``), for a condition with the paper's labels; None where there
    is nothing to compare (other labels, or no such folder or file)."""
    if conditions.registry(run)[cond].paper_key is None or not Path(psx_dir).is_dir():
        return None
    try:
        psx = resolve_psx(psx_dir, run, cond)
    except PipelineError:
        return None
    inputs = {
        "dataset": run.require(run.dataset, "data"),
        "labels": conditions.load(run, cond).labels,
        "psx_file": store.External(psx),
    }

    def make():
        ds = datasets.cached(inputs["dataset"])
        return detect(store.read(inputs["labels"]), ds.train_y, files.load(psx, ".npy"), str(psx), ds.num_classes)[1], {
            "psx_dir": str(psx_dir)
        }

    config = {"methods": list(CL_METHODS.values()), "psx": str(psx.resolve()), "psx_checksum": files.checksum(psx)}
    return store.produce(
        run.paper_detection(cond), root=run.root, stage="masks", inputs=inputs, config=config, make=make, force=force
    )
