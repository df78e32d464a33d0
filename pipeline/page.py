"""The review page of a condition: ``label_issues.html``, every flagged image in one self-contained file.

It opens from disk: the thumbnails are embedded (data URIs), the script and styles inline, nothing is
fetched. Only the current page of cards is in the document (``PAGE`` cards), so thousands of flagged rows
stay responsive; filters (given class, suggested class, method or issue, decision) and the sort apply to
all of them. Each card carries its dataset row as ``data-row``. A person marks a card keep, drop, or
relabel as a class (buttons, or keys: k, d, 0-9 / the class menu, u to undo; arrows move between cards);
the decisions stay in the browser (localStorage) and "export decisions" saves ``decisions-<cond>.csv``:
one line per training row, ``row,id,label,decision`` (the label after the decision), which
``noise --labels NAME=FILE`` reads back as a condition (``pipeline.decisions``).
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np

PAGE = 60  # cards per page
MAX_CARDS = 20_000  # cards on one page, lowest label quality first (the CSVs list every flagged row)
THUMB = 128  # px: larger images are shown as thumbnails of this size


def thumbnail(image: np.ndarray) -> str:
    """A data URI of one uint8 HWC image: PNG as it is up to THUMB px, else a JPEG thumbnail."""
    from PIL import Image

    im = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    buf = io.BytesIO()
    if max(im.size) <= THUMB:
        im.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    im.thumbnail((THUMB, THUMB), Image.LANCZOS)
    im.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def render(
    cond: str,
    classes: list[str],
    ids: list[str],
    labels: list[int],
    cards: list[dict],
    images: dict[int, str],
    key: str,
    flagged: int | None = None,
) -> bytes:
    """The page: ``cards`` (row, given, suggested, score, methods, true, outlier, near_duplicate_of, and in a
    condition of several annotators ``annotators``: [name, label] of each who labelled the row), the
    thumbnails of their rows and near-duplicate partners (``images``, by row), every training row's id and
    label (the export writes them all), ``key``: what the browser keeps this page's decisions under;
    ``flagged``: how many rows were flagged, where the cards are the first ``MAX_CARDS`` of them."""
    data = {
        "cond": cond,
        "classes": classes,
        "ids": ids,
        "labels": labels,
        "cards": cards,
        "flagged": flagged,
        "images": {str(k): v for k, v in images.items()},
        "key": key,
        "page": PAGE,
    }
    # JSON inside <script>: "<" escaped, so no text of the data (a file name, a class) can end the element.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return TEMPLATE.replace("__TITLE__", _escape(f"label issues: {cond}")).replace("__DATA__", payload).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #222; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc; padding: 8px 12px; z-index: 1; }
header h1 { font-size: 16px; margin: 0 0 6px; }
header label { margin-right: 10px; }
#cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; padding: 12px; }
.card { background: #fff; border: 2px solid #ddd; border-radius: 6px; padding: 6px; outline: none; }
.card.selected { border-color: #1a73e8; }
.card.keep { background: #eef8ee; } .card.drop { background: #f8eeee; } .card.relabel { background: #eef2fb; }
.card img { width: 100%; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated; background: #000; }
.card .labels { font-weight: 600; margin: 4px 0; }
.card .meta { font-size: 12px; color: #555; min-height: 2.4em; }
.card .pair { display: flex; gap: 4px; align-items: center; font-size: 12px; }
.card .pair img { width: 48px; }
.card .actions { display: flex; gap: 4px; margin-top: 4px; }
.card .actions select { flex: 1; min-width: 0; }
.card .decision { font-size: 12px; font-weight: 600; min-height: 1.2em; }
.card .annotators.disagree { color: #b3261e; }
footer { padding: 8px 12px 24px; }
</style></head>
<body>
<header>
<h1 id="title"></h1>
<label>given <select id="f-given"></select></label>
<label>suggested <select id="f-suggested"></select></label>
<label>flagged by <select id="f-method"></select></label>
<label>decision <select id="f-decision"></select></label>
<label>sort <select id="f-sort"><option value="score">label quality, lowest first</option>
<option value="-score">label quality, highest first</option><option value="row">row</option></select></label>
<span id="count"></span>
<button id="prev">&larr; page</button> <button id="next">page &rarr;</button>
<button id="export">export decisions</button>
<div><small>keys: arrows move, k keep, d drop, 0-9 relabel as that class, u undo, n/p next/previous page</small></div>
</header>
<main id="cards"></main>
<footer id="pages"></footer>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const STORE = "cl-review:" + D.key;
let decisions = {};
try { decisions = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (e) { decisions = {}; }
let view = [], page = 0, selected = -1;
const $ = (id) => document.getElementById(id);
const disagree = (c) => new Set((c.annotators || []).map((a) => a[1])).size > 1;
const METHODS = [...new Set(D.cards.flatMap((c) => c.methods.concat(c.outlier ? ["outlier"] : [],
  c.near_duplicate_of.length ? ["near_duplicate"] : [], disagree(c) ? ["annotators disagree"] : [])))];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function options(select, values, labels) {
  select.append(new Option("all", ""));
  values.forEach((v, i) => select.append(new Option(labels ? labels[i] : v, String(v))));
}
function save() { try { localStorage.setItem(STORE, JSON.stringify(decisions)); } catch (e) {} }
function words(card) {
  const d = decisions[card.row];
  if (!d) return "";
  return d.decision === "relabel" ? "relabel as " + D.classes[d.label] : d.decision;
}
function decide(row, decision, label) {
  if (decision === null) delete decisions[row];
  else decisions[row] = { decision: decision, label: decision === "relabel" ? label : D.labels[row] };
  save();
  const node = document.querySelector('.card[data-row="' + row + '"]');
  if (node) paint(node, D.cards.find((c) => c.row === row));
}
function paint(node, card) {
  const d = decisions[card.row];
  node.classList.remove("keep", "drop", "relabel");
  if (d) node.classList.add(d.decision);
  node.querySelector(".decision").textContent = words(card);
}
function cardNode(card, index) {
  const node = el("div", "card");
  node.dataset.row = card.row;
  node.tabIndex = 0;
  const img = el("img");
  img.loading = "lazy";
  img.alt = "row " + card.row;
  img.src = D.images[card.row];
  node.append(img);
  const shown = card.suggested === null ? D.classes[card.given]
    : D.classes[card.given] + " \\u2192 " + D.classes[card.suggested];
  node.append(el("div", "labels", shown));
  const meta = [];
  if (card.score !== null) meta.push("quality " + (card.score < 0.001 ? card.score.toExponential(1) : card.score.toFixed(3)));
  if (card.methods.length) meta.push(card.methods.join(" "));
  if (card.true !== null) meta.push("true: " + D.classes[card.true]);
  if (card.outlier) meta.push("outlier");
  node.append(el("div", "meta", ["row " + card.row].concat(meta).join(" \\u00b7 ")));
  if (card.annotators) {
    const said = card.annotators.map((a) => a[0] + ": " + D.classes[a[1]]).join(", ");
    node.append(el("div", "meta annotators" + (disagree(card) ? " disagree" : ""), "annotators " + said));
  }
  if (card.near_duplicate_of.length) {
    const pair = el("div", "pair");
    const partner = card.near_duplicate_of[0];
    const pimg = el("img");
    pimg.src = D.images[partner];
    pimg.alt = "row " + partner;
    pair.append(pimg, el("span", "", "near-duplicate of row " + partner + " (" + D.classes[D.labels[partner]] + ")"));
    node.append(pair);
  }
  const actions = el("div", "actions");
  const keep = el("button", "", "keep"), drop = el("button", "", "drop");
  keep.dataset.act = "keep";
  drop.dataset.act = "drop";
  keep.onclick = () => decide(card.row, "keep");
  drop.onclick = () => decide(card.row, "drop");
  const relabel = el("select");
  relabel.append(new Option("relabel as\\u2026", ""));
  D.classes.forEach((name, k) => relabel.append(new Option(name, String(k))));
  relabel.onchange = () => { if (relabel.value !== "") decide(card.row, "relabel", Number(relabel.value)); relabel.value = ""; };
  actions.append(keep, relabel, drop);
  node.append(actions, el("div", "decision"));
  node.onclick = () => select(index);
  paint(node, card);
  return node;
}
function apply() {
  const g = $("f-given").value, s = $("f-suggested").value, m = $("f-method").value, d = $("f-decision").value;
  view = D.cards.filter((c) => (g === "" || c.given === Number(g)) && (s === "" || c.suggested === Number(s))
    && (m === "" || c.methods.includes(m) || (m === "outlier" && c.outlier)
        || (m === "near_duplicate" && c.near_duplicate_of.length > 0) || (m === "annotators disagree" && disagree(c)))
    && (d === "" || (d === "undecided" ? !decisions[c.row] : (decisions[c.row] || {}).decision === d)));
  const sort = $("f-sort").value, q = (c) => (c.score === null ? Infinity : c.score);
  view.sort(sort === "row" ? (a, b) => a.row - b.row : sort === "score" ? (a, b) => q(a) - q(b) || a.row - b.row
    : (a, b) => q(b) - q(a) || a.row - b.row);
  page = 0;
  show();
}
function show() {
  const pages = Math.max(1, Math.ceil(view.length / D.page));
  page = Math.min(Math.max(page, 0), pages - 1);
  const first = page * D.page, shown = view.slice(first, first + D.page);
  $("cards").replaceChildren(...shown.map(cardNode));
  $("count").textContent = view.length + " of " + D.cards.length + " flagged rows";
  $("pages").textContent = view.length ? "page " + (page + 1) + " of " + pages
    + " (cards " + (first + 1) + "\\u2013" + (first + shown.length) + ")" : "no card matches the filters";
  selected = -1;
}
function select(i) {
  const nodes = document.querySelectorAll(".card");
  if (!nodes.length) return;
  selected = Math.min(Math.max(i, 0), nodes.length - 1);
  nodes.forEach((n, k) => n.classList.toggle("selected", k === selected));
  nodes[selected].focus();
}
function csvField(text) { return /[",\\n\\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }
function decisionsCsv() {
  const lines = ["row,id,label,decision"];
  for (let row = 0; row < D.labels.length; row++) {
    const d = decisions[row];
    lines.push([row, csvField(D.ids[row]), csvField(D.classes[d ? d.label : D.labels[row]]), d ? d.decision : ""].join(","));
  }
  return lines.join("\\n") + "\\n";
}
function exportCsv() {
  const a = el("a");
  a.href = URL.createObjectURL(new Blob([decisionsCsv()], { type: "text/csv" }));
  a.download = "decisions-" + D.cond + ".csv";
  document.body.append(a);
  a.click();
  a.remove();
}
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const nodes = document.querySelectorAll(".card");
  if (e.key === "ArrowRight" || e.key === "ArrowDown") { select(selected + 1); e.preventDefault(); return; }
  if (e.key === "ArrowLeft" || e.key === "ArrowUp") { select(selected - 1); e.preventDefault(); return; }
  if (e.key === "n") { page++; show(); return; }
  if (e.key === "p") { page--; show(); return; }
  if (selected < 0 || !nodes[selected]) return;
  const row = Number(nodes[selected].dataset.row);
  if (e.key === "k") decide(row, "keep");
  else if (e.key === "d") decide(row, "drop");
  else if (e.key === "u") decide(row, null);
  else if (/^[0-9]$/.test(e.key) && Number(e.key) < D.classes.length) decide(row, "relabel", Number(e.key));
});
$("title").textContent = "label issues: " + D.cond + " (" + D.cards.length + " flagged rows of " + D.labels.length + ")"
  + (D.flagged ? "; the " + D.cards.length + " lowest label quality of " + D.flagged + " flagged: the CSV lists all" : "");
options($("f-given"), D.classes.map((_, k) => k), D.classes);
options($("f-suggested"), D.classes.map((_, k) => k), D.classes);
options($("f-method"), METHODS);
options($("f-decision"), ["undecided", "keep", "relabel", "drop"]);
["f-given", "f-suggested", "f-method", "f-decision", "f-sort"].forEach((id) => { $(id).onchange = apply; });
$("prev").onclick = () => { page--; show(); };
$("next").onclick = () => { page++; show(); };
$("export").onclick = exportCsv;
apply();
</script>
</body></html>
"""
