"""Worker pools of ours: forked workers that start with their own signal handling (``signals.pool_worker``)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator

from pipeline import signals


@contextlib.contextmanager
def fork_pool(processes: int) -> Iterator[multiprocessing.pool.Pool]:
    """``processes`` forked workers (sharing the parent's memory as it was). A block that finishes closes the pool
    and waits for its workers to exit; one that raises (a stop of the stage included) terminates them first."""
    pool = multiprocessing.get_context("fork").Pool(processes, initializer=signals.pool_worker)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
