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


def losses(nets, x, y, *, epoch, epochs, mixup_alpha):
    import torch
    import torch.nn.functional as F

    lam = float(_beta(mixup_alpha).sample())
    pair = torch.randperm(len(y)).to(y.device)
    out = nets[0](lam * x + (1 - lam) * x[pair])
    return [lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[pair])]


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
