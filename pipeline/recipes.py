"""The crossval training recipes as tables: every value a recipe sets, with what it does, in one place.

A recipe is the defaults of the crossval options left at "none" (``arch`` ... ``label_smoothing``) and
the values of its tricks, which have no flag. ``train.Classifier`` and ``train.train_classifier`` read
them; nothing there branches on a recipe's name. The airbench recipe holds the tricks of Keller Jordan's
airbench94, written here from its published ideas, with values chosen here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lookahead:
    """Every ``every`` steps the weights are pulled towards, then replaced by, an exponential moving average
    whose decay is ``decay ** every x (step / total) ** power``: no averaging early, heavy averaging late.
    The averaged weights generalise better than the last iterate, for free; the trained net is the average."""

    every: int = 5
    decay: float = 0.95
    power: int = 3


@dataclass(frozen=True)
class Recipe:
    # The defaults of the crossval options left at "none".
    arch: str
    epochs: int
    batch_size: int
    lr: float  # the peak learning rate of Nesterov SGD on the mean loss
    weight_decay: float
    label_smoothing: float  # soft targets: the logits stop growing on examples already fit
    # The optimiser and its per-step schedule: the lr factor rises linearly from ``schedule[0]`` to 1 at
    # the fraction ``schedule[1]`` of the steps, then falls linearly to ``schedule[2]`` at the last step.
    momentum: float
    schedule: tuple[float, float, float]
    # True: every step shrinks each weight by weight_decay x the schedule, whatever the lr (so lr and decay
    # tune apart); False: torch's weight decay, scaled by the lr.
    decoupled_decay: bool
    # The learning rate of batch-norm biases, x lr: with frozen scales a bias is a channel's only free
    # parameter, and a scale-invariant weight's effective step is already large.
    bn_bias_lr_scale: float
    # Epochs the whitening layer's bias trains (airbench net only), then stays fixed: once the first layers
    # have adapted to it, moving the input of the whole network only undoes their work. None: it always trains.
    whitening_bias_epochs: int | None
    lookahead: Lookahead | None
    # Training images are translated by up to image size // translate_divisor px (at least 1), reflected.
    translate_divisor: int
    # True: flips random in epoch 0, then each image's flip inverted every epoch (both orientations of
    # every image in every two epochs); False: independent coin flips per epoch.
    alternate_flips: bool
    # Training images the whitening layer's 2x2 patch covariance is estimated from (airbench net only).
    whitening_sample: int
    # Predict with test-time augmentation (``train.predict_probs``): mirror and 1-px translations averaged.
    tta: bool


RECIPES = {
    "airbench": Recipe(
        arch="airbench", epochs=10, batch_size=1024, lr=1.5, weight_decay=0.002, label_smoothing=0.2,
        momentum=0.85,
        schedule=(0.2, 0.23, 0.07),  # a short warm-up (the whitened, identity-initialised net is stable from
        # step 1) and a decay that leaves a little learning for the last steps
        decoupled_decay=True, bn_bias_lr_scale=64.0, whitening_bias_epochs=3, lookahead=Lookahead(),
        translate_divisor=16,  # 2 px on CIFAR-10
        alternate_flips=True, whitening_sample=5000, tta=True,
    ),
    "sgd": Recipe(  # plain Nesterov SGD
        arch="convnet", epochs=20, batch_size=256, lr=0.1, weight_decay=5e-4, label_smoothing=0.0,
        momentum=0.9, schedule=(0.0, 0.2, 0.0), decoupled_decay=False, bn_bias_lr_scale=1.0,
        whitening_bias_epochs=None, lookahead=None,
        translate_divisor=8,  # 4 px on CIFAR-10
        alternate_flips=False, whitening_sample=5000, tta=False,
    ),
}
# The Recipe fields that are crossval options (their defaults), in the config's order.
OPTIONS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "label_smoothing")


@dataclass(frozen=True)
class Probe:
    """A linear probe: multinomial logistic regression on a backbone's pooled features (standardised with the
    training rows' mean and std), full batch, fitted with L-BFGS on the device. The strength of the L2 penalty
    on the weights (per row: loss = mean cross-entropy + l2 / 2 x |W|^2) and the iterations cap are its values."""

    l2: float
    max_iter: int


PROBES = {
    "linear-probe": Probe(l2=1e-3, max_iter=500),  # light shrinkage: thousands of rows per fold, a few hundred features
}
