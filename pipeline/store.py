"""The artifact store: atomic writes, checksummed manifests, and the one rule for "is this done".

Every artifact ``X`` has a manifest ``X.manifest.json`` beside it holding the artifact's checksum, the
fingerprints of the inputs it was made from, the config that made it, and facts about the run
(versions, wall time, device). An artifact is *current* when both files exist, the artifact's
bytes match the checksum, and the recorded inputs and config equal the ones asked for now.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


class PipelineError(Exception):
    """A problem the user can fix: the message names the file and what is wrong."""


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via a temp file in the same folder, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts get normal file modes
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()))


def load_npy(path: Path) -> np.ndarray:
    """Load an ``.npy`` file, turning a missing, truncated or foreign file into a PipelineError."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError) as e:
        raise PipelineError(f"{path}: not a readable .npy file ({e})") from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file eagerly (so truncation shows up here, not later)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise PipelineError(f"{path}: not a readable .npz file ({e})") from None


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"{path}: not valid JSON ({e})") from None


_checksums: dict[tuple[str, int, int], str] = {}


def checksum(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within this process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _checksums:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _checksums[key] = "sha256:" + h.hexdigest()
    return _checksums[key]


def manifest_path(artifact: Path) -> Path:
    return Path(f"{artifact}.manifest.json")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "pytorch_lightning", "cleanlab"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def _normalise(obj: Any) -> Any:
    """Round-trip through JSON so tuples, numpy scalars and paths compare like stored values."""
    return json.loads(json.dumps(obj, default=str))


def fingerprints(inputs: dict[str, Path]) -> dict[str, str]:
    missing = [str(p) for p in inputs.values() if not Path(p).exists()]
    if missing:
        raise PipelineError(f"missing input: {', '.join(missing)}")
    return {name: checksum(p) for name, p in sorted(inputs.items())}


def is_current(artifact: Path, inputs: dict[str, Path], config: dict) -> bool:
    """True when ``artifact`` exists, is intact, and was made from these inputs with this config."""
    artifact, mpath = Path(artifact), manifest_path(artifact)
    if not (artifact.exists() and mpath.exists()):
        return False
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (
        manifest.get("checksum") == checksum(artifact)
        and manifest.get("config") == _normalise(config)
        and manifest.get("inputs") == fingerprints(inputs)
    )


def read_manifest(artifact: Path) -> dict:
    """The manifest of an artifact after checking the artifact's bytes against its checksum."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise PipelineError(f"{artifact}: file not found")
    manifest = load_json(manifest_path(artifact))
    if manifest.get("checksum") != checksum(artifact):
        raise PipelineError(f"{artifact}: contents do not match the checksum in its manifest (corrupt or changed)")
    return manifest


def write_manifest(
    artifact: Path,
    inputs: dict[str, Path],
    config: dict,
    *,
    wall_s: float,
    device: str = "cpu",
    info: dict | None = None,
) -> None:
    """Write the manifest of an artifact that is already complete on disk."""
    save_json(
        manifest_path(artifact),
        {
            "artifact": Path(artifact).name,
            "checksum": checksum(artifact),
            "inputs": fingerprints(inputs),
            "config": _normalise(config),
            "info": _normalise(info or {}),
            "wall_s": round(wall_s, 3),
            "device": device,
            "host": socket.gethostname(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": _versions(),
        },
    )


LOCK_STALE_S = 3600  # a lock from another host with no heartbeat for this long is taken over


def _lock_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _is_stale(lock: Path, owner: dict | None) -> bool:
    if owner is None:  # unreadable or half-written: stale once old enough to not be mid-creation
        try:
            return time.time() - lock.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    job = os.environ.get("SLURM_JOB_ID")
    if job and owner.get("slurm_job") == job:  # this job was requeued: its earlier run is gone
        return True
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    try:
        return time.time() - lock.stat().st_mtime > LOCK_STALE_S
    except FileNotFoundError:
        return True


class TaskLock:
    """An exclusive claim on making one artifact: ``<artifact>.lock`` holds the owner's host and pid.

    A lock whose owner process is gone (same host), whose owner is an earlier run of this very
    SLURM job (requeued, maybe onto another node), or whose heartbeat (the file's mtime) is older
    than ``LOCK_STALE_S`` (other hosts), is stale and taken over. ``owner`` describes the holder
    when the claim failed.
    """

    def __init__(self, artifact: Path):
        self.artifact = Path(artifact)
        self.path = Path(f"{artifact}.lock")
        self.owner: str | None = None
        self.held = False

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                         "slurm_job": os.environ.get("SLURM_JOB_ID")}).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _lock_owner(self.path)
                if not _is_stale(self.path, owner):
                    self.owner = f"{owner['host']}:{owner['pid']}" if owner else "unknown"
                    return False
                try:  # move the stale lock aside atomically: of several contenders one wins
                    os.rename(self.path, f"{self.path}.stale.{os.getpid()}")
                    os.unlink(f"{self.path}.stale.{os.getpid()}")
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(me)
            self.held = True
            return True
        return False

    def heartbeat(self) -> None:
        if self.held:
            os.utime(self.path)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def must_make(self, inputs: dict[str, Path], config: dict, force: bool = False) -> bool:
        """True when this process holds the lock and the artifact still needs making; says why not otherwise."""
        if not self.held:
            print(f"skipped: {self.artifact} is being made by {self.owner}", flush=True)
            return False
        return force or not is_current(self.artifact, inputs, config)  # another worker may have just finished it

    def __enter__(self) -> "TaskLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
