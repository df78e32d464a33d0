"""Noise conditions: what one is, its name, the registry of a run, and writing its labels.

A condition is a set of noisy labels for the training rows: the CL paper's (a (sparsity, noise
amount) pair, ``pipeline.kinds.paper``), generated with cleanlab for a (noise, sparsity) pair, given
as a file, or one of CIFAR-10N's human label sets; its kind (``pipeline.kinds``) makes its labels.
``sparsity`` is the paper's ``frac_zero_noise_rates``: the fraction of off-diagonal noise rates that
are zero. Conditions are named by the noise they carry: ``n40_s20``.

The run's registry, ``conditions.json``, maps each name to its definition. The noise stage adds or
updates entries; only ``--remove NAME`` drops one (its files stay on disk).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import datasets, files, store
from pipeline.errors import PipelineError
from pipeline.kinds import KINDS, cifar10n, paper
from pipeline.layout import RunDir
from pipeline.lock import waiting

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Condition:
    name: str
    noise: float | None  # fraction of labels flipped, as generated (not the paper's nominal noise_amount)
    sparsity: float | None
    source: str  # "paper", "generated", or the path of a .npy of noisy labels or of CIFAR-10N's file
    paper_noise_amount: float | None = None
    seed: int | None = None  # generated noise only
    human_key: str | None = None  # CIFAR-10N only: which of its label sets, e.g. "worse_label"
    annotators: bool = False  # several annotators' labels (``source``: their files, comma-separated), voted

    @property
    def kind(self) -> str:
        """Which of ``KINDS`` makes its labels."""
        if self.annotators:
            return "annotators"
        if self.human_key is not None:
            return "cifar10n"
        return self.source if self.source in ("paper", "generated") else "given"

    def describe(self) -> str:
        """The condition in words (its kind says how, ``KINDS``)."""
        return KINDS[self.kind].describe(self)

    @property
    def paper_key(self) -> str | None:
        """The paper's file-name stem for this condition, e.g. ``frac_zero_noise_rates__0.0__noise_amount__0.6``."""
        return None if self.paper_noise_amount is None else paper.file_key(self.sparsity, self.paper_noise_amount)

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
        raise PipelineError(
            f"condition name {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def _pct(fraction: float) -> str:
    return f"{round(fraction * 100, 4):g}"


def condition_name(noise: float, sparsity: float) -> str:
    """``n40_s20`` for 40% noise at sparsity 0.2; as many digits as the values carry (``n30.4_s0``)."""
    return f"n{_pct(noise)}_s{_pct(sparsity)}"


def paper_condition(sparsity: float, noise_amount: float, num_classes: int = 10) -> Condition:
    """The paper's condition named by the noise its trace rule gives (``kinds.paper.trace``): "0.6" -> ``n70_s*``."""
    noise = round(1 - paper.trace(num_classes, noise_amount) / num_classes, 6)
    return Condition(condition_name(noise, sparsity), noise, sparsity, "paper", noise_amount)


def parse_conditions(spec: str, num_classes: int = 10, seed: int = 0) -> list[Condition]:
    """``paper`` (Table 2's 13), ``paper-all`` (all 17 files), or ``NOISE:SPARSITY,...`` to generate
    (each realisable by cleanlab's generator for ``num_classes`` classes)."""
    if spec in paper.GRID:
        return [paper_condition(s, n, num_classes) for s, n in paper.GRID[spec]]
    max_noise, max_sparsity = 1 - 1 / num_classes, (num_classes - 2) / (num_classes - 1) if num_classes > 2 else 1.0
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            noise, sparsity = (float(v) for v in item.split(":"))
        except ValueError:
            raise PipelineError(f"condition {item!r}: expected NOISE:SPARSITY, e.g. 0.4:0.2 (or 'paper')") from None
        if not 0 <= noise < max_noise:
            raise PipelineError(
                f"condition {item!r}: noise must lie in [0, {max_noise:.3g}) for {num_classes} classes "
                "(cleanlab needs a noise-matrix trace above 1)"
            )
        if not 0 <= sparsity <= max_sparsity:
            raise PipelineError(
                f"condition {item!r}: sparsity must lie in [0, {int(max_sparsity * 1000) / 1000}] for {num_classes} classes "
                "(each noisy class keeps at least one nonzero noise rate)"
            )
        out.append(Condition(condition_name(noise, sparsity), noise, sparsity, "generated", seed=seed))
    if not out:
        raise PipelineError("no conditions given: use 'paper', 'paper-all' or NOISE:SPARSITY,...")
    return out


def given(spec: str) -> Condition:
    """``NAME=FILE``: a condition whose labels were made elsewhere (``kinds.given``: a .npy, or a review's decisions)."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise PipelineError(
            f"--labels {spec!r}: expected NAME=FILE (a .npy of labels, or a review page's decisions CSV)"
        )
    return Condition(check_name(name), None, None, str(Path(path).resolve()))


def annotated(spec: str) -> Condition:
    """``NAME=SOURCE``: a condition of several annotators' labels (``kinds.annotators``), their majority vote."""
    name, sep, files = spec.partition("=")
    paths = [p for p in files.split(",") if p]
    if not sep or not paths:
        raise PipelineError(
            f"--annotators {spec!r}: expected NAME=FILE (a CSV of id,annotator,label, or CIFAR-10N's file) "
            "or NAME=FILE,FILE,... (a .npy of labels per annotator)"
        )
    return Condition(check_name(name), None, None, ",".join(str(Path(p).resolve()) for p in paths), annotators=True)


def from_cifar10n(path: str) -> list[Condition]:
    """The five CIFAR-10N conditions of ``CIFAR-10_human.pt`` at ``path``."""
    source = str(Path(path).resolve())
    return [Condition(name, None, None, source, human_key=key) for name, key in cifar10n.SETS.items()]


def noise_matrix(noisy: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical ``P(noisy=i | true=j)`` as cleanlab lays it out: column j sums to 1 (0 for a class with no rows)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(true, noisy, labels=np.arange(num_classes), normalize="true").T


def registry(run: RunDir) -> dict[str, Condition]:
    """The run's conditions by name, in the order they were added ({} before the noise stage)."""
    if not run.registry.exists():
        return {}
    try:
        found = [Condition(**spec) for spec in files.load(run.registry)]
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


def update(
    run: RunDir, add: list[Condition], remove: list[str], json_dir: Path | None = None, force: bool = False
) -> list[tuple[Condition, store.Outcome]]:
    """Remove ``remove`` from the registry and write and register each of ``add``: (condition, outcome).
    Everything is checked first (names, kinds, every label file): a refused update writes nothing and
    leaves the registry as it was. The whole update holds the registry's lock: noise stages started
    together each add theirs, none is lost."""
    with waiting(run.registry):
        return _update(run, add, remove, json_dir, force)


def _update(
    run: RunDir, add: list[Condition], remove: list[str], json_dir: Path | None, force: bool
) -> list[tuple[Condition, store.Outcome]]:
    reg = registry(run)
    for name in remove:
        if name not in reg:
            raise PipelineError(f"--remove {name}: no such condition (have: {', '.join(reg) or 'none'})")
    seen: dict[str, Condition] = {}
    for cond in add:
        check_name(cond.name)
        if cond.name in seen:
            raise PipelineError(
                f"condition {cond.name} is given twice ({seen[cond.name].describe()}; {cond.describe()}): "
                "give distinct values or names"
            )
        seen[cond.name] = cond
        old = reg.get(cond.name)
        if old is not None and cond.name not in remove and old.kind != cond.kind:
            raise PipelineError(
                f"condition {cond.name} exists as {old.describe()}; --remove {cond.name} first, or use another name"
            )
    writes = [(cond, labels_writer(run, cond, json_dir, force)) for cond in add]  # every label made and checked
    done = [(cond, write()) for cond, write in writes]
    for name in remove:
        del reg[name]
    reg.update((cond.name, cond) for cond in add)
    _save(run, reg)
    return done


def _save(run: RunDir, reg: dict[str, Condition]) -> None:
    """Write the registry, unless it already says exactly this."""
    if not run.registry.exists() or list(registry(run).values()) != list(reg.values()):
        files.save(run.registry, [asdict(c) for c in reg.values()])


def labels_writer(
    run: RunDir, cond: Condition, json_dir: Path | None, force: bool = False
) -> Callable[[], store.Outcome]:
    """Make ``cond``'s labels now (or find ``conditions/<name>/labels.npy`` current), checking its source; the
    call that writes them (its manifest records the noise matrix)."""
    kind = KINDS[cond.kind]
    sources = kind.sources(cond, json_dir)
    for source in sources:
        if not source.is_file():
            raise PipelineError(f"{source}: file not found")
    sums = [files.checksum(s) for s in sources]
    recorded = {k: v for k, v in asdict(cond).items() if k != "annotators" or v}  # older labels stay current
    config = {**recorded, "source_checksum": sums[0] if len(sums) == 1 else sums or None}
    dataset = run.require(run.dataset, "data")
    path, inputs = run.labels(cond.name), {"dataset": dataset}
    for i, source in enumerate(sources):  # the labels, and all made from them, are stale once a source changes
        inputs["source" if len(sources) == 1 else f"source{i}"] = store.External(source)

    def make():
        ds = datasets.cached(dataset)
        K, true = ds.num_classes, ds.train_y
        noisy, generating = kind.labels(cond, ds, sources, json_dir)
        info = {
            "paper_column": cond.paper_column,
            "real_human_noise": cond.kind == "cifar10n",
            "actual_noise_rate": float(np.mean(noisy != true)),
            "noise_matrix": np.round(noise_matrix(noisy, true, K), 4).tolist(),
            "generating_noise_matrix": None if generating is None else np.round(generating, 4).tolist(),
        }
        return noisy, info

    made = make() if force or not store.is_current(path, inputs, config) else None
    return lambda: store.produce(
        path, root=run.root, stage="noise", inputs=inputs, config=config, make=lambda: made or make(), force=force
    )
