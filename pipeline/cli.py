"""What every entry point shares: a parser whose errors are one line, config flags from a dataclass,
the run directory, and ``main``: any failure ends in one line on stderr and a known exit status."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pipeline import signals
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.options import Range, flag

DEFAULT_RUN_DIR = "runs/main"


class Parser(argparse.ArgumentParser):
    """argparse with ``--help`` showing every default, a bad flag reported in one line (exit 2), and every
    number flag checked by ``options.Range`` (finite, in its range)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        for action in self._actions:  # a plain number flag is a Range too: no option accepts NaN or infinity
            if action.type in (int, float):
                action.type = Range(action.type)
        return super().parse_known_args(args, namespace)


def parser(description: str) -> Parser:
    p = Parser(description=description)
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="the run directory holding every artifact")
    p.add_argument("--force", action="store_true", help="redo work even where current artifacts exist")
    return p


def add_fields(p: argparse.ArgumentParser, cls, title: str | None = None, only=None) -> None:
    """One flag per field of an options dataclass (see ``options.option``; ``only``: these fields), with its help
    and default; in group ``title`` where given. Numbers are parsed here, their range is checked by the dataclass
    (so a refusal reads the same from Python)."""
    group = p.add_argument_group(title) if title else p
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        meta, kw = f.metadata, {"help": f.metadata["help"], "metavar": f.metadata.get("metavar")}
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        elif isinstance(f.default, bool):
            kw.update(action=argparse.BooleanOptionalAction, default=f.default, metavar=None)
        elif isinstance(f.default, tuple):
            kw.update(action="append", default=None)  # None: argparse appends to a list it makes
            kw["help"] += "; repeatable"
        else:
            kw["default"] = f.default
            if meta.get("range") is not None:
                kw["type"] = dataclasses.replace(meta["range"], bounded=False)
            if meta.get("choices"):
                kw["metavar"] = kw["metavar"] or "{" + ",".join(meta["choices"]) + "}"
        group.add_argument(flag(f.name), **kw)


def fields_from(args: argparse.Namespace, cls):
    """The options dataclass ``cls`` from parsed flags (``add_fields``'), checked by the dataclass."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            values[f.name] = tuple(value or ()) if isinstance(f.default, tuple) else value
    return cls(**values)


def run_dir(path: str | Path, create: bool = False) -> RunDir:
    """The run directory ``path`` (``--run-dir``): a directory this process can write (``create``: made if missing)."""
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise PipelineError(f"{root}: --run-dir is not a directory")
    if not root.exists() and not create:
        raise PipelineError(f"{root}: no such run directory (--run-dir); a run starts with make data")
    return RunDir(writable_dir(root, "run directory"))


def writable_dir(path: Path, what: str) -> Path:
    """``path``, made if missing, after checking this process can write it (``what`` names it in errors)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"{path}: cannot create the {what} ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PipelineError(f"{path}: the {what} is not writable")
    return path


def log(message: str) -> None:
    print(message, flush=True)


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning as one line of the log (stdout): stderr stays the one line that says why a run failed."""
    log(f"warning: {category.__name__}: {str(message).strip().splitlines()[0] if str(message).strip() else ''}")


def main(stage: Callable[[], None]) -> None:
    """Run an entry point. A PipelineError or an OS error is one line and exit status 2; SIGINT exit
    130, SIGTERM (or SIGUSR1, SLURM's warning) 143, each with one line (warnings go to stdout, one line
    each). Finished artifacts and the last epoch's checkpoint are kept."""
    start = time.perf_counter()
    warnings.showwarning = _warning_to_log
    signals.catch()
    try:
        stage()
        log(f"[{time.perf_counter() - start:.1f} s]")
    except BrokenPipeError:  # stdout closed early (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except PipelineError as e:
        _fail(f"error: {e}", 2)
    except OSError as e:
        _fail(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", 2)
    except (signals.Stopped, SystemExit) as e:  # Lightning's SIGTERMException is a SystemExit (status 0 if left alone)
        if not isinstance(e, signals.Stopped) and type(e).__name__ != "SIGTERMException":
            raise
        status = e.args[0] if isinstance(e, signals.Stopped) else 143
        _fail(
            "interrupted; finished artifacts and the last epoch's checkpoint are kept"
            if status == 130
            else "stopped by a signal; the last epoch's checkpoint is kept: rerun to resume",
            status,
        )


def _fail(line: str, status: int) -> None:
    signals.ignore_interrupt()
    print(line, file=sys.stderr, flush=True)
    sys.exit(status)
