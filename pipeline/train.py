"""Training with pytorch-lightning: the resumable training loop every stage uses, and the crossval classifier.

``Resumable`` (per-epoch checkpoints, divergence check, cluster log lines) and ``fit`` carry every
training; ``Classifier`` / ``train_classifier`` are crossval's; the coteach stage's learners
(``pipeline.learning``) build on the same pieces. All take their batches from ``loader.Batches``
(device-resident, augmented on the device) and share ``predict_probs`` for held-out and test predictions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipeline import models
from pipeline.errors import PipelineError
from pipeline.loader import Batches, channel_stats
from pipeline.recipes import RECIPES

for _name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")  # we run under SLURM without srun


def _stop_on_sigusr1() -> None:
    """Treat SIGUSR1 (SLURM's usual warning before a time limit) like SIGTERM: Lightning then stops
    at the next batch and the last epoch's checkpoint is what a restart resumes from. Left alone
    where another handler (submitit's, which requeues) is installed."""
    if signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL:
        signal.signal(signal.SIGUSR1, lambda *_: os.kill(os.getpid(), signal.SIGTERM))


def effective_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16-mixed on CUDA (tensor cores), 32-true on the CPU; the other values as given."""
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "32-true"
    return precision


def make_trainer(device: torch.device, epochs: int, precision: str) -> pl.Trainer:
    """``precision``: an effective one (see ``effective_precision``)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    _stop_on_sigusr1()
    return pl.Trainer(
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index] if device.type == "cuda" else 1,
        max_epochs=epochs,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
        deterministic=device.type == "cpu",  # bit-for-bit reruns where it is free; on CUDA it would cost speed
        benchmark=device.type == "cuda",  # cuDNN picks the fastest kernels for our fixed batch shapes
        num_sanity_val_steps=0,
    )


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


@dataclass
class Data:
    """Training rows, their (noisy) labels, and the evaluation rows, with normalisation stats."""

    train_x: np.ndarray
    train_labels: np.ndarray
    eval_x: np.ndarray
    eval_labels: np.ndarray
    num_classes: int
    train_rows: np.ndarray | None = None  # the training rows' indices in a larger set of n_all (paired batch order)
    n_all: int | None = None

    def batches(self, device, batch_size: int, seed: int, **augment) -> tuple[Batches, Batches]:
        """(training batches, evaluation batches); ``augment``: Batches' ``translate``/``alternate_flips``."""
        mean, std = channel_stats(self.train_x)
        kw = dict(batch_size=batch_size, device=device, mean=mean, std=std)
        return (
            Batches(self.train_x, self.train_labels, train=True, seed=seed, rows=self.train_rows, n_all=self.n_all,
                    **kw, **augment),
            Batches(self.eval_x, self.eval_labels, train=False, **kw),
        )

    def build(self, arch: str) -> torch.nn.Module:
        _, h, _, c = self.train_x.shape
        return models.build(arch, c, h, self.num_classes)


class Resumable(pl.LightningModule):
    """Per epoch: the mean training loss (a non-finite one fails the run before anything is saved), a
    log line when stderr is not a terminal (cluster logs), and the whole training state saved
    atomically to ``self.ckpt`` with ``self.tag`` (the task's config and inputs), the torch RNG state
    and ``self.history``, so a restarted fit continues exactly where the last finished epoch left it.
    Subclasses call ``self.track(loss)`` per step, define ``networks()`` (the networks they train, which
    ``fit`` compiles) and may extend ``epoch_summary``."""

    ckpt: Path | None = None
    tag: dict | None = None
    label = "training"
    precision = "32-true"  # the effective one, set by ``fit``

    def __init__(self):
        super().__init__()
        self.history: list = []

    def on_train_epoch_start(self):
        self._loss, self._steps, self._start = torch.zeros((), device=self.device), 0, time.perf_counter()

    def track(self, loss: torch.Tensor) -> None:
        self._loss, self._steps = self._loss + loss.detach().float(), self._steps + 1

    def epoch_summary(self) -> str:
        return ""

    def on_train_epoch_end(self):
        loss = self._loss.item() / max(1, self._steps)  # the one host sync of the epoch
        epoch = self.current_epoch + 1
        if not np.isfinite(loss):
            raise PipelineError(f"{self.label}: training diverged: mean loss {loss} in epoch {epoch}; nothing written (lower --lr?)")
        note = self.epoch_summary()
        if not sys.stderr.isatty():
            print(f"{self.label}: epoch {epoch}/{self.trainer.max_epochs} loss {loss:.4f}{note} "
                  f"({time.perf_counter() - self._start:.1f} s)", flush=True)
        if self.ckpt is not None:
            tmp = self.ckpt.with_name(f".{self.ckpt.name}.tmp")
            try:
                self.trainer.save_checkpoint(tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, self.ckpt)
            except OSError as e:
                raise PipelineError(f"{self.ckpt}: cannot write the checkpoint ({e.strerror or e})") from None
            finally:
                tmp.unlink(missing_ok=True)

    def on_save_checkpoint(self, checkpoint):
        checkpoint.update(tag=self.tag, torch_rng=torch.get_rng_state(), history=self.history)

    def on_load_checkpoint(self, checkpoint):
        torch.set_rng_state(checkpoint["torch_rng"])
        self.history = checkpoint["history"]


def _resumable(ckpt: Path, tag: dict, module: Resumable) -> int | None:
    """The epoch to resume from if ``ckpt`` is a whole checkpoint of this task (its tag, and weights of
    the module's shapes); otherwise it is deleted."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # tensors and plain values: no code runs
        if isinstance(state, dict) and state.get("tag") == tag:
            weights, ours = state["state_dict"], module.state_dict()
            if not ({"epoch", "loops", "optimizer_states"} <= state.keys() and weights.keys() == ours.keys()
                    and all(weights[k].shape == v.shape for k, v in ours.items())):
                raise ValueError("incomplete")
            return int(state["epoch"]) + 1
    except Exception as e:  # noqa: BLE001 - truncated, garbage, incomplete, or from another torch: start afresh
        print(f"warning: discarding unreadable checkpoint {ckpt} ({type(e).__name__}); training starts at epoch 0",
              file=sys.stderr, flush=True)
    ckpt.unlink(missing_ok=True)
    return None


def fit(module: Resumable, train: Batches, device: torch.device, epochs: int, ckpt: Path | None, tag: dict, label: str,
        precision: str = "auto", compile: bool = False) -> None:
    """``trainer.fit``, resuming from ``ckpt`` when it holds a checkpoint of the same task (``tag``).
    ``precision``: see ``effective_precision``; ``compile``: ``torch.compile`` the module's networks in place
    (their state_dict keys stay the same, so checkpoints of either kind resume the other)."""
    tag = json.loads(json.dumps(tag))
    resume = None
    if ckpt is not None and ckpt.exists() and (epoch := _resumable(ckpt, tag, module)) is not None:
        resume, train.epoch = ckpt, epoch
        print(f"resuming {ckpt} from epoch {epoch}", flush=True)
    module.ckpt, module.tag, module.label = ckpt, tag, label
    module.precision = effective_precision(precision, device)
    module.to(memory_format=torch.channels_last)  # NHWC convolutions (see loader.Batches._layout)
    if compile:
        for net in module.networks():
            net.compile()
    make_trainer(device, epochs, module.precision).fit(module, train, ckpt_path=resume, weights_only=True)


class Classifier(Resumable):
    """Cross-entropy with label smoothing, Nesterov SGD and a per-step learning rate schedule, with the
    tricks of ``recipe`` (a name of ``recipes.RECIPES``, whose table says what each value does).

    ``prune_epoch`` (either recipe; crossval default: never): at the start of that epoch the network
    predicts its own training rows (unaugmented), and the rows confident learning flags on those
    predictions (``prune_by_noise_rate``) are dropped from ``train`` for the remaining epochs. Networks
    fit the clean labels before they memorise the wrong ones (early learning), so the late, low-lr
    epochs then fit mostly right labels. The held-out rows are never seen: their probabilities stay out of sample.
    """

    def __init__(self, net, *, recipe, lr, weight_decay, label_smoothing, total_steps, watch=None, train=None, prune_epoch=None):
        super().__init__()
        self.net, self.recipe, self.lr, self.weight_decay = net, RECIPES[recipe], lr, weight_decay
        self.label_smoothing, self.total_steps, self.watch = label_smoothing, total_steps, watch
        self.ema = copy.deepcopy(net).requires_grad_(False) if self.recipe.lookahead else None
        self.train_batches, self.prune_epoch = train, prune_epoch
        self.pruned: np.ndarray | None = None  # the training rows dropped at prune_epoch

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        if self.prune_epoch is not None and self.current_epoch >= self.prune_epoch and self.pruned is None:
            self._prune()
        whiten, epochs = models.whitening_layer(self.net), self.recipe.whitening_bias_epochs
        if whiten is not None and epochs is not None:
            whiten.bias.requires_grad_(self.current_epoch < epochs)  # no gradient, no step, no decay once frozen

    def epoch_summary(self) -> str:
        """With ``watch`` = (batches, their true labels): accuracy on them after every epoch (no TTA)."""
        if self.watch is None:
            return ""
        batches, labels = self.watch
        self.history.append(float(np.mean(predict_probs(self.net, batches, self.precision).argmax(1) == labels)))
        return f" held-out acc {self.history[-1]:.4f}"

    def _prune(self) -> None:
        from cleanlab.filter import find_label_issues

        rows = self.train_batches.in_order()
        probs = predict_probs(self.net, rows, self.precision)
        flagged = find_label_issues(rows.labels.cpu().numpy(), probs, filter_by="prune_by_noise_rate", n_jobs=1)
        if flagged.all():
            raise PipelineError(f"{self.label}: confident learning flags every training row at epoch {self.current_epoch}; "
                                "nothing to train on (a later --prune-epoch?)")
        self.pruned = np.flatnonzero(flagged)
        self.train_batches.keep(~flagged)
        print(f"{self.label}: after epoch {self.current_epoch} confident learning drops {len(self.pruned)} of "
              f"{len(flagged)} training rows", flush=True)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["pruned"] = None if self.pruned is None else torch.from_numpy(self.pruned)  # Lightning loads weights only

    def on_load_checkpoint(self, checkpoint):
        super().on_load_checkpoint(checkpoint)
        pruned = checkpoint.get("pruned")
        self.pruned = None if pruned is None else pruned.numpy()
        if self.pruned is not None:
            keep = np.ones(len(self.train_batches.labels), bool)
            keep[self.pruned] = False
            self.train_batches.keep(keep)

    def networks(self):
        return [self.net]

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y, label_smoothing=self.label_smoothing)
        self.track(loss)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        la = self.recipe.lookahead
        if la is not None and self.global_step % la.every == 0:
            self._lookahead(la.decay**la.every * (self.global_step / self.total_steps) ** la.power)

    def finish(self) -> None:
        """The trained network is the average. Called after ``fit``, never from a Lightning hook: a fit
        resumed from the last epoch's checkpoint returns without running ``on_train_end``."""
        if self.ema is not None:
            self._lookahead(1.0)

    @torch.no_grad()
    def _lookahead(self, decay: float) -> None:
        for avg, now in zip(self.ema.state_dict().values(), self.net.state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(now, 1 - decay)
                now.copy_(avg)

    def configure_optimizers(self):
        r = self.recipe
        params = [p for p in self.net.parameters() if p.requires_grad]
        bn = {id(m.bias) for m in self.net.modules() if isinstance(m, torch.nn.BatchNorm2d)} if r.bn_bias_lr_scale != 1 else set()
        groups = [([p for p in params if id(p) not in bn], self.lr), ([p for p in params if id(p) in bn], r.bn_bias_lr_scale * self.lr)]
        # torch multiplies weight_decay by the group's lr: decoupled decay divides it out.
        opt = torch.optim.SGD([{"params": g, "lr": lr, "weight_decay": self.weight_decay / lr if r.decoupled_decay else self.weight_decay}
                               for g, lr in groups if g], momentum=r.momentum, nesterov=True)
        start, peak, end = r.schedule
        t = self.total_steps

        def factor(step):
            s = min(step / t, 1.0)
            return start + (1 - start) * s / peak if s < peak else 1 + (end - 1) * (s - peak) / (1 - peak)

        return [opt], [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}]


def train_classifier(data: Data, *, recipe, arch, epochs, batch_size, lr, weight_decay, label_smoothing, seed, device,
                     precision="auto", compile=False, prune_epoch=None, ckpt=None, tag=None, label="crossval",
                     timings: dict | None = None, watch: np.ndarray | None = None, curve: list | None = None,
                     pruned: list | None = None) -> np.ndarray:
    """Train on ``data.train_*``; return softmax probabilities (float32) for ``data.eval_x``. ``ckpt``,
    ``precision``, ``compile``: see ``fit``; ``timings`` (if given) receives ``train_s`` and ``predict_s``; ``watch``: the true labels of ``data.eval_x`` (benchmarks only), whose accuracy after every
    epoch is printed and appended to ``curve``; ``prune_epoch``: see ``Classifier``, the dropped training
    rows (indices into ``data.train_*``) are appended to ``pruned``. Non-finite probabilities are an error.
    ``recipe``: a name of ``recipes.RECIPES``, which also sets the augmentation, the whitening sample and TTA."""
    pl.seed_everything(seed, workers=False, verbose=False)
    start = time.perf_counter()
    r = RECIPES[recipe]
    augment = {"translate": max(1, data.train_x.shape[1] // r.translate_divisor), "alternate_flips": r.alternate_flips}
    train, evaluation = data.batches(device, batch_size, seed, **augment)
    net = data.build(arch)
    models.init_whitening(net, train.sample(r.whitening_sample).cpu())
    module = Classifier(net, recipe=recipe, lr=lr, weight_decay=weight_decay, label_smoothing=label_smoothing,
                        total_steps=epochs * len(train), watch=None if watch is None else (evaluation, watch),
                        train=train, prune_epoch=prune_epoch)
    fit(module, train, device, epochs, ckpt, tag or {}, label, precision, compile)
    module.finish()
    _sync(device)
    trained = time.perf_counter()
    probs = predict_probs(module.net.to(device), evaluation, module.precision, tta=r.tta)
    if not np.isfinite(probs).all():
        raise PipelineError(f"{label}: the trained network predicts NaN or inf; nothing written (lower --lr?)")
    if timings is not None:
        timings.update(train_s=trained - start, predict_s=time.perf_counter() - trained)
    if curve is not None:
        curve.extend(module.history)
    if pruned is not None and module.pruned is not None:
        pruned.extend(module.pruned.tolist())
    return probs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
