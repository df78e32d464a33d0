"""The review page (label_issues.html) opened from disk in headless Chromium through chromedriver (Debian's
chromium and chromium-driver, which .ci/run installs); without them the browser tests skip and say why."""

import csv
import io
import shutil

import numpy as np
import pytest
from conftest import browser_needed, stage

from pipeline import datasets, store
from pipeline.layout import RunDir

COND = "n40_s40"


@pytest.fixture(scope="module")
def reviewed(folds_run, tmp_path_factory) -> RunDir:
    run = RunDir(shutil.copytree(folds_run, tmp_path_factory.mktemp("page") / "run"))
    for name in ("combine", "masks", "review"):
        stage(name, run.root, "--cond", COND)
    return run


def flagged(run: RunDir) -> list[dict]:
    return list(csv.DictReader(io.StringIO(store.read(run.label_issues(COND)).decode())))


def shown_rows(browser) -> list[int]:
    """The rows of every card, page after page (only one page of cards is in the document at a time); back on
    the first page after."""
    from selenium.webdriver.common.by import By

    rows, seen, pages = [], set(), 0
    while True:
        page = [int(c.get_attribute("data-row")) for c in browser.find_elements(By.CSS_SELECTOR, ".card")]
        if not page or page[0] in seen:
            for _ in range(pages):
                browser.find_element(By.ID, "prev").click()
            return rows
        seen.update(page)
        rows += page
        browser.find_element(By.ID, "next").click()
        pages += 1


@browser_needed
def test_every_flagged_row_is_a_card_and_a_filter_narrows_them(reviewed, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    issues = flagged(reviewed)
    browser.get(reviewed.label_issues(COND).with_suffix(".html").as_uri())
    assert shown_rows(browser) == [int(r["row"]) for r in issues]  # every one, lowest label quality first
    given = issues[0]["given_label"]
    Select(browser.find_element(By.ID, "f-given")).select_by_visible_text(given)
    narrowed = shown_rows(browser)
    assert narrowed == [int(r["row"]) for r in issues if r["given_label"] == given] and len(narrowed) < len(issues)
    card = browser.find_element(By.CSS_SELECTOR, f'.card[data-row="{narrowed[0]}"]')
    assert card.find_element(By.CSS_SELECTOR, ".labels").text.startswith(given)
    Select(browser.find_element(By.ID, "f-method")).select_by_visible_text("C_{y~,y*}")
    both = shown_rows(browser)
    assert both == [
        int(r["row"]) for r in issues if r["given_label"] == given and "C_{y~,y*}" in r["flagged_by"].split()
    ]


@browser_needed
def test_decisions_exported_and_read_back_change_exactly_those_labels(reviewed, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(reviewed.label_issues(COND).with_suffix(".html").as_uri())
    browser.execute_script("localStorage.clear(); location.reload();")
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")
    rows = [int(c.get_attribute("data-row")) for c in cards[:4]]
    labels = store.read(reviewed.labels(COND))
    classes = list(datasets.cached(reviewed.dataset).classes)
    new = (int(labels[rows[0]]) + 1) % len(classes)
    Select(cards[0].find_element(By.CSS_SELECTOR, "select")).select_by_visible_text(classes[new])  # click: relabel
    cards[1].find_element(By.CSS_SELECTOR, 'button[data-act="keep"]').click()
    cards[2].find_element(By.CSS_SELECTOR, 'button[data-act="drop"]').click()
    cards[3].click()  # keyboard: select a card, then a class's digit relabels it
    key = next(k for k in range(len(classes)) if k != labels[rows[3]])
    browser.find_element(By.TAG_NAME, "body").send_keys(str(key))
    assert "relabel" in browser.find_element(By.CSS_SELECTOR, f'.card[data-row="{rows[3]}"]').get_attribute("class")
    browser.refresh()  # decisions survive a reload (the browser keeps them)
    exported = tmp_path / "decisions.csv"
    exported.write_text(browser.execute_script("return decisionsCsv()"))
    lines = list(csv.DictReader(exported.open()))
    assert [(int(r["row"]), r["decision"]) for r in lines if r["decision"]] == sorted(
        [(rows[0], "relabel"), (rows[1], "keep"), (rows[2], "drop"), (rows[3], "relabel")]
    )
    out = stage("noise", reviewed.root, "--labels", f"reviewed={exported}").stdout
    assert "reviewed" in out
    after = store.read(reviewed.labels("reviewed"))
    changed = np.flatnonzero(after != labels)
    assert changed.tolist() == sorted([rows[0], rows[3]]) and after[rows[0]] == new and after[rows[3]] == key


def test_a_decisions_file_naming_rows_that_do_not_exist_is_one_line(reviewed, tmp_path):
    ds = datasets.cached(reviewed.dataset)
    labels = store.read(reviewed.labels(COND))
    lines = ["row,id,label,decision"] + [f"{i},{ds.train_ids[i]},{ds.classes[labels[i]]}," for i in range(len(labels))]
    registry = reviewed.registry.read_bytes()
    cases = {
        "extra row": (
            lines + [f"{len(labels)},x,{ds.classes[0]},drop"],
            f"line {len(labels) + 2}: row '{len(labels)}' does not exist (the dataset has {len(labels)} training rows)",
        ),
        "missing rows": (lines[:-5], f"5 of {len(labels)} training rows missing (from row {len(labels) - 5})"),
        "another dataset": (
            [lines[0], "0,other.png," + lines[1].split(",", 2)[2]] + lines[2:],
            f"line 2: id 'other.png' is not row 0's ({str(ds.train_ids[0])!r})",  # a plain value, not np.str_(...)
        ),
        "a blank line inside": (lines[:3] + [""] + lines[3:], "line 4: a blank line before the last row"),
        "not a class": (
            [lines[0], lines[1].rsplit(",", 2)[0] + ",zebra,relabel"] + lines[2:],
            "line 2: label 'zebra' is not a class of the dataset",
        ),
        "no header": (lines[1:], "line 1: expected the header row,id,label,decision"),
        "not a row number": ([lines[0], "²" + lines[1][1:]] + lines[2:], "line 2: row '²' does not exist"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(text) + "\n")
        err = stage("noise", reviewed.root, "--labels", f"r={path}", ok=False).stderr.strip()
        assert len(err.splitlines()) == 1 and message in err and str(path) in err, (name, err)
    assert reviewed.registry.read_bytes() == registry


def test_a_decisions_file_after_a_spreadsheet_round_trip_reads_the_same(reviewed, tmp_path):
    """Saved as "CSV UTF-8": a byte-order mark before the header, CRLF line ends, a trailing blank line."""
    ds = datasets.cached(reviewed.dataset)
    labels = store.read(reviewed.labels(COND))
    lines = ["row,id,label,decision"] + [f"{i},{ds.train_ids[i]},{ds.classes[labels[i]]}," for i in range(len(labels))]
    lines[3] = lines[3].rsplit(",", 2)[0] + f",{ds.classes[(labels[2] + 1) % len(ds.classes)]},relabel"
    plain, sheet = tmp_path / "plain.csv", tmp_path / "sheet.csv"
    plain.write_text("\n".join(lines) + "\n")
    sheet.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n").encode())
    run = RunDir(shutil.copytree(reviewed.root, tmp_path / "run"))
    stage("noise", run.root, "--labels", f"plain={plain}", "--labels", f"sheet={sheet}")
    a, b = store.read(run.labels("plain")), store.read(run.labels("sheet"))
    assert np.array_equal(a, b) and a[2] != labels[2] and (np.delete(a, 2) == np.delete(labels, 2)).all()


def test_a_page_for_a_condition_without_masks_is_one_line(run_copy):
    err = stage("review", run_copy, "--cond", "n20_s0", ok=False).stderr.strip()
    assert len(err.splitlines()) == 1 and "masks" in err, err


def test_the_report_links_each_review_page_and_names_one_whose_inputs_changed(reviewed, tmp_path):
    run = RunDir(shutil.copytree(reviewed.root, tmp_path / "run"))
    stage("report", run.root)
    link = f"../conditions/{COND}/label_issues.html"
    assert (
        f"Review page of {COND}: [{link}]({link}) ({len(flagged(run))} flagged rows"
        in (run.report_dir / "table.md").read_text()
    )
    issues = run.label_issues(COND)
    changed = store.read(issues).replace(b"\n", b"\r\n")  # the label issues remade after the page: intact, other bytes
    store.produce(issues, root=run.root, stage="review", inputs={}, config={}, force=True, make=lambda: (changed, {}))
    stage("report", run.root)
    text = (run.report_dir / "table.md").read_text()
    assert (
        "Review page of" not in text
        and f"{issues.with_suffix('.html')} is stale: {issues} changed after it was made" in text
    )


def test_the_template_files_fill_in_one_pass_and_the_script_parses():
    """The page is its template files (package data) with their fields filled once: text filled in (a condition
    or class that reads like a field) is never searched again. The script parses in node where it is installed
    (the Chromium tests above run it)."""
    import subprocess

    from pipeline import page

    html = page.render("c__DATA__", ["__SCRIPT__", "b</script>"], ["i0"], [0], [], {}, "k").decode()
    assert "<title>label issues: c__DATA__</title>" in html and '"classes":["__SCRIPT__","b\\u003c/script>"]' in html
    assert html.count('"use strict"') == 1 and html.count("</script>") == 2 and "__STYLE__" not in html
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the script's syntax is checked in Chromium only")
    script = page.TEMPLATES / "review.js"
    proc = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
