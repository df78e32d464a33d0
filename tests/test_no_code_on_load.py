"""No input file can run code: every reader of outside files is given a file whose unpickling would create
a marker file; the marker never appears and the error is one line naming the file."""

import pickle

import numpy as np
import pytest
import torch
from conftest import FAST_CROSSVAL, stage

from pipeline import datasets, files, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir


class Planted:
    """Unpickling this calls ``open(marker, 'w')``: code run by merely reading the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code-ran"
    yield path
    assert not path.exists(), "reading a file ran its code"


def one_line(e: Exception, path) -> str:
    text = str(e)
    assert "\n" not in text and str(path) in text, text
    return text


def _cifar_folder(folder, n=4):
    folder.mkdir()
    rng = np.random.default_rng(0)
    pickle.dump({"label_names": ["a", "b"]}, open(folder / "batches.meta", "wb"))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pickle.dump(
            {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [0, 1] * (n // 2)},
            open(folder / name, "wb"),
            protocol=2,
        )
    return folder


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("where", ["batches.meta", "data_batch_3", "test_batch"])
@pytest.mark.parametrize("how", ["as the batch", "inside its dict", "an object array"])
def test_a_planted_cifar10_batch_is_refused_without_running(tmp_path, marker, protocol, where, how):
    folder = _cifar_folder(tmp_path / "cifar-10-batches-py")
    assert len(datasets.read_source(str(folder)).train_y) == 20  # the real format loads (both numpy module names)
    value = {
        "as the batch": Planted(marker),
        "inside its dict": {"data": Planted(marker), "labels": [0]},
        "an object array": {"data": np.array([1, "x"], dtype=object), "labels": [0]},
    }[how]
    pickle.dump(value, open(folder / where, "wb"), protocol=protocol)
    with pytest.raises(PipelineError) as e:
        datasets.read_source(str(folder))
    assert "cannot read CIFAR-10 batch" in one_line(e.value, folder / where)


def test_a_planted_checkpoint_beside_an_artifact_is_discarded_without_running(run_copy, marker):
    run = RunDir(run_copy)
    shard = run.shard("n20_s0", 0)
    shard.unlink()
    torch.save({"tag": None, "epoch": 1, "planted": Planted(marker)}, store.ckpt_path(shard))
    err = stage("crossval", run.root, "--cond", "n20_s0", "--fold", "0", *FAST_CROSSVAL).stderr
    assert f"discarding unreadable checkpoint {store.ckpt_path(shard)}" in err and "training starts at epoch 0" in err
    assert store.verify(shard) and not store.ckpt_path(shard).exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_numpy_files_are_refused_without_running(tmp_path, marker, suffix):
    path = tmp_path / f"planted{suffix}"
    array = np.array([Planted(marker)], dtype=object)
    with open(path, "wb") as f:
        if suffix == ".npy":
            np.save(f, array, allow_pickle=True)
        else:
            np.savez(f, arr=array)
    with pytest.raises(PipelineError) as e:
        files.load(path)
    one_line(e.value, path)


def test_a_planted_cifar10n_file_is_refused_without_running(blank_cifar, tmp_path, marker):
    from pipeline.kinds import cifar10n

    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": Planted(marker)}, path)
    with pytest.raises(PipelineError) as e:
        cifar10n.read(path, "aggre_label", datasets.cached(RunDir(blank_cifar).dataset))
    assert "not a CIFAR-10N label file" in one_line(e.value, path)


def test_a_planted_slurm_result_is_a_failure_without_running(tmp_path, marker):
    import cloudpickle

    from slurm.submit import read_result

    path = tmp_path / "0_result.pkl"
    path.write_bytes(cloudpickle.dumps(("success", Planted(marker))))
    ok, text = read_result(path)
    assert not ok and text.startswith(f"unreadable result file {path}") and "\n" not in text
    path.write_bytes(cloudpickle.dumps(("success", "runs/main/conditions/n20_s0/folds/fold0.npz")))
    assert read_result(path) == (True, "runs/main/conditions/n20_s0/folds/fold0.npz")
    path.write_bytes(cloudpickle.dumps(("error", "Traceback (most recent call last):\n  ...\nPipelineError: boom\n")))
    assert read_result(path) == (False, "PipelineError: boom")


@pytest.mark.parametrize(
    "suffix,content,named",
    [
        (".npy", "npz", "an .npz file, not the .npy file"),
        (".npz", "npy", "an .npy file, not the .npz file"),
        (".npy", "csv", "a text file, not the .npy file"),
        (".npz", "junk", "not a NumPy file, not the .npz file"),
        (".npy", "empty", "not a NumPy file"),
    ],
)
def test_a_wrong_file_format_is_named(tmp_path, suffix, content, named):
    path = tmp_path / f"x{suffix}"
    with open(path, "wb") as f:
        if content == "npz":
            np.savez(f, a=np.arange(3))
        elif content == "npy":
            np.save(f, np.arange(3))
        elif content == "csv":
            f.write(b"path,label\na.png,0\n")
        elif content == "junk":
            f.write(bytes(range(200, 256)))
    with pytest.raises(PipelineError) as e:
        files.load(path)
    assert named in one_line(e.value, path)
