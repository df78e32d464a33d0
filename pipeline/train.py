"""Training with pytorch-lightning: the resumable training loop every stage uses, and the crossval classifier.

``Resumable`` and ``fit`` (with ``pipeline.callbacks``: per-epoch checkpoints, divergence checks, cluster
log lines) carry every training; ``Classifier`` / ``train_classifier`` are crossval's; the coteach stage's
learners (``pipeline.learners.training``) build on the same pieces. All take their batches from ``loader.Batches``
(device-resident, augmented on the device) and predict with ``predict.predict_probs``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipeline import backbones, callbacks, compiler, models, signals
from pipeline.devices import TaskContext
from pipeline.errors import PipelineError
from pipeline.learners.mixup import mixed_loss
from pipeline.loader import Batches, channel_stats
from pipeline.predict import predict_probs
from pipeline.recipes import RECIPES, Training

for _name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def effective_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16-mixed on CUDA (tensor cores), 32-true on the CPU; the other values as given."""
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "32-true"
    return precision


def make_trainer(ctx: TaskContext, epochs: int, precision: str, hooks: list[pl.Callback] = ()) -> pl.Trainer:
    """A trainer on ``ctx``'s device (its group's, as DDP ranks, where it has several); ``precision``: an effective
    one (see ``effective_precision``); ``hooks``: the callbacks, in the order they run."""
    from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
    from pytorch_lightning.strategies import DDPStrategy

    signals.sigusr1_stops()
    device, size = ctx.device, ctx.world
    cuda = device.type == "cuda"
    if size > 1:  # a rank of a task on several devices (``pipeline.ddp``): the world it started, not SLURM's
        strategy = DDPStrategy(
            process_group_backend="nccl" if cuda else "gloo",
            cluster_environment=LightningEnvironment(),
            # a fine-tune's head-only epochs leave the body out of the graph: only then must DDP look for unused ones
            find_unused_parameters=any(isinstance(h, callbacks.FreezeBody) for h in hooks),
        )
        placed = dict(strategy=strategy, devices=[int(g) for g in ctx.group] if cuda else size)
    else:
        placed = dict(
            plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
            devices=[device.index] if cuda else 1,
        )
    return pl.Trainer(
        **placed,
        accelerator="gpu" if cuda else "cpu",
        max_epochs=epochs,
        precision=precision,
        logger=False,
        enable_checkpointing=any(isinstance(h, pl.callbacks.Checkpoint) for h in hooks),  # else Lightning adds its own
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
        deterministic=device.type == "cpu",  # bit-for-bit reruns where it is free; on CUDA it would cost speed
        benchmark=device.type == "cuda",  # cuDNN picks the fastest kernels for our fixed batch shapes
        num_sanity_val_steps=0,
        callbacks=list(hooks),
    )


@dataclass
class Split:
    """A training split: the rows trained on, their (noisy) labels, and the rows evaluated (a fold's held-out rows,
    or the test set). Not the dataset (``sources.base.Dataset``), nor the data stage (``stages.data``)."""

    train_x: np.ndarray
    train_labels: np.ndarray
    eval_x: np.ndarray
    eval_labels: np.ndarray
    num_classes: int
    train_rows: np.ndarray | None = None  # the training rows' indices in a larger set of n_all (paired batch order)
    n_all: int | None = None

    def batches(
        self, ctx: TaskContext, batch_size: int, seed: int, mean=None, std=None, **augment
    ) -> tuple[Batches, Batches]:
        """(training batches, evaluation batches) on ``ctx``, normalised with ``mean``/``std`` (none: the training
        rows' own); ``augment``: Batches' ``translate``/``alternate_flips``."""
        if mean is None:
            mean, std = channel_stats(self.train_x)
        kw = dict(batch_size=batch_size, ctx=ctx, mean=mean, std=std)
        return (
            Batches(
                self.train_x,
                self.train_labels,
                train=True,
                seed=seed,
                rows=self.train_rows,
                n_all=self.n_all,
                **kw,
                **augment,
            ),
            Batches(self.eval_x, self.eval_labels, train=False, **kw),
        )

    def build(self, arch: str, weights: Path | None = None) -> tuple[torch.nn.Module, tuple | None, tuple | None]:
        """(network for these images and classes, its weights' input mean and std or None): ``backbones.build``."""
        _, h, _, c = self.train_x.shape
        return backbones.build(arch, weights, c, h, self.num_classes)


class Resumable(pl.LightningModule):
    """A module ``fit`` trains and resumes. Subclasses log each step's loss with ``log_loss`` (its epoch mean
    is checked and printed by the callbacks), define ``networks()`` (the networks they train, which ``fit``
    compiles) and may give ``callbacks()`` of their own (evaluations first: ``callbacks.EpochAccuracy``).
    Its checkpoint also holds ``self.tag`` (the task's config and inputs), the torch RNG state and
    ``self.history`` (what the evaluations appended)."""

    tag: dict | None = None
    label = "training"
    precision = "32-true"  # the effective one, set by ``fit``

    def __init__(self):
        super().__init__()
        self.history: list = []

    def log_loss(self, loss: torch.Tensor) -> None:
        # batch_size=1: the epoch value is the mean over steps (every batch has the same size).
        self.log(
            "loss",
            loss.detach().float(),
            on_step=False,
            on_epoch=True,
            batch_size=1,
            sync_dist=self.trainer.world_size > 1,
        )

    def callbacks(self) -> list[pl.Callback]:
        return []

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
            if not (
                {"epoch", "loops", "optimizer_states"} <= state.keys()
                and weights.keys() == ours.keys()
                and all(weights[k].shape == v.shape for k, v in ours.items())
            ):
                raise ValueError("incomplete")
            return int(state["epoch"]) + 1
        print(
            f"warning: discarding checkpoint {ckpt}: {_other_task(state.get('tag') if isinstance(state, dict) else None, tag)}; "
            "training starts at epoch 0",
            file=sys.stderr,
            flush=True,
        )
    except Exception as e:  # noqa: BLE001 - truncated, garbage, incomplete, or from another torch: start afresh
        print(
            f"warning: discarding unreadable checkpoint {ckpt} ({type(e).__name__}); training starts at epoch 0",
            file=sys.stderr,
            flush=True,
        )
    ckpt.unlink(missing_ok=True)
    return None


def _other_task(theirs, ours: dict) -> str:
    """Why a checkpoint's tag is not this task's: the options (``compile`` too: a run resumes only with the
    config it started with) or inputs that differ."""
    if not isinstance(theirs, dict):
        return "it records no task"
    then, now = theirs.get("config") or {}, ours.get("config") or {}
    differ = [f"{k} {then.get(k)!r} -> {v!r}" for k, v in now.items() if then.get(k) != v]
    differ += [
        f"{k} changed" for k, v in (ours.get("inputs") or {}).items() if (theirs.get("inputs") or {}).get(k) != v
    ]
    return "made with other options (" + (", ".join(differ) or "another task") + ")"


def fit(
    module: Resumable,
    train: Batches,
    ctx: TaskContext,
    epochs: int,
    ckpt: Path | None,
    tag: dict,
    label: str,
    precision: str = "auto",
    compile: bool = False,
) -> None:
    """``trainer.fit`` with the callbacks in their order (see ``pipeline.callbacks``), resuming from ``ckpt``
    when it holds a checkpoint of the same task (``tag``); Lightning restores the module, its optimisers,
    the callbacks' state and the batches' (``Batches.state_dict``). ``precision``: see ``effective_precision``;
    ``compile``: ``torch.compile`` the module's networks in place. ``compile`` is part of the config, so a
    checkpoint made with the other setting is discarded with a line saying so, as for any other option."""
    tag = json.loads(json.dumps(tag))
    resume = None
    if ckpt is not None and ckpt.exists() and (epoch := _resumable(ckpt, tag, module)) is not None:
        resume = ckpt
        print(f"resuming {ckpt} from epoch {epoch}", flush=True)
    module.tag, module.label = tag, label
    module.precision = effective_precision(precision, ctx.device)
    own = module.callbacks()  # before compiling: a callback may copy a network (Lookahead)
    module.to(memory_format=torch.channels_last)  # NHWC convolutions (see loader.Batches._layout)
    if compile:
        if removed := compiler.repair():
            print(
                f"note: removed {len(removed)} broken librar{'y' if len(removed) == 1 else 'ies'} (a compile killed "
                f"mid-way) from torch's compiler cache {compiler.cache_dir()}; they are compiled again",
                flush=True,
            )
        for net in module.networks():
            net.compile()
    notes = [c for c in own if isinstance(c, callbacks.EpochAccuracy)]
    steps = [callbacks.FiniteLoss(), *own, callbacks.LogLine(notes)] + (
        [callbacks.EpochCheckpoint(ckpt)] if ckpt else []
    )
    if ctx.world > 1:
        steps.append(callbacks.RankSignals())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # our batches are on the device
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of a deprecated torch name
        warnings.filterwarnings(
            "ignore", message=".*The `srun` command is available.*"
        )  # we run under SLURM without srun
        try:
            make_trainer(ctx, epochs, module.precision, steps).fit(module, train, ckpt_path=resume, weights_only=True)
        except Exception as e:
            if compile and (broken := compiler.damage(e)):
                raise broken from None
            raise


class Classifier(Resumable):
    """Cross-entropy with label smoothing, Nesterov SGD and a per-step learning rate schedule, as ``training``
    says, with the tricks of its recipe (``recipes.RECIPES``, whose table says what each value does).

    ``prune_epoch`` (any recipe; crossval default: never): see ``callbacks.Prune``. Networks fit the
    clean labels before they memorise the wrong ones (early learning), so the late, low-lr epochs then fit
    mostly right labels. The held-out rows are never seen: their probabilities stay out of sample.
    ``head``: the new head of a pretrained network (the recipe's ``frozen_epochs`` and ``body_lr_scale``
    apply to the rest); none: one network from scratch.
    ``watch`` = (batches, their true labels): accuracy on them after every epoch (benchmarks only).
    """

    def __init__(self, net, training: Training, *, total_steps, head=None, watch=None, train=None, prune_epoch=None):
        super().__init__()
        t = training
        self.net, self.recipe, self.lr, self.weight_decay = net, RECIPES[t.recipe], t.lr, t.weight_decay
        self.label_smoothing, self.total_steps, self.watch = t.label_smoothing, total_steps, watch
        self.train_batches, self.prune_epoch, self.mixup = train, prune_epoch, t.mixup
        ours = {id(p) for p in head.parameters()} if head is not None else None
        # The pretrained body: the parameters it trains, apart from the head's (none from scratch).
        self.body = [] if ours is None else [p for p in net.parameters() if p.requires_grad and id(p) not in ours]
        self.lookahead = callbacks.Lookahead(self.recipe.lookahead, net, total_steps) if self.recipe.lookahead else None

    def callbacks(self) -> list[pl.Callback]:
        r, own = self.recipe, []
        if self.watch is not None:
            own.append(callbacks.EpochAccuracy(*self.watch, "held-out acc"))
        if self.prune_epoch is not None:
            own.append(callbacks.Prune(self.prune_epoch, self.train_batches))
        if r.whitening_bias_epochs is not None:
            own.append(callbacks.FreezeWhiteningBias(r.whitening_bias_epochs))
        if self.body and r.frozen_epochs:
            own.append(callbacks.FreezeBody(r.frozen_epochs, self.body))
        return own + ([self.lookahead] if self.lookahead else [])

    def networks(self):
        return [self.net]

    def training_step(self, batch, _):
        x, y = batch
        if self.mixup is None:
            loss = F.cross_entropy(self.net(x), y, label_smoothing=self.label_smoothing)
        else:
            loss = mixed_loss(self.net, x, y, self.mixup, self.label_smoothing)
        self.log_loss(loss)
        return loss

    def configure_optimizers(self):
        r = self.recipe
        body = {id(p) for p in self.body}  # trainable, whether or not ``FreezeBody`` has frozen them yet
        params = [p for p in self.net.parameters() if p.requires_grad or id(p) in body]
        bn = (
            {id(m.bias) for m in self.net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
            if r.bn_bias_lr_scale != 1
            else set()
        )
        groups: dict[float, list] = {}  # lr -> parameters
        for p in params:
            lr = self.lr * (r.bn_bias_lr_scale if id(p) in bn else 1) * (r.body_lr_scale if id(p) in body else 1)
            groups.setdefault(lr, []).append(p)
        # torch multiplies weight_decay by the group's lr: decoupled decay divides it out.
        groups = [
            {"params": g, "lr": lr, "weight_decay": self.weight_decay / lr if r.decoupled_decay else self.weight_decay}
            for lr, g in groups.items()
        ]
        if r.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, betas=(r.momentum, 0.99))
        else:
            opt = torch.optim.SGD(groups, momentum=r.momentum, nesterov=True)
        start, peak, end = r.schedule
        t = self.total_steps

        def factor(step):
            s = min(step / t, 1.0)
            return start + (1 - start) * s / peak if s < peak else 1 + (end - 1) * (s - peak) / (1 - peak)

        return [opt], [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor), "interval": "step"}]


@dataclass
class Trained:
    """What ``train_classifier`` returns."""

    probs: np.ndarray  # softmax probabilities (float32) of data.eval_x
    net: torch.nn.Module  # the trained network (without the input steps of ``backbones.prepared``)
    mean: np.ndarray  # the normalisation its inputs had (0..1 units)
    std: np.ndarray
    train_s: float  # seconds to train (a resumed fit: the rest)
    predict_s: float
    curve: list[float]  # with ``watch``: accuracy on the watched rows after every epoch
    pruned: list[int]  # the training rows (indices into data.train_*) dropped at prune_epoch


def train_classifier(
    data: Split,
    training: Training,
    *,
    seed: int,
    ctx: TaskContext,
    weights: Path | None = None,
    prune_epoch=None,
    ckpt=None,
    tag=None,
    label="crossval",
    watch: np.ndarray | None = None,
) -> Trained | None:
    """Train on ``data.train_*`` as ``training`` says, on ``ctx``, and predict ``data.eval_x``. ``ckpt``: see ``fit``;
    ``weights``: see ``backbones`` (pretrained weights keep their first layer: no whitening init);
    ``watch``: the true labels of ``data.eval_x`` (benchmarks only), whose accuracy after every epoch is
    printed; ``prune_epoch``: see ``Classifier``. Non-finite probabilities are an error. On a rank other than 0 of a
    task on several devices (``pipeline.ddp``), None once trained."""
    t = training
    pl.seed_everything(seed, workers=False, verbose=False)
    start = time.perf_counter()
    r = RECIPES[t.recipe]
    augment = {"translate": max(1, data.train_x.shape[1] // r.translate_divisor), "alternate_flips": r.alternate_flips}
    _, h, _, c = data.train_x.shape
    inner, mean, std = data.build(t.arch, weights)
    if mean is None:
        mean, std = channel_stats(data.train_x)
    train, evaluation = data.batches(ctx, t.batch_size, seed, mean=mean, std=std, **augment)
    if weights is None:
        models.init_whitening(inner, train.sample(r.whitening_sample).cpu())
    net = backbones.prepared(inner, c, t.input_size)
    if t.input_size is not None or t.arch not in models.ARCHS:  # ours check their size when built
        backbones.check_input(net, t.arch, c, h, t.input_size)
        net.train()
    module = Classifier(
        net,
        t,
        total_steps=t.epochs * len(train),
        head=None if weights is None else backbones.head(inner),
        watch=None if watch is None else (evaluation, watch),
        train=train,
        prune_epoch=prune_epoch,
    )
    rank, size = ctx.rank, ctx.world
    if size > 1 and (t.batch_size % size or prune_epoch is not None):
        raise PipelineError(
            f"{label}: "
            + (
                f"--batch-size {t.batch_size} does not split evenly over {size} devices"
                if t.batch_size % size
                else "--prune-epoch needs one device per task"
            )
        )
    fit(module, train, ctx, t.epochs, ckpt, tag or {}, label, t.precision, t.compile)
    if rank:
        return None  # rank 0 predicts and writes
    if module.lookahead:
        module.lookahead.finish(module.net)
    _sync(ctx.device)
    trained = time.perf_counter()
    probs = predict_probs(module.net.to(ctx.device), evaluation, module.precision, tta=t.tta)
    if not np.isfinite(probs).all():
        raise PipelineError(f"{label}: the trained network predicts NaN or inf; nothing written (lower --lr?)")
    pruned = [] if train.kept is None else np.flatnonzero(~train.kept.cpu().numpy()).tolist()
    return Trained(
        probs,
        inner,
        np.asarray(mean),
        np.asarray(std),
        trained - start,
        time.perf_counter() - trained,
        [h[0] for h in module.history],
        pruned,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
