"""Dataset sources: ImageFolder order equals torchvision's, a tarball equals its folder, CIFAR batches, errors."""

import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from pipeline import datasets
from pipeline.errors import PipelineError
from pipeline.sources import base


def make_imagefolder(root, names_per_class, size=8):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls, names in names_per_class.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for name in names:
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / cls / name)
    return root


def test_imagefolder_order_matches_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    names = {"cat": ["10_cat.png", "9_cat.png", "100_cat.png"], "airplane": ["2_airplane.png", "11_airplane.png"]}
    root = make_imagefolder(tmp_path / "folder", names)
    ds = datasets.read_source(str(root))
    reference = ImageFolder(root / "train")
    assert list(ds.classes) == reference.classes
    assert [f"{reference.classes[c]}/{p.rsplit('/', 1)[1][:-4]}" for p, c in reference.samples] == list(ds.train_ids)
    assert list(ds.train_y) == [c for _, c in reference.samples]
    for i, (path, _) in enumerate(reference.samples):
        assert np.array_equal(ds.train_x[i], np.asarray(Image.open(path).convert("RGB")))
    assert list(ds.train_source_index) == [11, 2, 100, 10, 9]  # "100_" < "10_": "0" sorts before "_"

    with tarfile.open(tmp_path / "folder.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="wrapped")
    from_tar = datasets.read_source(str(tmp_path / "folder.tar.gz"))
    for key, value in ds.arrays().items():
        assert np.array_equal(value, getattr(from_tar, key)), key


def test_cifar_batches_are_put_in_imagefolder_order(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    pickle.dump({"label_names": classes}, open(folder / "batches.meta", "wb"))
    labels = rng.integers(0, 10, 60)
    data = rng.integers(0, 256, (60, 3072), dtype=np.uint8)
    for b in range(5):
        pickle.dump(
            {"data": data[b * 10 : (b + 1) * 10], "labels": list(labels[b * 10 : (b + 1) * 10])},
            open(folder / f"data_batch_{b + 1}", "wb"),
        )
    pickle.dump({"data": data[50:], "labels": list(labels[50:])}, open(folder / "test_batch", "wb"))
    ds = datasets.read_source(str(tmp_path))
    expected = sorted(range(50), key=lambda i: (labels[i], f"{i}_{classes[labels[i]]}"))
    assert list(ds.train_source_index) == expected
    assert list(ds.train_ids) == [f"{classes[labels[i]]}/{i}_{classes[labels[i]]}" for i in expected]
    assert np.array_equal(ds.train_x[0], data[expected[0]].reshape(3, 32, 32).transpose(1, 2, 0))

    bad = (
        {"data": data[:10, :3000], "labels": list(labels[:10])},
        {"data": data[:10], "labels": [10] * 10},
        {"data": data[:10], "labels": [-1] * 10},
        {"data": data[:10]},
        ["not", "a", "dict"],
    )
    for value in bad:
        pickle.dump(value, open(folder / "data_batch_3", "wb"))
        with pytest.raises(PipelineError, match=f"^{folder / 'data_batch_3'}: not a CIFAR-10 batch"):
            datasets.read_source(str(tmp_path))
    pickle.dump(["label_names"], open(folder / "batches.meta", "wb"))
    with pytest.raises(PipelineError, match="batches.meta: no list of label_names"):
        datasets.read_source(str(tmp_path))


def test_missing_data_says_what_to_pass(tmp_path):
    with pytest.raises(PipelineError, match="Nothing is downloaded"):
        datasets.read_source(str(tmp_path / "nope"))


def test_unreadable_image_is_named(tmp_path):
    root = make_imagefolder(tmp_path / "folder", {"a": ["1_a.png"], "b": ["2_b.png"]})
    (root / "train" / "b" / "3_b.png").write_bytes(b"not an image")
    with pytest.raises(PipelineError, match="3_b.png: unreadable image"):
        datasets.read_source(str(root))


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    root = make_imagefolder(tmp_path / "folder", {"a": ["1_a.png"], "b": ["2_b.png"]})
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(deep).save(root / "train" / "a" / "1_a.png")
    ds = datasets.read_source(str(root))
    expected = ((deep.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    assert ds.train_x[0].shape == (8, 8, 3) and all(np.array_equal(ds.train_x[0][..., c], expected) for c in range(3))
    Image.fromarray(np.ones((8, 8), np.float32)).save(root / "train" / "a" / "1_a.tif")
    with pytest.raises(PipelineError, match=r"1_a\.tif: floating-point pixels"):
        datasets.read_source(str(root))


def test_empty_class_folder_is_refused(tmp_path):
    root = make_imagefolder(tmp_path / "folder", {"a": ["1_a.png"], "b": ["2_b.png"]})
    (root / "train" / "c").mkdir()
    (root / "train" / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(PipelineError, match=r"train/c: class folder holds no images"):
        datasets.read_source(str(root))
    with tarfile.open(tmp_path / "f.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="f")
    with pytest.raises(PipelineError, match=r"train/c: class folder holds no images"):
        datasets.read_source(str(tmp_path / "f.tar.gz"))


@pytest.mark.parametrize(
    "link,target,message",
    [
        ("train/a/loop", "..", "a symlink loop"),
        ("train/a/out.png", "OUTSIDE", "a symlink out of the dataset folder"),
        ("train/a/broken.png", "nothing-here.png", "a broken symlink"),
    ],
)
def test_symlinks_stay_inside_the_tree(tmp_path, link, target, message):
    root = make_imagefolder(tmp_path / "folder", {"a": ["1_a.png"], "b": ["2_b.png"]})
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside)
    os.symlink(str(outside) if target == "OUTSIDE" else target, root / link)
    with pytest.raises(PipelineError, match=message):
        datasets.read_source(str(root))


def test_symlinks_inside_the_tree_are_followed(tmp_path):
    root = make_imagefolder(tmp_path / "folder", {"a": ["1_a.png"], "b": ["2_b.png"]})
    os.symlink("../b", root / "train" / "a" / "sub")  # a folder link, not a loop
    ds = datasets.read_source(str(root))
    assert list(ds.train_ids) == ["a/1_a", "a/sub/2_b", "b/2_b"]
    assert np.array_equal(ds.train_x[1], ds.train_x[2])


def test_decoding_logs_a_line_per_chunk(tmp_path, monkeypatch, capsys):
    root = make_imagefolder(tmp_path / "folder", {"a": [f"{i}_a.png" for i in range(3)], "b": ["3_b.png", "4_b.png"]})
    monkeypatch.setattr(base, "LOG_EVERY", 2)
    monkeypatch.setattr(base, "CHUNK", 1)  # progress is counted as chunks finish
    datasets.read_source(str(root))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("decode train")]
    assert [ln.split(" (")[0] for ln in lines] == [
        "decode train: 2/5 images",
        "decode train: 4/5 images",
        "decode train: 5/5 images",
    ]
