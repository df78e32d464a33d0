"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): the negative Box-Cox transform
``(1 - p_label^q) / q``, which is cross-entropy as q -> 0 and MAE / 2 at q = 1; q trades CE's fast
fitting for MAE's tolerance of wrong labels (their CIFAR choice: 0.7)."""

from __future__ import annotations

from pipeline.learners.spec import Spec
from pipeline.options import Range, option


def losses(nets, x, y, *, epoch, epochs, gce_q):
    import torch.nn.functional as F

    p_label = F.softmax(nets[0](x).float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return [((1 - p_label.pow(gce_q)) / gce_q).mean()]


SPEC = Spec(
    "gce",
    "GCE",
    1,
    losses,
    options={
        "gce_q": option(
            0.7, "gce: the exponent q of (1 - p_label^q) / q (Zhang & Sabuncu: 0.7)", Range(float, 0, 1, lo_open=True)
        ),
    },
)
