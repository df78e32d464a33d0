"""The crossval training recipes as tables: every value a recipe sets, with what it does, in one place.

A recipe is the defaults of the crossval options left at "none" (``arch`` ... ``label_smoothing``) and
the values of its tricks, which have no flag; ``resolve`` settles a training's options against it.
``train.Classifier`` and ``train.train_classifier`` read them; nothing there branches on a recipe's name. The
airbench recipe holds the tricks of Keller Jordan's airbench94, written here from its published ideas, with
values chosen here; the values of its network (``AIRBENCH_NET``) stand beside it.
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
    # With --batch-size none: the batch that makes about this many optimiser steps per epoch on the rows
    # trained on, at most ``batch_size`` and at least MIN_BATCH, with --lr none scaled in proportion (the
    # linear scaling rule): a small set gets as many steps as a large one, for its own cost. None: batch_size.
    steps_per_epoch: int | None
    lr: float  # the peak learning rate on the mean loss
    weight_decay: float
    label_smoothing: float  # soft targets: the logits stop growing on examples already fit
    # The optimiser ("sgd": Nesterov SGD with ``momentum``; "adamw": AdamW with beta1 = ``momentum``) and its
    # per-step schedule: the lr factor rises linearly from ``schedule[0]`` to 1 at the fraction ``schedule[1]``
    # of the steps, then falls linearly to ``schedule[2]`` at the last step (one cycle).
    optimizer: str
    momentum: float
    schedule: tuple[float, float, float]
    # True: every step shrinks each weight by weight_decay x the schedule, whatever the lr (so lr and decay
    # tune apart); False: torch's weight decay, scaled by the lr.
    decoupled_decay: bool
    # With pretrained --weights only: the first ``frozen_epochs`` train the new head alone (the body gets no
    # gradient: a random head's first steps would wreck the features it is meant to use), then the body
    # learns at ``body_lr_scale`` x the head's rate (pretrained features need only small corrections).
    frozen_epochs: int
    body_lr_scale: float
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


@dataclass(frozen=True)
class AirbenchNet:
    """The values of the ``airbench`` network (``models``), whatever recipe trains it."""

    widths: tuple[int, ...]  # the three groups' channels, on 32 px or more
    small_widths: tuple[int, ...]  # below 32 px: small images carry less to learn
    # Batch norm: a high momentum = running stats that follow the fast-moving weights within a few steps.
    bn_momentum: float
    bn_eps: float
    logit_divisor: int  # small initial logits keep the first steps from saturating the softmax
    whitening_eps: float  # added to the patch covariance's eigenvalues before 1/sqrt


# The airbench block: its network's values, then its recipe's.
AIRBENCH_NET = AirbenchNet(
    widths=(64, 256, 256),
    small_widths=(32, 64, 128),
    bn_momentum=0.4,
    bn_eps=1e-5,  # airbench: 1e-12; this keeps constant channels (blank borders) finite
    logit_divisor=9,
    whitening_eps=5e-4,
)
RECIPES = {
    "airbench": Recipe(
        arch="airbench",
        epochs=10,
        batch_size=1024,
        steps_per_epoch=36,  # a CIFAR-10 fold's (37,500 rows) at batch 1,024; 6,000 photos: batch 166, lr 0.24
        lr=1.5,
        weight_decay=0.002,
        label_smoothing=0.2,
        optimizer="sgd",
        momentum=0.85,
        schedule=(0.2, 0.23, 0.07),  # a short warm-up (the whitened, identity-initialised net is stable from
        # step 1) and a decay that leaves a little learning for the last steps
        decoupled_decay=True,
        frozen_epochs=0,
        body_lr_scale=1.0,
        bn_bias_lr_scale=64.0,
        whitening_bias_epochs=3,
        lookahead=Lookahead(),
        translate_divisor=16,  # 2 px on CIFAR-10
        alternate_flips=True,
        whitening_sample=5000,
        tta=True,
    ),
    "sgd": Recipe(  # plain Nesterov SGD
        arch="convnet",
        epochs=20,
        batch_size=256,
        steps_per_epoch=None,
        lr=0.1,
        weight_decay=5e-4,
        label_smoothing=0.0,
        optimizer="sgd",
        momentum=0.9,
        schedule=(0.0, 0.2, 0.0),
        decoupled_decay=False,
        frozen_epochs=0,
        body_lr_scale=1.0,
        bn_bias_lr_scale=1.0,
        whitening_bias_epochs=None,
        lookahead=None,
        translate_divisor=8,  # 4 px on CIFAR-10
        alternate_flips=False,
        whitening_sample=5000,
        tta=False,
    ),
    "finetune": Recipe(  # a pretrained network (--weights) fine-tuned in the fastai manner, with values chosen here
        arch="resnet50",
        epochs=5,
        batch_size=64,
        steps_per_epoch=None,
        lr=2e-3,
        label_smoothing=0.1,
        optimizer="adamw",
        momentum=0.9,
        weight_decay=0.01,
        decoupled_decay=False,  # AdamW's own decay: each step shrinks weights by lr x 0.01
        schedule=(0.04, 0.3, 0.0),  # one cycle: from lr / 25 up over the first 30% of the steps, then down to 0
        frozen_epochs=1,  # one epoch fits the new head on the frozen features; then the whole network
        body_lr_scale=0.1,  # the body at a tenth of the head's rate
        bn_bias_lr_scale=1.0,
        whitening_bias_epochs=None,
        lookahead=None,
        translate_divisor=8,  # up to 1/8 of the image: 28 px at 224
        alternate_flips=False,
        whitening_sample=5000,
        tta=False,
    ),
}
MIN_BATCH = 16  # the smallest batch ``steps_per_epoch`` chooses (batch norm needs a few rows per batch)
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


@dataclass(frozen=True)
class Training:
    """One training with every setting resolved (``resolve``): what ``train.train_classifier`` trains with
    (crossval's folds, the backbone stage, the benchmarks)."""

    recipe: str  # a name of RECIPES: also its tricks (augmentation, whitening sample, schedule, ...)
    arch: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    tta: bool  # held-out predictions average the flipped and shifted images (``predict.predict_probs``)
    input_size: int | None = None  # see ``backbones``
    mixup: float | None = None  # MixUp's Beta parameter, or None: off
    precision: str = "auto"  # see ``train.fit``
    compile: bool = False


def settle(recipe: str, options: dict, n_rows: int | None = None) -> dict:
    """``options`` (``OPTIONS`` and ``tta``; None: the recipe's) with the recipe's values where left at None: the
    batch of a recipe whose batch follows the set's size (``steps_per_epoch``) is settled for ``n_rows`` rows, with
    the lr scaled in proportion where it too is left open (without ``n_rows`` both stay None). ``tta``: 'recipe',
    'on' or 'off' -> a bool. Pure: the same arguments, the same values."""
    r, out = RECIPES[recipe], dict(options)
    sized = r.steps_per_epoch is not None and out["batch_size"] is None
    for key in OPTIONS:
        if out[key] is None and not (sized and key in ("batch_size", "lr")):
            out[key] = getattr(r, key)
    if sized and n_rows is not None:
        out["batch_size"] = min(r.batch_size, max(MIN_BATCH, n_rows // r.steps_per_epoch))
        if out["lr"] is None:
            out["lr"] = r.lr * out["batch_size"] / r.batch_size
    if "tta" in out:
        out["tta"] = r.tta if out["tta"] == "recipe" else out["tta"] == "on"
    return out


def resolve(recipe: str, options: dict, n_rows: int) -> Training:
    """The training of ``n_rows`` rows with ``recipe`` and ``options`` (the fields of ``Training`` but ``recipe``;
    None: the recipe's; see ``settle``)."""
    return Training(recipe, **settle(recipe, options, n_rows))
