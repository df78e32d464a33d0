"""Every signal handler of ours, in one place: how each kind of process stops.

- A stage's process (``cli.main``): SIGINT and SIGTERM raise ``Stopped`` in the main thread (exit 130 and 143 once
  ``finally`` blocks have cleaned up); SIGUSR1 (SLURM's warning before a time limit) stops a training as SIGTERM
  does, where no other handler (submitit's, which requeues) is installed.
- A launcher's worker process (``workers``): SIGTERM stops it as above; SIGINT is ignored (a Ctrl-C reaches the
  whole process group: the parent stops its workers with SIGTERM).
- A forked pool worker (``pools``): SIGTERM ends it at once, as ``Pool.terminate`` expects; SIGINT is ignored.
- The DDP ranks of a task on several devices (``ddp``): rank 0 kills the other ranks before it stops
  (``stopping_world``); the others die with rank 0 and ignore SIGINT; once Lightning has installed its own handlers,
  ``take_for_rank`` puts these back.
"""

from __future__ import annotations

import contextlib
import os
import signal

_stop_world = None  # rank 0's handler of SIGTERM and SIGINT while its world runs (see ``stopping_world``)


class Stopped(BaseException):
    """SIGINT or SIGTERM in the main thread (``args[0]``: the exit status, 130 or 143). Not a KeyboardInterrupt,
    which Lightning turns into exit status 1; ``finally`` blocks clean up on the way out."""


def _stop(signum, _frame):
    raise Stopped(130 if signum == signal.SIGINT else 143)


def catch() -> None:
    """A stage's process: SIGINT and SIGTERM raise ``Stopped``."""
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def worker() -> None:
    """A launcher's worker process: SIGTERM raises ``Stopped``, SIGINT is the parent's."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_worker() -> None:
    """A forked pool worker: SIGTERM ends it at once; SIGINT is the parent's, which ends the pool. A forked worker
    would otherwise run the stage's handler, which raises ``Stopped`` in the worker: a traceback on a run that
    succeeded, and a worker that dies holding the task queue's lock hangs the parent for good."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def rank() -> None:
    """A DDP rank other than 0: it dies with rank 0, however rank 0 ends (a SIGKILL too), and leaves SIGINT to it."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def sigusr1_stops() -> None:
    """Treat SIGUSR1 (SLURM's usual warning before a time limit) like SIGTERM: Lightning then stops at the next
    batch and the last epoch's checkpoint is what a restart resumes from. Left alone where another handler
    (submitit's, which requeues) is installed."""
    if signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL:
        signal.signal(signal.SIGUSR1, lambda *_: os.kill(os.getpid(), signal.SIGTERM))


def ignore_interrupt() -> None:
    """While a process exits: a second Ctrl-C does not interrupt it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def stopping_world(others: list):
    """Within it, a signal that stops rank 0 (SIGTERM, SIGINT) kills the other ranks (processes) first: otherwise
    rank 0 would wait forever for them in its next collective, and they for it. The handler it had runs next."""
    global _stop_world
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum, frame):
        for p in others:
            p.kill()
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for sig in previous:
        signal.signal(sig, stop)
    _stop_world = stop
    try:
        yield
    finally:
        _stop_world = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def take_for_rank(rank: int) -> None:
    """Once Lightning has installed its own handlers (at the start of training), put ours back: Lightning's SIGTERM
    handler broadcasts to the other ranks from inside the signal handler, which deadlocks when the signal lands
    during another collective. Rank 0 stops the world (``stopping_world``); the other ranks ignore the signals,
    and rank 0 kills them."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _stop_world if rank == 0 and sig != signal.SIGUSR1 and _stop_world else signal.SIG_IGN)
    if rank == 0:
        signal.signal(signal.SIGUSR1, lambda *_: os.kill(os.getpid(), signal.SIGTERM))  # SLURM's warning: stop
