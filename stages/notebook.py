"""The stages from Python (a notebook), with the command line's options and artifacts, and the results as
DataFrames::

    from stages.notebook import Run

    run = Run("runs/photos")
    run.stage("data", source="photos/", image_size=64, workers=8)
    run.stage("noise", conditions="0:0")
    run.stage("crossval", fold="all", gpu="cpu", recipe="linear-probe", arch="resnet50", weights="IMAGENET1K_V2")
    for name in ("combine", "masks", "review"):
        run.stage(name)
    run.label_issues("n0_s0")  # one row per flagged example, lowest label quality first
    run.report()["table"]  # the report's tables by name: table, accuracy, detection, cleaning

``stage`` sorts the keyword arguments into the stage's options (the same names as its flags, ``image_size=64``
for ``--image-size 64``): its task selection (``STAGE.Select``), its config (``STAGE.Config``) and how its tasks
are launched (``workers.Launch``), builds those dataclasses, and runs the stage on them as ``python -m
stages.<name>`` does: the same checks, the same artifacts. It returns what the tasks did (``tasks.Result``). A
list is a comma-separated value, or the flag repeated where the option is repeatable. A refused option or a
failed stage raises ``PipelineError`` with the one line the command line prints.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from pipeline import store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import flag
from stages import registry

STAGES = registry()


class Run:
    """A run directory, driven from Python."""

    def __init__(self, root: str | Path):
        self.dir = RunDir(Path(root))

    def stage(self, name: str, force: bool = False, **options) -> tasks.Result:
        """Run stage ``name`` on this run with ``options`` (see the module's docstring); what its tasks did
        (``tasks.Result``: each task run, its outcome and summary line)."""
        if name not in STAGES:
            raise PipelineError(f"{name}: not a stage (choose from {', '.join(STAGES)})")
        stage = STAGES[name]
        classes = workers.option_classes(stage)
        known = {f.name: i for i, (cls, only) in enumerate(classes) for f in _fields(cls, only)}
        given: list[dict] = [{} for _ in classes]
        for key, value in options.items():
            if key not in known:
                raise PipelineError(f"{name}: no option {key!r} (choose from {', '.join(known)})")
            given[known[key]][key] = value
        built = [cls(**_values(cls, only, kw)) for (cls, only), kw in zip(classes, given)]
        return workers.run(stage, self.dir.root, *built, force=force)

    def label_issues(self, cond: str):
        """``label_issues.csv`` of ``cond`` (made by the review stage, verified) as a DataFrame."""
        import pandas as pd

        path = self.dir.require(self.dir.label_issues(cond), "review")
        return pd.read_csv(io.BytesIO(store.read(path)), keep_default_na=False)

    def report(self, **options) -> dict:
        """Run the report stage (``options`` as for ``stage``) and return its tables: ``{name: DataFrame}``."""
        self.stage("report", **options)
        return {p.stem: _table(p) for p in sorted(self.dir.report_dir.glob("*.csv"))}


def _table(path: Path):
    """A report CSV as a DataFrame (an empty one where the report had nothing to show)."""
    import pandas as pd

    try:
        return pd.read_csv(path, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _fields(cls, only) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if only is None or f.name in only]


def _values(cls, only, given: dict) -> dict:
    """Keyword arguments as the options of ``cls``: a list or tuple joined with commas, or a tuple for a
    repeatable option (a string alone: once); a required option missing is refused as the command line does."""
    out = {}
    for f in _fields(cls, only):
        if f.name not in given:
            if f.default is dataclasses.MISSING:
                raise PipelineError(f"the following arguments are required: {flag(f.name)}")
            continue
        value = given[f.name]
        if isinstance(f.default, tuple):
            value = (value,) if isinstance(value, str) else tuple(value)
        elif isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        out[f.name] = value
    return out
