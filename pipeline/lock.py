"""One owner per task: ``<artifact>.lock``, with a heartbeat, taken over when its owner is gone."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from pipeline.errors import PipelineError

HEARTBEAT_S = 30  # a holder refreshes its lock's mtime this often, from a thread, whatever training is doing
STALE_S = 600  # a lock whose heartbeat is older than this is stale, on any host


def started_at(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` (on this host) still runs and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return started is None or started_at(pid) in (None, started)


def is_stale(path: Path) -> bool:
    """A lock is stale when its owner is an earlier run of this SLURM job (requeued: another
    SLURM_RESTART_COUNT; other tasks of the same run are not stale), its owner process
    is gone or its pid reused (same host), its heartbeat is older than STALE_S, or it is unreadable (a lock
    appears whole, see ``TaskLock``: an unreadable one was damaged, never half-written by a live owner)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    try:
        owner = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError):
        return True
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int) or owner["pid"] <= 0 or age > STALE_S:
        return True
    job = os.environ.get("SLURM_JOB_ID")
    if (
        job
        and owner.get("slurm_job") == job
        and owner.get("slurm_restart") != os.environ.get("SLURM_RESTART_COUNT", "0")
    ):
        return True  # an earlier run of this very job, since requeued (maybe onto another node)
    return owner.get("host") == socket.gethostname() and not alive(owner["pid"], owner.get("started"))


@contextlib.contextmanager
def waiting(artifact: Path, timeout_s: float = 600, poll_s: float = 0.1):
    """Hold ``artifact``'s lock, waiting while another live process holds it: for a read-modify-write of a
    file that every process shares (the condition registry), where skipping would lose the other's update."""
    deadline = time.monotonic() + timeout_s
    while True:
        lock = TaskLock(artifact).__enter__()
        if lock.held:
            break
        if time.monotonic() > deadline:
            raise PipelineError(f"{artifact}: still being changed by {lock.owner} after {timeout_s:.0f} s; try again")
        time.sleep(poll_s)
    try:
        yield lock
    finally:
        lock.__exit__()


class TaskLock:
    """An exclusive claim on making one artifact. ``held`` after entering says whether it is ours;
    ``owner`` names the holder when it is not. While held, a thread refreshes the heartbeat."""

    def __init__(self, artifact: Path):
        self.path = Path(f"{artifact}.lock")
        self.owner: str | None = None
        self.held = False
        self._stop = threading.Event()

    def __enter__(self) -> TaskLock:
        me = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": started_at(os.getpid()),
                "since": time.time(),
                "slurm_job": os.environ.get("SLURM_JOB_ID"),
                "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
            }
        ).encode()
        # The owner is written to a file of our own, then linked as the lock (which fails if it exists): the
        # lock appears with its owner in it, so a process killed at any moment never leaves a nameless lock.
        mine = Path(f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(mine, "wb") as f:
                f.write(me)
            for _ in range(3):
                try:
                    os.link(mine, self.path)
                except FileExistsError:
                    if not is_stale(self.path):
                        self.owner = self._read()
                        return self
                    aside = f"{self.path}.stale.{os.getpid()}"  # of several contenders one wins the rename
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(self.path, aside)
                        os.unlink(aside)
                    continue
                self.held = True
                threading.Thread(target=self._beat, daemon=True).start()
                return self
        except OSError as e:
            raise PipelineError(f"{self.path}: cannot create the task's lock ({e.strerror or e})") from None
        finally:
            mine.unlink(missing_ok=True)
        return self

    def _read(self) -> str:
        try:
            owner = json.loads(self.path.read_text())
            return f"{owner['host']}:{owner['pid']}"
        except (OSError, ValueError, UnicodeDecodeError, TypeError, KeyError):
            return "an unknown process"

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
