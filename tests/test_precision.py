"""The GPU code paths on the CPU: bf16-mixed precision and torch.compile for every training stage.

CUDA picks bf16-mixed by default (``--precision auto``); the same Lightning plugin and autocast run
here on the CPU, so every numeric path a GPU takes is exercised without one."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_CROSSVAL, stage

from pipeline import callbacks, compiler, datasets, files, folds, store, train
from pipeline.devices import TaskContext
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME
from pipeline.learners.training import images, train_learner
from pipeline.recipes import Training
from stages import coteach

CPU = TaskContext(torch.device("cpu"))
COND = "n20_s0"


@pytest.fixture
def spies(monkeypatch):
    """dtypes of what reaches cleanlab (its Co-Teaching loss, find_label_issues) and of the networks' outputs."""
    import cleanlab.experimental.coteaching as ct
    import cleanlab.filter as cf

    seen = {"coteaching": set(), "find_label_issues": set(), "net": set()}
    loss, find = ct.loss_coteaching, cf.find_label_issues

    def spy_loss(y_1, y_2, t, **kw):
        seen["coteaching"] |= {y_1.dtype, y_2.dtype}
        return loss(y_1, y_2, t, **kw)

    def spy_find(labels, pred_probs, **kw):
        seen["find_label_issues"].add(pred_probs.dtype)
        return find(labels, pred_probs, **kw)

    monkeypatch.setattr(ct, "loss_coteaching", spy_loss)
    monkeypatch.setattr(cf, "find_label_issues", spy_find)
    build = train.Split.build

    def hooked(self, arch, weights=None):
        built = build(self, arch, weights)
        built[0].register_forward_hook(lambda m, i, out: seen["net"].add(out.dtype) if m.training else None)
        return built

    monkeypatch.setattr(train.Split, "build", hooked)
    return seen


def crossval(run: RunDir, *flags: str) -> None:
    stage("crossval", run.root, "--cond", COND, "--fold", "all", *FAST_CROSSVAL, *flags)


def test_bf16_crossval_shards_are_float32_probabilities_and_cleanlab_sees_float32(run_copy, spies):
    run = RunDir(run_copy)
    crossval(run, "--precision", "bf16-mixed", "--prune-epoch", "1")
    assert spies["net"] == {torch.bfloat16}  # the network ran under bf16 autocast
    assert spies["find_label_issues"] == {np.dtype(np.float32)}  # the pruning's cleanlab call
    for path in run.shards(COND).values():
        manifest, shard = store.verify(path), store.read(path)
        assert manifest["config"]["precision"] == manifest["info"]["precision"] == "bf16-mixed"
        assert shard["probs"].dtype == np.float32 and np.isfinite(shard["probs"]).all()
        assert np.allclose(shard["probs"].sum(1), 1, atol=1e-5)
    assert folds.combine(run, COND) == store.Outcome.MADE
    assert store.verify(run.psx(COND))["config"]["crossval"]["precision"] == "bf16-mixed"


def test_combine_refuses_folds_that_ran_at_different_precisions(run_copy, monkeypatch):
    """``auto`` is bf16 on a GPU and fp32 on the CPU: folds made on both do not make one psx."""
    run = RunDir(run_copy)
    crossval(run, "--precision", "auto")
    assert folds.combine(run, COND, force=True) == store.Outcome.MADE
    gpu_like = train.effective_precision  # fold 0 again, as a GPU would run it (auto -> bf16-mixed)
    monkeypatch.setattr(train, "effective_precision", lambda p, d: "bf16-mixed" if p == "auto" else gpu_like(p, d))
    crossval(run, "--precision", "auto", "--fold", "0", "--force")
    assert store.verify(run.shard(COND, 0))["info"]["precision"] == "bf16-mixed"
    with pytest.raises(PipelineError, match="fold shards disagree.*precision"):
        folds.combine(run, COND)


def _digits(run_dir, n=256):
    ds = datasets.cached(RunDir(run_dir).dataset)
    return train.Split(ds.train_x[:n], ds.train_y[:n], ds.test_x, ds.test_y, ds.num_classes)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_learner_trains_an_epoch_in_bf16(folds_run, spies, name):
    options = coteach.CoteachConfig().own(name)
    if name == "coteaching":
        options.update(forget_rate=0.2, num_gradual=1)
    inputs = images(_digits(folds_run), arch="convnet", batch_size=64, seed=0, ctx=CPU)
    history = train_learner(
        BY_NAME[name],
        inputs,
        epochs=1,
        lr=0.001,
        epoch_decay_start=1,
        seed=0,
        ctx=CPU,
        precision="bf16-mixed",
        **options,
    )
    assert len(history) == 1 and all(0 <= a <= 1 for a in history[0]) and len(history[0]) == BY_NAME[name].nets
    assert spies["net"] == {torch.bfloat16}
    assert spies["coteaching"] == ({torch.float32} if name == "coteaching" else set())


def _stop_after_epoch(monkeypatch, epoch: int):
    """The next fit raises once epoch ``epoch`` is checkpointed, as a killed job would stop."""
    end = callbacks.EpochCheckpoint.on_train_epoch_end

    def stopping(self, trainer, module):
        end(self, trainer, module)
        if trainer.current_epoch + 1 == epoch:
            monkeypatch.setattr(callbacks.EpochCheckpoint, "on_train_epoch_end", end)
            raise RuntimeError("stopped")

    monkeypatch.setattr(callbacks.EpochCheckpoint, "on_train_epoch_end", stopping)


def test_a_bf16_fit_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does(
    folds_run, tmp_path, monkeypatch, capsys
):
    data = _digits(folds_run, 300)
    kw = dict(
        training=Training("airbench", "airbench", 3, 64, 0.2, 0.002, 0.2, tta=True, precision="bf16-mixed"),
        seed=0,
        ctx=CPU,
        prune_epoch=1,
        tag={"t": 1},
    )
    whole = train.train_classifier(data, **kw).probs
    _stop_after_epoch(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="stopped"):
        train.train_classifier(data, **kw, ckpt=tmp_path / "fold.ckpt")
    resumed = train.train_classifier(data, **kw, ckpt=tmp_path / "fold.ckpt").probs
    assert "from epoch 2" in capsys.readouterr().out
    assert resumed.dtype == np.float32 and np.array_equal(resumed, whole)

    history = dict(
        epochs=2,
        lr=0.001,
        epoch_decay_start=1,
        seed=0,
        ctx=CPU,
        precision="bf16-mixed",
        forget_rate=0.2,
        num_gradual=1,
        tag={"t": 2},
    )

    def inputs():
        return images(data, arch="convnet", batch_size=64, seed=0, ctx=CPU)

    whole = train_learner(BY_NAME["coteaching"], inputs(), **history)
    _stop_after_epoch(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="stopped"):
        train_learner(BY_NAME["coteaching"], inputs(), **history, ckpt=tmp_path / "coteach.ckpt")
    assert train_learner(BY_NAME["coteaching"], inputs(), **history, ckpt=tmp_path / "coteach.ckpt") == whole
    assert "from epoch 1" in capsys.readouterr().out


def test_compiled_crossval_writes_the_shards_and_compiles_each_network(run_copy, monkeypatch):
    run = RunDir(run_copy)
    compiled = []
    module_compile = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module,
        "compile",
        lambda self, *a, **k: (compiled.append(type(self).__name__), module_compile(self, *a, **k))[1],
    )
    crossval(run, "--compile", "--fold", "0")
    shard = store.read(run.shard(COND, 0))
    assert compiled == ["Sequential"] and store.verify(run.shard(COND, 0))["config"]["compile"] is True
    assert np.isfinite(shard["probs"]).all() and np.allclose(shard["probs"].sum(1), 1, atol=1e-5)


def test_precision_and_compile_are_checked_at_the_boundary():
    with pytest.raises(PipelineError, match="--precision 'fp16': choose from auto, bf16-mixed, 32-true"):
        coteach.CoteachConfig(precision="fp16")
    with pytest.raises(PipelineError, match="--compile 'yes': expected true or false"):
        coteach.CoteachConfig(compile="yes")
    assert train.effective_precision("auto", CPU.device) == "32-true"
    assert train.effective_precision("auto", torch.device("cuda", 0)) == "bf16-mixed"
    assert train.effective_precision("32-true", torch.device("cuda", 0)) == "32-true"


def test_an_eager_checkpoint_rerun_compiled_restarts_in_one_line_and_a_broken_compiler_cache_is_rebuilt(
    run_copy, monkeypatch, tmp_path
):
    """--compile is part of the config: an eager fold's checkpoint is discarded, saying why. A compile killed
    mid-way leaves empty or cut libraries in inductor's cache; the next process's compile removes and rebuilds
    them instead of failing to load them."""
    import subprocess
    import sys

    from conftest import ROOT

    from stages import crossval as crossval_stage

    run, cache = RunDir(run_copy), tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    shard = run.shard(COND, 0)
    for f in (shard, store.manifest_path(shard)):
        f.unlink()
    config = crossval_stage.CrossvalConfig(folds=3, epochs=2, batch_size=128)  # FAST_CROSSVAL
    _, inputs, task_config = crossval_stage.STAGE.target(run, (COND, 0), config)
    tag = {"config": task_config, "inputs": {k: files.checksum(p) for k, p in inputs.items()}}
    crossval_stage.STAGE.make(run, (COND, 0), config, CPU, store.ckpt_path(shard), tag)  # stopped after its last epoch
    ran = stage("crossval", run.root, "--cond", COND, "--fold", "0", *FAST_CROSSVAL, "--compile")
    assert (
        f"warning: discarding checkpoint {store.ckpt_path(shard)}: made with other options (compile False -> True); "
        "training starts at epoch 0"
    ) in ran.stderr.splitlines(), ran.stderr
    assert store.verify(shard)["config"]["compile"] is True and not store.ckpt_path(shard).exists()

    libraries = sorted(cache.rglob("*.so"))
    assert libraries and all(compiler.intact(lib) for lib in libraries)
    for i, lib in enumerate(
        libraries
    ):  # what a kill mid-way leaves: empty, or cut short (new files: this process maps the old)
        lib.with_suffix(".tmp").write_bytes(b"" if i % 2 else lib.read_bytes()[: lib.stat().st_size // 2])
        lib.with_suffix(".tmp").replace(lib)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.crossval",
            "--run-dir",
            str(run.root),
            "--cond",
            COND,
            "--fold",
            "0",
            *FAST_CROSSVAL,
            "--compile",
            "--force",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"note: removed {len(libraries)} broken librar" in proc.stdout, proc.stdout
    assert f"(a compile killed mid-way) from torch's compiler cache {cache}; they are compiled again" in proc.stdout
    assert all(compiler.intact(lib) for lib in cache.rglob("*.so"))


def test_the_compiler_cache_repair_leaves_a_library_being_compiled_alone(tmp_path):
    """A broken library whose compile lock another process holds is being built now: it stays."""
    import subprocess
    import sys

    whole = min(Path(np.__file__).parent.rglob("*.so"), key=lambda p: p.stat().st_size)
    (tmp_path / "ab").mkdir()
    ok, empty, cut, busy = (tmp_path / "ab" / f"c{name}.so" for name in ("ok", "empty", "cut", "busy"))
    ok.write_bytes(whole.read_bytes())
    empty.write_bytes(b"")
    cut.write_bytes(whole.read_bytes()[:-100])
    busy.write_bytes(b"\x7fELF")
    (tmp_path / "locks").mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            f"lock = FileLock({str(tmp_path / 'locks' / 'cbusy.lock')!r}); lock.acquire(); print('held', flush=True); "
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert compiler.repair(tmp_path) == [cut, empty]
    finally:
        holder.kill()
        holder.wait()
    assert ok.exists() and busy.exists() and compiler.repair(tmp_path) == [busy]
