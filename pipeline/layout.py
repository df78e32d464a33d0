"""Where every artifact of a run lives. One run directory holds everything a stage reads or writes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.npz"

    @property
    def registry(self) -> Path:
        return self.root / "conditions.json"

    def condition_dir(self, cond: str) -> Path:
        return self.root / "conditions" / cond

    def labels(self, cond: str) -> Path:
        return self.condition_dir(cond) / "labels.npy"

    def shard(self, cond: str, fold: int) -> Path:
        return self.condition_dir(cond) / "folds" / f"fold{fold}.npz"

    def shards(self, cond: str) -> dict[int, Path]:
        """The fold shards present, by fold."""
        found = {}
        for p in (self.condition_dir(cond) / "folds").glob("fold*.npz"):
            if m := re.fullmatch(r"fold(\d+)\.npz", p.name):
                found[int(m[1])] = p
        return dict(sorted(found.items()))

    def psx(self, cond: str) -> Path:
        return self.condition_dir(cond) / "psx.npy"

    def predicted(self, cond: str, weights: Path, checksum: str) -> Path:
        """``cond``'s rows predicted by the network of a weights file trained elsewhere (``stages.predict``)."""
        return self.condition_dir(cond) / "predicted" / f"{weights.stem}_{checksum.removeprefix('sha256:')[:12]}.npy"

    def consensus(self, cond: str) -> Path:
        """The consensus labels of a condition of several annotators (``pipeline.consensus``)."""
        return self.condition_dir(cond) / "consensus.npy"

    def consensus_quality(self, cond: str) -> Path:
        """How likely each consensus label is right (cleanlab's consensus quality score, 0..1)."""
        return self.condition_dir(cond) / "consensus_quality.npy"

    def mask(self, cond: str, method: str) -> Path:
        """One CL method's keep mask (``masks.CL_METHODS``' id)."""
        return self.condition_dir(cond) / "masks" / f"{method}.npy"

    def paper_detection(self, cond: str) -> Path:
        """The five methods' detection on the CL paper's psx (conditions with the paper's labels)."""
        return self.condition_dir(cond) / "paper_psx_detection.json"

    def old_masks(self, cond: str) -> Path:
        """Where every method's mask was, in one file, before each got its own (read by nothing now)."""
        return self.condition_dir(cond) / "masks.npz"

    def label_issues(self, cond: str) -> Path:
        return self.condition_dir(cond) / "label_issues.csv"

    def coteach(self, cond: str, rows: str, learner: str, seed: int) -> Path:
        return self.condition_dir(cond) / "coteach" / rows / learner / f"seed{seed}.json"

    def features(self, key: str) -> Path:
        """A backbone's pooled features of every row (``features.key``)."""
        return self.root / "features" / f"{key}.npz"

    def backbone(self, cond: str) -> Path:
        """A network pretrained on every training row with ``cond``'s labels (``stages.backbone``)."""
        return self.root / "backbones" / f"{cond}.pt"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def require(self, path: Path, made_by: str) -> Path:
        """``path`` if it exists, else an error saying which stage makes it."""
        if not Path(path).is_file():
            raise PipelineError(f"{path}: missing; it is made by the {made_by} stage (make {made_by})")
        return Path(path)
