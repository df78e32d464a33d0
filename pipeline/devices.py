"""Devices by name, checked before anything imports Lightning: ``--gpu`` and ``--gpus`` specs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pipeline.errors import PipelineError

MEMORY_ENV = "CL_DEVICE_MEMORY_GIB"  # --device-memory, passed to worker processes
GROUP_ENV = "CL_TASK_DEVICES"  # the devices of each task (--devices-per-task), e.g. "0,1" or "cpu,cpu"


def check_gpu(spec: str) -> str:
    """A CUDA index or 'cpu' (syntax only: whether it exists is known once torch is imported)."""
    spec = str(spec).strip()
    if spec != "cpu" and not spec.isdigit():
        raise PipelineError(f"--gpu {spec!r}: expected a CUDA device index (0, 1, ...) or cpu")
    return spec


def parse_gpus(spec: str) -> list[str]:
    """'0,1,3' -> one worker per CUDA index; 'cpu' -> one CPU worker ('cpu,cpu': two); 'all' -> every visible GPU."""
    if spec.strip() == "all":
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    gpus = [g.strip() for g in spec.split(",") if g.strip()]
    if not gpus or any(g != "cpu" and not g.isdigit() for g in gpus):
        raise PipelineError(
            f"--gpus {spec!r}: expected CUDA indices and/or 'cpu', comma-separated (e.g. 0,1,2,3 or cpu), or all"
        )
    return gpus


def pick(gpu: str):
    """The torch device for ``gpu`` (a CUDA index or 'cpu'); without CUDA everything runs on the CPU."""
    import torch

    if check_gpu(gpu) == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if int(gpu) >= torch.cuda.device_count():
        raise PipelineError(f"--gpu {gpu}: this machine has CUDA devices 0..{torch.cuda.device_count() - 1}")
    return torch.device("cuda", int(gpu))


def group(gpus: list[str], per_task: int) -> list[str]:
    """Device specs in groups of ``per_task`` for one task each ("0,1", "2,3"); 'cpu' alone is repeated (CPU ranks)."""
    if per_task == 1:
        return gpus
    if gpus == ["cpu"] * len(gpus):
        return [",".join(["cpu"] * per_task)] * len(gpus)
    if "cpu" in gpus or len(gpus) % per_task:
        raise PipelineError(
            f"--devices-per-task {per_task}: give CUDA devices in groups of {per_task} with --gpus "
            f"(got {','.join(gpus)}), or --gpu cpu"
        )
    return [",".join(gpus[i : i + per_task]) for i in range(0, len(gpus), per_task)]


@contextlib.contextmanager
def task_devices(spec: str):
    """Within it, tasks train on the group ``spec`` ("cpu,cpu"; one device: nothing set)."""
    if "," not in spec:
        yield
        return
    os.environ[GROUP_ENV] = spec
    try:
        yield
    finally:
        os.environ.pop(GROUP_ENV, None)


def task_group(device) -> list[str]:
    """The devices a task on ``device`` trains on: its worker's group (``GROUP_ENV``), or ``device`` alone."""
    if os.environ.get(GROUP_ENV):
        return os.environ[GROUP_ENV].split(",")
    return ["cpu" if device.type != "cuda" else str(device.index)]


def name(device) -> str:
    if device.type != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(device)


def memory_budget(device) -> int:
    """Bytes of a training's rows that may be held on ``device`` (more are streamed from the host): ``--device-memory``
    GiB where given; else half of a GPU's memory, or half of the memory this process may still use on the CPU
    (the lesser of the machine's available memory and its cgroup's limit less its use)."""
    if os.environ.get(MEMORY_ENV):
        return int(float(os.environ[MEMORY_ENV]) * 2**30)
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_properties(device).total_memory // 2
    return host_available() // 2


def host_available() -> int:
    """Bytes of memory this process may still take: MemAvailable, or less where a cgroup (v1 or v2) above it
    limits its memory (the limit less what the group uses)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    available = int(fields["MemAvailable"].split()[0]) * 1024
    for folder, limit, usage in _cgroup_files():
        while True:
            try:
                cap = (folder / limit).read_text().strip()
                if cap != "max" and int(cap) < 2**60:
                    available = min(available, int(cap) - int((folder / usage).read_text()))
            except (OSError, ValueError):
                pass
            if folder == folder.parent or folder.name in ("memory", "cgroup"):
                break
            folder = folder.parent
    return max(0, available)


def _cgroup_files() -> list[tuple[Path, str, str]]:
    """(this process's memory cgroup folder, its limit file, its usage file) for each hierarchy that has one."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy
            found.append((Path("/sys/fs/cgroup") / path.lstrip("/"), "memory.max", "memory.current"))
        elif "memory" in controllers.split(","):
            found.append(
                (Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes")
            )
    return found
