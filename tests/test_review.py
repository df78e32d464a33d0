"""review reads one consistent set of inputs: its ranking and suggestions come from the psx its masks came from."""

import csv
import io

import numpy as np
import pytest

from pipeline import datasets, folds, masks, review, store
from pipeline.errors import PipelineError
from pipeline.layout import RunDir

COND = "n40_s40"


@pytest.mark.parametrize("shift", [1, 3])
def test_review_after_masks_from_another_psx_suggests_what_that_psx_says(run_copy, tmp_path, shift):
    run = RunDir(run_copy)
    folds.combine(run, COND)
    own = store.read(run.psx(COND))
    other = np.roll(own, shift, axis=1)  # another psx: every argmax moved by `shift` classes
    path = tmp_path / "other_psx.npy"
    np.save(path, other)
    masks.run_masks(run, COND, psx=path)
    review.run_review(run, COND)
    rows = list(csv.DictReader(io.StringIO(store.read(run.label_issues(COND)).decode())))
    classes = list(datasets.cached(run.dataset).classes)
    kept = masks.read_masks(run, COND)
    flagged = np.flatnonzero(~np.all([kept[m] for m in masks.CL_METHODS.values()], axis=0))
    assert sorted(int(r["row"]) for r in rows) == flagged.tolist()
    assert all(r["suggested_label"] == classes[other[int(r["row"])].argmax()] for r in rows)
    assert any(other[int(r["row"])].argmax() != own[int(r["row"])].argmax() for r in rows)

    np.save(path, own)  # the file the masks came from changes: the masks are stale, review refuses instead of mixing
    with pytest.raises(PipelineError, match=f"is stale: {path} changed after it was made; rerun make masks"):
        review.run_review(run, COND, force=True)


def test_a_probes_features_give_outliers_and_near_duplicates_with_galleries(folds_run, tmp_path, resnet18_file):
    """Planted: three exact copies of other rows (near-duplicates: each found with its original) and three
    images of noise among the digits (outliers)."""
    from conftest import stage

    from pipeline.sources.base import Dataset

    ds = datasets.cached(RunDir(folds_run).dataset)
    x = ds.train_x.copy()
    x[[10, 11, 12]] = x[[0, 1, 2]]
    x[[20, 21, 22]] = np.random.default_rng(0).integers(0, 256, (3, *x.shape[1:]), dtype=np.uint8)
    planted = Dataset(x, ds.train_y, ds.train_ids, ds.train_source_index, ds.test_x, ds.test_y, ds.classes)
    run = RunDir(tmp_path / "run")
    store.produce(
        run.dataset,
        root=run.root,
        stage="data",
        inputs={},
        config={"source": "planted digits"},
        make=lambda: (planted.arrays(), {"classes": list(ds.classes)}),
    )
    stage("noise", run.root, "--conditions", "0.2:0.0")
    stage(
        "crossval",
        run.root,
        "--recipe",
        "linear-probe",
        "--arch",
        "resnet18",
        "--weights",
        str(resnet18_file),
        "--input-size",
        "32",
        "--folds",
        "3",
        "--gpu",
        "cpu",
    )
    for name in ("combine", "masks"):
        stage(name, run.root)
    out = stage("review", run.root, "--top", "8").stdout
    folder = run.label_issues("n20_s0").parent
    rows = {int(r["row"]): r for r in csv.DictReader(io.StringIO(store.read(folder / "data_issues.csv").decode()))}
    assert f"near-duplicates: {folder / 'data_issues.csv'}" in out
    for copy, original in ((10, 0), (11, 1), (12, 2)):
        assert rows[copy]["near_duplicate_of"].split()[0] == str(original), rows[copy]
        assert rows[original]["near_duplicate_of"].split()[0] == str(copy) and "near_duplicate" in rows[copy]["issue"]
    assert {20, 21, 22} <= {k for k, r in rows.items() if "outlier" in r["issue"].split()}
    ranks = [int(r["rank"]) for r in rows.values()]
    assert sorted(ranks) == list(range(1, len(rows) + 1))
    info = store.verify(folder / "near_duplicates.png")["info"]
    assert info["tiles"] % 2 == 0 and info["tiles"] >= 6  # pairs, side by side
    assert store.verify(folder / "outliers.png")["info"]["tiles"] == min(
        8, sum("outlier" in r["issue"] for r in rows.values())
    )
