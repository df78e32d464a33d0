"""Noise conditions: naming, the CL paper's labels, and cleanlab noise generation.

A condition is a (noise, sparsity) pair. ``sparsity`` is the paper's ``frac_zero_noise_rates``: the
fraction of off-diagonal noise rates that are zero. The paper's noise amounts were multiples of 0.2
computed in floating point (``0.2 * 3 == 0.6000000000000001``, as ``np.arange(0, 1, 0.2)`` gives) and
its noise-matrix trace was ``int(K * (1 - noise_amount))``, which truncates: for K=10 "0.6" gives
trace 3, i.e. 70% noise, and "0.8" gives trace 1, 90% noise. The labels bear this out (the "0.6"
files flip 69.9-70.0% of labels). Conditions here are named by what they are: "0.6" -> ``n70_s*``.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import datasets, store
from pipeline.datasets import Dataset, source_index
from pipeline.layout import RunDir
from pipeline.store import PipelineError, atomic_write, load_npy, load_npz

PAPER_LABELS = Path(__file__).resolve().parent.parent / "data" / "cl_paper_cifar10_noisy_labels.npz"
PAPER_SPARSITIES = (0.0, 0.2, 0.4, 0.6)
CIFAR10_TRAIN_SIZE = 50_000


@dataclass(frozen=True)
class Condition:
    name: str
    noise: float | None  # fraction of labels flipped, as generated (not the paper's nominal noise_amount)
    sparsity: float | None
    source: str  # "paper", "generated" or the path of a .npy of noisy labels
    paper_noise_amount: float | None = None

    @property
    def paper_key(self) -> str | None:
        """The paper's file-name stem for this condition, e.g. ``frac_zero_noise_rates__0.0__noise_amount__0.6``."""
        if self.paper_noise_amount is None:
            return None
        return f"frac_zero_noise_rates__{self.sparsity:.1f}__noise_amount__{self.paper_noise_amount:.1f}"

    @property
    def paper_column(self) -> str | None:
        """The paper's Table 2 column, ``<sparsity*10>_<noise_amount*10>``, e.g. ``0_6``."""
        if self.paper_noise_amount is None:
            return None
        return f"{round(self.sparsity * 10)}_{round(self.paper_noise_amount * 10)}"


def condition_name(noise: float, sparsity: float) -> str:
    return f"n{round(noise * 100)}_s{round(sparsity * 100)}"


def paper_trace(num_classes: int, noise_amount: float) -> int:
    """The noise-matrix trace exactly as the paper computed it (floating-point truncation included)."""
    amount = 0.2 * round(noise_amount / 0.2)  # the paper's float: 0.6 -> 0.6000000000000001
    return int(num_classes * (1 - amount))


def paper_condition(sparsity: float, noise_amount: float, num_classes: int = 10) -> Condition:
    noise = round(1 - paper_trace(num_classes, noise_amount) / num_classes, 6)
    return Condition(condition_name(noise, sparsity), noise, sparsity, "paper", noise_amount)


def parse_conditions(spec: str, num_classes: int = 10) -> list[Condition]:
    """``paper`` (Table 2's 13), ``paper-all`` (all 17 files), or ``NOISE:SPARSITY,...`` to generate."""
    if spec in ("paper", "paper-all"):
        amounts = (0.2, 0.4, 0.6) if spec == "paper" else (0.2, 0.4, 0.6, 0.8)
        return [paper_condition(0.0, 0.0, num_classes)] + [
            paper_condition(s, n, num_classes) for n in amounts for s in PAPER_SPARSITIES
        ]
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            noise, sparsity = (float(v) for v in item.split(":"))
        except ValueError:
            raise PipelineError(f"condition '{item}': expected NOISE:SPARSITY, e.g. 0.4:0.2") from None
        if not (0 <= noise < 1 and 0 <= sparsity < 1):
            raise PipelineError(f"condition '{item}': noise and sparsity must lie in [0, 1)")
        out.append(Condition(condition_name(noise, sparsity), noise, sparsity, "generated"))
    if not out:
        raise PipelineError("no conditions given: use 'paper', 'paper-all' or NOISE:SPARSITY,...")
    return out


def validate_labels(labels: np.ndarray, n: int, num_classes: int, where: str) -> np.ndarray:
    """Noisy labels as int64 after checking shape and range; ``where`` names the source in errors."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PipelineError(f"{where}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if len(labels) != n:
        raise PipelineError(f"{where}: {len(labels)} labels for {n} training images")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise PipelineError(f"{where}: label {labels[i]} at row {i} is outside 0..{num_classes - 1}")
    return labels.astype(np.int64)


def noise_matrix(noisy: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical ``P(noisy=i | true=j)`` as cleanlab lays it out: column j sums to 1."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (noisy, true), 1)
    return counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)


def generate(true: np.ndarray, num_classes: int, noise: float, sparsity: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, generating noise matrix) via cleanlab's ``benchmarking.noise_generation``."""
    from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace, generate_noisy_labels

    if noise == 0:
        return true.copy(), np.eye(num_classes)
    py = np.bincount(true, minlength=num_classes) / len(true)
    nm = generate_noise_matrix_from_trace(
        num_classes, num_classes * (1 - noise), py=py, frac_zero_noise_rates=sparsity, valid_noise_matrix=True, seed=seed
    )
    if nm is None:
        raise PipelineError(f"cleanlab found no valid noise matrix for noise={noise}, sparsity={sparsity}")
    np.random.seed(seed)  # generate_noisy_labels draws from numpy's global generator
    return np.asarray(generate_noisy_labels(true, nm), np.int64), nm


def paper_labels(cond: Condition, ds: Dataset, json_dir: Path | None) -> np.ndarray:
    """The paper's noisy labels for ``cond`` in the dataset's row order (shipped array, or its JSON)."""
    if json_dir is not None:
        path = Path(json_dir) / f"cifar10_noisy_labels__{cond.paper_key}.json.gz"
        return import_paper_json(path, ds.train_ids, ds.num_classes)
    idx = ds.train_source_index
    if ds.num_classes != 10 or len(idx) != CIFAR10_TRAIN_SIZE or sorted(idx) != list(range(CIFAR10_TRAIN_SIZE)):
        raise PipelineError(
            "paper conditions need CIFAR-10's 50,000 training images named <i>_<class> "
            "(ImageFolder) or cifar-10-batches-py; for other data generate conditions (NOISE:SPARSITY)"
        )
    shipped = load_npz(PAPER_LABELS)
    if not np.array_equal(shipped["true_labels"][idx], ds.train_y):
        raise PipelineError(f"{PAPER_LABELS}: the dataset's classes disagree with CIFAR-10's at the same indices")
    return shipped[cond.paper_key][idx].astype(np.int64)


def make_labels(cond: Condition, ds: Dataset, seed: int, json_dir: Path | None) -> tuple[np.ndarray, dict]:
    """(noisy labels, facts to record) for one condition."""
    K, true = ds.num_classes, ds.train_y
    generating = None
    if cond.source == "paper":
        noisy = paper_labels(cond, ds, json_dir)
    elif cond.source == "generated":
        noisy, generating = generate(true, K, cond.noise, cond.sparsity, seed)
    else:
        noisy = validate_labels(load_npy(Path(cond.source)), len(true), K, cond.source)
    nm = noise_matrix(noisy, true, K)
    info = {
        **asdict(cond),
        "paper_column": cond.paper_column,
        "actual_noise_rate": float(np.mean(noisy != true)),
        "noise_matrix": np.round(nm, 4).tolist(),
        "generating_noise_matrix": None if generating is None else np.round(generating, 4).tolist(),
    }
    return noisy, info


def _json_key_id(key: str) -> str:
    """``.../train/<class>/<stem>.<ext>`` -> ``<class>/<stem>`` (so PNG and JPEG copies match)."""
    parts = key.replace("\\", "/").split("/")
    if len(parts) < 2:
        raise ValueError(key)
    return f"{parts[-2]}/{os.path.splitext(parts[-1])[0]}"


def _read_json(path: Path) -> dict:
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not a readable JSON label file ({e})") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: expected an object mapping image paths to labels")
    return data


def import_paper_json(path: Path, ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Noisy labels for the images ``ids`` (``<class>/<stem>``) from one of the paper's JSON files."""
    by_id: dict[str, int] = {}
    for key, label in _read_json(path).items():
        i = _json_key_id(key)
        if i in by_id:
            raise PipelineError(f"{path}: two keys match the image {i} (e.g. {key})")
        by_id[i] = label
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise PipelineError(f"{path}: {len(missing)} images have no label (e.g. {missing[0]})")
    if len(by_id) != len(ids):
        extra = sorted(set(by_id) - set(ids))
        raise PipelineError(f"{path}: {len(extra)} keys match no image (e.g. {extra[0]})")
    try:
        labels = np.array([by_id[i] for i in ids])
    except (TypeError, ValueError) as e:
        raise PipelineError(f"{path}: labels are not integers ({e})") from None
    return validate_labels(labels, len(ids), num_classes, str(path))


def export_paper_labels(json_dir: Path, out: Path = PAPER_LABELS) -> None:
    """Pack the paper's 17 JSON files into one array file indexed by the original CIFAR-10 index."""
    arrays, true = {}, None
    for cond in parse_conditions("paper-all"):
        path = Path(json_dir) / f"cifar10_noisy_labels__{cond.paper_key}.json.gz"
        data = _read_json(path)
        ids = [_json_key_id(k) for k in data]
        classes = sorted({i.split("/")[0] for i in ids})
        index = np.array([source_index(i.split("/")[1]) for i in ids])
        if len(classes) != 10 or sorted(index) != list(range(CIFAR10_TRAIN_SIZE)):
            raise PipelineError(f"{path}: keys do not cover CIFAR-10 indices 0..49999 exactly once")
        labels = np.empty(CIFAR10_TRAIN_SIZE, np.uint8)
        labels[index] = validate_labels(np.array(list(data.values())), len(ids), 10, str(path))
        folder = np.empty(CIFAR10_TRAIN_SIZE, np.uint8)
        folder[index] = [classes.index(i.split("/")[0]) for i in ids]
        if true is not None and not np.array_equal(true, folder):
            raise PipelineError(f"{path}: class folders disagree with the other files")
        arrays[cond.paper_key], true = labels, folder
    atomic_write(out, lambda f: np.savez_compressed(f, true_labels=true, classes=np.array(classes), **arrays))


def from_npy(spec: str) -> Condition:
    """``NAME=FILE.npy``: a condition whose noisy labels were made elsewhere (rows in dataset order)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise PipelineError(f"--labels '{spec}': expected NAME=FILE.npy")
    return Condition(name, None, None, str(Path(path).resolve()))


def write_condition(run: RunDir, cond: Condition, seed: int, json_dir: Path | None, force: bool = False) -> bool:
    """Write ``conditions/<name>/labels.npy`` (+ manifest with the noise matrix); True if work was done."""
    if cond.source == "paper":
        read = [Path(json_dir) / f"cifar10_noisy_labels__{cond.paper_key}.json.gz" if json_dir else PAPER_LABELS]
    else:
        read = [] if cond.source == "generated" else [Path(cond.source)]
    inputs = {"dataset": run.require(run.dataset, "data"), **{f"source{i}": p for i, p in enumerate(read)}}
    config = {**asdict(cond), "seed": seed if cond.source == "generated" else None}
    out = run.labels(cond.name)
    if not force and store.is_current(out, inputs, config):
        return False
    start = time.perf_counter()
    ds = datasets.cached(inputs["dataset"])
    noisy, info = make_labels(cond, ds, seed, json_dir)
    store.save_npy(out, noisy)
    store.write_manifest(out, inputs, config, wall_s=time.perf_counter() - start, info=info)
    return True
