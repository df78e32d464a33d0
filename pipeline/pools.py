"""Worker pools of ours: forked workers that start with their own signal handling."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator


def _own_signals() -> None:
    """A worker's signals: SIGTERM ends it at once, as ``Pool.terminate`` expects; SIGINT (a Ctrl-C reaches the
    whole process group) is the parent's, which ends the pool. A forked worker would otherwise run the stage's
    handler, which raises ``Stopped`` in the worker: a traceback on a run that succeeded, and a worker that dies
    holding the task queue's lock hangs the parent for good."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def fork_pool(processes: int) -> Iterator[multiprocessing.pool.Pool]:
    """``processes`` forked workers (sharing the parent's memory as it was). A block that finishes closes the pool
    and waits for its workers to exit; one that raises (a stop of the stage included) terminates them first."""
    pool = multiprocessing.get_context("fork").Pool(processes, initializer=_own_signals)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
