"""Mean absolute error between the softmax and the one-hot label, ``2 (1 - p_label)``: a bounded,
noise-tolerant loss (Ghosh et al. 2017)."""

from __future__ import annotations

from pipeline.learners.spec import Spec


def losses(nets, x, y, *, epoch, epochs):
    import torch.nn.functional as F

    p_label = F.softmax(nets[0](x).float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return [(2 * (1 - p_label)).mean()]


SPEC = Spec("mae", "MAE", 1, losses)
