"""Devices by name, checked before anything imports Lightning: ``--gpu`` and ``--gpus`` specs."""

from __future__ import annotations

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
        raise PipelineError(f"--gpus {spec!r}: expected CUDA indices and/or 'cpu', comma-separated (e.g. 0,1,2,3 or cpu), or all")
    return gpus


def pick(gpu: str):
    """The torch device for ``gpu`` (a CUDA index or 'cpu'); without CUDA everything runs on the CPU."""
    import torch

    if check_gpu(gpu) == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if int(gpu) >= torch.cuda.device_count():
        raise PipelineError(f"--gpu {gpu}: this machine has CUDA devices 0..{torch.cuda.device_count() - 1}")
    return torch.device("cuda", int(gpu))


def name(device) -> str:
    if device.type != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(device)
