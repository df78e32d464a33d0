"""The Lightning callbacks of every training, one idea each.

``train.fit`` runs them in this order at the end of an epoch: ``FiniteLoss`` (a diverged run fails
before anything of the epoch is saved), the module's own (``Resumable.callbacks``: its evaluation and
its recipe's tricks), ``LogLine``, and last ``EpochCheckpoint``, so the checkpoint holds the epoch's
evaluation too. A callback with state (``Lookahead``'s average) gives it to Lightning, which saves it
in the checkpoint and restores it on resume.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from pipeline import models
from pipeline.errors import PipelineError
from pipeline.loader import Batches
from pipeline.predict import predict_probs
from pipeline.recipes import Lookahead as LookaheadValues


class FiniteLoss(pl.Callback):
    """A non-finite epoch mean of the logged ``loss`` fails the run."""

    def on_train_epoch_end(self, trainer, module):
        loss = float(trainer.callback_metrics["loss"])  # the one host sync of the epoch
        if not math.isfinite(loss):
            raise PipelineError(
                f"{module.label}: training diverged: mean loss {loss} in epoch {trainer.current_epoch + 1}; "
                "nothing written (lower --lr?)"
            )


class EpochAccuracy(pl.Callback):
    """After every epoch, the accuracy of each of the module's networks on ``batches`` (against ``labels``)
    appended to ``module.history``; a network that predicts NaN or inf fails the run (argmax of NaN rows
    is class 0: a number that means nothing)."""

    def __init__(self, batches: Batches, labels: np.ndarray, name: str):
        self.batches, self.labels, self.name = batches, labels, name

    def on_train_epoch_end(self, trainer, module):
        accs = []
        for net in module.networks():
            probs = predict_probs(net, self.batches, module.precision)
            if not np.isfinite(probs).all():
                raise PipelineError(
                    f"{module.label}: training diverged: the network predicts NaN or inf in epoch "
                    f"{module.current_epoch + 1}; nothing written (lower --lr?)"
                )
            accs.append(float(np.mean(probs.argmax(1) == self.labels)))
        module.history.append(accs)

    def note(self, module) -> str:
        return f" {self.name} " + "/".join(f"{a:.4f}" for a in module.history[-1])


class LogLine(pl.Callback):
    """One line per epoch when stderr is not a terminal (cluster logs): loss, the evaluations' ``notes``, and
    the seconds since the previous line."""

    def __init__(self, notes: list[EpochAccuracy]):
        self.notes = notes

    def on_train_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        if not sys.stderr.isatty() and trainer.is_global_zero:
            loss = float(trainer.callback_metrics["loss"])
            note = "".join(n.note(module) for n in self.notes)
            print(
                f"{module.label}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs} loss {loss:.4f}{note} "
                f"({time.perf_counter() - self._start:.1f} s)",
                flush=True,
            )
        self._start = time.perf_counter()


class RankSignals(pl.Callback):
    """A rank of a task on several devices handles signals as ``signals.take_for_rank`` says, not as Lightning does."""

    def on_train_start(self, trainer, module):
        from pipeline import signals

        signals.take_for_rank(trainer.global_rank)


class EpochCheckpoint(pl.callbacks.Checkpoint):
    """The whole training state written atomically to ``path`` after every epoch (temp file, fsync, rename),
    so a restarted fit continues exactly where the last finished epoch left it."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, module):
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            trainer.save_checkpoint(tmp)  # every rank of a several-device task takes part; rank 0 writes
            if trainer.is_global_zero:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
        except OSError as e:
            raise PipelineError(f"{self.path}: cannot write the checkpoint ({e.strerror or e})") from None
        finally:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)


class Prune(pl.Callback):
    """At the start of epoch ``epoch``, the network predicts its own training rows (unaugmented) and the rows
    confident learning flags on those predictions (``prune_by_noise_rate``) are dropped from ``train`` for the
    remaining epochs (``Batches.keep``; which rows is this callback's state, saved and restored by Lightning)."""

    def __init__(self, epoch: int, train: Batches):
        self.epoch, self.train = epoch, train

    def state_dict(self) -> dict:
        return {"kept": None if self.train.kept is None else self.train.kept.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if state["kept"] is not None:
            self.train.keep(state["kept"].numpy())

    def on_train_epoch_start(self, trainer, module):
        from cleanlab.filter import find_label_issues

        if trainer.current_epoch < self.epoch or self.train.kept is not None:
            return
        rows = self.train.in_order()
        probs = predict_probs(module.net, rows, module.precision)
        flagged = find_label_issues(rows.labels.cpu().numpy(), probs, filter_by="prune_by_noise_rate", n_jobs=1)
        if flagged.all():
            raise PipelineError(
                f"{module.label}: confident learning flags every training row at epoch {trainer.current_epoch}; "
                "nothing to train on (a later --prune-epoch?)"
            )
        self.train.keep(~flagged)
        print(
            f"{module.label}: after epoch {trainer.current_epoch} confident learning drops {int(flagged.sum())} of "
            f"{len(flagged)} training rows",
            flush=True,
        )


class FreezeWhiteningBias(pl.Callback):
    """The whitening layer's bias (airbench net) trains for the first ``epochs`` epochs only. Once frozen its gradient
    is dropped before each step: torch's optimizers skip a parameter without one (no step, no decay, its momentum
    kept). Its gradient is still computed, so every parameter is used in every step: the graph a DDP world
    (``pipeline.ddp``) reduces is static, and a compiled network sees no change of ``requires_grad``."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_before_optimizer_step(self, trainer, module, optimizer):
        whiten = models.whitening_layer(module.net)
        if whiten is not None and trainer.current_epoch >= self.epochs:
            whiten.bias.grad = None


class FreezeBody(pl.Callback):
    """The first ``epochs`` epochs train the head alone: the pretrained ``body`` parameters get no gradient (so no
    step and no decay); its batch-norm statistics still follow the new images."""

    def __init__(self, epochs: int, body: list[torch.nn.Parameter]):
        self.epochs, self.body = epochs, body

    def on_train_epoch_start(self, trainer, module):
        for p in self.body:
            p.requires_grad_(trainer.current_epoch >= self.epochs)


class Lookahead(pl.Callback):
    """An exponential moving average of ``net``'s weights, pulled towards them and copied back into them
    (``recipes.Lookahead`` says when and how much); ``finish`` leaves the average in the network."""

    def __init__(self, values: LookaheadValues, net: torch.nn.Module, total_steps: int):
        self.values, self.total_steps = values, total_steps
        self.average = copy.deepcopy(net).requires_grad_(False)  # before fit compiles the network
        self._restored: dict | None = None

    def state_dict(self) -> dict:
        return {"average": self.average.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._restored = state["average"]  # restored before the module reaches its device: applied in on_fit_start

    def on_fit_start(self, trainer, module):
        self.average.to(module.device, memory_format=torch.channels_last)
        if self._restored is not None:
            self.average.load_state_dict(self._restored)
            self._restored = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        v, step = self.values, trainer.global_step
        if step % v.every == 0:
            self.pull(module.net, v.decay**v.every * (step / self.total_steps) ** v.power)

    def finish(self, net: torch.nn.Module) -> None:
        """The trained network is the average. Called after ``fit``, never from a Lightning hook: a fit
        resumed from the last epoch's checkpoint returns without running ``on_train_end``."""
        self.pull(net, 1.0)

    @torch.no_grad()
    def pull(self, net: torch.nn.Module, decay: float) -> None:
        for avg, now in zip(self.average.state_dict().values(), net.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(now, 1 - decay)
                now.copy_(avg)
