"""Training a learner of the coteach stage (``pipeline.learners``) with pytorch-lightning.

Every learner trains its networks with the CL paper's Co-Teaching optimiser and schedule: Adam, the
learning rate constant until ``epoch_decay_start`` and then falling linearly to 0, beta1 dropping to 0.1
there (Han et al.); its ``Spec.losses`` turns each batch into one loss per network. Test accuracy of
each network is measured after every epoch; ``train_learner`` returns that history. A learner's networks
are ``arch`` on the images (``images``) or logistic heads on a backbone's cached features (``features``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch

from pipeline import backbones
from pipeline.callbacks import EpochAccuracy
from pipeline.learners.spec import Spec
from pipeline.loader import Batches, FeatureBatches
from pipeline.train import Resumable, Split, fit


class Learner(Resumable):
    """``spec.nets`` networks ``nets`` trained with the paper's Adam schedule on ``spec.losses`` (with the
    learner's own options ``own``)."""

    def __init__(self, spec: Spec, nets, test, *, epochs, lr, epoch_decay_start, beta1_decayed=0.1, **own):
        from cleanlab.experimental.coteaching import initialize_lr_scheduler

        super().__init__()
        self.spec, self.own, self.epochs = spec, own, epochs
        self.automatic_optimization = False
        self.nets = torch.nn.ModuleList(nets)
        self.test = test
        self.lr = lr
        self.lr_plan, beta1_plan = initialize_lr_scheduler(lr, epochs, epoch_decay_start)
        # cleanlab keeps beta1 at 0.9 throughout ("original author had this set to 0.1"): use the paper's drop.
        self.beta1_plan = [b if e < epoch_decay_start else beta1_decayed for e, b in enumerate(beta1_plan)]

    def networks(self):
        return list(self.nets)

    def configure_optimizers(self):
        return [torch.optim.Adam(net.parameters(), lr=self.lr) for net in self.nets]

    def _optimizers(self) -> list:
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    def callbacks(self) -> list[pl.Callback]:
        return [EpochAccuracy(self.test, self.test.labels.cpu().numpy(), "test acc")]

    def on_train_epoch_start(self):
        for opt in self._optimizers():
            for group in opt.optimizer.param_groups:
                group["lr"] = self.lr_plan[self.current_epoch]
                group["betas"] = (self.beta1_plan[self.current_epoch], 0.999)

    def training_step(self, batch, _):
        losses = self.spec.losses(list(self.nets), *batch, epoch=self.current_epoch, epochs=self.epochs, **self.own)
        self.log_loss(sum(losses) / len(losses))
        for opt, loss in zip(self._optimizers(), losses):
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()


@dataclass
class Inputs:
    """What a learner trains on: its training and test batches, and how to build one of its networks."""

    train: Batches
    test: Batches
    network: Callable[[], torch.nn.Module]


def images(data: Split, *, arch, weights=None, input_size=None, batch_size, seed, ctx) -> Inputs:
    """``arch`` on ``data``'s images (``weights``, ``input_size``: see ``backbones``; every network starts from the
    weights, normalised with their mean and std, else the training rows')."""
    w = None if weights is None else backbones.load(arch, weights)
    mean, std = (None, None) if w is None else (w.mean, w.std)
    train, test = data.batches(ctx, batch_size, seed, mean=mean, std=std)
    return Inputs(
        train, test, lambda: backbones.prepared(data.build(arch, weights)[0], data.train_x.shape[-1], input_size)
    )


def features(data: Split, *, batch_size, seed, ctx) -> Inputs:
    """A logistic head (one linear layer) on ``data``'s rows of features (a backbone's, ``pipeline.features``),
    standardised with the training rows' mean and std."""
    x = data.train_x.astype(np.float32)
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    kw = dict(batch_size=batch_size, ctx=ctx, mean=mean, std=std)
    return Inputs(
        FeatureBatches(
            data.train_x, data.train_labels, train=True, seed=seed, rows=data.train_rows, n_all=data.n_all, **kw
        ),
        FeatureBatches(data.eval_x, data.eval_labels, train=False, **kw),
        lambda: torch.nn.Linear(data.train_x.shape[1], data.num_classes),
    )


def train_learner(
    spec: Spec,
    inputs: Inputs,
    *,
    epochs,
    lr,
    epoch_decay_start,
    seed,
    ctx,
    precision="auto",
    compile=False,
    ckpt=None,
    tag=None,
    label="coteach",
    **own,
) -> list[list[float]]:
    """Train the learner ``spec`` on ``inputs`` (``images`` or ``features``); test accuracy of each of its
    networks after every epoch. ``own``: its own options (``spec.options``); ``ckpt``, ``precision``,
    ``compile``: see ``train.fit``. The seed fixes the first network's initialisation (and the inputs' batch
    order, made with the same seed), whatever the learner (paired seeds)."""
    pl.seed_everything(seed, workers=False, verbose=False)
    nets = [inputs.network() for _ in range(spec.nets)]
    module = Learner(spec, nets, inputs.test, epochs=epochs, lr=lr, epoch_decay_start=epoch_decay_start, **own)
    fit(module, inputs.train, ctx, epochs, ckpt, tag or {}, label, precision, compile)
    return module.history
