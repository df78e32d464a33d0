"""Networks by name, each adapting to the input's channels, size and number of classes (torch is
imported when one is built, so configs can name them without it).

* ``convnet`` (default): a compact conv net in the style of airbench (three conv-pool-BN-GELU blocks,
  global max pool, linear head). Any square input of 8 px or more; below 32 px it is narrower
  (channels 32/64/128 instead of 64/256/256), as small images carry less to learn.
* ``cifar_cnn``: the 9-layer CNN of Co-Teaching (Han et al. 2018) as cleanlab ships it
  (``cleanlab.experimental.cifar_cnn.CNN``); needs 28 px or more. Note: it applies dropout with
  ``F.dropout2d(h, p)``, whose ``training`` flag defaults to True, so it is stochastic in eval mode too.
* ``resnet18``, ``resnet50``: torchvision's, unmodified but for the input channels (the CL paper
  trained torchvision's ResNet-50 as is on 32x32 CIFAR-10).
"""

from __future__ import annotations

from pipeline.store import PipelineError

MIN_SIZE = {"convnet": 8, "cifar_cnn": 28, "resnet18": 1, "resnet50": 1}
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


def build(arch: str, in_channels: int, image_size: int, num_classes: int):
    """A fresh, randomly initialised network (seed torch first for reproducibility)."""
    if arch not in MIN_SIZE:
        raise PipelineError(f"unknown architecture '{arch}' (choose from {', '.join(ARCHS)})")
    if image_size < MIN_SIZE[arch]:
        raise PipelineError(f"--arch {arch} needs images of at least {MIN_SIZE[arch]} px; these are {image_size} px")
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

