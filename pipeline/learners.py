"""The learners of the coteach stage: ways to learn from the rows a CL mask keeps (or from all rows).

Every learner trains the same network (``--arch``) on the same device-resident batches with the same
optimiser and schedule as the CL paper's Co-Teaching: Adam, the learning rate constant until
``epoch_decay_start`` and then falling linearly to 0, beta1 dropping to 0.1 there (Han et al.). They
differ only in how a batch becomes a loss:

* ``coteaching`` (Han et al. 2018): two networks; each picks the small-loss ``1 - forget_rate``
  fraction of every batch to update the other (cleanlab's ``loss_coteaching`` and schedules);
* ``plain``: cross-entropy, one network (the paper's "Baseline");
* ``mixup`` (Zhang et al. 2018): cross-entropy on convex combinations of pairs of images and of their
  labels, with a mixing weight drawn from Beta(alpha, alpha) per batch;
* ``sce`` (symmetric cross-entropy, Wang et al. 2019): ``alpha * CE + beta * RCE``, where the reverse
  cross-entropy ``-sum_k p_k log q_k`` takes the label's one-hot ``q`` with log 0 clipped to log 1e-4,
  i.e. ``-log(1e-4) * (1 - p_label)``;
* ``mae``: the mean absolute error between the softmax and the one-hot label, ``2 (1 - p_label)``
  (a bounded, noise-tolerant loss; Ghosh et al. 2017).

Test accuracy of each network is measured after every epoch; ``train_learner`` returns that history.
"""

from __future__ import annotations

import math

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipeline.errors import PipelineError
from pipeline.train import Data, Resumable, fit, predict_probs

LOG_CLIP = -math.log(1e-4)  # SCE's reverse cross-entropy: -log of the clipped zero of a one-hot label


class Learner(Resumable):
    """``nets`` trained with the paper's Adam schedule; subclasses define ``losses(x, y)``: one scalar loss per
    network for the batch ``(x, y)``."""

    def __init__(self, nets, test, *, epochs, lr, epoch_decay_start, beta1_decayed=0.1):
        from cleanlab.experimental.coteaching import initialize_lr_scheduler

        super().__init__()
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

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        for opt in self._optimizers():
            for group in opt.optimizer.param_groups:
                group["lr"] = self.lr_plan[self.current_epoch]
                group["betas"] = (self.beta1_plan[self.current_epoch], 0.999)

    def training_step(self, batch, _):
        losses = self.losses(*batch)
        self.track(sum(losses) / len(losses))
        for opt, loss in zip(self._optimizers(), losses):
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

    def epoch_summary(self) -> str:
        labels, accs = self.test.labels.cpu().numpy(), []
        for net in self.nets:
            probs = predict_probs(net, self.test, self.precision)
            if not np.isfinite(probs).all():  # argmax of NaN rows is class 0: a number that means nothing
                raise PipelineError(f"{self.label}: training diverged: the network predicts NaN or inf in epoch "
                                    f"{self.current_epoch + 1}; nothing written (lower --lr?)")
            accs.append(float(np.mean(probs.argmax(1) == labels)))
        self.history.append(accs)
        return " test acc " + "/".join(f"{a:.4f}" for a in self.history[-1])


class CoTeaching(Learner):
    def __init__(self, nets, test, *, forget_rate, num_gradual, **schedule):
        from cleanlab.experimental.coteaching import forget_rate_scheduler

        super().__init__(nets, test, **schedule)
        self.forget_rates = forget_rate_scheduler(schedule["epochs"], forget_rate, num_gradual, 1)

    def losses(self, x, y):
        from cleanlab.experimental.coteaching import loss_coteaching

        # float32 logits: cleanlab ranks the losses with numpy, which has no bfloat16.
        return list(loss_coteaching(self.nets[0](x).float(), self.nets[1](x).float(), y,
                                    forget_rate=self.forget_rates[self.current_epoch]))


class CrossEntropy(Learner):
    def losses(self, x, y):
        return [F.cross_entropy(self.nets[0](x), y)]


class Mixup(Learner):
    def __init__(self, nets, test, *, mixup_alpha, **schedule):
        super().__init__(nets, test, **schedule)
        self.beta = torch.distributions.Beta(mixup_alpha, mixup_alpha)  # samples from torch's (checkpointed) RNG

    def losses(self, x, y):
        lam = float(self.beta.sample())
        pair = torch.randperm(len(y)).to(y.device)
        out = self.nets[0](lam * x + (1 - lam) * x[pair])
        return [lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[pair])]


class SymmetricCE(Learner):
    def __init__(self, nets, test, *, sce_alpha, sce_beta, **schedule):
        super().__init__(nets, test, **schedule)
        self.alpha, self.beta = sce_alpha, sce_beta

    def losses(self, x, y):
        logits = self.nets[0](x).float()
        p_label = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
        return [self.alpha * F.cross_entropy(logits, y) + self.beta * (LOG_CLIP * (1 - p_label)).mean()]


class MeanAbsoluteError(Learner):
    def losses(self, x, y):
        p_label = F.softmax(self.nets[0](x).float(), dim=1).gather(1, y[:, None]).squeeze(1)
        return [(2 * (1 - p_label)).mean()]


# By the names of ``coteach.LEARNERS``.
CLASSES = {"coteaching": CoTeaching, "plain": CrossEntropy, "mixup": Mixup, "sce": SymmetricCE, "mae": MeanAbsoluteError}


def train_learner(data: Data, learner: str, *, arch, epochs, batch_size, lr, epoch_decay_start, seed, device,
                  precision="auto", compile=False, ckpt=None, tag=None, label="coteach", **options) -> list[list[float]]:
    """Train ``learner`` on ``data.train_*``; test accuracy of each of its networks after every epoch.
    ``options``: the learner's own (``coteach.OWN_OPTIONS``); ``ckpt``, ``precision``, ``compile``: see ``train.fit``. The seed fixes the
    first network's initialisation and the batch order, whatever the learner (paired seeds)."""
    pl.seed_everything(seed, workers=False, verbose=False)
    train, test = data.batches(device, batch_size, seed)
    nets = [data.build(arch) for _ in range(2 if learner == "coteaching" else 1)]
    module = CLASSES[learner](nets, test, epochs=epochs, lr=lr, epoch_decay_start=epoch_decay_start, **options)
    fit(module, train, device, epochs, ckpt, tag or {}, label, precision, compile)
    return module.history
