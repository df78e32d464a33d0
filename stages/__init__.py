"""The stages, listed once, in pipeline order. ``python -m stages NAME``, ``python -m stages.NAME``, the notebook
(``stages.notebook``), SLURM arrays (``slurm.submit``, ``stages.tasklist``) and the Makefile's targets (checked
against this list by tests/test_makefile.py) all take their stages from here."""

from __future__ import annotations

import importlib

from pipeline.tasks import Stage

NAMES = (
    "data",
    "noise",
    "crossval",
    "backbone",
    "predict",
    "combine",
    "consensus",
    "masks",
    "review",
    "coteach",
    "report",
)


def registry() -> dict[str, Stage]:
    """Every stage by name, in pipeline order (each module imported when asked for, so that ``python -m
    stages.NAME`` does not import its own module twice)."""
    return {name: importlib.import_module(f"stages.{name}").STAGE for name in NAMES}


def arrays() -> dict[str, Stage]:
    """The stages a SLURM array runs: those whose tasks may run apart (``Stage.pooled``), one task an element."""
    return {name: stage for name, stage in registry().items() if stage.pooled}
