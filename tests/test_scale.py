"""Beyond memory: the masks over blocks of classes, psx read in chunks, the memory-mapped cache, and
streamed batches, each checked against the whole-array computation it replaces."""

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_CROSSVAL, stage

from pipeline import files, folds, loader, masks, recipes, store
from pipeline.devices import TaskContext
from pipeline.rows import Rows


def _psx(n, k, seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    noisy = np.where(rng.random(n) < 0.3, rng.integers(0, k, n), true)
    z = rng.standard_normal((n, k)).astype(np.float32) * 2
    z[np.arange(n), true] += 3
    p = np.exp(z)
    return noisy, p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("n,k,block_rows", [(3000, 50, 300), (2000, 7, 1), (4000, 120, 40_000)])
def test_the_masks_over_blocks_of_classes_are_cleanlabs_on_all_rows(n, k, block_rows):
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues

    noisy, psx = _psx(n, k, n + k)
    finder = masks.Finder(noisy, psx, block_floats=block_rows * k)
    assert (len(finder.blocks) > 1) == (block_rows < n)
    assert np.array_equal(np.sort(np.concatenate(finder.blocks)), np.arange(n))  # every row once
    for rows in finder.blocks:  # whole classes, at least two
        assert (
            len(np.unique(noisy[rows])) >= 2 and not np.isin(noisy[rows], noisy[np.setdiff1d(np.arange(n), rows)]).any()
        )
    for method in masks.CL_METHODS.values():
        if method == "confident_joint":
            flagged = np.zeros(n, bool)
            flagged[compute_confident_joint(noisy, psx, return_indices_of_off_diagonals=True)[1]] = True
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flagged = find_label_issues(noisy, psx, filter_by=method, n_jobs=1)
        assert flagged.any() and np.array_equal(finder.mask(method), ~flagged), method


def test_a_psx_read_in_chunks_is_checked_and_normalised_as_a_whole(tmp_path, monkeypatch):
    _, psx = _psx(1000, 5, 0)
    psx = (psx * 1.0004).astype(np.float32)  # off by a little: renormalised
    path = tmp_path / "psx.npy"
    files.save(path, psx)
    monkeypatch.setattr(folds, "CHUNK_ENTRIES", 77 * 5)  # chunks of 77 rows
    assert np.array_equal(folds.read_probs(path, 5, "psx"), folds.check_probs(psx, 5, "psx"))
    psx[613, 2] = np.nan
    files.save(path, psx)
    with pytest.raises(Exception, match="psx: row 613 contains NaN"):
        folds.read_probs(path, 5, "psx")
    with pytest.raises(Exception, match=r"expected probabilities of shape \(n, 4\)"):
        folds.read_probs(path, 4, "psx")


def test_channel_stats_are_exact_whatever_the_chunks(monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (333, 5, 3, 2), dtype=np.uint8)
    x = images.reshape(-1, 2).astype(np.int64)
    n = len(x)
    mean = [Fraction(int(s), n * 255) for s in x.sum(0)]
    var = [Fraction(int(q), n * 255 * 255) - m * m for q, m in zip((x * x).sum(0), mean)]
    results = []
    for rows in (1, 7, 4096):
        monkeypatch.setattr(loader, "STATS_ROWS", rows)
        results.append(loader.channel_stats(images))
        results.append(loader.channel_stats(Rows(np.concatenate([images, images[:9]]), np.arange(333))))
    for m, s in results:
        assert m.tolist() == [float(v) for v in mean] and np.allclose(
            s, [float(v) ** 0.5 for v in var], rtol=1e-15, atol=0
        )
        assert m.tobytes() == results[0][0].tobytes() and s.tobytes() == results[0][1].tobytes()


def test_the_cache_is_mapped_not_read(tmp_path):
    arrays = {
        "train_x": np.random.default_rng(2).integers(0, 256, (3000, 20, 20, 3), dtype=np.uint8),
        "train_y": np.arange(3000),
        "classes": np.array(["a", "b"]),
    }
    path = tmp_path / "cache.npz"
    files.save(path, arrays)
    loaded = files.load(path, mapped=True)
    assert isinstance(loaded["train_x"], np.memmap) and not isinstance(loaded["train_y"], np.memmap)
    for key, value in arrays.items():
        assert np.array_equal(loaded[key], value), key
    rows = Rows(loaded["train_x"], [5, 2999, 0, 5])
    assert np.array_equal(rows[1:3], arrays["train_x"][[2999, 0]]) and np.array_equal(
        np.asarray(rows), arrays["train_x"][[5, 2999, 0, 5]]
    )


def test_streamed_batches_are_the_batches_on_the_device():
    import torch

    images = np.random.default_rng(3).integers(0, 256, (500, 8, 8, 3), dtype=np.uint8)
    kw = dict(
        batch_size=32,
        mean=np.full(3, 0.5),
        std=np.full(3, 0.25),
        seed=4,
        rows=np.arange(0, 1000, 2),
        n_all=1000,
    )
    made = {}
    for budget in (None, 0.0):
        ctx = TaskContext(torch.device("cpu"), memory_gib=budget)
        train = loader.Batches(
            Rows(images, np.arange(500)), np.arange(500), train=True, alternate_flips=True, ctx=ctx, **kw
        )
        assert train.streamed == (budget == 0.0)
        train.keep(np.arange(500) % 3 > 0)
        made[budget] = [torch.cat([x.flatten(), y.float()]) for epoch in range(2) for x, y in train]
        made[budget] += [torch.cat([x.flatten(), y.float()]) for x, y in train.in_order()] + [
            train.sample(10).flatten()
        ]
    assert len(made[None]) == 2 * 15 + 16 + 1
    assert all(torch.equal(a, b) for a, b in zip(made[None], made[0.0]))


def test_a_fold_streamed_from_the_cache_writes_the_same_shard(folds_run, tmp_path):
    run = tmp_path / "run"
    stage("data", run, "--source", "digits")
    stage("noise", run, "--conditions", "0.2:0.0")
    out = stage("crossval", run, "--fold", "1", "--cond", "n20_s0", "--device-memory", "0", *FAST_CROSSVAL).stdout
    assert "streaming 898 rows" in out
    ours, theirs = (np.load(Path(r) / "conditions/n20_s0/folds/fold1.npz") for r in (run, folds_run))
    assert np.array_equal(ours["indices"], theirs["indices"]) and np.array_equal(ours["probs"], theirs["probs"])


def test_a_decode_stopped_part_way_resumes_where_it_stopped(tmp_path, monkeypatch):
    from PIL import Image

    from pipeline import datasets
    from pipeline.sources import base

    root = tmp_path / "photos"
    rng = np.random.default_rng(5)
    for i in range(40):
        (root / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / f"c{i % 4}" / f"{i}.png")
    monkeypatch.setattr(base, "CHUNK", 8)
    decoded, real = [], base.Decoder.image

    def image(self, data, name):
        if name.endswith("_kill.png"):
            raise RuntimeError("killed")
        decoded.append(name)
        return real(self, data, name)

    monkeypatch.setattr(base.Decoder, "image", image)
    whole = datasets.read_source(str(root), test_fraction=0.25)
    (root / "c1" / "33.png").rename(
        root / "c1" / "33_kill.png"
    )  # row 16 in listing order: the decode dies at the 3rd chunk
    staging = tmp_path / "staging"
    with pytest.raises(RuntimeError, match="killed"):
        datasets.read_source(str(root), test_fraction=0.25, staging=staging)
    (root / "c1" / "33_kill.png").rename(root / "c1" / "33.png")
    decoded.clear()
    resumed = datasets.read_source(str(root), test_fraction=0.25, staging=staging)
    assert len(decoded) == 40 - 16 + 1  # chunks 1 and 2 were kept; the first image is decoded again for its size
    forked = datasets.read_source(str(root), test_fraction=0.25, staging=tmp_path / "other", workers=3)
    for key, value in whole.arrays().items():
        assert np.array_equal(np.asarray(getattr(resumed, key)), value), key
        assert np.array_equal(np.asarray(getattr(forked, key)), value), key


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def test_a_fold_on_two_cpu_ranks_resumes_mid_training(run_copy):
    """--devices-per-task 2 on the CPU: two DDP processes (gloo), each half of every batch; stopped after a
    checkpoint, the rerun resumes on both ranks from it."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    from pipeline.layout import RunDir

    run = RunDir(run_copy)
    shard = run.shard("n20_s0", 0)
    ckpt = Path(f"{shard}.ckpt")
    shard.unlink()
    flags = [
        "--fold",
        "0",
        "--cond",
        "n20_s0",
        "--folds",
        "3",
        "--epochs",
        "12",
        "--batch-size",
        "64",
        "--gpu",
        "cpu",
        "--devices-per-task",
        "2",
    ]

    def crossval() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "stages.crossval", "--run-dir", str(run.root), *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    proc = crossval()
    deadline = time.time() + 180
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and ckpt.exists() and not shard.exists(), err
    assert len(re.findall(r"epoch 1/12 ", out)) == 1  # one line an epoch: rank 0's
    assert "find_unused_parameters" not in out + err  # a static graph: nothing a user cannot act on
    # rank 1 killed mid-training: rank 0 says so in one line (not gloo's traceback), the checkpoint kept
    proc = crossval()
    last, rank1 = ckpt.stat().st_mtime_ns, None
    while time.time() < deadline + 180 and (rank1 is None or ckpt.stat().st_mtime_ns == last):
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        ranks = [p for p in children if "spawn_main" in _cmdline(p)]
        rank1 = int(ranks[0]) if ranks else None
        time.sleep(0.05)
    os.kill(rank1, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and ckpt.exists() and not shard.exists(), err
    assert err.strip() == (
        "error: rank 1 died (signal 9) of the 2-device training; the last epoch's checkpoint is kept: rerun to resume"
    )
    again = stage("crossval", run.root, *flags)
    resumed = re.search(r"resuming \S+ from epoch (\d+)", again.stdout)
    assert resumed and f": epoch {int(resumed[1]) + 1}/12 " in again.stdout and ": epoch 1/12 " not in again.stdout
    info = store.verify(shard)["info"]
    assert info["devices"] == 2 and info["heldout_acc_noisy"] > 0.5 and not ckpt.exists()
    with pytest.raises(Exception, match="--batch-size 63 does not split evenly over 2 devices"):
        stage(
            "crossval",
            run.root,
            *flags[:-6],
            "--batch-size",
            "63",
            "--gpu",
            "cpu",
            "--devices-per-task",
            "2",
            "--force",
        )


def test_a_slurm_element_with_several_gpus_trains_its_fold_on_all_of_them(run_copy):
    """A crossval task list for --gpus-per-task 2 gives each element the group "0,1"; an element run with the group
    "cpu,cpu" (no GPU here) trains its fold as two DDP ranks and writes the shard once."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    from pipeline.layout import RunDir
    from stages import tasklist

    run = RunDir(run_copy)
    run.shard("n20_s0", 1).unlink()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slurm.submit",
            "crossval",
            "--run-dir",
            str(run.root),
            "--cond",
            "n20_s0",
            "--fold",
            "1",
            *FAST_CROSSVAL[:-2],
            "--gpus-per-task",
            "2",
            "--tasks-only",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(next((run.root / "slurm").glob("*-tasks.json")).read_text())
    assert listing["gpu"] == "0,1" and "--gpus-per-task=2" in proc.stdout
    line = tasklist.execute(tasklist.entry({**listing, "gpu": "cpu,cpu"}, 0))
    assert line == f"wrote {run.shard('n20_s0', 1)}" and store.verify(run.shard("n20_s0", 1))["info"]["devices"] == 2


def test_the_whitening_init_in_one_copy_gives_the_numbers_of_three():
    import torch

    from pipeline import models

    images = torch.randn(40, 3, 12, 12)
    c = images.shape[1]
    patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # the computation before: three full-size copies
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
    patches = patches - patches.mean(0)
    values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (vectors / torch.sqrt(values + recipes.AIRBENCH_NET.whitening_eps)).T.reshape(c * 4, c, 2, 2)
    net = models.build("airbench", 3, 12, 10)
    models.init_whitening(net, images)
    assert torch.equal(models.whitening_layer(net).weight, torch.cat([filters, -filters]).to(torch.float32))
