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

    np.save(path, own)  # the file the masks came from changes: review refuses instead of mixing
    with pytest.raises(PipelineError, match=f"^{path}: changed or gone since the masks were made from it"):
        review.run_review(run, COND, force=True)
