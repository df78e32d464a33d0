"""Each bad input: a one-line error naming the file and the problem, exit status 2, nothing already written touched."""

import gzip
import json
import shutil

import numpy as np
import pytest
from conftest import stage

from pipeline.errors import PipelineError
from pipeline.kinds import paper
from pipeline.layout import RunDir


def snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def masked_run(folds_run, tmp_path_factory):
    root = shutil.copytree(folds_run, tmp_path_factory.mktemp("masked") / "run")
    stage("combine", root)
    stage("masks", root)
    return root


@pytest.fixture
def run(masked_run, tmp_path):
    return RunDir(shutil.copytree(masked_run, tmp_path / "run"))


def refused(run, name, *args, expect):
    before = snapshot(run.root)
    err = stage(name, run.root, *args, ok=False).stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for part in expect:
        assert part in err, err
    assert snapshot(run.root) == before
    return err


def labels_file(run, tmp_path, values):
    path = tmp_path / "given.npy"
    np.save(path, values)
    return path


def test_labels_outside_the_classes(run, tmp_path):
    n = len(np.load(run.labels("n20_s0")))
    path = labels_file(run, tmp_path, np.full(n, 10))
    refused(run, "noise", "--labels", f"x={path}", expect=[str(path), "label 10", "outside 0..9"])


def test_label_count_differs_from_image_count(run, tmp_path):
    path = labels_file(run, tmp_path, np.zeros(7, np.int64))
    refused(run, "noise", "--labels", f"x={path}", expect=[str(path), "7 labels for 1347 training images"])


@pytest.mark.parametrize(
    "damage,expect",
    [
        (lambda p: p * 1.5, "not a probability vector"),
        (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, np.nan, p), "NaN or inf"),
        (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, np.inf, p), "NaN or inf"),
        (lambda p: p[:, :9], "shape (n, 10)"),
        (lambda p: p[:-3], "rows but 1347 noisy labels"),
    ],
)
def test_bad_psx(run, tmp_path, damage, expect):
    path = tmp_path / "psx.npy"
    np.save(path, damage(np.load(run.psx("n20_s0"))))
    refused(run, "masks", "--cond", "n20_s0", "--psx", str(path), expect=[str(path), expect])


def test_shard_from_a_different_dataset_or_labels(run, tmp_path):
    other = tmp_path / "other"
    stage("data", other, "--source", "digits")
    stage("noise", other, "--conditions", "0.2:0.0", "--seed", "5")
    stage("crossval", other, "--fold", "1", "--folds", "3", "--epochs", "1", "--gpu", "cpu")
    for suffix in ("", ".manifest.json"):
        src = f"{RunDir(other).shard('n20_s0', 1)}{suffix}"
        (run.shard("n20_s0", 1).parent / f"fold1.npz{suffix}").write_bytes(open(src, "rb").read())
    run.psx("n20_s0").unlink()
    refused(
        run,
        "combine",
        "--cond",
        "n20_s0",
        expect=[
            f"{run.shard('n20_s0', 1)} is stale: {run.labels('n20_s0')} changed after it was made; rerun make crossval"
        ],
    )


def test_mask_of_the_wrong_length(run):
    masks = run.mask("n20_s0", "prune_by_class")
    np.save(masks, np.ones(5, bool))
    refused(
        run,
        "coteach",
        "--cond",
        "n20_s0",
        "--methods",
        "prune_by_class",
        "--epochs",
        "1",
        "--gpu",
        "cpu",
        expect=[str(masks), "checksum"],
    )


def test_empty_class(run, tmp_path):
    n = len(np.load(run.labels("n20_s0")))
    path = labels_file(run, tmp_path, np.arange(n) % 9)  # class 9 never appears
    stage("noise", run.root, "--labels", f"noclass9={path}")
    refused(
        run,
        "crossval",
        "--cond",
        "noclass9",
        "--fold",
        "0",
        "--folds",
        "3",
        "--gpu",
        "cpu",
        expect=["noisy label 9 has only 0 examples"],
    )


def test_more_folds_than_examples_per_class(run, tmp_path):
    n = len(np.load(run.labels("n20_s0")))
    labels = np.arange(n) % 9
    labels[:50] = 9
    stage("noise", run.root, "--labels", f"few9={labels_file(run, tmp_path, labels)}")
    refused(
        run,
        "crossval",
        "--cond",
        "few9",
        "--fold",
        "0",
        "--folds",
        "60",
        "--gpu",
        "cpu",
        expect=["noisy label 9 has only 50 examples: cannot split it into 60 folds"],
    )


def write_json(path, mapping):
    with gzip.open(path, "wt") as f:
        json.dump(mapping, f)
    return path


def test_json_keys_that_match_no_image_or_twice(tmp_path):
    ids = np.array(["cat/1_cat", "dog/2_dog"])
    good = {"/x/train/cat/1_cat.png": 0, "/x/train/dog/2_dog.png": 1}
    assert list(paper.import_json(write_json(tmp_path / "g.json.gz", good), ids, 2)) == [0, 1]
    twice = write_json(tmp_path / "t.json.gz", {**good, "/y/train/cat/1_cat.jpg": 1})
    with pytest.raises(PipelineError, match=r"t\.json\.gz: two keys match the image cat/1_cat"):
        paper.import_json(twice, ids, 2)
    extra = write_json(tmp_path / "e.json.gz", {**good, "/x/train/cat/3_cat.png": 0})
    with pytest.raises(PipelineError, match=r"e\.json\.gz: 1 keys match no image \(e\.g\. cat/3_cat\)"):
        paper.import_json(extra, ids, 2)
    missing = write_json(tmp_path / "m.json.gz", {"/x/train/cat/1_cat.png": 0})
    with pytest.raises(PipelineError, match=r"m\.json\.gz: 1 images have no label \(e\.g\. dog/2_dog\)"):
        paper.import_json(missing, ids, 2)


def test_a_refused_source_leaves_the_run_directory_as_it_was(run, tmp_path):
    """Refused from its listing (1,001 classes: before any image is decoded) or during the decode (an unreadable
    image): no staging folder, no file, no folder of it stays."""
    from PIL import Image

    many = tmp_path / "many"
    many.mkdir()
    for k in range(1001):
        Image.fromarray(np.full((4, 4, 3), k % 256, np.uint8)).save(many / f"{k}.png")
    (many / "labels.csv").write_text("path,label\n" + "".join(f"{k}.png,c{k}\n" for k in range(1001)))
    folder = tmp_path / "folder"
    for c in ("cat", "dog"):
        (folder / c).mkdir(parents=True)
        for k in range(300):
            Image.fromarray(np.full((4, 4, 3), k % 256, np.uint8)).save(folder / c / f"{k}.png")
    (folder / "dog" / "299.png").write_bytes(b"not a png")
    cases = [
        (many / "labels.csv", "1001 class(es); expected 2 to 1000"),
        (folder, "dog/299.png: unreadable image"),
    ]
    for source, message in cases:
        for workers in ("1", "2"):
            paths = sorted(run.root.rglob("*"))
            refused(run, "data", "--source", str(source), "--workers", workers, expect=[message])
            assert sorted(run.root.rglob("*")) == paths, (source, workers)
