"""Backbones with weights on small generated images: torchvision networks from weights files (random: no
ImageNet weights exist here) and by name (a temporary torch hub cache: the file a name resolves to, refused
when missing or not the bytes its name promises), a backbone this pipeline
pretrains, the linear probe on their features, and the refusals."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RESNET18_FILE, stage

from pipeline import backbones, files, store
from pipeline.devices import TaskContext
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from stages import crossval

PROBE = ["--recipe", "linear-probe", "--folds", "3", "--gpu", "cpu", "--cond", "n20_s0"]


def test_a_torchvision_network_from_a_weights_file_probed_on_gray_images_resized(run_copy, resnet18_file):
    """digits are 8 px grayscale: repeated to the weights' 3 channels and resized to 32 px on the device."""
    run = RunDir(run_copy)
    out = stage(
        "crossval", run.root, *PROBE, "--arch", "resnet18", "--weights", str(resnet18_file), "--input-size", "32"
    ).stdout
    assert "features resnet18_32px_" in out and "train: 1347/1347 images" in out
    manifest = store.verify(run.shard("n20_s0", 0))
    assert manifest["config"]["weights_checksum"] == files.checksum(resnet18_file)
    feats = store.read(next((run.root / "features").glob("resnet18_32px_*.npz")))
    assert (
        feats["train"].shape == (1347, 512) and feats["train"].dtype == np.float16 and feats["test"].shape == (450, 512)
    )
    assert 0.5 < manifest["info"]["heldout_acc_noisy"] < 1  # random conv features still separate digits
    stage("combine", run.root, "--cond", "n20_s0")
    config = crossval.CrossvalConfig(
        recipe="linear-probe", arch="resnet18", weights=str(resnet18_file), input_size=32, folds=3
    )
    assert crossval.STAGE.pending(run, [("n20_s0", 0)], config) == []
    torch.save({k: v + 1 for k, v in torch.load(resnet18_file).items()}, resnet18_file)  # other weights
    assert crossval.STAGE.pending(run, [("n20_s0", 0)], config) == [("n20_s0", 0)]
    with pytest.raises(PipelineError, match=f"is stale: {resnet18_file} changed after it was made"):
        store.verify(run.psx("n20_s0"))  # what was made from the shards, too: the weights file is an input


def test_weights_that_are_not_here_or_not_weights_are_one_line(run_copy, hub, tmp_path):
    import torchvision

    run = RunDir(run_copy)
    before = sorted(p.name for p in run.root.rglob("*"))
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    torch.save({"net": torchvision.models.resnet18()}, tmp_path / "pickled.pth")  # a module: code would run to load it
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x02garbage")
    nan = torchvision.models.resnet18().state_dict()
    nan["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(nan, tmp_path / "nan.pth")  # one NaN weight: 100% NaN features, recorded as current, before
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    cases = [
        (
            ["--arch", "resnet50", "--weights", "IMAGENET1K_V2"],
            f"--weights IMAGENET1K_V2: {Path(torch.hub.get_dir()) / 'checkpoints' / url.rsplit('/', 1)[1]} is missing and "
            f"nothing is downloaded here; fetch {url} into {hub}, or pass the file as --weights FILE",
        ),
        (
            ["--arch", "resnet18", "--weights", "IMAGENET1K_V1"],  # a name that promises bytes, another file under it
            f"--weights IMAGENET1K_V1: {hub / RESNET18_FILE} is not the file of "
            f"https://download.pytorch.org/models/{RESNET18_FILE} (its sha256 does not start with f37072fd, as its "
            "name says); fetch it again, or pass the file as --weights FILE",
        ),
        (["--arch", "resnet18", "--weights", str(tmp_path / "resnet34.pth")], "resnet34.pth: not weights of resnet18"),
        (
            ["--arch", "resnet18", "--weights", str(tmp_path / "pickled.pth")],
            "pickled.pth: not a weights file of tensors",
        ),
        (
            ["--arch", "resnet18", "--weights", str(tmp_path / "garbage.pth")],
            "garbage.pth: not a weights file of tensors",
        ),
        (
            ["--arch", "resnet18", "--weights", "IMAGENET9K"],
            "--weights 'IMAGENET9K': no such file, nor a torchvision weights name",
        ),
        (
            ["--arch", "resnet18", "--weights", str(tmp_path / "nan.pth")],
            "nan.pth: 1 NaN or infinite value(s) in layer2.0.conv1.weight; these weights are not usable",
        ),
        (["--arch", "resnet19", "--weights", "x"], "--arch 'resnet19': not a network of this pipeline"),
        (["--arch", "resnet18"], "--recipe linear-probe: give --arch and --weights"),
        (
            ["--arch", "resnet18", "--weights", "IMAGENET1K_V1", "--mixup", "0.4"],
            "--mixup 0.4: --recipe linear-probe fits features, it trains on no images to mix",
        ),
        (
            ["--arch", "resnet18", "--weights", "IMAGENET1K_V1", "--tta", "on"],
            "--tta on: --recipe linear-probe predicts from cached features, not from images",
        ),
    ]
    for flags, message in cases:
        err = stage("crossval", run.root, *PROBE, *flags, ok=False).stderr.strip()
        assert len(err.splitlines()) == 1 and message in err, (flags, err)
    assert sorted(p.name for p in run.root.rglob("*")) == before


def test_a_backbone_this_pipeline_pretrains_is_a_weights_file_for_another_run(run_copy, tmp_path):
    run = RunDir(run_copy)
    out = stage(
        "backbone",
        run.root,
        "--cond",
        "n20_s0",
        "--recipe",
        "sgd",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--gpu",
        "cpu",
    ).stdout
    weights = run.backbone("n20_s0")
    assert f"wrote {weights}  (convnet, test accuracy" in out
    state = torch.load(weights, weights_only=True)
    assert state["arch"] == "convnet" and state["built"] == [1, 8, 10] and len(state["mean"]) == 1
    other = RunDir(shutil.copytree(run.root, tmp_path / "other", ignore=shutil.ignore_patterns("backbones")))
    stage("crossval", other.root, *PROBE, "--arch", "convnet", "--weights", str(weights))
    assert store.verify(other.shard("n20_s0", 2))["info"]["heldout_acc_noisy"] > 0.5
    err = stage("crossval", other.root, *PROBE, "--arch", "airbench", "--weights", str(weights), ok=False).stderr
    assert "weights of --arch convnet, not airbench" in err
    # the same file starts a fine-tune (the sgd recipe from the pretrained weights, its own normalisation)
    stage(
        "crossval",
        other.root,
        "--cond",
        "n20_s0",
        "--fold",
        "0",
        "--folds",
        "3",
        "--recipe",
        "sgd",
        "--epochs",
        "1",
        "--arch",
        "convnet",
        "--weights",
        str(weights),
        "--gpu",
        "cpu",
    )
    assert store.verify(other.shard("n20_s0", 0))["config"]["weights"] == str(weights)
    # trained on 1-channel digits, given 3-channel images: the one line that says so, before any work
    from PIL import Image

    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / "colour" / split / c).mkdir(parents=True)
            for k in range(6):
                Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tmp_path / "colour" / split / c / f"{k}.png")
    colour = tmp_path / "colour-run"
    stage("data", colour, "--source", str(tmp_path / "colour"))
    stage("noise", colour, "--conditions", "0:0")
    for flags in (["--recipe", "linear-probe"], ["--recipe", "sgd", "--epochs", "1"]):
        err = stage(
            "crossval",
            colour,
            *flags,
            "--folds",
            "2",
            "--gpu",
            "cpu",
            "--arch",
            "convnet",
            "--weights",
            str(weights),
            ok=False,
        ).stderr.strip()
        assert err == (
            f"error: {weights}: the backbone takes 1-channel images and these images have 3; "
            "give weights trained on 3-channel images"
        ), err
    assert not list(colour.rglob("*.npz*")) or sorted(p.name for p in colour.rglob("*.npz")) == ["dataset.npz"]


def test_the_head_is_replaced_and_features_are_what_precedes_it():
    import torchvision

    net, mean, std = backbones.build("resnet18", None, 3, 32, 7)
    assert net.fc.out_features == 7 and mean is None
    feats = backbones.features(torchvision.models.resnet18())
    assert feats(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    gray = backbones.prepared(torchvision.models.resnet18(), 1, 64)
    assert gray(torch.zeros(2, 1, 8, 8)).shape == (2, 1000)


def test_an_input_size_the_network_cannot_take_is_one_line(run_copy):
    """torchvision's ViT takes 224 px only."""
    err = stage(
        "crossval",
        run_copy,
        "--cond",
        "n20_s0",
        "--fold",
        "0",
        "--folds",
        "3",
        "--gpu",
        "cpu",
        "--recipe",
        "sgd",
        "--arch",
        "vit_b_16",
        "--input-size",
        "32",
        ok=False,
    ).stderr.strip()
    assert len(err.splitlines()) == 1 and "--arch vit_b_16 cannot take 32 px images" in err, err


def test_coteach_learners_train_from_pretrained_weights(run_copy):
    """The learners take the same --arch/--weights/--input-size: train on the cleaned rows from a pretrained network."""
    run = RunDir(run_copy)
    stage(
        "backbone",
        run.root,
        "--cond",
        "n20_s0",
        "--recipe",
        "sgd",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--gpu",
        "cpu",
    )
    stage("combine", run.root, "--cond", "n20_s0")
    stage("masks", run.root, "--cond", "n20_s0")
    flags = [
        "--cond",
        "n20_s0",
        "--methods",
        "both",
        "--learners",
        "plain",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--epoch-decay-start",
        "1",
        "--gpu",
        "cpu",
        "--weights",
        str(run.backbone("n20_s0")),
        "--input-size",
        "16",
    ]
    stage("coteach", run.root, *flags)
    manifest = store.verify(run.coteach("n20_s0", "both", "plain", 0))
    assert manifest["config"]["weights_checksum"] == files.checksum(run.backbone("n20_s0"))
    assert (
        manifest["config"]["input_size"] == 16 and "weights" not in store.verify(run.mask("n20_s0", "both"))["config"]
    )
    assert "features" not in manifest["config"]  # an option at its default is not recorded: older results stay current
    err = stage(
        "coteach", run.root, *flags[:-4], "--arch", "resnet18", "--weights", str(run.backbone("n20_s0")), ok=False
    ).stderr
    assert "weights of --arch convnet, not resnet18" in err


def test_a_finetune_trains_the_head_alone_then_the_body_at_a_tenth_of_its_rate(run_copy):
    from pipeline import datasets, train
    from pipeline.recipes import RECIPES, Training

    run = RunDir(run_copy)
    stage(
        "backbone",
        run.root,
        "--cond",
        "n20_s0",
        "--recipe",
        "sgd",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--gpu",
        "cpu",
    )
    weights, ds = run.backbone("n20_s0"), datasets.cached(run.dataset)
    data = train.Split(ds.train_x[:256], ds.train_y[:256], ds.test_x[:64], ds.test_y[:64], ds.num_classes)
    start = backbones.load("convnet", weights).state_dict
    name, module = backbones._head(backbones.build("convnet", weights, 1, 8, 10)[0])
    head = {f"{name}.{p}" for p, _ in module.named_parameters()}

    def moved(epochs: int, **kw) -> set[str]:
        net = train.train_classifier(
            data,
            Training("finetune", "convnet", epochs, 64, 2e-3, 0.01, 0.1, tta=False, **kw),
            seed=0,
            ctx=TaskContext(torch.device("cpu")),
            weights=weights,
        ).net
        return {k for k, v in net.named_parameters() if not torch.equal(v.detach(), start[k])}

    assert RECIPES["finetune"].frozen_epochs == 1 and moved(1) == head  # the first epoch: the head alone
    assert moved(2, mixup=0.4) > head  # then the whole network (MixUp on)
    net, *_ = backbones.build("convnet", weights, 1, 8, 10)
    module = train.Classifier(
        net,
        Training("finetune", "convnet", 1, 64, 2e-3, 0.01, 0.1, tta=False),
        total_steps=10,
        head=backbones.head(net),
    )
    (opt,), _ = module.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    body = len(list(net.parameters())) - len(head)
    assert sorted((g["initial_lr"], len(g["params"])) for g in opt.param_groups) == [
        (2e-3 * 0.1, body),
        (2e-3, len(head)),
    ]


def test_a_finetune_needs_weights_and_records_its_mixup(run_copy):
    run = RunDir(run_copy)
    flags = [
        "--cond",
        "n20_s0",
        "--fold",
        "0",
        "--folds",
        "3",
        "--recipe",
        "finetune",
        "--arch",
        "convnet",
        "--gpu",
        "cpu",
    ]
    err = stage("crossval", run.root, *flags, ok=False).stderr.strip()
    assert err == "error: --recipe finetune: fine-tunes pretrained weights; give --weights", err
    stage(
        "backbone",
        run.root,
        "--cond",
        "n20_s0",
        "--recipe",
        "sgd",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--gpu",
        "cpu",
    )
    stage("crossval", run.root, *flags, "--weights", str(run.backbone("n20_s0")), "--epochs", "2", "--mixup", "0.4")
    config = store.verify(run.shard("n20_s0", 0))["config"]
    assert config["recipe"] == "finetune" and config["mixup"] == 0.4 and config["batch_size"] == 64
    assert "mixup" not in store.verify(run.shard("n20_s0", 1))["config"]  # made before MixUp existed: still current


def test_coteach_learners_as_logistic_heads_on_a_backbones_features(run_copy, resnet18_file):
    run = RunDir(run_copy)
    backbone = ["--arch", "resnet18", "--weights", str(resnet18_file), "--input-size", "32"]
    stage("crossval", run.root, *PROBE, *backbone)
    stage("combine", run.root, "--cond", "n20_s0")
    stage("masks", run.root, "--cond", "n20_s0")
    flags = [
        "--cond",
        "n20_s0",
        "--methods",
        "none,both",
        "--learners",
        "plain,coteaching",
        "--seeds",
        "0,1",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--epoch-decay-start",
        "1",
        "--lr",
        "0.01",
        "--gpu",
        "cpu",
    ]
    err = stage("coteach", run.root, *flags, "--features", ok=False).stderr.strip()
    assert err == "error: --features: give --weights (and --arch), the backbone whose features the heads learn from"
    out = stage("coteach", run.root, *flags, "--features", *backbone).stdout
    assert "features resnet18" not in out  # the probe's, made once
    feats = next((run.root / "features").glob("resnet18_32px_*.npz"))
    for rows in ("none", "both"):
        for seed in (0, 1):
            manifest = store.verify(run.coteach("n20_s0", rows, "plain", seed))
            assert manifest["config"]["features"] is True and manifest["inputs"]["features"][
                "checksum"
            ] == files.checksum(feats)
    a, b = (files.load(run.coteach("n20_s0", "none", "plain", s)) for s in (0, 1))
    assert (
        a["final_acc"] > 0.5 and a["test_acc"] != b["test_acc"]
    )  # random features still separate digits; seeds differ
    assert len(files.load(run.coteach("n20_s0", "both", "coteaching", 0))["test_acc"][0]) == 2  # two heads
    stage("report", run.root, "--cond", "n20_s0")
    cleaning = (run.report_dir / "cleaning.csv").read_text()
    assert (
        "is stale" not in (run.report_dir / "table.md").read_text() and "C+NR" in cleaning
    )  # reported, paired by seed
