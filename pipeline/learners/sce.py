"""Symmetric cross-entropy (Wang et al. 2019): ``alpha * CE + beta * RCE``, where the reverse cross-entropy
``-sum_k p_k log q_k`` takes the label's one-hot ``q`` with log 0 clipped to log 1e-4, i.e.
``-log(1e-4) * (1 - p_label)``."""

from __future__ import annotations

import math

from pipeline.errors import PipelineError
from pipeline.learners.spec import Spec
from pipeline.options import Range, option

LOG_CLIP = -math.log(1e-4)  # the reverse cross-entropy's -log of the clipped zero of a one-hot label


def losses(nets, x, y, *, epoch, epochs, sce_alpha, sce_beta):
    import torch.nn.functional as F

    logits = nets[0](x).float()
    p_label = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return [sce_alpha * F.cross_entropy(logits, y) + sce_beta * (LOG_CLIP * (1 - p_label)).mean()]


def check(own: dict, batch: int, where: str) -> None:
    if own["sce_alpha"] == 0 and own["sce_beta"] == 0:
        raise PipelineError(
            f"{where}--sce-alpha 0 --sce-beta 0: the loss would be 0 and sce would learn nothing; make one positive"
        )


SPEC = Spec(
    "sce",
    "SCE",
    1,
    losses,
    paper_baseline=True,
    check=check,
    options={
        "sce_alpha": option(
            0.1, "sce: weight of the cross-entropy term (Wang et al.: 0.1 on CIFAR-10)", Range(float, 0, 100)
        ),
        "sce_beta": option(
            1.0, "sce: weight of the reverse cross-entropy term (Wang et al.: 1.0 on CIFAR-10)", Range(float, 0, 100)
        ),
    },
)
