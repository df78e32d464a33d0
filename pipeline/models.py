"""Networks by name, each adapting to the input's channels, size and number of classes (torch is
imported when one is built, so configs can name them without it).

* ``airbench`` (default): the network of Keller Jordan's airbench94, written here from its published
  ideas: a fixed 2x2 patch-whitening first layer (see ``init_whitening``), three conv-pool-BN-GELU
  groups whose convs start as identities and whose batch norms have a frozen scale, global max pool
  and a linear head scaled down by 9. Any square input of 4 px or more; below 32 px it is narrower.
* ``convnet``: a compact conv net in the style of airbench (three conv-pool-BN-GELU blocks,
  global max pool, linear head). Any square input of 8 px or more; below 32 px it is narrower
  (channels 32/64/128 instead of 64/256/256), as small images carry less to learn.
* ``cifar_cnn``: the 9-layer CNN of Co-Teaching (Han et al. 2018) as cleanlab ships it
  (``cleanlab.experimental.cifar_cnn.CNN``); needs 28 px or more. Note: it applies dropout with
  ``F.dropout2d(h, p)``, whose ``training`` flag defaults to True, so it is stochastic in eval mode too.
* ``resnet18``, ``resnet50``: torchvision's, unmodified but for the input channels (the CL paper
  trained torchvision's ResNet-50 as is on 32x32 CIFAR-10).
"""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.recipes import AIRBENCH_NET

MIN_SIZE = {"airbench": 4, "convnet": 8, "cifar_cnn": 28, "resnet18": 1, "resnet50": 1}
ARCHS = tuple(MIN_SIZE)


def _convnet(in_channels: int, num_classes: int, widths: tuple[int, ...]):
    from torch import nn

    def block(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.MaxPool2d(2),  # pool before BN/activation: same result, a quarter of the work
            nn.BatchNorm2d(c_out),
            nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.GELU(),
        )

    stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.GELU())
    blocks = [block(a, b) for a, b in zip((32,) + widths[:-1], widths)]  # built in this order: the seed's init
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes, bias=False))
    return nn.Sequential(stem, *blocks, head)


def _airbench(in_channels: int, num_classes: int, widths: tuple[int, ...], image_size: int):
    import torch
    from torch import nn

    def norm(c: int) -> nn.BatchNorm2d:
        # Frozen scale (weight fixed at 1): with a scale-free conv before it, a learnable scale only
        # duplicates the weights' norm.
        bn = nn.BatchNorm2d(c, eps=AIRBENCH_NET.bn_eps, momentum=AIRBENCH_NET.bn_momentum)
        bn.weight.requires_grad_(False)
        return bn

    def conv(c_in: int, c_out: int) -> nn.Conv2d:
        c = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        with torch.no_grad():  # identity (dirac) init of the first c_in filters: the group starts as a pass-through
            nn.init.dirac_(c.weight[: min(c_in, c_out)])
        return c

    # Below 16 px round pooled sizes up, so 8 px digits still reach 1x1 (on 32 px: 31 -> 15 -> 7 -> 3, as airbench).
    ceil = image_size < 16

    def group(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(
            conv(c_in, c_out),
            nn.MaxPool2d(2, ceil_mode=ceil),
            norm(c_out),
            nn.GELU(),
            conv(c_out, c_out),
            norm(c_out),
            nn.GELU(),
        )

    class Scale(nn.Module):
        """Logits / ``recipes.AIRBENCH_NET.logit_divisor``."""

        def forward(self, x):
            return x / AIRBENCH_NET.logit_divisor

    whiten = nn.Conv2d(in_channels, 2 * in_channels * 4, 2, bias=True)
    whiten.weight.requires_grad_(False)  # fixed by init_whitening; only its bias trains
    width = 2 * in_channels * 4
    groups = [group(a, b) for a, b in zip((width,) + widths[:-1], widths)]
    head = nn.Linear(widths[-1], num_classes, bias=False)
    return nn.Sequential(whiten, nn.GELU(), *groups, nn.AdaptiveMaxPool2d(1), nn.Flatten(), head, Scale())


def whitening_layer(net):
    """An ``airbench`` net's fixed 2x2 first conv, else None."""
    import torch

    first = net[0] if isinstance(net, torch.nn.Sequential) else None
    return first if isinstance(first, torch.nn.Conv2d) and first.kernel_size == (2, 2) else None


def init_whitening(net, images, eps: float = AIRBENCH_NET.whitening_eps) -> None:
    """Set an ``airbench`` net's first layer to whiten 2x2 patches of ``images`` (normalised float NCHW,
    a few thousand suffice): the eigenvectors of the patch covariance, scaled by 1/sqrt(eigenvalue),
    and their negations (so the GELU after it passes both signs). Decorrelated, unit-variance inputs
    make the first steps well conditioned; no-op for other networks."""
    import torch

    whiten = whitening_layer(net)
    if whiten is None:
        return
    c = images.shape[1]
    # N, C, H-1, W-1, 2, 2 -> one float64 row per patch: one copy (the float32 -> float64 cast is exact), centred in
    # place (5,000 images of 64 px: 1.9 GB, not the 4.8 GB of a float32 copy, its cast and a centred one)
    patches = images.double().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)
    patches -= patches.mean(0)
    cov = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(cov)
    filters = (vectors / torch.sqrt(values + eps)).T.reshape(c * 4, c, 2, 2)
    with torch.no_grad():
        whiten.weight.copy_(torch.cat([filters, -filters]).to(whiten.weight))
        whiten.bias.zero_()


def build(arch: str, in_channels: int, image_size: int, num_classes: int):
    """A fresh, randomly initialised network (seed torch first for reproducibility)."""
    if arch not in MIN_SIZE:
        raise PipelineError(f"unknown architecture '{arch}' (choose from {', '.join(ARCHS)})")
    if image_size < MIN_SIZE[arch]:
        raise PipelineError(f"--arch {arch} needs images of at least {MIN_SIZE[arch]} px; these are {image_size} px")
    if arch == "airbench":
        return _airbench(
            in_channels, num_classes, AIRBENCH_NET.widths if image_size >= 32 else AIRBENCH_NET.small_widths, image_size
        )
    if arch == "convnet":
        return _convnet(in_channels, num_classes, (64, 256, 256) if image_size >= 32 else (32, 64, 128))
    if arch == "cifar_cnn":
        from cleanlab.experimental.cifar_cnn import CNN

        return CNN(input_channel=in_channels, n_outputs=num_classes)
    import torchvision
    from torch import nn

    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net
