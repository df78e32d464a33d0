"""Mixup (Zhang et al. 2018): cross-entropy on convex combinations of pairs of images and of their labels,
with a mixing weight drawn from Beta(alpha, alpha) per batch (from torch's checkpointed RNG)."""

from __future__ import annotations

import functools

from pipeline.learners.spec import Spec
from pipeline.options import Range, option


@functools.lru_cache(maxsize=8)
def _beta(alpha: float):
    """Beta(alpha, alpha), built once per alpha, not per batch (sampling draws from torch's RNG either way)."""
    import torch

    return torch.distributions.Beta(alpha, alpha)


def mixed_loss(net, x, y, alpha: float, label_smoothing: float = 0.0):
    """MixUp's loss, the one both this learner and crossval's ``--mixup`` train with: each image blended with
    another of the batch by a weight drawn from Beta(alpha, alpha), the cross-entropy with both labels by the same
    weight (the draws come from torch's CPU generator, which checkpoints keep)."""
    import torch
    import torch.nn.functional as F

    lam = float(_beta(alpha).sample())
    pair = torch.randperm(len(y)).to(y.device)
    out = net(lam * x + (1 - lam) * x[pair])
    return lam * F.cross_entropy(out, y, label_smoothing=label_smoothing) + (1 - lam) * F.cross_entropy(
        out, y[pair], label_smoothing=label_smoothing
    )


def losses(nets, x, y, *, epoch, epochs, mixup_alpha):
    return [mixed_loss(nets[0], x, y, mixup_alpha)]


SPEC = Spec(
    "mixup",
    "Mixup",
    1,
    losses,
    paper_baseline=True,
    options={
        "mixup_alpha": option(
            1.0, "mixup: the mixing weight is drawn from Beta(alpha, alpha)", Range(float, 0, 100, lo_open=True)
        ),
    },
)
