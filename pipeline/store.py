"""The artifact store: every stage reads and writes its artifacts through it.

An artifact ``X`` is a file with a manifest ``X.manifest.json`` beside it: what it is (its path in
the run directory, which names its stage's task: condition, fold, method, learner, seed), the stage
that made it, the artifact's sha256, its inputs (other artifacts of the run, by path relative to ``X``
and sha256), the config that made it, and facts about the run (info, versions, wall time, device).
Writes are atomic (``files``: temp file, fsync, rename): the artifact first, its manifest last.

``verify`` is the one rule for "may this be used": the file is the artifact its manifest describes
(read where it was made, not copied over another), its bytes match, and every input is still the
file it was made from and is itself verified, up the chain. An input's recorded checksum is that of
the bytes the maker read: ``files.load`` remembers what it returned, and ``produce`` refuses to record an
input that changed after this process read it. ``is_current`` adds "made
from these inputs with this config"; ``produce`` makes an artifact unless it is current; ``read``
verifies, then loads.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline import files
from pipeline.errors import PipelineError


def manifest_path(artifact: Path) -> Path:
    return Path(f"{artifact}.manifest.json")


def ckpt_path(artifact: Path) -> Path:
    """Where a training stage keeps the state it resumes ``artifact``'s making from."""
    return Path(f"{artifact}.ckpt")


def normalise(obj: Any) -> Any:
    """Round-trip through JSON so tuples, numpy scalars and paths compare like stored values."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def read_manifest(artifact: Path) -> dict:
    mpath = manifest_path(artifact)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise PipelineError(
            f"{artifact}: has no manifest ({mpath.name}): not made by this pipeline, or not finished"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise PipelineError(f"{mpath}: not valid JSON") from None
    ok = isinstance(manifest, dict) and {"stage", "checksum", "inputs", "config", "info"} <= manifest.keys()
    if not ok or not all(isinstance(r, dict) and {"path", "checksum"} <= r.keys() for r in manifest["inputs"].values()):
        raise PipelineError(f"{mpath}: not a manifest of this pipeline")
    if "seal" in manifest and manifest["seal"] != _seal(manifest):  # unsealed: an older run's, read as it is
        raise PipelineError(
            f"{mpath}: edited after it was written (its seal does not match its content); "
            f"rerun make {manifest['stage']} to remake {Path(artifact).name}"
        )
    return manifest


def _seal(manifest: dict) -> str:
    """A checksum of a manifest's own content (all but its seal)."""
    body = json.dumps({k: v for k, v in manifest.items() if k != "seal"}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def write_manifest(artifact: Path, manifest: dict) -> None:
    """Save ``artifact``'s manifest sealed (``_seal``): a reader trusts it only as its writer wrote it, and an
    artifact whose manifest was edited is stale (remade on the next run, its info never read)."""
    manifest = normalise(manifest)
    files.save(manifest_path(artifact), {**manifest, "seal": _seal(manifest)})


def verify(artifact: Path, _depth: int = 0) -> dict:
    """The manifest of ``artifact`` once its bytes and every input up the chain check out; otherwise a
    PipelineError naming the deepest broken link and the stage that redoes it."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise PipelineError(f"{artifact}: missing")
    if _depth > 20:
        raise PipelineError(f"{artifact}: its manifests' inputs form a cycle")
    manifest = read_manifest(artifact)
    redo = f"rerun make {manifest['stage']} (then the stages after it)"
    recorded = PurePosixPath(manifest.get("artifact") or artifact.name)  # what it is: where it was made
    if Path(os.path.abspath(artifact)).parts[-len(recorded.parts) :] != recorded.parts:
        raise PipelineError(
            f"{artifact} is stale: its manifest describes {recorded}, another artifact (copied over this one?); {redo}"
        )
    if manifest["checksum"] != files.checksum(artifact):
        raise PipelineError(f"{artifact}: changed since it was made (checksum differs from its manifest); {redo}")
    sources = {name: Path(os.path.normpath(artifact.parent / rec["path"])) for name, rec in manifest["inputs"].items()}
    for name, source in sources.items():  # deepest cause first: a stale input names what to redo
        try:
            if not manifest["inputs"][name].get("external") or manifest_path(source).exists():
                verify(source, _depth + 1)  # an outside file that is some run's artifact: its chain too
            elif not source.is_file():
                raise PipelineError(f"{source}: gone since it was read")
        except PipelineError as e:
            raise PipelineError(f"{artifact} is stale: {e}") from None
    for name, source in sources.items():
        if files.checksum(source) != manifest["inputs"][name]["checksum"]:
            raise PipelineError(f"{artifact} is stale: {source} changed after it was made; {redo}")
    return manifest


def read(artifact: Path) -> Any:
    """The artifact's contents after ``verify``."""
    verify(artifact)
    return files.load(artifact)


class External(type(Path())):
    """An input that is a file a config names (probabilities made elsewhere, a weights file, a condition's label
    file). Recorded by its absolute path and checksum like any input, so what was made from it, and everything made
    from that, is stale once it changes; where it is some run's artifact (a manifest beside it), its chain too."""


def _records(artifact: Path, inputs: dict[str, Path]) -> dict[str, dict]:
    base = os.path.abspath(Path(artifact).parent)

    def record(p: Path) -> dict:
        if isinstance(p, External):
            return {"path": os.path.abspath(p), "checksum": files.checksum(p), "external": True}
        return {"path": os.path.relpath(os.path.abspath(p), base), "checksum": files.checksum(p)}

    return {name: record(p) for name, p in sorted(inputs.items())}


def is_current(artifact: Path, inputs: dict[str, Path], config: dict) -> bool:
    """True when ``artifact`` verifies and was made from exactly these inputs with this config."""
    try:
        manifest = verify(artifact)
        return manifest["config"] == normalise(config) and manifest["inputs"] == _records(artifact, inputs)
    except (PipelineError, FileNotFoundError):
        return False


def check_made_from(artifact: Path, manifest: dict, inputs: dict[str, Path]) -> None:
    """A PipelineError unless ``artifact`` (with its verified ``manifest``) was made from exactly ``inputs``, the
    files its stage reads for it now (an artifact of an older layout read others: intact, yet not current)."""
    now, then = _records(artifact, inputs), manifest["inputs"]
    if now != then:
        differ = ", ".join(sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k)))
        raise PipelineError(
            f"{artifact} is stale: made from other inputs than make {manifest['stage']} reads for it now "
            f"({differ}); rerun make {manifest['stage']}"
        )


def same_config(configs: dict[str, dict], what: str) -> dict:
    """The config shared by every entry of ``{name: config}``; otherwise a PipelineError naming the odd
    one(s) out (those outside the largest group) and the keys they differ in."""
    groups: dict[str, list[str]] = {}
    for name, config in configs.items():
        groups.setdefault(json.dumps(normalise(config), sort_keys=True), []).append(name)
    if len(groups) <= 1:
        return normalise(next(iter(configs.values()), {}))
    ranked = sorted(groups.values(), key=len, reverse=True)
    main, odd = configs[ranked[0][0]], ranked[1][0]
    diff = ", ".join(
        f"{k}={configs[odd].get(k)!r} (others: {main.get(k)!r})"
        for k in sorted(set(main) | set(configs[odd]))
        if configs[odd].get(k) != main.get(k)
    )
    others = sum(len(g) for g in ranked[1:])
    raise PipelineError(
        f"{what}: {odd} was made with {diff}"
        + (f" ({others} such)" if others > 1 else "")
        + f"; {len(ranked[0])} other(s) agree: redo the odd one(s) with the same options, or remove them"
    )


class Outcome(enum.Enum):
    """What ``produce`` did with an artifact; the value is the word a stage's log line starts with."""

    MADE = "wrote"
    CURRENT = "current"
    SKIPPED = "skipped"  # another process holds its lock and is making it

    def __bool__(self):
        raise TypeError("compare an Outcome with Outcome.MADE, not its truth value")

    @classmethod
    def of(cls, outcomes) -> Outcome:
        """One outcome for several artifacts: SKIPPED if any was, else MADE if any was, else CURRENT."""
        outcomes = list(outcomes)
        return next((o for o in (cls.SKIPPED, cls.MADE) if o in outcomes), cls.CURRENT)


class Pending(Exception):
    """Raised by ``produce`` within ``dry_run`` at the first artifact it would make."""


_dry = contextvars.ContextVar("dry_run", default=False)


@contextlib.contextmanager
def dry_run():
    """Within it ``produce`` makes, locks and removes nothing: it returns CURRENT for a current artifact and
    raises ``Pending`` for any other (how a stage's task says whether it has work to do)."""
    token = _dry.set(True)
    try:
        yield
    finally:
        _dry.reset(token)


def in_dry_run() -> bool:
    return _dry.get()


def remove_leftovers(artifact: Path, owned: bool = False) -> None:
    """Remove the temp files of ``artifact``, its manifest and its checkpoint that a killed write left, never a live
    writer's. ``owned`` (this process holds the artifact's lock, ``lock.TaskLock``): nobody else writes them, so all
    of them. Otherwise by the writer its name records (``staging``): on this host, those whose process is gone;
    elsewhere (or with no writer in the name), those untouched for ``lock.STALE_S``, the rule of a lock's heartbeat."""
    from pipeline.lock import STALE_S, alive

    for path in (Path(artifact), manifest_path(artifact), ckpt_path(artifact)):
        named = re.compile(rf"\.{re.escape(path.name)}(?:\.(?:(\d+)-(\d*)@(.+)\.)?[^.]+)?\.tmp")
        for tmp in path.parent.glob(f".{glob.escape(path.name)}*.tmp"):
            m = named.fullmatch(tmp.name)
            if m is None:
                continue
            pid, started, host = m.groups()
            try:
                if owned or (
                    not alive(int(pid), int(started) if started else None)
                    if host == socket.gethostname()
                    else time.time() - tmp.stat().st_mtime > STALE_S
                ):
                    tmp.unlink()
            except FileNotFoundError:
                pass


def _check_finite(artifact: Path, value: Any) -> None:
    """Nothing non-finite is recorded as finished: every float array made for ``artifact`` (a staged ``.npy``
    included) is checked, a chunk at a time, before it is written."""
    if isinstance(value, files.Staged) and Path(artifact).suffix == ".npy":
        value = np.load(value.path, mmap_mode="r", allow_pickle=False)
    arrays = value if isinstance(value, dict) else {"": value}
    for name, a in arrays.items():
        if not (isinstance(a, np.ndarray) and a.dtype.kind in "fc"):
            continue
        flat = a.reshape(-1)
        step = max(1, files.NPZ_CHUNK_BYTES // a.itemsize)
        bad = sum(int(np.count_nonzero(~np.isfinite(flat[i : i + step]))) for i in range(0, flat.size, step))
        if bad:
            raise PipelineError(
                f"{artifact}: {bad} of {flat.size} values{f' in {name}' if name else ''} are NaN or infinite; "
                "nothing was recorded"
            )


def produce(
    artifact: Path,
    *,
    root: Path,
    stage: str,
    inputs: dict[str, Path],
    config: dict,
    make: Callable[[], tuple[Any, dict]],
    force: bool = False,
    device: str = "cpu",
    lock: bool = False,
) -> Outcome:
    """Make ``artifact`` (a file under the run directory ``root``, whose path there says what it is) unless
    it is current (``force``: always). ``make()`` returns (contents, info); every input must verify first,
    and be the bytes ``make`` read (if this process read it at all). SKIPPED if another process holds its
    lock (``lock``: claim it while making, see ``lock.TaskLock``)."""
    from pipeline.lock import TaskLock

    artifact = Path(artifact)
    if in_dry_run():
        if force or not is_current(artifact, inputs, config):
            raise Pending(artifact)
        return Outcome.CURRENT
    with TaskLock(artifact) if lock else contextlib.nullcontext() as claim:
        if claim is not None and not claim.held:
            print(f"skipped: {artifact} is being made by {claim.owner}", flush=True)
            return Outcome.SKIPPED
        remove_leftovers(artifact, owned=claim is not None)
        if not force and is_current(artifact, inputs, config):
            ckpt_path(artifact).unlink(missing_ok=True)  # left by a kill between the manifest and its removal below
            return Outcome.CURRENT
        for source in inputs.values():
            if not isinstance(source, External) or manifest_path(source).exists():
                verify(source)
        made_from = _records(artifact, inputs)
        if force:
            ckpt_path(artifact).unlink(missing_ok=True)
        start = time.perf_counter()
        files.staged.clear()
        try:
            value, info = make()
            _check_finite(artifact, value)
            now = _records(artifact, inputs)
            for name, source in inputs.items():
                held = files.read_as.get(os.path.abspath(source))
                if now[name] != made_from[name] or held not in (None, made_from[name]["checksum"]):
                    raise PipelineError(
                        f"{artifact}: its input {source} changed while it was being made (or after "
                        f"this process read it); nothing was written: run make {stage} again"
                    )
            files.save(artifact, value)
        finally:
            for tmp in files.staged:
                tmp.unlink(missing_ok=True)
            files.staged.clear()
        write_manifest(
            artifact,
            {
                "artifact": _made_as(artifact, root),
                "stage": stage,
                "checksum": files.checksum(artifact),
                "inputs": made_from,
                "config": normalise(config),
                "info": normalise(info),
                "wall_s": round(time.perf_counter() - start, 3),
                "device": device,
                "host": socket.gethostname(),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": _versions(),
            },
        )
        ckpt_path(artifact).unlink(missing_ok=True)
    return Outcome.MADE


def _made_as(artifact: Path, root: Path) -> str:
    """What an artifact is: its path relative to the run directory ``root`` (e.g. conditions/n20_s0/masks/both.npy)."""
    rel = Path(os.path.relpath(os.path.abspath(artifact), os.path.abspath(root)))
    if rel.parts[0] == "..":
        raise ValueError(f"{artifact} is not under the run directory {root}")
    return rel.as_posix()


def _versions() -> dict[str, str]:
    """The versions installed of Python and of the packages that compute results."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "pytorch-lightning", "cleanlab"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
