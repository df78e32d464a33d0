"""Devices by name, checked before anything imports Lightning: ``--gpu`` and ``--gpus`` specs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError


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


@dataclass(frozen=True)
class TaskContext:
    """Where one task runs, handed down as an argument from its launcher (a ``workers`` process, a SLURM array
    element, a DDP rank of ``ddp.on_devices``) to its training and its batches: this process's torch ``device``;
    the task's devices where it trains on several (``group``, as DDP ranks, this process ``rank``); and
    ``memory_gib``, the GiB of a training's images a device may hold (``--device-memory``; None: ``budget``'s
    default)."""

    device: object  # a torch.device
    group: tuple[str, ...] = ()
    rank: int = 0
    memory_gib: float | None = None

    @classmethod
    def on(cls, spec: str, memory_gib: float | None = None) -> TaskContext:
        """The context of a task on ``spec``: one device ("0", "cpu") or a group of them ("0,1", "cpu,cpu"), rank 0."""
        group = tuple(spec.split(","))
        return cls(pick(group[0]), group if len(group) > 1 else (), 0, memory_gib)

    @property
    def world(self) -> int:
        """The number of DDP ranks the task trains on (1: this device alone)."""
        return max(1, len(self.group))

    def of_rank(self, rank: int) -> TaskContext:
        """The context of rank ``rank`` of this task's group, on its own device."""
        return dataclasses.replace(self, device=pick(self.group[rank]), rank=rank)

    def budget(self) -> int:
        """Bytes of a training's rows that may be held on the device (more are streamed from the host):
        ``memory_gib`` where given; else half of a GPU's memory, or half of the memory this process may still use
        on the CPU (the lesser of the machine's available memory and its cgroup's limit less its use)."""
        if self.memory_gib is not None:
            return int(self.memory_gib * 2**30)
        if self.device.type == "cuda":
            import torch

            return torch.cuda.get_device_properties(self.device).total_memory // 2
        return host_available() // 2


def name(device) -> str:
    if device.type != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(device)


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
