"""The airbench recipe's pieces: alternating flips, the whitening layer, lookahead, recipe defaults."""

import numpy as np
import pytest
import torch

from pipeline import models
from pipeline.devices import TaskContext
from pipeline.errors import PipelineError
from pipeline.loader import Batches
from pipeline.recipes import OPTIONS, RECIPES, Training
from stages.crossval import CrossvalConfig


def _flipped_per_epoch(epochs: int, alternate: bool) -> np.ndarray:
    """(epochs, n) whether each image came out mirrored; images are ramps, so a flip is visible."""
    n, size = 40, 8
    images = np.broadcast_to(np.arange(size, dtype=np.uint8)[None, None, :, None] * 30, (n, size, size, 3)).copy()
    b = Batches(
        images,
        np.arange(n),
        batch_size=8,
        ctx=TaskContext(torch.device("cpu")),
        mean=np.zeros(3),
        std=np.ones(3) / 255,
        train=True,
        seed=3,
        translate=0,
        alternate_flips=alternate,
    )
    out = np.zeros((epochs, n), bool)
    for e in range(epochs):
        for x, y in b:
            out[e, y.numpy()] = (x[:, 0, 0, 0] > x[:, 0, 0, -1]).numpy()
    return out


def test_alternating_flips_show_both_orientations_in_consecutive_epochs():
    flips = _flipped_per_epoch(4, alternate=True)
    assert 0 < flips[0].sum() < flips.shape[1]  # epoch 0: random
    assert (flips[1] != flips[0]).all() and (flips[2] == flips[0]).all() and (flips[3] == flips[1]).all()
    independent = _flipped_per_epoch(2, alternate=False)
    assert (independent[1] == independent[0]).any()  # coin flips repeat some orientations


def test_whitening_layer_decorrelates_patches():
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.8, 0.1], [0.0, 0.6, 0.5], [0.0, 0.0, 0.3]])
    images = torch.einsum("nchw,cd->ndhw", torch.randn(500, 3, 16, 16, generator=g), mix)
    images = images + 0.5 * torch.roll(images, 1, dims=3)  # neighbouring pixels correlated too
    net = models.build("airbench", 3, 16, 10)
    models.init_whitening(net, images)
    with torch.no_grad():
        out = net[0](images) - net[0].bias[None, :, None, None]
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(half.T)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert torch.allclose(out[:, 12:], -out[:, :12])
    assert not net[0].weight.requires_grad and net[0].bias.requires_grad


@pytest.mark.parametrize("size", [8, 16, 32])
def test_airbench_net_starts_small_and_keeps_batchnorm_scales_frozen(size):
    net = models.build("airbench", 1 if size == 8 else 3, size, 7)
    x = torch.randn(4, 1 if size == 8 else 3, size, size)
    assert net(x).shape == (4, 7)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and not any(m.weight.requires_grad for m in bns)


def test_recipe_defaults_fill_only_what_is_left_open():
    cifar_fold = CrossvalConfig().resolved(37_500)  # the airbench batch follows the set's size: 36 steps per epoch
    assert {k: getattr(cifar_fold, k) for k in OPTIONS} == {k: getattr(RECIPES["airbench"], k) for k in OPTIONS}
    photos = CrossvalConfig().resolved(6_000)
    assert (photos.batch_size, photos.lr, photos.epochs) == (166, 1.5 * 166 / 1024, 10)
    assert (
        CrossvalConfig(lr=0.5).resolved(6_000).lr == 0.5 and CrossvalConfig(batch_size=64).resolved(10).batch_size == 64
    )
    assert CrossvalConfig().resolved(100).batch_size == 16  # at least MIN_BATCH
    sgd = CrossvalConfig(recipe="sgd", lr=0.3).resolved()
    assert sgd.lr == 0.3 and sgd.arch == "convnet" and sgd.label_smoothing == 0.0
    with pytest.raises(PipelineError, match="--label-smoothing"):
        CrossvalConfig(label_smoothing=1.0)
    with pytest.raises(PipelineError, match="--arch"):
        CrossvalConfig(arch="vgg")


def test_lookahead_leaves_the_averaged_weights_in_the_network():
    from pipeline.callbacks import Lookahead
    from pipeline.recipes import RECIPES

    net = models.build("airbench", 3, 16, 4)
    lookahead = Lookahead(RECIPES["airbench"].lookahead, net, total_steps=10)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in lookahead.average.parameters()]
    lookahead.pull(net, 0.75)
    for avg, old, now in zip(lookahead.average.parameters(), before, net.parameters()):
        assert torch.equal(avg, now) and torch.allclose(avg, old + 0.25)


def test_batchnorm_biases_learn_64x_and_the_whitening_bias_freezes_after_3_epochs():
    import pytorch_lightning as pl

    from pipeline.train import Classifier, make_trainer

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 64)
    train = Batches(
        images,
        labels,
        batch_size=32,
        ctx=TaskContext(torch.device("cpu")),
        mean=np.full(3, 0.5),
        std=np.full(3, 0.3),
        train=True,
    )
    net = models.build("airbench", 3, 8, 4)
    models.init_whitening(net, train.sample(64))
    module = Classifier(
        net, Training("airbench", "airbench", 5, 32, 0.5, 0.0, 0.0, tta=True), total_steps=5 * len(train)
    )
    (opt,), _ = module.configure_optimizers()
    bn_biases = {id(m.bias) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in opt.param_groups[1]["params"]} == bn_biases and opt.param_groups[1][
        "lr"
    ] == 64 * opt.param_groups[0]["lr"]
    assert any(p is net[0].bias for p in opt.param_groups[0]["params"])

    seen = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            bias = pl_module.net[0].bias
            seen.append(bias.requires_grad and bias.grad is not None)

    trainer = make_trainer(TaskContext(torch.device("cpu")), 5, "32-true", [*module.callbacks(), Record()])
    trainer.fit(module, train)
    assert seen == [
        True,
        True,
        True,
        False,
        False,
    ]  # gradient steps in epochs 1-3 only (the lookahead still averages it)


def test_kept_rows_fill_every_batch_of_an_epoch_and_only_they_appear():
    n = 40
    b = Batches(
        np.zeros((n, 8, 8, 3), np.uint8),
        np.arange(n),
        batch_size=8,
        ctx=TaskContext(torch.device("cpu")),
        mean=np.zeros(3),
        std=np.ones(3),
        train=True,
        seed=1,
    )
    keep = np.arange(n) % 3 == 0  # 14 rows
    b.keep(keep)
    seen = np.concatenate([y.numpy() for _, y in b])
    assert len(seen) == len(b) * 8 == 40 and set(seen) == set(np.flatnonzero(keep))
    assert [len(y) for _, y in b.in_order()] == [8] * 5 and b.kept is not None  # a view of all rows, in order
    with pytest.raises(ValueError):
        b.keep(np.zeros(n, bool))


def _noisy_digits(n=600, noise=0.4):
    from pipeline import datasets
    from pipeline.kinds.generated import generate
    from pipeline.train import Split

    ds = datasets.read_source(datasets.DIGITS)
    noisy = generate(ds.train_y[:n], ds.num_classes, noise, 0.0, seed=0)[0]
    return Split(ds.train_x[:n], noisy, ds.test_x, ds.test_y, ds.num_classes), ds.train_y[:n]


def test_pruning_drops_mostly_wrong_labels_and_a_resumed_run_restores_the_same_rows(tmp_path, capsys):
    from pipeline.train import train_classifier

    data, true = _noisy_digits()
    kw = dict(
        training=Training("airbench", "airbench", 4, 64, 0.2, 0.002, 0.2, tta=True),
        seed=0,
        ctx=TaskContext(torch.device("cpu")),
        prune_epoch=2,
        ckpt=tmp_path / "fold.ckpt",
        tag={"t": 1},
    )
    first = train_classifier(data, **kw)
    wrong = data.train_labels != true
    assert 0 < len(first.pruned) < len(true) and wrong[first.pruned].mean() > 1.5 * wrong.mean()
    again = train_classifier(data, **kw)  # resumes from the last epoch: nothing recomputed, the kept rows restored
    assert "from epoch 4" in capsys.readouterr().out
    assert again.pruned == first.pruned and np.array_equal(again.probs, first.probs)


def test_prune_epoch_must_leave_an_epoch_to_train():
    assert CrossvalConfig(prune_epoch=9).prune_epoch == 9
    with pytest.raises(PipelineError, match="--prune-epoch 10"):
        CrossvalConfig(prune_epoch=10)
