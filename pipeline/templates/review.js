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
    : D.classes[card.given] + " \u2192 " + D.classes[card.suggested];
  node.append(el("div", "labels", shown));
  const meta = [];
  if (card.score !== null) meta.push("quality " + (card.score < 0.001 ? card.score.toExponential(1) : card.score.toFixed(3)));
  if (card.methods.length) meta.push(card.methods.join(" "));
  if (card.true !== null) meta.push("true: " + D.classes[card.true]);
  if (card.outlier) meta.push("outlier");
  node.append(el("div", "meta", ["row " + card.row].concat(meta).join(" \u00b7 ")));
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
  relabel.append(new Option("relabel as\u2026", ""));
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
    + " (cards " + (first + 1) + "\u2013" + (first + shown.length) + ")" : "no card matches the filters";
  selected = -1;
}
function select(i) {
  const nodes = document.querySelectorAll(".card");
  if (!nodes.length) return;
  selected = Math.min(Math.max(i, 0), nodes.length - 1);
  nodes.forEach((n, k) => n.classList.toggle("selected", k === selected));
  nodes[selected].focus();
}
function csvField(text) { return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }
function decisionsCsv() {
  const lines = ["row,id,label,decision"];
  for (let row = 0; row < D.labels.length; row++) {
    const d = decisions[row];
    lines.push([row, csvField(D.ids[row]), csvField(D.classes[d ? d.label : D.labels[row]]), d ? d.decision : ""].join(","));
  }
  return lines.join("\n") + "\n";
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
