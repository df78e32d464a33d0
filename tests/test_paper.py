"""The CL paper's artifacts in ../shared: the JSON importer, the shipped label array, masks on the paper's psx."""

import numpy as np
import pytest
from conftest import SHARED, needs_shared

from pipeline import conditions
from pipeline.kinds import paper
from pipeline.masks import CL_METHODS, detection, find_masks, mask_paths
from pipeline.sources import imagefolder

pytestmark = needs_shared
JSON_DIR = SHARED / "data" / "cl-paper" / "noisy_labels"
PSX_DIR = SHARED / "data" / "cl-paper" / "psx"


@pytest.fixture(scope="module")
def cifar_index():
    """(ids, true labels) of the JPEG copy's training set in ImageFolder order, without decoding images."""
    files = imagefolder.Files(SHARED / "data" / "cifar10-jpeg.tar.gz")
    classes, entries = imagefolder.imagefolder_index(files, "train")
    ids = np.array([f"{classes[c]}/{rel.rsplit('.', 1)[0]}" for c, rel in entries])
    return ids, np.array([c for c, _ in entries])


def test_json_importer_matches_all_50000_images(cifar_index):
    ids, true = cifar_index
    labels = paper.import_json(
        JSON_DIR / "cifar10_noisy_labels__frac_zero_noise_rates__0.2__noise_amount__0.4.json.gz", ids, 10
    )
    assert len(labels) == 50_000
    assert 0.39 < np.mean(labels != true) < 0.41


def test_json_importer_rejects_a_missing_image(cifar_index):
    ids, _ = cifar_index
    with pytest.raises(conditions.PipelineError, match="keys match no image"):
        paper.import_json(
            JSON_DIR / "cifar10_noisy_labels__frac_zero_noise_rates__0.0__noise_amount__0.2.json.gz", ids[1:], 10
        )


def test_shipped_array_equals_the_paper_json(tmp_path):
    out = tmp_path / "labels.npz"
    paper.export(JSON_DIR, out)
    rebuilt, shipped = np.load(out), np.load(paper.LABELS)
    assert sorted(rebuilt.files) == sorted(shipped.files) and len(shipped.files) == 19
    for key in shipped.files:
        assert np.array_equal(rebuilt[key], shipped[key]), key


@pytest.mark.parametrize("sparsity,amount", [(0.0, 0.2), (0.4, 0.6)])
def test_masks_on_the_paper_psx(cifar_index, sparsity, amount):
    ids, true = cifar_index
    cond = conditions.paper_condition(sparsity, amount)
    noisy = paper.import_json(JSON_DIR / f"cifar10_noisy_labels__{cond.paper_key}.json.gz", ids, 10)
    psx = np.load(next(PSX_DIR.glob(f"*{cond.paper_key.replace('.', '_')}*.npy"))).astype(np.float32)
    psx /= psx.sum(1, keepdims=True)
    masks = find_masks(noisy, psx)
    assert set(masks) == set(CL_METHODS.values())
    noise = np.mean(noisy != true)
    for method, keep in masks.items():
        d = detection(keep, noisy, true)
        # Each method keeps about the clean fraction, and flags errors far better than chance
        # (random flagging has precision = the noise rate). The paper's psx are only 86% accurate.
        assert abs(d["keep_fraction"] - (1 - noise)) < 0.25, (method, d)
        assert d["precision"] > noise + 0.05 and d["recall"] > 0.45, (method, d)
        assert abs(d["f1"] - 2 * d["precision"] * d["recall"] / (d["precision"] + d["recall"])) < 1e-12


def paper_c_confident_joint(s: np.ndarray, psx: np.ndarray) -> np.ndarray:
    """C_{y~,y*} as the CL paper's code (cleanlab 1.x ``compute_confident_joint``) defined it, in numpy:
    a row counts in the confident joint if some class's probability reaches that class's threshold
    (the mean self-confidence of the rows labelled with it); its guessed true class is the confident
    class, or the argmax when several are confident; flagged = counted off the diagonal."""
    k = psx.shape[1]
    thresholds = np.array([psx[s == j, j].mean() for j in range(k)])
    confident = psx >= thresholds - 1e-6
    guess = np.where(confident.sum(1) > 1, psx.argmax(1), confident.argmax(1))
    return confident.any(1) & (guess != s)


@pytest.mark.parametrize("sparsity,amount", [(0.0, 0.4), (0.2, 0.6)])
def test_c_confident_joint_is_the_papers_definition(cifar_index, sparsity, amount):
    """Our C_{y~,y*} mask equals the paper's definition row for row on the paper's psx; cleanlab 2's
    ``filter_by="confident_learning"`` (which we do not use for it) differs."""
    from cleanlab.filter import find_label_issues

    ids, _ = cifar_index
    cond = conditions.paper_condition(sparsity, amount)
    noisy = paper.import_json(JSON_DIR / f"cifar10_noisy_labels__{cond.paper_key}.json.gz", ids, 10)
    psx = np.load(next(PSX_DIR.glob(f"*{cond.paper_key.replace('.', '_')}*.npy")))
    flagged = ~find_masks(noisy, psx)["confident_joint"]
    expected = paper_c_confident_joint(noisy, psx)
    assert expected.sum() > 5000 and np.array_equal(flagged, expected)
    assert (find_label_issues(noisy, psx, filter_by="confident_learning") != expected).sum() > 50


def test_stages_on_cifar10_with_the_paper_labels_and_psx(tmp_path, cifar_index):
    """data (the JPEG tarball) -> noise (paper, from the shipped array) -> masks on the paper's psx."""
    from conftest import stage

    from pipeline import files, store
    from pipeline.layout import RunDir

    run = RunDir(tmp_path / "run")
    stage("data", run.root, "--source", str(SHARED / "data" / "cifar10-jpeg.tar.gz"))
    stage("noise", run.root, "--conditions", "paper")
    assert len(conditions.names(run)) == 13
    ids, true = cifar_index
    from_json = paper.import_json(
        JSON_DIR / "cifar10_noisy_labels__frac_zero_noise_rates__0.4__noise_amount__0.6.json.gz", ids, 10
    )
    assert np.array_equal(files.load(run.labels("n70_s40")), from_json)
    info = store.verify(run.labels("n70_s40"))["info"]
    assert info["paper_column"] == "4_6" and abs(info["actual_noise_rate"] - 0.6995) < 1e-3
    out = stage("masks", run.root, "--cond", "n20_s0,n70_s40", "--psx", str(PSX_DIR)).stdout
    assert "prune_by_noise_rate" in out
    made = {m: store.verify(p)["info"] for m, p in mask_paths(run, "n20_s0").items()}
    assert (
        made["both"]["psx_acc_true"] > 0.75
    )  # the paper's ResNet-50 at 20% noise: 80%; rows out of order would give 10%
    assert made["confident_joint"]["detection"]["recall"] > 0.8
    # masks made from the paper's psx and the paper-psx detection beside them agree
    assert f"wrote: {run.paper_detection('n70_s40')} (on the paper's psx)" in out
    on_paper_psx = store.read(run.paper_detection("n20_s0"))
    assert all(on_paper_psx[m] == made[m]["detection"] for m in CL_METHODS.values())
