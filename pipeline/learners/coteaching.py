"""Co-Teaching (Han et al. 2018): two networks; each picks the small-loss ``1 - forget_rate`` fraction of
every batch to update the other, the rate ramping up linearly over the first ``num_gradual`` epochs
(cleanlab's ``loss_coteaching`` and ``forget_rate_scheduler``)."""

from __future__ import annotations

import functools
import warnings

from pipeline.errors import PipelineError
from pipeline.learners.spec import Spec
from pipeline.options import Range, option


@functools.lru_cache(maxsize=8)
def _schedule(epochs: int, forget_rate: float, num_gradual: int) -> tuple[float, ...]:
    """The forget rate of every epoch (cleanlab's ramp), computed once per training, not per batch."""
    from cleanlab.experimental.coteaching import forget_rate_scheduler

    return tuple(forget_rate_scheduler(epochs, forget_rate, min(num_gradual, epochs), 1))


def losses(nets, x, y, *, epoch, epochs, forget_rate, num_gradual):
    from cleanlab.experimental.coteaching import loss_coteaching

    rate = _schedule(epochs, forget_rate, num_gradual)[epoch]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reduction.*")  # cleanlab's cross_entropy(reduce=False)
        # float32 logits: cleanlab ranks the losses with numpy, which has no bfloat16.
        return list(loss_coteaching(nets[0](x).float(), nets[1](x).float(), y, forget_rate=rate))


def check(own: dict, batch: int, where: str) -> None:
    """Co-Teaching keeps int((1 - rate) x batch) examples of a batch: at least one, or it learns nothing."""
    rate = own["forget_rate"]
    if rate is not None and int((1 - rate) * batch) < 1:
        raise PipelineError(
            f"{where}--forget-rate {rate}: keeps no example of a batch of {batch} "
            f"(Co-Teaching keeps int((1 - rate) x batch)); expected below {1 - 1 / batch:g}"
        )


def resolve(own: dict, noise_rate: float) -> dict:
    """No --forget-rate: half the condition's actual noise rate, as the CL paper did."""
    return {**own, "forget_rate": round(noise_rate / 2 if own["forget_rate"] is None else own["forget_rate"], 6)}


SPEC = Spec(
    "coteaching",
    "Co-Teaching",
    2,
    losses,
    paper_baseline=True,
    paper_cleaned=True,
    check=check,
    resolve=resolve,
    options={
        "num_gradual": option(
            10,
            "coteaching: epochs over which the forget rate ramps up linearly (at most --epochs)",
            Range(int, 0, 10_000),
        ),
        "forget_rate": option(
            None,
            "coteaching: fraction of each batch's largest losses left out; none: half the "
            "condition's actual noise rate, as the CL paper did",
            Range(float, 0, 1, hi_open=True, optional=True),
        ),
    },
)
