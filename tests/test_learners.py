"""The coteach stage's two axes (rows x learner) and each learner's loss."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline import datasets
from pipeline.devices import TaskContext
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME, LEARNERS, coteaching, training
from pipeline.train import Split
from stages import coteach

SCHEDULE = dict(epochs=2, lr=0.001, epoch_decay_start=1)


def test_the_default_grid_is_the_papers_table_2():
    assert coteach.grid("all", "paper") == [
        ("none", "coteaching"),
        ("none", "plain"),
        ("none", "mixup"),
        ("none", "sce"),
        *(
            (m, "coteaching")
            for m in ("predicted_neq_given", "prune_by_class", "confident_joint", "both", "prune_by_noise_rate")
        ),
    ]
    assert coteach.grid("both", "paper") == [("both", "coteaching")]
    assert coteach.grid("all", "plain") == [(r, "plain") for r in coteach.ROWS]  # train on the cleaned rows
    assert coteach.grid("none,both", "all") == [(r, lr) for r in ("none", "both") for lr in BY_NAME]
    own = [name for spec in LEARNERS for name in spec.options]
    assert len(own) == len(set(own))  # no two learners share an option name
    shared = [f.name for f in dataclasses.fields(coteach.SharedConfig)]
    assert [f.name for f in dataclasses.fields(coteach.CoteachConfig)] == shared + own  # every learner's, no other
    fields = coteach.CoteachConfig.__dataclass_fields__
    assert all(fields[name] is f for spec in LEARNERS for name, f in spec.options.items())  # as each spec declares it
    with pytest.raises(PipelineError, match=f"--learners 'cot': choose from {', '.join(BY_NAME)}, comma-separated"):
        coteach.grid("all", "cot")


def losses(name, logits, y, **options):
    """A learner's loss on given logits (its network is the identity)."""
    return BY_NAME[name].losses([torch.nn.Identity()], logits, y, epoch=0, epochs=SCHEDULE["epochs"], **options)


def test_sce_and_mae_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 5, generator=g) * 3, torch.randint(0, 5, (16,), generator=g)
    p, onehot = F.softmax(logits, 1), F.one_hot(y, 5).float()
    ce = -(onehot * p.log()).sum(1).mean()
    rce = -(p * onehot.clamp(min=1e-4).log()).sum(1).mean()  # Wang et al.: log 0 of the one-hot clipped to log 1e-4
    (sce,) = losses("sce", logits, y, sce_alpha=0.1, sce_beta=1.0)
    assert sce.item() == pytest.approx((0.1 * ce + 1.0 * rce).item(), rel=1e-5)
    (mae,) = losses("mae", logits, y)
    assert mae.item() == pytest.approx((p - onehot).abs().sum(1).mean().item(), rel=1e-5)
    (plain,) = losses("plain", logits, y)
    assert plain.item() == pytest.approx(ce.item(), rel=1e-5)
    assert 0 <= mae.item() <= 2 and rce.item() <= -math.log(1e-4)  # both bounded: the robust losses


def test_gce_matches_its_definition_and_its_limits():
    """(1 - p_y^q) / q (Zhang & Sabuncu): cross-entropy as q -> 0, half of MAE at q = 1."""
    g = torch.Generator().manual_seed(2)
    logits, y = torch.randn(16, 5, generator=g) * 3, torch.randint(0, 5, (16,), generator=g)
    p_y = F.softmax(logits, 1)[torch.arange(16), y]
    (gce,) = losses("gce", logits, y, gce_q=0.7)
    assert gce.item() == pytest.approx(((1 - p_y**0.7) / 0.7).mean().item(), rel=1e-5)
    (near_ce,) = losses("gce", logits, y, gce_q=1e-4)
    assert near_ce.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-3)
    assert losses("gce", logits, y, gce_q=1.0)[0].item() == pytest.approx(
        losses("mae", logits, y)[0].item() / 2, rel=1e-5
    )


def test_mixup_mixes_images_and_labels_with_a_beta_weight():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
    torch.manual_seed(3)
    (loss,) = losses("mixup", x, y, mixup_alpha=0.4)
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    pair = torch.randperm(8)
    mixed = lam * x + (1 - lam) * x[pair]
    assert 0 < lam < 1
    assert loss.item() == pytest.approx(
        (lam * F.cross_entropy(mixed, y) + (1 - lam) * F.cross_entropy(mixed, y[pair])).item()
    )


@pytest.mark.parametrize("name", [s.name for s in LEARNERS if s.nets == 1])
def test_every_single_network_learner_trains_and_reports_one_accuracy_per_epoch(folds_run, name):
    ds = datasets.cached(RunDir(folds_run).dataset)
    data = Split(ds.train_x[:256], ds.train_y[:256], ds.test_x, ds.test_y, ds.num_classes)
    options = coteach.CoteachConfig().own(name)
    inputs = training.images(data, arch="convnet", batch_size=64, seed=0, ctx=TaskContext(torch.device("cpu")))
    history = training.train_learner(
        BY_NAME[name], inputs, seed=0, ctx=TaskContext(torch.device("cpu")), **SCHEDULE, **options
    )
    assert len(history) == 2 and all(len(h) == 1 and 0 <= h[0] <= 1 for h in history)
    assert np.isfinite(history).all()


def test_paired_seeds_share_the_batch_order_and_augmentation_of_common_rows():
    """Seed s on the cleaned rows and on all rows: the kept rows come in the same order, shifted and
    flipped alike, so per-seed differences compare like with like."""
    from pipeline.loader import Batches

    rng = np.random.default_rng(0)
    n = 60
    images, keep = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.random(n) < 0.6
    kw = dict(
        batch_size=1,
        ctx=TaskContext(torch.device("cpu")),
        mean=np.full(1, 0.5),
        std=np.full(1, 0.25),
        train=True,
        seed=5,
        translate=1,
        alternate_flips=True,
        n_all=n,
    )
    full = Batches(images, np.arange(n), rows=np.arange(n), **kw)
    cleaned = Batches(images[keep], np.flatnonzero(keep), rows=np.flatnonzero(keep), **kw)
    plain = Batches(images, np.arange(n), **{k: v for k, v in kw.items() if k != "n_all"})
    for _ in range(3):
        a = [(int(y), x) for x, y in full]
        b = [(int(y), x) for x, y in cleaned]
        assert [y for y, _ in a] == [int(y) for _, y in plain]  # rows = all of them: the same as no rows given
        common = [(y, x) for y, x in a if keep[y]]
        assert [y for y, _ in common] == [y for y, _ in b] and len(b) == keep.sum()
        assert all(torch.equal(xa, xb) for (_, xa), (_, xb) in zip(common, b))


def test_a_network_gone_nan_fails_rather_than_scoring_the_share_of_class_0(folds_run):
    """The last step of an epoch can turn the weights NaN after a finite loss: the test accuracy must not
    be argmax(NaN) = class 0 for every image."""
    ds = datasets.cached(RunDir(folds_run).dataset)
    data = Split(ds.train_x[:64], ds.train_y[:64], ds.test_x, ds.test_y, ds.num_classes)
    _, test = data.batches(TaskContext(torch.device("cpu")), 64, 0)
    net = data.build("convnet")[0]
    module = training.Learner(BY_NAME["plain"], [net], test, **SCHEDULE)
    (accuracy,) = module.callbacks()
    accuracy.on_train_epoch_end(None, module)
    assert accuracy.note(module).startswith(" test acc 0.") and len(module.history) == 1
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(
        PipelineError, match=r"training diverged: the network predicts NaN or inf in epoch 1; nothing written"
    ):
        accuracy.on_train_epoch_end(None, module)


@pytest.mark.parametrize("kept", [1, 2, 3, 5, 9, 64, 200])
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.7, 0.9])
def test_the_forget_rate_is_checked_against_the_batch_that_trains(kept, rate):
    """A mask keeping fewer rows than --batch-size trains one short batch: the nominal batch passes, the real one decides."""
    coteach.CoteachConfig(forget_rate=rate, batch_size=128)  # nominal: fine
    batch = min(128, kept)
    if int((1 - rate) * batch) >= 1:
        coteaching.check({"forget_rate": rate}, batch, "")
        return
    with pytest.raises(
        PipelineError,
        match=f"^m.npz: 'both' keeps {kept} rows: --forget-rate {rate}: keeps no example of a batch of {batch} ",
    ):
        coteaching.check({"forget_rate": rate}, batch, f"m.npz: 'both' keeps {kept} rows: ")


def test_a_mask_keeping_fewer_rows_than_a_batch_is_refused_by_the_forget_rate_not_trained_to_nan(run_copy, monkeypatch):
    from pipeline import folds, masks, store

    run = RunDir(run_copy)
    folds.combine(run, "n20_s0")
    masks.run_masks(run, "n20_s0")
    read = store.read
    few = np.zeros(len(store.read(run.labels("n20_s0"))), bool)
    few[:3] = True  # three kept rows: one batch of 3, of which int(0.3 x 3) = 0 would be kept

    def reading(path):
        return few if path == run.mask("n20_s0", "both") else read(path)

    monkeypatch.setattr(coteach.store, "read", reading)
    config = coteach.CoteachConfig(epochs=1, batch_size=128, epoch_decay_start=1, num_gradual=1, forget_rate=0.7)
    with pytest.raises(
        PipelineError, match=r"masks/both.npy: 'both' keeps 3 rows: --forget-rate 0.7: keeps no example of a batch of 3"
    ):
        coteach.STAGE.run(run, ("n20_s0", "both", "coteaching", 0), config, TaskContext(torch.device("cpu")))
