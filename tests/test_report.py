"""The report stage: mean ± std over seeds beside the paper's Table 2, detection on this run's psx and
on the paper's (cached), and valid PNG plots."""

import csv
import io

import numpy as np
import pytest
from conftest import FAST_COTEACH, SHARED, needs_shared, stage
from PIL import Image

from pipeline import conditions, datasets, files, folds, masks, report, store
from pipeline.layout import RunDir
from pipeline.sources import imagefolder
from pipeline.sources.base import source_index

PNG = b"\x89PNG\r\n\x1a\n"


def rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def row_of(md: str, start: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(start))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG, path
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
        assert im.size[0] > 300 and im.size[1] > 200


def test_report_on_digits_mean_std_paper_cells_and_plots(run_copy, tmp_path):
    run = RunDir(run_copy)
    for cond in conditions.names(run):  # combine and masks in-process: only coteach and report are under test here
        folds.combine(run, cond)
        masks.run_masks(run, cond)
    stage(
        "coteach",
        run.root,
        "--cond",
        "n20_s0",
        "--methods",
        "both,none",
        "--learners",
        "coteaching",
        "--seeds",
        "0,1",
        *FAST_COTEACH,
        "--epochs",
        "1",
    )
    out = stage("report", run.root).stdout

    md = (run.report_dir / "table.md").read_text()
    assert md in out and "seeds [0, 1], mean ± std" in md
    final = np.array([files.load(run.coteach("n20_s0", "both", "coteaching", s))["final_acc"] for s in (0, 1)])
    best = np.array([files.load(run.coteach("n20_s0", "both", "coteaching", s))["best_acc"] for s in (0, 1)])
    cell = lambda v: f"{100 * v.mean():.1f} ± {100 * v.std(ddof=1):.1f}"
    cnr = "| C+NR × Co-Teaching | "
    assert row_of(md, cnr) == f"{cnr}{cell(final)} | – |"  # final-epoch table first; n40_s40 not trained
    assert row_of(md.split("best epoch of any network")[1], cnr) == f"{cnr}{cell(best)} | – |"
    # Generated digits conditions are not the paper's: no cell is put beside the paper's table.
    assert "Beside the paper" not in md and "no condition here has the paper's labels" in md

    acc = {(r["condition"], r["rows"], r["learner"]): r for r in rows(run.report_dir / "accuracy.csv")}
    assert set(acc) == {("n20_s0", "both", "coteaching"), ("n20_s0", "none", "coteaching")}
    r = acc["n20_s0", "both", "coteaching"]
    assert r["n_seeds"] == "2" and r["seeds"] == "0 1" and r["paper_acc"] == "" and r["best_acc_delta"] == ""
    assert float(r["final_acc_mean"]) == pytest.approx(final.mean()) and float(r["final_acc_std"]) == pytest.approx(
        final.std(ddof=1)
    )
    det = rows(run.report_dir / "detection.csv")
    assert len(det) == 10 and not any("paper_f1" in r for r in det)
    ours = store.verify(run.mask("n40_s40", "prune_by_noise_rate"))["info"]["detection"]
    assert float(
        next(r for r in det if r["condition"] == "n40_s40" and r["method"] == "prune_by_noise_rate")["run_f1"]
    ) == pytest.approx(ours["f1"])
    assert len([r for r in rows(run.report_dir / "table.csv") if r["kind"] == "accuracy"]) == 4
    for name in ("accuracy_vs_noise.png", "noise_matrices.png"):
        assert_png(run.report_dir / name)

    # --seeds narrows the aggregation; a cell with fewer seeds than the others says so.
    (run.coteach("n20_s0", "none", "coteaching", 1)).unlink()
    _, md = report.write(run, conditions.names(run), seeds=None)
    alone = files.load(run.coteach("n20_s0", "none", "coteaching", 0))["final_acc"]
    assert f"| all rows × Co-Teaching | {100 * alone:.1f} (n=1) | – |" in md
    assert "no condition here has the paper's labels; detection on them skipped" in md
    _, md = report.write(run, conditions.names(run), seeds=[1])
    assert "seeds [1]" in md and row_of(md, cnr) == f"{cnr}{100 * final[1]:.1f} | – |"
    assert "| all rows × Co-Teaching |" not in md

    # A seed trained with other options is not averaged in: the report names it.
    stage(
        "coteach",
        run.root,
        "--cond",
        "n20_s0",
        "--methods",
        "both",
        "--seeds",
        "2",
        *FAST_COTEACH,
        "--epochs",
        "1",
        "--lr",
        "0.002",
    )
    err = stage("report", run.root, ok=False).stderr.strip()
    odd = run.coteach("n20_s0", "both", "coteaching", 2)
    assert err == (
        f"error: n20_s0 C+NR × Co-Teaching: its seeds were trained differently: {odd} was made with "
        "lr=0.002 (others: 0.001); 2 other(s) agree: redo the odd one(s) with the same options, or remove them"
    )


@needs_shared
def test_detection_on_the_paper_psx_is_made_by_masks_and_read_by_the_report(tmp_path):
    """A run whose dataset is CIFAR-10's training labels in ImageFolder order (blank 8x8 images): the
    paper's psx need no training. n40_s60 is the 6_4 file, whose float16 rows sum to 1 only within 1.3e-2."""
    files = imagefolder.Files(SHARED / "data" / "cifar10-jpeg.tar.gz")
    classes, entries = imagefolder.imagefolder_index(files, "train")
    stems = [rel.rsplit(".", 1)[0] for _, rel in entries]
    ds = datasets.Dataset(
        train_x=np.zeros((len(entries), 8, 8, 3), np.uint8),
        train_y=np.array([c for c, _ in entries]),
        train_ids=np.array([f"{classes[c]}/{s}" for (c, _), s in zip(entries, stems)]),
        train_source_index=np.array([source_index(s) for s in stems]),
        test_x=np.zeros((10, 8, 8, 3), np.uint8),
        test_y=np.arange(10),
        classes=np.array(classes),
    )
    run = RunDir(tmp_path / "run")
    store.produce(
        run.dataset,
        root=run.root,
        stage="data",
        inputs={},
        config={"source": "blank CIFAR-10"},
        make=lambda: (ds.arrays(), {"classes": classes}),
    )
    stage("noise", run.root, "--conditions", "paper")
    masks.run_masks(run, "n20_s0", masks.resolve_psx(masks.PAPER_PSX, run, "n20_s0"))
    assert [masks.run_paper_detection(run, c, masks.PAPER_PSX) for c in ("n20_s0", "n40_s60", "n40_s0")] == [
        store.Outcome.MADE
    ] * 3
    out = stage("report", run.root, "--cond", "n20_s0,n40_s60").stdout

    assert f"The paper's psx: {masks.PAPER_PSX} (4-fold" in out
    det = {(r["condition"], r["method"]): r for r in rows(run.report_dir / "detection.csv")}
    assert len(det) == 10
    for method in ("predicted_neq_given", "prune_by_class", "confident_joint", "both", "prune_by_noise_rate"):
        same = det["n20_s0", method]  # the masks stage ran on the same psx: both sides agree
        assert all(same[f"run_{k}"] == same[f"paper_{k}"] != "" for k in ("precision", "recall", "f1", "keep_fraction"))
        r = det["n40_s60", method]
        assert r["run_f1"] == "" and float(r["paper_precision"]) > 0.45 and float(r["paper_recall"]) > 0.45
    assert "| n40_s60 | PBNR | – | 0.7" in out
    made = run.paper_detection("n40_s60")
    assert store.verify(made)["config"]["psx"].endswith("0_6__noise_amount__0_4__resnet50_psx.npy")
    before = made.stat().st_mtime_ns
    report.write(run, ["n40_s60"])
    assert (
        masks.run_paper_detection(run, "n40_s60", masks.PAPER_PSX) == store.Outcome.CURRENT
    )  # current: not made again
    assert made.stat().st_mtime_ns == before and not (run.report_dir / "paper_psx").exists()  # the report makes nothing
    assert_png(run.report_dir / "noise_matrices.png")


def test_the_published_table_sits_beside_ours_for_the_papers_conditions(blank_cifar, tmp_path):
    """The paper's labels on a CIFAR-10-shaped run: each (rows, learner) with a published Table 2 row is
    shown beside it; others (C+NR x cross-entropy) only in our tables. Trial 1 stays available."""
    import shutil

    run = RunDir(shutil.copytree(blank_cifar, tmp_path / "run"))
    stage("noise", run.root, "--conditions", "paper")
    true, noisy = files.load(run.dataset)["train_y"], files.load(run.labels("n20_s0"))
    psx = np.full((len(true), 10), 0.02)
    psx[np.arange(len(true)), true] = 0.82  # probabilities that know the truth: the masks drop exactly the flipped rows
    np.save(tmp_path / "psx.npy", psx)
    stage("masks", run.root, "--cond", "n20_s0", "--psx", str(tmp_path / "psx.npy"))
    assert np.array_equal(~files.load(run.mask("n20_s0", "both")), noisy != true)
    for methods, learners in (("both", "coteaching,plain"), ("none", "plain")):
        stage(
            "coteach",
            run.root,
            "--cond",
            "n20_s0",
            "--methods",
            methods,
            "--learners",
            learners,
            *FAST_COTEACH,
            "--epochs",
            "1",
            "--batch-size",
            "4096",
        )
    md = stage("report", run.root, "--cond", "n20_s0").stdout
    beside = md.split("## Beside the CL paper's Table 2 as published")[1].split("## ")[0]

    acc = {(r["rows"], r["learner"]): r for r in rows(run.report_dir / "accuracy.csv")}
    for (rows_, learner), name, published in (
        (("both", "coteaching"), "C+NR × Co-Teaching", 90.8),
        (("none", "plain"), "all rows × cross-entropy", 78.4),
    ):
        m = files.load(run.coteach("n20_s0", rows_, learner, 0))
        final, best = 100 * m["final_acc"], 100 * m["best_acc"]
        assert (
            f"| n20_s0 | 0_2 | {name} | {published:.1f} | as published | {final:.1f} | {final - published:+.1f} | "
            f"{best:.1f} | {best - published:+.1f} |"
        ) in beside
        assert float(acc[rows_, learner]["paper_acc"]) == pytest.approx(published / 100)
    assert "C+NR × cross-entropy" not in beside and "| C+NR × cross-entropy | " in md
    assert "Rows of that table with no learner here: INCV, MentorNet, S-Model, Reed." in beside
    assert "| n20_s0 (20%, paper 0_2) |" in md

    trial = stage("report", run.root, "--cond", "n20_s0", "--paper-table", "trial1").stdout
    assert "| n20_s0 | 0_2 | C+NR × Co-Teaching | 89.2 | best epoch of either network |" in trial


def test_config_notes_one_line_per_config_and_coteach_per_learner():
    cv = {"epochs": 10}
    configs = {
        "crossval": {"n20_s0": cv, "n40_s0": cv},
        "coteach": {
            ("n20_s0", "none", "plain"): {"lr": 1},
            ("n20_s0", "prune_by_class", "coteaching"): {"lr": 1, "forget_rate": 0.1},
            ("n20_s0", "both", "coteaching"): {"lr": 1, "forget_rate": 0.2},
            ("n40_s0", "prune_by_class", "coteaching"): {"lr": 2, "forget_rate": 0.2},
        },
    }
    notes = report.config_notes(configs)
    assert notes[0] == 'crossval config: `{"epochs": 10}`' and len(notes) == 5
    assert notes[1] == 'coteach plain config: `{"lr": 1}`'  # a learner's own options differ by design: not "mixed"
    assert (
        notes[2]
        == 'coteach coteaching config (used by n20_s0/prune_by_class/coteaching, n20_s0/both/coteaching): `{"lr": 1}`'
    )
    assert notes[4] == (
        "coteach coteaching forget rate (rows in brackets where a condition has several): "
        "n20_s0 0.1 (PBC), 0.2 (C+NR); n40_s0 0.2"
    )


def test_cleaning_is_compared_only_with_all_rows_trained_alike_on_shared_seeds():
    rec = lambda rows, seed, acc: report.Accuracy("n20_s0", None, 0.2, 0.0, rows, "plain", seed, acc, acc, 100)
    records = [
        rec("none", 0, 0.80),
        rec("none", 1, 0.82),
        rec("both", 0, 0.83),
        rec("both", 1, 0.84),
        rec("prune_by_class", 0, 0.9),
        rec("prune_by_noise_rate", 5, 0.9),
    ]
    configs = {
        ("n20_s0", "none", "plain"): {"epochs": 12},
        ("n20_s0", "both", "plain"): {"epochs": 12},
        ("n20_s0", "prune_by_class", "plain"): {"epochs": 250},
        ("n20_s0", "prune_by_noise_rate", "plain"): {"epochs": 12},
    }
    rows, skipped = report.cleaning_summary(records, configs)
    assert [(r["rows"], r["n"]) for r in rows] == [("both", 2)] and rows[0]["mean"] == pytest.approx(0.025)
    assert skipped == [
        "n20_s0 PBC × cross-entropy against all rows × cross-entropy: not compared, trained with other options: "
        "epochs=250 (all rows: 12); rerun one with the other's options",
        "n20_s0 PBNR × cross-entropy against all rows × cross-entropy: not compared, no seed in common (seeds [5] and [0, 1])",
    ]
