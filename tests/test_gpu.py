"""The GPU path (bf16 autocast, channels_last, device-resident batches) end to end on digits; skips without CUDA."""

import numpy as np
import pytest
import torch
from conftest import stage

from pipeline import files, store
from pipeline.layout import RunDir

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
GPU = "0"


def test_crossval_and_coteach_on_gpu(tmp_path):
    run = RunDir(tmp_path / "run")
    stage("data", run.root, "--source", "digits")
    stage("noise", run.root, "--conditions", "0.2:0.0")
    stage(
        "crossval",
        run.root,
        "--fold",
        "all",
        "--folds",
        "3",
        "--epochs",
        "8",
        "--batch-size",
        "64",
        "--lr",
        "0.1",
        "--gpu",
        GPU,
    )
    stage("combine", run.root)
    stage("masks", run.root)
    stage(
        "coteach",
        run.root,
        "--epochs",
        "10",
        "--batch-size",
        "64",
        "--epoch-decay-start",
        "5",
        "--num-gradual",
        "3",
        "--gpu",
        GPU,
        "--methods",
        "prune_by_noise_rate,none",
        "--learners",
        "coteaching,mixup",
    )

    cond = "n20_s0"
    assert store.verify(run.shard(cond, 0))["device"] == torch.cuda.get_device_name(0)
    psx, noisy = files.load(run.psx(cond)), files.load(run.labels(cond))
    assert psx.dtype == np.float32 and np.allclose(psx.sum(1), 1, atol=1e-5)
    assert (psx.argmax(1) == noisy).mean() > 0.4  # learned something in bf16 (chance: 0.1)
    for rows, learner in (("prune_by_noise_rate", "coteaching"), ("none", "mixup")):
        metrics = files.load(run.coteach(cond, rows, learner, 0))
        assert store.verify(run.coteach(cond, rows, learner, 0))["device"] == torch.cuda.get_device_name(0)
        assert metrics["final_acc"] > 0.5
