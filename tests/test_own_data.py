"""Your own data: ImageFolders of any size and mode, CSV sources, bad rows, and the label-issue review."""

import csv
import io

import numpy as np
import pytest
from conftest import stage
from PIL import Image

from pipeline import datasets, files, plots, review, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.masks import read_masks
from pipeline.sources.base import Decoder


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def flat_folder(root, classes=("a", "b"), per_class=4, size=lambda i: 8, make=None):
    """class folders at the top (no train/test): random RGB images unless ``make(i, size)`` gives one."""
    rng = np.random.default_rng(0)
    k = 0
    for c in classes:
        for j in range(per_class):
            s = size(k)
            image = make(k, s) if make else Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8))
            (root / c).mkdir(parents=True, exist_ok=True)
            image.save(root / c / f"{j}.png")
            k += 1
    return root


def test_mixed_sizes_need_image_size_which_resizes_with_antialiasing(tmp_path):
    root = flat_folder(tmp_path / "f", size=lambda i: (8, 13, 20)[i % 3])
    with pytest.raises(
        PipelineError, match=r"images differ in size \(\d+x\d+ \S+, \d+x\d+ \S+, ...\); pass --image-size N"
    ):
        datasets.read_source(str(root))
    ds = datasets.read_source(str(root), image_size=10, test_fraction=0.25)
    assert ds.train_x.shape == (6, 10, 10, 3) and ds.test_x.shape == (2, 10, 10, 3)
    assert sorted(np.bincount(ds.train_y)) == [3, 3] and sorted(np.bincount(ds.test_y)) == [1, 1]  # stratified
    # A checkerboard shrunk 4x averages to grey (antialiased), where point sampling would keep black or white.
    board = Image.fromarray((np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8), "L")
    shrunk = Decoder(10, None).image(_png(board), "board")
    assert shrunk.shape == (10, 10, 1) and 100 < shrunk.mean() < 155 and shrunk.std() < 40


def _png(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_modes_grayscale_stays_one_channel_rgba_palette_and_16_bit_convert(tmp_path):
    gray = flat_folder(tmp_path / "gray", make=lambda i, s: Image.fromarray(np.full((s, s), 10 * i, np.uint8), "L"))
    assert datasets.read_source(str(gray), test_fraction=0.25).train_x.shape[-1] == 1
    decode = lambda im: Decoder(None, None).image(_png(im), "x")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3], rgba[2:, :, 3] = 200, 255, 0  # red, opaque on top, transparent below
    out = decode(Image.fromarray(rgba, "RGBA"))
    assert out.shape == (4, 4, 3) and (out[:2] == [200, 0, 0]).all() and (out[2:] == 255).all()  # onto white
    la = np.stack([np.full((4, 4), 50, np.uint8), np.full((4, 4), 0, np.uint8)], -1)
    assert (decode(Image.fromarray(la, "LA")) == 255).all() and decode(Image.fromarray(la, "LA")).shape == (4, 4, 1)
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    assert (decode(palette)[0, 0] == [0, 0, 255]).all() and (decode(palette)[0, 1] == [0, 255, 0]).all()
    deep = decode(Image.fromarray(np.full((4, 4), 65535, np.uint16)))
    assert deep.shape == (4, 4, 1) and (deep == 255).all()
    # Mixed modes: everything becomes RGB, the grayscale images repeated over the channels.
    mixed = flat_folder(
        tmp_path / "mixed",
        make=lambda i, s: (
            Image.fromarray(np.full((s, s), 77, np.uint8), "L")
            if i % 2
            else Image.fromarray(np.full((s, s, 3), 77, np.uint8))
        ),
    )
    ds = datasets.read_source(str(mixed), test_fraction=0.25)
    assert ds.train_x.shape[-1] == 3 and (ds.train_x == 77).all()


def test_a_hundred_and_two_classes(tmp_path):
    classes = [f"class_{k:03d}" for k in range(102)]
    ds = datasets.read_source(str(flat_folder(tmp_path / "f", classes=classes, per_class=3)), test_fraction=1 / 3)
    assert list(ds.classes) == classes and ds.num_classes == 102
    assert (np.bincount(ds.train_y, minlength=102) == 2).all() and (np.bincount(ds.test_y, minlength=102) == 1).all()
    with pytest.raises(PipelineError, match="1 class"):
        datasets.read_source(str(flat_folder(tmp_path / "one", classes=["only"])))


def write_csv(path, rows, header=("path", "label")):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue())
    return path


def csv_source(tmp_path, n=8):
    rng = np.random.default_rng(1)
    for i in range(n):
        save(tmp_path / "img" / f"{i}.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return [[f"img/{i}.png", ("cat", "dog")[i % 2]] for i in range(n)]


def test_a_csv_of_paths_and_labels_relative_to_it(tmp_path):
    rows = csv_source(tmp_path)
    ds = datasets.read_source(str(write_csv(tmp_path / "labels.csv", rows)), test_fraction=0.25)
    assert list(ds.classes) == ["cat", "dog"] and len(ds.train_y) == 6 and len(ds.test_y) == 2
    for row_id, y, x in zip(ds.train_ids, ds.train_y, ds.train_x):
        i = int(row_id.split("/")[1][:-4])
        assert ds.classes[y] == ("cat", "dog")[i % 2] and np.array_equal(x, np.asarray(Image.open(tmp_path / row_id)))
    numbered = [[p, {"cat": "10", "dog": "9"}[c]] for p, c in rows]  # integers sort as numbers
    assert list(datasets.read_source(str(write_csv(tmp_path / "n.csv", numbered)), test_fraction=0.25).classes) == [
        "9",
        "10",
    ]
    split = [[p, c, "test" if i < 2 else "train"] for i, (p, c) in enumerate(rows)]
    ds = datasets.read_source(str(write_csv(tmp_path / "s.csv", split, ("path", "label", "split"))))
    assert list(ds.train_ids) == [p for p, _ in rows[2:]] and len(ds.test_y) == 2


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda rows: rows + [["img/missing.png", "cat"]], r"line 10: img/missing.png: file not found"),
        (lambda rows: rows + [["img/0.png", "cat"]], r"line 10: img/0.png: the same image as line 2"),
        (lambda rows: rows + [["img/./1.png", "dog"]], r"line 10: img/./1.png: the same image as line 3"),
        (
            lambda rows: [r + ["train"] for r in rows[:-1]] + [rows[-1] + ["test"]] + [["img/0.png", "bird", "test"]],
            r"line 10: class 'bird' has no training rows",
        ),
        (lambda rows: rows + [["", "cat"]], r"line 10: empty path"),
        (lambda rows: rows + [["img/a\0b.png", "cat"]], r"line 10: the path contains a NUL byte"),
    ],
)
def test_a_bad_csv_row_names_the_file_and_line_or_is_skipped_and_counted(tmp_path, edit, message):
    rows = edit(csv_source(tmp_path))
    header = ("path", "label", "split") if len(rows[0]) == 3 else ("path", "label")
    if len(rows[0]) == 3:
        save(tmp_path / "img" / "8.png", np.zeros((6, 6, 3), np.uint8))
        rows[-1][0] = "img/8.png"
    path = write_csv(tmp_path / "labels.csv", rows, header)
    fraction = None if "split" in header else 0.25  # a split column says which rows are test rows
    with pytest.raises(PipelineError, match=f"{path}: {message}"):
        datasets.read_source(str(path), test_fraction=fraction)
    skipped = []
    ds = datasets.read_source(str(path), test_fraction=fraction, skipped=skipped)
    assert len(skipped) == 1 and len(ds.train_y) + len(ds.test_y) == 8


def test_a_class_whose_training_images_were_all_skipped_is_an_error(tmp_path):
    rows = [r + ["test" if i < 2 else "train"] for i, r in enumerate(csv_source(tmp_path))]
    for p, c, split in rows:
        if c == "dog" and split == "train":
            (tmp_path / p).write_bytes(b"not an image")
    path = write_csv(tmp_path / "labels.csv", rows, ("path", "label", "split"))
    with pytest.raises(PipelineError, match=f"{path}: class\\(es\\) 'dog' have no usable training images"):
        datasets.read_source(str(path), skipped=[])


def test_skip_bad_is_counted_in_the_data_manifest(tmp_path):
    rows = csv_source(tmp_path) + [["img/gone.png", "cat"]]
    path = write_csv(tmp_path / "labels.csv", rows)
    err = stage("data", tmp_path / "run", "--source", str(path), "--test-fraction", "0.25", ok=False).stderr.strip()
    assert err == f"error: {path}: line 10: img/gone.png: file not found"
    out = stage("data", tmp_path / "run", "--source", str(path), "--test-fraction", "0.25", "--skip-bad").stdout
    info = store.verify(RunDir(tmp_path / "run").dataset)["info"]
    assert (
        info["skipped"] == 1 and "gone.png: file not found" in info["skipped_first"][0] and "1 unusable row(s)" in out
    )


@pytest.fixture(scope="module")
def reviewed(folds_run, tmp_path_factory):
    import shutil

    run = RunDir(shutil.copytree(folds_run, tmp_path_factory.mktemp("review") / "run"))
    stage("combine", run.root)
    stage("masks", run.root)
    stage("review", run.root, "--top", "12", "--by-class")
    return run


def test_label_issues_are_ranked_by_cleanlabs_label_quality(reviewed):
    from cleanlab.rank import get_label_quality_scores

    run, cond = reviewed, "n40_s40"
    rows = list(csv.DictReader(io.StringIO(run.label_issues(cond).read_text())))
    noisy, psx = files.load(run.labels(cond)), files.load(run.psx(cond)).astype(np.float64)
    scores = get_label_quality_scores(noisy, psx)
    masks = read_masks(run, cond)
    flagged = np.flatnonzero(~np.all([masks[m] for m in masks], axis=0))
    assert sorted(int(r["row"]) for r in rows) == sorted(flagged.tolist())
    assert [int(r["row"]) for r in rows] == sorted(flagged.tolist(), key=lambda i: (scores[i], i))
    ds = datasets.cached(run.dataset)
    for r in rows[:20]:
        i = int(r["row"])
        assert float(r["label_quality"]) == pytest.approx(scores[i], abs=1e-6)
        assert r["id"] == ds.train_ids[i] and r["given_label"] == ds.classes[noisy[i]]
        assert r["suggested_label"] == ds.classes[psx[i].argmax()] and r["true_label"] == ds.classes[ds.train_y[i]]
        assert set(r["flagged_by"].split()) == {p for p, m in review.CL_METHODS.items() if not masks[m][i]}


def test_the_gallery_has_one_tile_per_shown_issue(reviewed):
    run = reviewed
    for cond in ("n20_s0", "n40_s40"):
        listed = run.label_issues(cond).read_text().count("\n") - 1
        with Image.open(run.label_issues(cond).with_suffix(".png")) as im:
            assert im.size == plots.gallery_size(min(12, listed))
        assert store.verify(run.label_issues(cond).with_suffix(".png"))["info"]["tiles"] == min(12, listed)
        per_class = sorted((run.label_issues(cond).parent / "label_issues").glob("*.png"))
        assert per_class and all(store.verify(p)["info"]["tiles"] <= 12 for p in per_class)
    assert plots.gallery_size(17) == (
        plots.gallery_size(1)[0],
        plots.gallery_size(8)[1] + 2 * round((plots.TILE_IN + plots.CAPTION_IN) * plots.DPI),
    )


def test_the_demo_own_source_flips_only_training_labels_and_reads_back(tmp_path):
    from pipeline import demo_own

    labels = demo_own.build(tmp_path / "src", flip=0.1)
    read = lambda f: list(csv.DictReader(open(tmp_path / "src" / f, newline="")))
    given, truth = read("labels.csv"), read("truth.csv")
    assert [r["path"] for r in given] == [r["path"] for r in truth] and len(given) == 1797
    test = [g for g in given if g["split"] == "test"]
    wrong = [g for g, t in zip(given, truth) if g["label"] != t["label"]]
    assert all(g["split"] == "train" for g in wrong) and 0.07 < len(wrong) / (1797 - len(test)) < 0.13
    counts = np.bincount([int(g["label"]) for g in test])
    assert abs(len(test) - 360) <= 1 and counts.min() >= 34 and counts.max() <= 38  # stratified fifth
    stage("data", tmp_path / "run", "--source", str(labels), "--image-size", "8")
    ds = datasets.cached(RunDir(tmp_path / "run").dataset)
    assert len(ds.test_y) == len(test) and ds.train_x.shape[1:] == (8, 8, 1)
    demo_own.build(tmp_path / "src", flip=0.2)  # check must not score the run against other flips
    with pytest.raises(
        PipelineError, match="made from .* as it was then, not from .* as it is now: rerun make demo-own"
    ):
        demo_own.check(tmp_path / "src", tmp_path / "run")


@pytest.mark.parametrize(
    "header",
    [
        ("path", "label", "label"),
        ("path", "path", "label"),
        ("path", "label", "split", "split"),
        (" path", "label", "path "),
        ("label", "path", "note", "note"),
    ],
)
def test_a_header_naming_a_column_twice_is_refused(tmp_path, header):
    rows = [r + ["train"] * (len(header) - 2) for r in csv_source(tmp_path)]
    path = write_csv(tmp_path / "labels.csv", rows, header)
    with pytest.raises(PipelineError) as e:
        datasets.read_source(str(path), skipped=[])
    assert str(e.value).startswith(f"{path}: line 1: the header names ") and "more than once" in str(e.value)


def _all_bad(tmp_path, kind):
    """A source whose every row is unusable, in one way per ``kind``."""
    rows = csv_source(tmp_path)
    if kind == "csv: every file missing":
        rows = [[f"gone/{p}", label] for p, label in rows]
    elif kind == "csv: every image garbage":
        for p, _ in rows:
            (tmp_path / p).write_bytes(b"not an image")
    elif kind == "csv: every path a directory":
        for p, _ in rows:
            (tmp_path / p).unlink()
            (tmp_path / p).mkdir()
    elif kind == "imagefolder: every image garbage":
        root = flat_folder(tmp_path / "folder")
        for f in root.rglob("*.png"):
            f.write_bytes(b"\x89PNG broken")
        return root
    return write_csv(tmp_path / "labels.csv", rows)


KINDS = [
    "csv: every file missing",
    "csv: every image garbage",
    "csv: every path a directory",
    "imagefolder: every image garbage",
]


@pytest.mark.parametrize("kind", KINDS)
def test_skip_bad_that_leaves_nothing_says_so_and_why(tmp_path, kind):
    source = _all_bad(tmp_path, kind)
    with pytest.raises(PipelineError) as e:
        datasets.read_source(str(source), skipped=[])
    text = str(e.value)
    assert "\n" not in text and "--skip-bad left no usable image (" in text and "skipped; the first: " in text, text
    if kind == "csv: every path a directory":
        assert text.endswith("img/0.png: a directory, not an image file)")
        with pytest.raises(PipelineError, match=r"line 2: img/0.png: a directory, not an image file$"):
            datasets.read_source(str(source))  # without --skip-bad: the first bad row, named as what it is


def _source(tmp_path, kind):
    """A source of each kind, and the options it can apply."""
    every = {"image_size", "skip_bad", "test_fraction"}
    if kind == "digits":
        return "digits", set()
    if kind == "cifar-10-batches-py":
        from test_no_code_on_load import _cifar_folder

        return str(_cifar_folder(tmp_path / "cifar-10-batches-py")), set()
    if kind == "imagefolder train/test":
        for split in ("train", "test"):
            flat_folder(tmp_path / "split" / split)
        return str(tmp_path / "split"), every - {"test_fraction"}
    if kind == "csv with a split column":
        rows = [r + [("train", "train", "train", "test")[i % 4]] for i, r in enumerate(csv_source(tmp_path))]
        return str(write_csv(tmp_path / "labels.csv", rows, ("path", "label", "split"))), every - {"test_fraction"}
    if kind == "csv":
        return str(write_csv(tmp_path / "labels.csv", csv_source(tmp_path))), every
    return str(flat_folder(tmp_path / "flat")), every


OPTIONS = {"image_size": 6, "skip_bad": True, "test_fraction": 0.25}


@pytest.mark.parametrize(
    "kind",
    ["digits", "cifar-10-batches-py", "imagefolder train/test", "csv with a split column", "csv", "class folders"],
)
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_an_option_the_source_cannot_apply_is_refused_and_nothing_is_recorded(tmp_path, kind, option):
    source, applies = _source(tmp_path, kind)
    run = RunDir(tmp_path / "run")
    datasets.prepare(run, source)
    before = run.dataset.read_bytes()
    if option in applies:
        assert datasets.prepare(run, source, **{option: OPTIONS[option]}) == store.Outcome.MADE
        assert store.verify(run.dataset)["config"][option] == OPTIONS[option]
        return
    flag = "--" + option.replace("_", "-")
    with pytest.raises(PipelineError, match=f"{flag} does not apply to this source"):
        datasets.prepare(run, source, **{option: OPTIONS[option]})
    assert run.dataset.read_bytes() == before and store.verify(run.dataset)["config"][option] in (None, False, 0.2)


@pytest.mark.parametrize(
    "name,content,named",
    [
        ("labels.txt", b"path,label\na.png,0\n", "a text file, not a source"),
        ("labels.npy", b"\x93NUMPY\x01\x00", "a NumPy .npy file, not a dataset source"),
        ("images.zip", b"PK\x03\x04....", "a zip archive, not a source"),
        ("one.png", b"\x89PNG\r\n\x1a\n....", "a single image, not a dataset source"),
        ("broken.tar.gz", b"\x1f\x8b\x08\x00junk", "a gzip file that is not a readable tar archive"),
        ("blob.bin", bytes(range(0, 40)), "not a directory, a .csv or a readable tar archive"),
    ],
)
def test_a_file_of_the_wrong_format_as_a_source_is_named_in_one_line(tmp_path, name, content, named):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PipelineError) as e:
        datasets.read_source(str(path))
    assert str(e.value).startswith(f"{path}: {named}") and "\n" not in str(e.value)


def test_a_csv_with_a_header_and_no_rows_says_so(tmp_path):
    path = write_csv(tmp_path / "labels.csv", [])
    with pytest.raises(PipelineError, match=f"^{path}: no rows under the header$"):
        datasets.read_source(str(path))
