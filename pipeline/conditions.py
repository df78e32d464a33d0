"""Noise conditions: naming, the registry of a run, the CL paper's labels, and cleanlab noise generation.

A condition is a (noise, sparsity) pair. ``sparsity`` is the paper's ``frac_zero_noise_rates``: the
fraction of off-diagonal noise rates that are zero. The paper's noise amounts were multiples of 0.2
computed in floating point (``0.2 * 3 == 0.6000000000000001``, as ``np.arange(0, 1, 0.2)`` gives) and
its noise-matrix trace was ``int(K * (1 - noise_amount))``, which truncates: for K=10 "0.6" gives
trace 3, i.e. 70% noise, and "0.8" gives trace 1, 90% noise. The labels bear this out (the "0.6"
files flip 69.9-70.0% of labels). Conditions here are named by what they are: "0.6" -> ``n70_s*``.

CIFAR-10N (Wei et al., ICLR 2022) gives real human labels for CIFAR-10's training set: ``--cifar10n
FILE`` adds five conditions from its ``CIFAR-10_human.pt`` (``c10n_aggre``, ``c10n_random1..3``,
``c10n_worse``), mapped to the dataset's rows by the original CIFAR-10 index, as the paper's labels are.

The run's registry, ``conditions.json``, maps each name to its definition. The noise stage adds or
updates entries; only ``--remove NAME`` drops one (its files stay on disk).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import datasets, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.lock import waiting
from pipeline.sources.base import Dataset, source_index

PAPER_LABELS = Path(__file__).resolve().parent.parent / "data" / "cl_paper_cifar10_noisy_labels.npz"
PAPER_SPARSITIES = (0.0, 0.2, 0.4, 0.6)
CIFAR10_TRAIN_SIZE = 50_000
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# CIFAR-10N's label sets (keys of CIFAR-10_human.pt) by the condition name they get here.
CIFAR10N = {"c10n_aggre": "aggre_label", "c10n_random1": "random_label1", "c10n_random2": "random_label2",
            "c10n_random3": "random_label3", "c10n_worse": "worse_label"}


@dataclass(frozen=True)
class Condition:
    name: str
    noise: float | None  # fraction of labels flipped, as generated (not the paper's nominal noise_amount)
    sparsity: float | None
    source: str  # "paper", "generated", or the path of a .npy of noisy labels or of CIFAR-10N's file
    paper_noise_amount: float | None = None
    seed: int | None = None  # generated noise only
    human_key: str | None = None  # CIFAR-10N only: which of its label sets, e.g. "worse_label"

    @property
    def kind(self) -> str:
        """Which of ``KINDS`` makes its labels."""
        if self.human_key is not None:
            return "cifar10n"
        return self.source if self.source in ("paper", "generated") else "given"

    def describe(self) -> str:
        """The condition in words (its kind says how, ``KINDS``)."""
        return KINDS[self.kind].describe(self)

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


@dataclass(frozen=True)
class Loaded:
    """A registered condition with the facts its noise stage recorded (its labels verified first)."""

    condition: Condition
    labels: Path
    noise_rate: float  # the fraction of labels that differ from the dataset's own
    noise_matrix: np.ndarray


def check_name(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise PipelineError(f"condition name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")
    return name


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 4):g}"


def condition_name(noise: float, sparsity: float) -> str:
    """``n40_s20`` for 40% noise at sparsity 0.2; as many digits as the values carry (``n30.4_s0``)."""
    return f"n{_pct(noise)}_s{_pct(sparsity)}"


def paper_trace(num_classes: int, noise_amount: float) -> int:
    """The noise-matrix trace exactly as the paper computed it (floating-point truncation included)."""
    amount = 0.2 * round(noise_amount / 0.2)  # the paper's float: 0.6 -> 0.6000000000000001
    return int(num_classes * (1 - amount))


def paper_condition(sparsity: float, noise_amount: float, num_classes: int = 10) -> Condition:
    noise = round(1 - paper_trace(num_classes, noise_amount) / num_classes, 6)
    return Condition(condition_name(noise, sparsity), noise, sparsity, "paper", noise_amount)


def parse_conditions(spec: str, num_classes: int = 10, seed: int = 0) -> list[Condition]:
    """``paper`` (Table 2's 13), ``paper-all`` (all 17 files), or ``NOISE:SPARSITY,...`` to generate
    (each realisable by cleanlab's generator for ``num_classes`` classes)."""
    if spec in ("paper", "paper-all"):
        amounts = (0.2, 0.4, 0.6) if spec == "paper" else (0.2, 0.4, 0.6, 0.8)
        return [paper_condition(0.0, 0.0, num_classes)] + [
            paper_condition(s, n, num_classes) for n in amounts for s in PAPER_SPARSITIES
        ]
    max_noise, max_sparsity = 1 - 1 / num_classes, (num_classes - 2) / (num_classes - 1) if num_classes > 2 else 1.0
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            noise, sparsity = (float(v) for v in item.split(":"))
        except ValueError:
            raise PipelineError(f"condition {item!r}: expected NOISE:SPARSITY, e.g. 0.4:0.2 (or 'paper')") from None
        if not 0 <= noise < max_noise:
            raise PipelineError(f"condition {item!r}: noise must lie in [0, {max_noise:.3g}) for {num_classes} classes "
                                "(cleanlab needs a noise-matrix trace above 1)")
        if not 0 <= sparsity <= max_sparsity:
            raise PipelineError(f"condition {item!r}: sparsity must lie in [0, {int(max_sparsity * 1000) / 1000}] for {num_classes} classes "
                                "(each noisy class keeps at least one nonzero noise rate)")
        out.append(Condition(condition_name(noise, sparsity), noise, sparsity, "generated", seed=seed))
    if not out:
        raise PipelineError("no conditions given: use 'paper', 'paper-all' or NOISE:SPARSITY,...")
    return out


def from_npy(spec: str) -> Condition:
    """``NAME=FILE.npy``: a condition whose noisy labels were made elsewhere (rows in dataset order)."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise PipelineError(f"--labels {spec!r}: expected NAME=FILE.npy")
    return Condition(check_name(name), None, None, str(Path(path).resolve()))


def from_cifar10n(path: str) -> list[Condition]:
    """The five CIFAR-10N conditions of ``CIFAR-10_human.pt`` at ``path``."""
    source = str(Path(path).resolve())
    return [Condition(name, None, None, source, human_key=key) for name, key in CIFAR10N.items()]


def _numpy_globals() -> list:
    """What a pickled integer numpy array needs from ``torch.load(weights_only=True)`` (no code runs),
    under numpy 2's module names and numpy 1's, which older files such as CIFAR-10N's carry."""
    from numpy._core.multiarray import _reconstruct

    ints = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
    return [np.ndarray, np.dtype, _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            *(type(np.dtype(t)) for t in ints)]


def cifar10n_labels(path: Path, key: str, ds: Dataset) -> np.ndarray:
    """Label set ``key`` of CIFAR-10N's file in the dataset's row order, after checking that the file's
    ``clean_label`` is the dataset's own labels row for row (it is in CIFAR-10's original order)."""
    import torch

    idx = ds.train_source_index
    if ds.num_classes != 10 or len(idx) != CIFAR10_TRAIN_SIZE or sorted(idx) != list(range(CIFAR10_TRAIN_SIZE)):
        raise PipelineError("CIFAR-10N conditions need CIFAR-10's 50,000 training images named <i>_<class> "
                            "(ImageFolder) or cifar-10-batches-py")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - not a torch file, or one holding more than label arrays
        raise PipelineError(f"{path}: not a CIFAR-10N label file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    wanted = ("clean_label", *CIFAR10N.values())  # all checked, whichever is asked for: all five conditions or none
    if not isinstance(data, dict) or any(k not in data for k in wanted):
        have = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise PipelineError(f"{path}: expected a dict with keys clean_label and {', '.join(CIFAR10N.values())}; has {have}")
    arrays = {}
    for k in wanted:
        value = data[k]
        try:
            value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as e:  # ragged lists, exotic tensors
            raise PipelineError(f"{path}: {k}: not an array of labels ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
        arrays[k] = validate_labels(value, CIFAR10_TRAIN_SIZE, 10, f"{path}: {k}")
    if not np.array_equal(arrays["clean_label"][idx], ds.train_y):
        wrong = int(np.sum(arrays["clean_label"][idx] != ds.train_y))
        raise PipelineError(f"{path}: clean_label disagrees with the dataset's labels in {wrong} of {CIFAR10_TRAIN_SIZE} "
                            "rows: not CIFAR-10N for this CIFAR-10 training set, or in another order")
    return arrays[key][idx]


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
    try:
        nm = generate_noise_matrix_from_trace(num_classes, num_classes * (1 - noise), py=py, frac_zero_noise_rates=sparsity,
                                              valid_noise_matrix=True, seed=seed)
    except ValueError as e:
        raise PipelineError(f"noise={noise}, sparsity={sparsity}: cleanlab cannot generate it ({e})") from None
    if nm is None:
        raise PipelineError(f"noise={noise}, sparsity={sparsity}: cleanlab found no valid noise matrix for these classes")
    np.random.seed(seed)  # generate_noisy_labels draws from numpy's global generator
    return np.asarray(generate_noisy_labels(true, nm), np.int64), nm


def _paper_source(cond: Condition, json_dir: Path | None) -> Path:
    return Path(json_dir) / f"cifar10_noisy_labels__{cond.paper_key}.json.gz" if json_dir else PAPER_LABELS


def paper_labels(cond: Condition, ds: Dataset, json_dir: Path | None) -> np.ndarray:
    """The paper's noisy labels for ``cond`` in the dataset's row order (shipped array, or its JSON)."""
    if json_dir is not None:
        return import_paper_json(_paper_source(cond, json_dir), ds.train_ids, ds.num_classes)
    idx = ds.train_source_index
    if ds.num_classes != 10 or len(idx) != CIFAR10_TRAIN_SIZE or sorted(idx) != list(range(CIFAR10_TRAIN_SIZE)):
        raise PipelineError(
            "paper conditions need CIFAR-10's 50,000 training images named <i>_<class> "
            "(ImageFolder) or cifar-10-batches-py; for other data generate conditions (NOISE:SPARSITY)"
        )
    shipped = store.load(PAPER_LABELS)
    if not np.array_equal(shipped["true_labels"][idx], ds.train_y):
        raise PipelineError(f"{PAPER_LABELS}: the dataset's classes disagree with CIFAR-10's at the same indices")
    return shipped[cond.paper_key][idx].astype(np.int64)


def _json_key_id(key: str) -> str:
    """``.../train/<class>/<stem>.<ext>`` -> ``<class>/<stem>`` (so PNG and JPEG copies match)."""
    parts = key.replace("\\", "/").split("/")
    if len(parts) < 2:
        raise PipelineError(f"label key {key!r}: expected .../<class>/<file>")
    return f"{parts[-2]}/{os.path.splitext(parts[-1])[0]}"


def _read_json(path: Path) -> dict:
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
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
        path = _paper_source(cond, json_dir)
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
    store.atomic_write(out, lambda f: np.savez_compressed(f, true_labels=true, classes=np.array(classes), **arrays))


def registry(run: RunDir) -> dict[str, Condition]:
    """The run's conditions by name, in the order they were added ({} before the noise stage)."""
    if not run.registry.exists():
        return {}
    try:
        found = [Condition(**spec) for spec in store.load(run.registry)]
        return {check_name(c.name): c for c in found}
    except (AttributeError, TypeError) as e:
        raise PipelineError(f"{run.registry}: not a condition registry ({e})") from None


def names(run: RunDir, only: str = "") -> list[str]:
    """The registered conditions (``only``: a comma-separated subset of them)."""
    found = list(registry(run))
    if not found:
        raise PipelineError(f"{run.registry}: no conditions yet; they are made by the noise stage (make noise)")
    wanted = [c.strip() for c in only.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise PipelineError(f"{run.root}: no condition named {', '.join(unknown)} (have: {', '.join(found)})")
    return wanted or found


def load(run: RunDir, cond: str) -> Loaded:
    """A registered condition, its labels verified up the chain, with the facts its manifest records."""
    labels = run.require(run.labels(cond), "noise")
    info = store.verify(labels)["info"]
    return Loaded(registry(run)[cond], labels, info["actual_noise_rate"], np.array(info["noise_matrix"]))


def update(run: RunDir, add: list[Condition], remove: list[str], json_dir: Path | None = None,
           force: bool = False) -> list[tuple[Condition, bool]]:
    """Remove ``remove`` from the registry, then write and register each of ``add``: (condition, made?).
    A name given twice, or reused for a condition of another kind, is an error before anything is written.
    The whole update holds the registry's lock: noise stages started together each add theirs, none is lost."""
    with waiting(run.registry):
        return _update(run, add, remove, json_dir, force)


def _update(run: RunDir, add: list[Condition], remove: list[str], json_dir: Path | None, force: bool) -> list[tuple[Condition, bool]]:
    reg = registry(run)
    for name in remove:
        if name not in reg:
            raise PipelineError(f"--remove {name}: no such condition (have: {', '.join(reg) or 'none'})")
    seen: dict[str, Condition] = {}
    for cond in add:
        check_name(cond.name)
        if cond.name in seen:
            raise PipelineError(f"condition {cond.name} is given twice ({seen[cond.name].describe()}; {cond.describe()}): "
                                "give distinct values or names")
        seen[cond.name] = cond
        old = reg.get(cond.name)
        if old is not None and cond.name not in remove and old.kind != cond.kind:
            raise PipelineError(f"condition {cond.name} exists as {old.describe()}; --remove {cond.name} first, or use another name")
    for name in remove:
        del reg[name]
    _save(run, reg)
    done = []
    for cond in add:
        done.append((cond, write_labels(run, cond, json_dir, force)))
        reg[cond.name] = cond
        _save(run, reg)
    return done


def _save(run: RunDir, reg: dict[str, Condition]) -> None:
    """Write the registry, unless it already says exactly this."""
    if not run.registry.exists() or list(registry(run).values()) != list(reg.values()):
        store.save(run.registry, [asdict(c) for c in reg.values()])


class Paper:
    """The CL paper's own noisy labels (``data/cl_paper_cifar10_noisy_labels.npz``, or its JSON files)."""

    def source(self, cond: Condition, json_dir: Path | None) -> Path | None:
        return _paper_source(cond, json_dir)

    def labels(self, cond: Condition, ds: Dataset, source: Path | None, json_dir: Path | None) -> tuple[np.ndarray, None]:
        return paper_labels(cond, ds, json_dir), None

    def describe(self, cond: Condition) -> str:
        return f"paper noise {cond.noise}, sparsity {cond.sparsity}"


class Generated:
    """Noise drawn with cleanlab's generator (seeded); also returns the generating noise matrix."""

    def source(self, cond: Condition, json_dir: Path | None) -> Path | None:
        return None

    def labels(self, cond: Condition, ds: Dataset, source: Path | None, json_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        return generate(ds.train_y, ds.num_classes, cond.noise, cond.sparsity, cond.seed)

    def describe(self, cond: Condition) -> str:
        return f"generated noise {cond.noise}, sparsity {cond.sparsity}, seed {cond.seed}"


class _FromFile:
    """A kind whose labels come from the file the condition names."""

    def source(self, cond: Condition, json_dir: Path | None) -> Path | None:
        return Path(cond.source)


class Given(_FromFile):
    """Noisy labels made elsewhere: a ``.npy`` of one label per training row, in dataset order."""

    def labels(self, cond: Condition, ds: Dataset, source: Path | None, json_dir: Path | None) -> tuple[np.ndarray, None]:
        return validate_labels(store.load(source), len(ds.train_y), ds.num_classes, str(source)), None

    def describe(self, cond: Condition) -> str:
        return f"labels given in {cond.source}"


class Cifar10N(_FromFile):
    """One of CIFAR-10N's real human label sets, from its ``CIFAR-10_human.pt``."""

    def labels(self, cond: Condition, ds: Dataset, source: Path | None, json_dir: Path | None) -> tuple[np.ndarray, None]:
        return cifar10n_labels(source, cond.human_key, ds), None

    def describe(self, cond: Condition) -> str:
        return f"CIFAR-10N's {cond.human_key} from {cond.source}"


KINDS = {"paper": Paper(), "generated": Generated(), "given": Given(), "cifar10n": Cifar10N()}  # by Condition.kind


def write_labels(run: RunDir, cond: Condition, json_dir: Path | None, force: bool = False) -> store.Outcome:
    """Write ``conditions/<name>/labels.npy`` (its manifest records the noise matrix)."""
    kind = KINDS[cond.kind]
    source = kind.source(cond, json_dir)
    config = {**asdict(cond), "source_checksum": store.checksum(source) if source and source.is_file() else None}
    if source is not None and not source.is_file():
        raise PipelineError(f"{source}: file not found")
    dataset = run.require(run.dataset, "data")

    def make():
        ds = datasets.cached(dataset)
        K, true = ds.num_classes, ds.train_y
        noisy, generating = kind.labels(cond, ds, source, json_dir)
        info = {
            "paper_column": cond.paper_column,
            "real_human_noise": cond.kind == "cifar10n",
            "actual_noise_rate": float(np.mean(noisy != true)),
            "noise_matrix": np.round(noise_matrix(noisy, true, K), 4).tolist(),
            "generating_noise_matrix": None if generating is None else np.round(generating, 4).tolist(),
        }
        return noisy, info

    return store.produce(run.labels(cond.name), stage="noise", inputs={"dataset": dataset}, config=config,
                         make=make, force=force)
