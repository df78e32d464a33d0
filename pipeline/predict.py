"""Predictions: softmax probabilities of a network for every row of a set of batches."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.loader import Batches


@torch.no_grad()
def predict_probs(net: torch.nn.Module, batches: Batches, precision: str, tta: bool = False) -> np.ndarray:
    """Softmax probabilities (n, classes) for every row of ``batches``, in order, as float32 whatever the
    ``precision`` (an effective one: bf16-mixed runs the network under bfloat16 autocast).

    ``tta``: test-time augmentation as airbench does it: logits averaged over each image and its mirror,
    and (half weight) over the same pair translated 1 px up-left and 1 px down-right (reflected borders),
    which cancels part of the network's sensitivity to exact position."""
    was_training = net.training
    net.eval()

    def mirrored(x):
        return (net(x).float() + net(x.flip(3)).float()) / 2

    def logits(x):
        if not tta:
            return net(x).float()
        h, w = x.shape[2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return 0.5 * mirrored(x) + 0.25 * mirrored(padded[:, :, :h, :w]) + 0.25 * mirrored(padded[:, :, 2:, 2:])

    with torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        out = torch.cat([F.softmax(logits(x), dim=1) for x, _ in batches])  # float32: logits() casts
    net.train(was_training)
    return out.cpu().numpy()
