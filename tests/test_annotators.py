"""Several annotators: a condition from label files, a long CSV or CIFAR-10N's file (their majority vote), the
refusals, and the consensus stage (cleanlab's CROWDLAB) that reconciles them with the model."""

import csv
import io
import shutil

import numpy as np
import pytest
from conftest import CHROMIUM, DRIVER, FAST_CROSSVAL, stage
from test_bad_inputs import refused
from test_cifar10n import human_file
from test_page import shown_rows

from pipeline import conditions, datasets, files, store
from pipeline.errors import PipelineError
from pipeline.kinds import annotators
from pipeline.layout import RunDir

RATES = (0.1, 0.25, 0.4)  # each annotator's share of wrong labels


def annotate(run: RunDir, folder, skip: float = 0.1):
    """Three annotators of the digits, each wrong on its share of rows; the last two skip some rows. Their label
    files and the same labels as one long CSV."""
    ds = datasets.cached(run.dataset)
    rng, files, lines = np.random.default_rng(0), [], ["id,annotator,label"]
    for j, rate in enumerate(RATES):
        labels = np.where(rng.random(len(ds.train_y)) < rate, rng.integers(0, 10, len(ds.train_y)), ds.train_y)
        if j:
            labels[rng.random(len(labels)) < skip] = annotators.MISSING
        files.append(folder / f"worker{j}.npy")
        np.save(files[-1], labels)
        lines += [f"{ds.train_ids[i]},worker{j},{ds.classes[y]}" for i, y in enumerate(labels) if y >= 0]
    (folder / "long.csv").write_text("\n".join(lines) + "\n")
    return files, folder / "long.csv"


@pytest.fixture
def run(folds_run, tmp_path) -> RunDir:
    return RunDir(shutil.copytree(folds_run, tmp_path / "run"))


def test_label_files_and_a_long_csv_give_the_same_vote(run, tmp_path):
    files, long = annotate(run, tmp_path)
    stage("noise", run.root, "--annotators", "files=" + ",".join(map(str, files)), "--annotators", f"long={long}")
    vote = store.read(run.labels("files"))
    assert np.array_equal(vote, store.read(run.labels("long")))
    labels = np.stack([np.load(f) for f in files], 1)
    agreed = (labels[:, 1] == labels[:, 2]) & (labels[:, 1] >= 0)  # two of three: the vote whatever the third says
    assert np.array_equal(vote[agreed], labels[agreed, 1])
    alone = (labels[:, 1:] < 0).all(1)  # only the first labelled these rows
    assert alone.any() and np.array_equal(vote[alone], labels[alone, 0])
    assert conditions.registry(run)["files"].kind == "annotators"
    np.save(files[2], np.load(files[1]))  # an annotator's file changes: the vote made from it is stale
    with pytest.raises(PipelineError, match=f"is stale: {files[2]} changed after it was made"):
        store.verify(run.labels("files"))


def test_bad_annotator_input_is_one_line_and_writes_nothing(run, tmp_path):
    ds = datasets.cached(run.dataset)
    files, long = annotate(run, tmp_path)
    text = long.read_text().splitlines()
    other = ds.classes[(ds.train_y[0] + 1) % 10]
    cases = {
        "unknown id": (
            ["id,annotator,label", "nope/1,worker0,0", *text[1:]],
            "line 2: id 'nope/1' is not a training row",
        ),
        "not a class": ([*text[:2], f"{ds.train_ids[0]},worker1,zebra"], "label 'zebra' is not a class"),
        "twice with two labels": (
            [*text, f"{ds.train_ids[0]},worker0,{other}"],
            f"annotator 'worker0' labels '{ds.train_ids[0]}' '{other}' here and",
        ),
        "one annotator": ([line for line in text if ",worker0," in line or line == text[0]], "1 annotator(s)"),
        "a row nobody labelled": (
            [line for line in text if not line.startswith(f"{ds.train_ids[5]},")],
            f"1 training row(s) have no label from any annotator (first: {ds.train_ids[5]})",
        ),
        "no header": (text[1:], "line 1: expected the header id,annotator,label"),
    }
    for name, (lines, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        refused(run, "noise", "--annotators", f"a={path}", expect=[str(path), message])
    np.save(tmp_path / "bad.npy", np.full(len(ds.train_y), 10))
    refused(run, "noise", "--annotators", f"a={files[0]},{tmp_path / 'bad.npy'}", expect=["label 10 at row 0"])
    refused(run, "noise", "--annotators", f"a={files[0]}", expect=["1 annotator(s); a consensus needs two or more"])
    refused(run, "noise", "--annotators", "a=", expect=["expected NAME=FILE"])


def decisions_file(path, ds, labels, decided):
    """A review page's export: every training row, the label after the decision."""
    lines = ["row,id,label,decision"] + [
        f"{r},{ds.train_ids[r]},{ds.classes[labels[r]]},{decided.get(r, '')}" for r in range(len(labels))
    ]
    path.write_text("\r\n".join(lines) + "\r\n")  # as a spreadsheet saves it
    return path


def test_reviewers_decisions_are_annotators_beside_the_labels_they_reviewed(run, tmp_path):
    """Two reviewers' exported decisions and the labels their pages showed, as three annotators: a row both relabel
    alike takes their label; a row no reviewer decided keeps the shown label; what a reviewer left undecided or
    dropped is no vote of theirs."""
    ds, shown = datasets.cached(run.dataset), store.read(run.labels("n20_s0"))
    wrong = np.flatnonzero(shown != ds.train_y)[:20]
    fixed = shown.copy()
    fixed[wrong] = ds.train_y[wrong]
    a = decisions_file(tmp_path / "decisions-a.csv", ds, fixed, {int(r): "relabel" for r in wrong} | {1: "keep"})
    b = decisions_file(tmp_path / "decisions-b.csv", ds, fixed, {int(r): "relabel" for r in wrong[:10]} | {2: "drop"})
    stage("noise", run.root, "--annotators", f"reviewed={run.labels('n20_s0')},{a},{b}")
    vote = store.read(run.labels("reviewed"))
    assert np.array_equal(vote[wrong[:10]], ds.train_y[wrong[:10]])  # two relabels outvote the shown label
    rest = np.setdiff1d(np.arange(len(shown)), wrong)
    assert np.array_equal(vote[rest], shown[rest])
    refused(run, "noise", "--annotators", f"r={a},{b}", expect=["training row(s) have no label from any annotator"])
    other = decisions_file(tmp_path / "other.csv", ds, fixed, {})
    other.write_text(other.read_text().replace(str(ds.train_ids[3]), "elsewhere/3", 1))
    refused(
        run, "noise", "--annotators", f"r={a},{other}", expect=[str(other), "line 5: id 'elsewhere/3' is not row 3's"]
    )


def test_cifar10n_workers_are_three_annotators(blank_cifar, tmp_path):
    run = RunDir(shutil.copytree(blank_cifar, tmp_path / "run"))
    data = human_file(tmp_path / "CIFAR-10_human.pt")
    stage("noise", run.root, "--annotators", f"workers={tmp_path / 'CIFAR-10_human.pt'}")
    idx = files.load(run.dataset)["train_source_index"]
    workers = np.stack([data[k][idx] for k in annotators.WORKERS], 1)
    vote, agreed = store.read(run.labels("workers")), workers[:, 0] == workers[:, 1]
    assert np.array_equal(vote[agreed], workers[agreed, 0])


def test_the_consensus_beats_the_vote_and_becomes_a_condition(run, tmp_path, request):
    files, _ = annotate(run, tmp_path)
    stage("noise", run.root, "--annotators", "votes=" + ",".join(map(str, files)))
    stage("crossval", run.root, "--cond", "votes", "--fold", "all", *FAST_CROSSVAL)
    stage("combine", run.root, "--cond", "votes")
    out = stage("consensus", run.root).stdout  # only the conditions of several annotators
    info = store.verify(run.consensus("votes"))["info"]
    errors = info["error_vs_truth"]
    assert errors["consensus"] < min(errors["majority_vote"], errors["annotator worker0"]), errors
    quality = [a["quality"] for a in sorted(info["annotators"], key=lambda a: a["name"])]
    assert quality == sorted(quality, reverse=True)  # the annotator with fewer errors is trusted more
    assert "annotator worker2: quality" in out and f"consensus {errors['consensus']:.2%}" in out
    assert conditions.registry(run)["votes_consensus"].kind == "given"
    quality, truth = store.read(run.consensus_quality("votes")), datasets.cached(run.dataset).train_y
    wrong = store.read(run.consensus("votes")) != truth
    assert quality.shape == truth.shape and 0 <= quality.min() and quality.max() <= 1
    assert quality[wrong].mean() < quality[~wrong].mean()  # a wrong consensus label is trusted less
    stage("masks", run.root, "--cond", "votes")
    stage("review", run.root, "--cond", "votes")
    html = run.label_issues("votes").with_suffix(".html").read_text()
    assert '"annotators":[["worker0",' in html and "annotators disagree" in html
    if CHROMIUM and DRIVER:  # and in a browser, where there is one (CI installs it)
        page_shows_annotators(run, files, request.getfixturevalue("browser"))
    assert np.array_equal(store.read(run.labels("votes_consensus")), store.read(run.consensus("votes")))
    assert "0 of 1" in stage("consensus", run.root).stdout  # current
    md = stage("report", run.root).stdout
    assert (
        f"Several annotators of votes: the consensus (condition votes_consensus) changes {info['changed_from_vote']} "
        "of the vote's labels; each annotator's estimated quality: worker0 "
        in md
        and f"consensus {100 * errors['consensus']:.2f}%" in md
    )
    np.save(files[0], np.load(files[1]))  # an annotator's file changes: the consensus and its condition are stale
    with pytest.raises(PipelineError, match=f"{files[0]} changed after it was made"):
        store.verify(run.labels("votes_consensus"))
    refused(run, "consensus", "--cond", "n20_s0", expect=["n20_s0: not a condition of several annotators"])


def page_shows_annotators(run: RunDir, files, browser) -> None:
    """The review page of ``votes`` in a browser: what each annotator said on a card, and the filter of the
    cards the annotators disagree on."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    labels = np.stack([np.load(f) for f in files], 1)
    flagged = [int(r["row"]) for r in csv.DictReader(io.StringIO(store.read(run.label_issues("votes")).decode()))]
    split = [r for r in flagged if len(set(labels[r][labels[r] >= 0])) > 1]
    assert 0 < len(split) < len(flagged)
    browser.get(run.label_issues("votes").with_suffix(".html").as_uri())
    Select(browser.find_element(By.ID, "f-method")).select_by_visible_text("annotators disagree")
    assert sorted(shown_rows(browser)) == sorted(split)  # (the page breaks ties of the CSV's rounded scores by row)
    card = browser.find_element(By.CSS_SELECTOR, f'.card[data-row="{split[0]}"]')
    said = card.find_element(By.CSS_SELECTOR, ".annotators").text
    classes = datasets.cached(run.dataset).classes
    expected = [f"worker{j}: {classes[y]}" for j, y in enumerate(labels[split[0]]) if y >= 0]
    assert said == "annotators " + ", ".join(expected)
