"""What a learner of the coteach stage is: one ``Spec``, written once in its own file under
``pipeline/learners/`` and listed once in ``pipeline.learners.LEARNERS``.

Everything else derives from that list: the stage's ``--learners`` choices and its config fields
(each learner's own options), the paper's grid, the report's names, the number of networks trained.
A spec imports nothing heavy, so the CLI and the report read it without loading torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Spec:
    """A learner: ``losses(nets, x, y, *, epoch, epochs, **own) -> one scalar loss per network`` for the batch
    ``(x, y)`` in epoch ``epoch`` (0-based) of ``epochs``; ``own``: the values of its ``options``."""

    name: str  # the --learners name, and the directory of its results
    title: str  # its name in the report
    nets: int  # networks it trains (each gets its own Adam)
    losses: Callable
    options: dict[str, dataclasses.Field] = field(default_factory=dict)  # its own config fields (options.option)
    paper_baseline: bool = False  # the CL paper's Table 2 trains it on all rows
    paper_cleaned: bool = False  # ... and on every CL mask's rows
    # (own, batch, where) -> None, or a PipelineError when these options cannot train batches of ``batch``;
    # called on the config (own values as given) and again on a task (resolved, and the batch that really trains).
    check: Callable | None = None
    # (own, noise_rate) -> own: the values a task records, for options that follow the condition.
    resolve: Callable | None = None
