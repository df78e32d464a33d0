"""Options checked at the boundary: one range type for command-line flags and config dataclasses alike.

A stage's options are dataclasses (its task selection, its config, how it is launched) whose fields are
declared with ``option(default, help, Range(...))`` and checked by ``validate(self)`` in ``__post_init__``,
so they are valid however they were made (flags, a notebook, a SLURM task list); ``cli.add_fields`` turns
the same fields into flags with their help and default, and a value out of range is refused by the
dataclass in one line, the same from the command line and from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

from pipeline.errors import PipelineError

SEED_MAX = 2**31 - 1
PRECISIONS = ("auto", "bf16-mixed", "32-true")


@dataclass(frozen=True)
class Range:
    """Numbers of ``kind`` in [lo, hi] (``lo_open``/``hi_open``: that end excluded); ``optional``: None too."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    bounded: bool = True  # as an argparse type: False leaves the bounds to ``validate`` (one message for both)

    @property
    def expected(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.lo is not None and self.hi is not None:
            what += f" in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            what += f" {'>' if self.lo_open else '>='} {self.lo}"
        return "expected " + what + (" or none" if self.optional else "")

    def check(self, value):
        """``value`` if it is in range, else a ValueError saying what was expected."""
        if value is None and self.optional:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.kind is float or isinstance(value, int))
        ok = ok and (self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
        ok = ok and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi))
        if not ok:
            raise ValueError(self.expected)
        return self.kind(value)

    def __call__(self, text: str):
        """Parse a flag's text (argparse ``type=``): a number of ``kind``, finite, and (``bounded``) in range."""
        try:
            value = None if self.optional and text.lower() in ("none", "") else self.kind(text)
            return (self if self.bounded else Range(self.kind, optional=self.optional)).check(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {self.expected}") from None


@dataclass(frozen=True)
class Options:
    """The base of every options dataclass (a stage's selection, config, launch): checked when made, however it is
    made (``validate``; a subclass with checks of its own calls this ``__post_init__`` first)."""

    def __post_init__(self):
        validate(self)


def option(
    default,
    help: str,
    range_: Range | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
):
    """An option field: its default (``dataclasses.MISSING``: required; a tuple: a repeatable flag), its --help
    text, its allowed values (a Range or choices) and the placeholder --help shows."""
    meta = {"help": help, "range": range_, "choices": choices, "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)


def precision():
    """The ``precision`` field of every training config (resolved per device by ``train.effective_precision``)."""
    return option(
        "auto",
        "numeric precision of training and prediction: bf16-mixed (bfloat16 autocast, float32 "
        "weights), 32-true, or auto (bf16-mixed on CUDA, 32-true on the CPU)",
        choices=PRECISIONS,
    )


def compile_():
    """The ``compile`` field of every training config."""
    return option(
        False,
        "torch.compile every network (a one-off compile per process, then faster steps; "
        "on the CPU it needs a C++ compiler)",
    )


def weights():
    """The ``weights`` field of every training config (see ``pipeline.backbones``)."""
    return option(
        None,
        "starting weights: a torchvision weights name (IMAGENET1K_V1, DEFAULT, "
        "ResNet50_Weights.IMAGENET1K_V2) found in the torch hub cache, or a file (a torchvision "
        "state_dict, or one python -m stages.backbone wrote); none: random",
    )


def input_size():
    """The ``input_size`` field of every training config."""
    return option(
        None,
        "resize batches to N x N on the device (antialiased) before the network; none: the images' own size",
        Range(int, 8, 1024, optional=True),
    )


# Options added after runs existed: left out of a recorded config while at their default (older runs stay current).
ADDED_LATER = ("weights", "input_size", "mixup", "features", "tta")


def recorded(config) -> dict:
    """A config as an artifact records it (see ``ADDED_LATER``)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return {k: v for k, v in dataclasses.asdict(config).items() if not (k in ADDED_LATER and v == defaults[k])}


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def validate(config) -> None:
    """Check every field of an options dataclass against its declared range or choices (a repeatable field: a
    tuple of strings; a text field: a string)."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if isinstance(f.default, bool) and not isinstance(value, bool):
            raise PipelineError(f"{flag(f.name)} {value!r}: expected true or false")
        if isinstance(f.default, tuple) and not (isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
            raise PipelineError(f"{flag(f.name)} {value!r}: expected a tuple of strings (the flag repeated)")
        if meta.get("range") is None and not isinstance(f.default, (bool, tuple)) and value is not None:
            if not isinstance(value, str):
                raise PipelineError(f"{flag(f.name)} {value!r}: expected a string")
        if (
            meta.get("choices") is not None
            and value not in meta["choices"]
            and not (value is None and f.default is None)
        ):
            raise PipelineError(f"{flag(f.name)} {value!r}: choose from {', '.join(meta['choices'])}")
        if meta.get("range") is not None:
            try:
                meta["range"].check(value)
            except ValueError:
                raise PipelineError(f"{flag(f.name)} {value!r}: {meta['range'].expected}") from None


def int_list(spec: str, range_: Range, what: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (order kept, repeats dropped), each in ``range_``."""
    try:
        values = [range_.check(int(v)) for v in spec.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise PipelineError(f"{what} {spec!r}: comma-separated, each {range_.expected[len('expected ') :]}")
    return list(dict.fromkeys(values))
