"""A backbone: a network by name with its weights, its head made for the dataset's classes.

``--arch`` names one of this pipeline's networks (``models.ARCHS``) or any torchvision classification
model (``torchvision.models.list_models``: resnet18/50, convnext_tiny, efficientnet_b0, vit_b_16, ...).
``--weights`` is none (random init), a torchvision weights name (``IMAGENET1K_V1``, ``DEFAULT`` or
``ResNet50_Weights.IMAGENET1K_V2``: its file taken from the torch hub cache, never downloaded), or a
file: a torchvision state_dict, or a backbone this pipeline wrote (``stages.backbone``). Files load
with ``weights_only=True``; their checksum is in the config of everything made with them.

The last linear layer is the head: it is replaced for the dataset's classes, and removing it leaves
the pooled features (``features``). A network whose first convolution wants 3 channels sees a
grayscale image repeated 3 times; ``input_size`` resizes batches on the device (antialiased) before it.
Images are normalised with the weights' own mean and std.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import files, models
from pipeline.errors import PipelineError


def torchvision_archs() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def check_arch(arch: str) -> str:
    """``arch`` if it names a network (ours, or torchvision's, which is imported only then)."""
    if arch not in models.ARCHS and arch not in torchvision_archs():
        raise PipelineError(
            f"--arch {arch!r}: not a network of this pipeline ({', '.join(models.ARCHS)}) "
            "nor a torchvision classification model (torchvision.models.list_models())"
        )
    return arch


def weights_file(arch: str, weights: str) -> Path:
    """The file of ``--weights``: a path, or the torch hub cache's file of a torchvision weights name."""
    if Path(weights).is_file():
        return Path(weights)
    import torch
    import torchvision

    try:
        found = (
            torchvision.models.get_weight(weights)
            if "." in weights
            else torchvision.models.get_model_weights(arch)[weights]
        )
    except (KeyError, ValueError) as e:
        raise PipelineError(
            f"--weights {weights!r}: no such file, nor a torchvision weights name of {arch} ({e})"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(found.url)
    if not cached.is_file():
        raise PipelineError(
            f"--weights {weights}: {cached} is missing and nothing is downloaded here; fetch {found.url} "
            f"into {cached.parent}, or pass the file as --weights FILE"
        )
    promised = torch.hub.HASH_REGEX.search(cached.name)  # the first hex digits of its sha256, as torch's loader reads
    if promised and not files.checksum(cached).removeprefix("sha256:").startswith(promised.group(1)):
        raise PipelineError(
            f"--weights {weights}: {cached} is not the file of {found.url} (its sha256 does not start with "
            f"{promised.group(1)}, as its name says); fetch it again, or pass the file as --weights FILE"
        )
    return cached


@dataclass(frozen=True)
class Weights:
    """Loaded weights: the state_dict, the normalisation they were trained with (0..1 units), and for a
    backbone of this pipeline the network it was written from."""

    state_dict: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch: str | None = None  # ours: the architecture, and how it was built
    built: tuple[int, int, int] | None = None  # (in_channels, image_size, num_classes)
    classes: tuple[str, ...] | None = None  # ours: the names of its head's classes


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's weights' normalisation


def load(arch: str | None, path: Path) -> Weights:
    """Read a weights file (``weights_only``: no code runs) of ``arch`` (None: a backbone this pipeline wrote,
    of any architecture)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickled objects, garbage, truncated: one line
        raise PipelineError(
            f"{path}: not a weights file of tensors ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and "arch" in state:  # a backbone this pipeline wrote
        if arch is not None and state["arch"] != arch:
            raise PipelineError(f"{path}: weights of --arch {state['arch']}, not {arch}")
        classes = tuple(state["classes"]) if "classes" in state else None
        loaded = Weights(
            state["state_dict"],
            tuple(state["mean"]),
            tuple(state["std"]),
            state["arch"],
            tuple(state["built"]),
            classes,
        )
    elif arch is None:
        raise PipelineError(f"{path}: not a backbone this pipeline wrote (python -m stages.backbone)")
    elif isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        loaded = Weights(state, *IMAGENET)
    else:
        raise PipelineError(f"{path}: not a state_dict (a mapping of names to tensors)")
    check_finite(path, loaded)
    return loaded


def check_finite(path: Path, w: Weights) -> None:
    """Weights with a NaN or an infinity are refused (read: before any work; made: before they are recorded)."""
    import torch

    tensors = {**w.state_dict, "mean": torch.as_tensor(w.mean, dtype=torch.float64), "std": torch.as_tensor(w.std)}
    bad = {
        k: int((~torch.isfinite(v)).sum())
        for k, v in tensors.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    }
    if bad:
        name, count = next(iter(bad.items()))
        more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
        raise PipelineError(f"{path}: {count} NaN or infinite value(s) in {name}{more}; these weights are not usable")


def build(arch: str, weights: Path | None, in_channels: int, image_size: int, num_classes: int):
    """(network with ``weights`` and a head for ``num_classes``, its input mean, its input std)."""
    import torch

    if weights is None:
        if arch in models.ARCHS:
            return models.build(arch, in_channels, image_size, num_classes), None, None
        import torchvision

        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        return net, None, None
    w = load(arch, weights)
    if w.arch is not None:
        net = models.build(arch, *w.built)
    elif arch not in torchvision_archs():
        raise PipelineError(
            f"{weights}: a plain state_dict fits torchvision networks; --arch {arch} takes a backbone "
            "written by this pipeline (python -m stages.backbone)"
        )
    else:
        import torchvision

        head = _head(torchvision.models.get_model(arch))[0] + ".weight"  # the file's class count, whatever it is
        classes = w.state_dict[head].shape[0] if getattr(w.state_dict.get(head), "ndim", 0) == 2 else 1000
        net = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    try:
        net.load_state_dict(w.state_dict)
    except RuntimeError as e:
        raise PipelineError(f"{weights}: not weights of {arch} ({str(e).strip().splitlines()[0][:200]})") from None
    takes = first_conv_channels(net)
    if takes not in (None, in_channels) and not (in_channels == 1 and takes == 3):  # grey is repeated (``prepared``)
        raise PipelineError(
            f"{weights}: the backbone takes {takes}-channel images and these images have {in_channels}; "
            f"give weights trained on {in_channels}-channel images"
        )
    name, head = _head(net)
    if head.out_features != num_classes:
        _set(net, name, torch.nn.Linear(head.in_features, num_classes, bias=head.bias is not None))
    return net, w.mean, w.std


def head(net):
    """The network's head, its last linear layer (what a fine-tune trains first, alone)."""
    return _head(net)[1]


def _head(net):
    """(name, module) of the last linear layer."""
    import torch

    found = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)]
    if not found:
        raise PipelineError(f"{type(net).__name__}: no linear head to replace")
    return found[-1]


def _set(net, name: str, module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, module)


def features(net):
    """The network without its head: its output is the pooled features."""
    import torch

    _set(net, _head(net)[0], torch.nn.Identity())
    return net


def first_conv_channels(net) -> int | None:
    import torch

    return next((m.in_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)


def prepared(net, in_channels: int, input_size: int | None):
    """``net`` behind the on-device input steps it needs: grayscale repeated to its 3 channels, and
    resizing to ``input_size`` (antialiased bilinear)."""
    import torch
    import torch.nn.functional as F

    repeat = in_channels == 1 and first_conv_channels(net) == 3

    class Prepared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            if repeat:
                x = x.expand(-1, 3, -1, -1)
            if input_size is not None and x.shape[-1] != input_size:
                x = F.interpolate(
                    x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
                )
            return self.net(x)

    return Prepared() if repeat or input_size is not None else net


def check_input(net, arch: str, in_channels: int, image_size: int, input_size: int | None) -> None:
    """One line, not a traceback, when ``net`` (``prepared``) cannot take the images (e.g. ViT's fixed 224 px)."""
    import torch

    try:
        with torch.no_grad():
            net.eval()(torch.zeros(2, in_channels, image_size, image_size))
    except (RuntimeError, AssertionError, ValueError) as e:
        size = input_size or image_size
        raise PipelineError(
            f"--arch {arch} cannot take {size} px images ({str(e).strip().splitlines()[0][:160]}); "
            "choose another --input-size"
        ) from None


def checksum(arch: str, weights: str | None) -> str | None:
    """What the config of anything made with these weights records: the weights file's sha256."""
    return None if weights is None else files.checksum(weights_file(arch, weights))
