"""Where every artifact of a run lives. One run directory holds everything a stage reads or writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.store import PipelineError, load_json


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.npz"

    def condition_dir(self, cond: str) -> Path:
        return self.root / "conditions" / cond

    def labels(self, cond: str) -> Path:
        return self.condition_dir(cond) / "labels.npy"

    def shard(self, cond: str, fold: int) -> Path:
        return self.condition_dir(cond) / "folds" / f"fold{fold}.npz"

    def psx(self, cond: str) -> Path:
        return self.condition_dir(cond) / "psx.npy"

    def masks(self, cond: str) -> Path:
        return self.condition_dir(cond) / "masks.npz"

    def coteach(self, cond: str, method: str, seed: int) -> Path:
        return self.condition_dir(cond) / "coteach" / method / f"seed{seed}.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def conditions_list(self) -> Path:
        return self.root / "conditions.json"

    def conditions(self, only: str | None = None) -> list[str]:
        """The conditions the noise stage last declared (``only``: a comma-separated subset)."""
        found = load_json(self.require(self.conditions_list, "noise"))
        if only:
            wanted = [c.strip() for c in only.split(",") if c.strip()]
            unknown = [c for c in wanted if c not in found]
            if unknown:
                raise PipelineError(f"{self.root}: no condition named {', '.join(unknown)} (have: {', '.join(found)})")
            found = wanted
        return found

    def require(self, path: Path, made_by: str) -> Path:
        """``path`` if it exists, else an error saying which stage makes it."""
        if not Path(path).exists():
            raise PipelineError(f"{path}: missing; it is made by the {made_by} stage (make {made_by})")
        return Path(path)
