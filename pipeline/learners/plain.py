"""Cross-entropy on one network: the CL paper's "Baseline"."""

from __future__ import annotations

from pipeline.learners.spec import Spec


def losses(nets, x, y, *, epoch, epochs):
    import torch.nn.functional as F

    return [F.cross_entropy(nets[0](x), y)]


SPEC = Spec("plain", "cross-entropy", 1, losses, paper_baseline=True)
