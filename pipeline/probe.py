"""The linear probe of a crossval fold: multinomial logistic regression on a backbone's features, on the device.

Full batch: the features are standardised with the training rows' mean and std, and the weights and
biases fitted with L-BFGS (strong Wolfe line search) from zero, so a fit is deterministic. Values:
``recipes.Probe``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.recipes import Probe


@dataclass
class Fitted:
    """What ``fit_predict`` returns (the fields crossval reads of a training's result)."""

    probs: np.ndarray  # softmax probabilities (float32) of the evaluation rows
    train_s: float
    predict_s: float


def fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, num_classes: int, probe: Probe, device
) -> Fitted:
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    x = torch.as_tensor(np.asarray(train_x, np.float32), device=device)
    y = torch.as_tensor(np.asarray(train_y, np.int64), device=device)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, device=device, requires_grad=True)
    b = torch.zeros(num_classes, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=probe.max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + probe.l2 / 2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    fitted = time.perf_counter()
    with torch.no_grad():
        probs = F.softmax(
            ((torch.as_tensor(np.asarray(eval_x, np.float32), device=device) - mean) / std) @ w + b, dim=1
        )
    probs = probs.cpu().numpy()
    if not np.isfinite(probs).all():
        raise PipelineError("linear probe: the fit predicts NaN or inf (features with NaN or inf?); nothing written")
    return Fitted(probs, fitted - start, time.perf_counter() - fitted)
