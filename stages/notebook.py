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

``stage`` turns keyword arguments into the stage's flags (``image_size=64`` is ``--image-size 64``; True a
switch; a list a comma-separated value, or the flag repeated where the flag is repeatable), parses them with
the stage's own parser, and runs it as ``python -m stages.<name>`` would: the same checks, the same artifacts,
and returns what its tasks did (``tasks.Result``). A refused option or a failed stage raises ``PipelineError``
with the one line the command line prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

from pipeline import store, tasks, workers
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
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
        parser = workers.parser(stage)
        parser.prog = f"stages.{name}"
        argv = ["--run-dir", str(self.dir.root), *(["--force"] if force else []), *_flags(parser, options)]
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                args = parser.parse_args(argv)
        except SystemExit:
            raise PipelineError(said.getvalue().strip() or f"{name}: options refused: {argv}") from None
        return workers.run(args, stage)

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


def _flags(parser: argparse.ArgumentParser, options: dict) -> list[str]:
    """Keyword arguments as the flags ``parser`` knows (a name it does not know is refused there)."""
    actions = {a.dest: a for a in parser._actions}
    out = []
    for key, value in options.items():
        flag, action = "--" + key.replace("_", "-"), actions.get(key)
        if isinstance(action, argparse.BooleanOptionalAction):
            out.append(flag if value else f"--no-{flag[2:]}")
        elif value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            if isinstance(action, argparse._AppendAction):
                out += [x for v in value for x in (flag, str(v))]
            else:
                out += [flag, ",".join(map(str, value))]
        else:
            out += [flag, str(value)]
    return out
