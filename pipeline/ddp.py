"""One task on several devices: its training as Lightning DDP ranks, one process per device.

The task's process is rank 0; ``on_devices`` starts the other ranks (spawned processes that run the same
``make`` on their device, each given its ``devices.TaskContext``), sets the variables torchrun sets and
Lightning's environment reads (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), and
joins them. In each rank ``make_trainer`` turns to ``DDPStrategy`` (gloo on the CPU, nccl on CUDA) and
``loader.Batches`` gives the rank its share of every batch: the global batch, the schedule and the steps are those of one device, with the gradients averaged
over the ranks. Only rank 0 writes (checkpoints, the artifact); the others return nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket

from pipeline import signals
from pipeline.errors import PipelineError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _ranked(rank: int, world: int, port: int):
    """The torchrun-style environment of rank ``rank`` of a one-node world of ``world`` ranks, which Lightning's
    ``LightningEnvironment`` reads (restored after)."""
    values = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(world),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "NODE_RANK": "0",
    }
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rank_main(rank: int, ctx, port: int, make, args: tuple) -> None:
    signals.rank()
    with _ranked(rank, ctx.world, port):
        try:
            make(*args[:3], ctx.of_rank(rank), *args[3:])
        finally:
            _close()  # exiting with the group alive can abort in gloo's teardown ("terminate called ...")


def on_devices(ctx, make, *args):
    """``make(run, task, config, ctx, *rest)`` trained on every device of ``ctx`` (a ``devices.TaskContext``: one
    device, or a group of CUDA indices or 'cpu' repeated, as ranks of one DDP world); rank 0's result. ``args``:
    (run, task, config, *rest), without the context."""
    if ctx.world == 1:
        return make(*args[:3], ctx, *args[3:])
    port = _free_port()
    spawn = multiprocessing.get_context("spawn")
    others = [
        spawn.Process(target=_rank_main, args=(r, ctx, port, make, args), name=f"rank {r}") for r in range(1, ctx.world)
    ]
    for p in others:
        p.start()
    try:
        with _ranked(0, ctx.world, port), signals.stopping_world(others):
            result = make(*args[:3], ctx, *args[3:])
    except Exception as e:
        died = _died(others)  # a rank that died mid-training fails rank 0's next collective: say so, not gloo's words
        for p in others:
            p.kill()
        if died and not isinstance(e, PipelineError):
            raise PipelineError(
                f"{', '.join(died)} of the {ctx.world}-device training; the last epoch's checkpoint is kept: "
                "rerun to resume"
            ) from None
        raise
    except BaseException:
        for p in others:
            p.kill()
        raise
    finally:
        for p in others:
            p.join()
        _close()
    failed = [f"{p.name} exited {p.exitcode}" for p in others if p.exitcode]
    if failed:
        raise PipelineError(f"a rank of the {ctx.world}-device training failed ({', '.join(failed)}); nothing written")
    return result


def _died(others: list, wait_s: float = 5.0) -> list[str]:
    """The ranks among ``others`` that ended with a failure ("rank 1 died (signal 9)"), each waited for up to
    ``wait_s`` s: a rank that is still running (blocked in a collective) did not die."""
    for p in others:
        p.join(timeout=wait_s)
    return [
        f"{p.name} died ({f'signal {-p.exitcode}' if p.exitcode < 0 else f'exit {p.exitcode}'})"
        for p in others
        if p.exitcode
    ]


def _close() -> None:
    """End this process's DDP group, so the next task can start its own."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
