"""What every stage entry point shares: common options, config options from a dataclass, error exit."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Callable

from pipeline.layout import RunDir
from pipeline.store import PipelineError

DEFAULT_RUN_DIR = "runs/main"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="the run directory holding every artifact")
    p.add_argument("--force", action="store_true", help="redo work even where current artifacts exist")
    return p


def add_condition_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cond", default="", help="comma-separated conditions to narrow to (default: all)")


def add_config_args(p: argparse.ArgumentParser, config_cls) -> None:
    """One ``--option`` per field of a config dataclass, typed and defaulted by the field."""
    group = p.add_argument_group(f"{config_cls.__name__} (recorded in each artifact's manifest)")
    for f in dataclasses.fields(config_cls):
        kind = type(f.default) if f.default is not None else float
        group.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)


def config_from(args: argparse.Namespace, config_cls):
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


def int_list(spec: str) -> list[int]:
    try:
        return [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{spec}'") from None


def run_dir(args: argparse.Namespace) -> RunDir:
    return RunDir(args.run_dir)


def log(message: str) -> None:
    print(message, flush=True)


def main(stage: Callable[[], None]) -> None:
    """Run a stage; a PipelineError becomes a one-line message and exit status 2."""
    start = time.perf_counter()
    try:
        stage()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished artifacts and the last epoch's checkpoint are kept", file=sys.stderr)
        sys.exit(130)
    except BaseException as e:
        # Lightning's SIGTERMException (a SystemExit: exit status 0 if left alone), looked up lazily: importing Lightning costs every stage seconds.
        sigterm = getattr(sys.modules.get("pytorch_lightning.utilities.exceptions"), "SIGTERMException", ())
        if not isinstance(e, sigterm):
            raise
        print("stopped by a signal; the last epoch's checkpoint is kept: rerun to resume", file=sys.stderr)
        sys.exit(143)
    log(f"[{time.perf_counter() - start:.1f} s]")
