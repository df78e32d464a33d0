"""The report: our test accuracy per (rows, learner) beside the CL paper's Table 2, whether cleaning
helps (paired by seed), the label-error detection of the CL methods on this run's psx and on the
paper's, and three plots; Markdown, CSV and PNG in ``report/``.

Accuracy is aggregated over whatever seeds (trials) exist: mean ± sample std (ddof=1). Accuracies
are fractions in records and CSV, percentages in the Markdown. The report reads artifacts and makes
none: detection on the paper's psx (conditions with the paper's labels) is the masks stage's.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from pipeline import backbones, conditions, features, files, paired, plots, store
from pipeline.conditions import parse_conditions
from pipeline.errors import PipelineError
from pipeline.layout import RunDir
from pipeline.learners import BY_NAME
from pipeline.masks import CL_METHODS, PAPER_PSX, ROWS, mask_paths, rows_inputs

ROOT = Path(__file__).resolve().parent.parent
# The paper's Table 2, two ways: as published (default), and trial 1 of 10 of its own Co-Teaching runs.
PAPER_TABLES = {
    "published": (ROOT / "data" / "cl_paper_table2_published.csv", "the CL paper's Table 2 as published"),
    "trial1": (ROOT / "data" / "cl_paper_table2.csv", "trial 1 of 10 of the CL paper's Co-Teaching runs"),
}
PAPER_CONDITIONS = {c.paper_column: c for c in parse_conditions("paper")}  # "4_6" -> n70_s40
ROWS_NAMES = {"none": "all rows", **{v: k for k, v in CL_METHODS.items()}}


def cell_name(rows: str, learner: str) -> str:
    """``C+NR × Co-Teaching``, ``all rows × cross-entropy``."""
    return f"{ROWS_NAMES[rows]} × {BY_NAME[learner].title}"


def paper_table(which: str = "published") -> tuple[dict[tuple[str, str, str], tuple[float, str]], list[str]]:
    """(``{(rows, learner, paper column): (test accuracy as a fraction, what it measures)}``, the table's
    rows that have no learner here, e.g. INCV)."""
    cells, unmatched = {}, []
    with open(PAPER_TABLES[which][0], newline="") as f:
        for row in csv.DictReader(f):
            if not row["rows"]:
                unmatched.append(row["paper_row"])
                continue
            for col in PAPER_CONDITIONS:
                if row.get(col):
                    cells[row["rows"], row["learner"], col] = (float(row[col]) / 100, row["measure"])
    return cells, unmatched


Cell = tuple[str, str, str]  # (condition, rows, learner): one cell of the accuracy tables


class Accuracy(NamedTuple):
    """One seed's test accuracy: a coteach metrics file whose whole chain verifies."""

    condition: str
    paper_column: str | None
    noise_rate: float
    sparsity: float
    rows: str
    learner: str
    seed: int
    final_acc: float
    best_acc: float
    n_train: int


class Detection(NamedTuple):
    """One CL method's detection of label errors on a condition (``masks.detection``; None where undefined), on this
    run's psx (``psx`` "run": the mask's manifest) or on the paper's ("paper": the masks stage's, from ``psx_dir``)."""

    condition: str
    paper_column: str | None
    noise_rate: float
    sparsity: float
    psx: str
    method: str
    errors: int
    f1: float | None
    flagged: int
    keep_fraction: float
    kept: int
    precision: float | None
    recall: float | None
    psx_dir: str | None = None


MEASURES = Detection._fields[6:13]  # what masks.detection records


def detection(base: tuple, psx: str, method: str, measures, where: Path, psx_dir: str | None = None) -> Detection:
    """A ``Detection`` of ``measures`` as ``where`` records them, or a PipelineError naming ``where`` when they
    are not ``masks.detection``'s (a hand-edited file)."""
    if not (
        isinstance(measures, dict)
        and measures.keys() == set(MEASURES)
        and all(v is None or type(v) in (int, float) for v in measures.values())
    ):
        raise PipelineError(
            f"{where}: {method}'s detection is not as masks records it (edited by hand?); remake it with "
            f"python -m stages.masks --cond {base[0]} --force"
        )
    return Detection(*base, psx, method, **measures, psx_dir=psx_dir)


@dataclass
class Collected:
    """What ``collect`` found: the records whose whole chain verifies; a line for each result left out (``stale``);
    the configs behind the records (``{"masks": {condition: psx source}, "crossval": {condition: config},
    "coteach": {cell: config}}``); the conditions loaded, in the order asked."""

    accuracy: list[Accuracy] = field(default_factory=list)
    detection: list[Detection] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    configs: dict[str, dict] = field(default_factory=lambda: {"masks": {}, "crossval": {}, "coteach": {}})
    loaded: dict[str, conditions.Loaded] = field(default_factory=dict)

    def table(self) -> list[dict]:
        """``table.csv``'s rows: each condition's detection records, then its accuracy records, ``kind`` naming which."""
        rows = []
        for cond in self.loaded:
            for kind, records in (("detection", self.detection), ("accuracy", self.accuracy)):
                for r in records:
                    if r.condition == cond:
                        d = r._asdict()
                        rows.append({**{k: d.pop(k) for k in r._fields[:4]}, "kind": kind, **d})
        return rows


def collect(run: RunDir, conds: list[str], seeds: list[int] | None = None) -> Collected:
    """The records: one ``Accuracy`` per (condition, rows, learner, seed) metrics file (``seeds``: only these;
    default all found), and one ``Detection`` per (condition, method) on this run's masks and on the paper's psx.
    Only results whose whole chain verifies are records; the others are ``stale`` (one line each). The seeds of one
    cell must share a config."""
    found = Collected()
    configs = found.configs
    for cond in conds:
        try:
            loaded = found.loaded[cond] = conditions.load(run, cond)
        except PipelineError as e:
            found.stale.append(str(e))
            continue
        c = loaded.condition
        base = (cond, c.paper_column, loaded.noise_rate, c.sparsity)
        made, detected = {}, []
        for method, path in mask_paths(run, cond).items():
            try:
                if path.exists():
                    made[method] = manifest = store.verify(path)
                    where = store.manifest_path(path)
                    detected.append(detection(base, "run", method, manifest["info"].get("detection"), where))
            except PipelineError as e:
                found.stale.append(str(e))
        try:
            if made:
                configs["masks"][cond] = store.same_config(
                    {m: {"psx": v["config"]["psx"]} for m, v in made.items()}, f"{cond}'s masks"
                )
                if configs["masks"][cond]["psx"] == "combine":  # the shards' crossval config, or an ensemble's members
                    made_as = store.verify(run.psx(cond))["config"]
                    configs["crossval"][cond] = made_as.get("crossval", made_as)
            found.detection += detected
        except PipelineError as e:
            found.stale.append(str(e))
        if run.paper_detection(cond).exists():
            try:
                made = store.verify(run.paper_detection(cond))
                found.detection += [
                    detection(base, "paper", m, d, run.paper_detection(cond), made["info"].get("psx_dir"))
                    for m, d in files.load(run.paper_detection(cond)).items()
                ]
            except PipelineError as e:
                found.stale.append(str(e))
        reads: dict[
            tuple, dict
        ] = {}  # (rows, features, weights) -> what coteach reads for them now, looked up once each
        for rows in ROWS:
            for learner in BY_NAME:
                cell = {}
                for path in sorted(run.coteach(cond, rows, learner, 0).parent.glob("seed*.json")):
                    if not re.fullmatch(r"seed\d+\.json", path.name):
                        continue
                    try:
                        manifest = store.verify(path)
                        config = manifest["config"]
                        feats = (
                            features.path(run, config["arch"], config["weights"], config.get("input_size"))
                            if config.get("features")
                            else None
                        )
                        weights = (
                            backbones.weights_file(config["arch"], config["weights"])
                            if config.get("weights") and not feats
                            else None
                        )
                        if (rows, feats, weights) not in reads:
                            reads[rows, feats, weights] = rows_inputs(run, cond, rows, feats, weights)
                        store.check_made_from(path, manifest, reads[rows, feats, weights])
                        m = files.load(path)
                    except PipelineError as e:
                        found.stale.append(str(e))
                        continue
                    if seeds is None or m["seed"] in seeds:
                        cell[str(path)] = {k: v for k, v in config.items() if k != "seed"}
                        found.accuracy.append(
                            Accuracy(*base, rows, learner, m["seed"], m["final_acc"], m["best_acc"], m["n_train"])
                        )
                if cell:
                    what = f"{cond} {cell_name(rows, learner)}: its seeds were trained differently"
                    common = store.same_config(cell, what)
                    configs["coteach"][cond, rows, learner] = {
                        k: v for k, v in common.items() if k not in ("rows", "learner")
                    }
    return found


def config_notes(configs: dict[str, dict]) -> list[str]:
    """One line per distinct config of a stage (``Collected.configs``; coteach: of each learner, whose options
    differ by design), naming the conditions or cells (``cond/rows/learner``) that used it when there are several;
    Co-Teaching's forget rate, which follows each condition's noise rate by default, on a line of its own, by
    condition."""
    notes, rates = [], {}
    for stage, by_key in configs.items():
        kinds: dict[str, dict[str, dict]] = {}
        for key, config in by_key.items():
            if stage == "coteach":
                cond, rows, learner = key
                if "forget_rate" in config:
                    rates.setdefault(cond, {}).setdefault(config["forget_rate"], []).append(ROWS_NAMES[rows])
                    config = {k: v for k, v in config.items() if k != "forget_rate"}
                kinds.setdefault(learner, {})["/".join(key)] = config
            else:
                kinds.setdefault("", {})[key] = config
        for kind, of_kind in kinds.items():
            groups: dict[str, list[str]] = {}
            for name, config in of_kind.items():
                groups.setdefault(json.dumps(config, sort_keys=True), []).append(name)
            for text, cells in groups.items():
                where = f" (used by {', '.join(cells)})" if len(groups) > 1 else ""
                notes.append(f"{stage}{' ' + kind if kind else ''} config{where}: `{text}`")
    if rates:
        per = [
            f"{cond} {next(iter(r))}"
            if len(r) == 1
            else f"{cond} " + ", ".join(f"{v} ({', '.join(rows)})" for v, rows in r.items())
            for cond, r in rates.items()
        ]
        notes.append(
            "coteach coteaching forget rate (rows in brackets where a condition has several): " + "; ".join(per)
        )
    return notes


def _rows(frame: pd.DataFrame) -> list[dict]:
    """A frame's rows as dicts, None where pandas has NaN (what the renderers and CSVs write as absent)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def accuracy_summary(records: list[Accuracy], paper: dict) -> list[dict]:
    """One row per cell with results: mean and std over seeds of the final- and best-epoch accuracy, the
    paper's cell for the condition's column, and our mean minus it."""
    acc = pd.DataFrame(records)
    if acc.empty:
        return []
    cells = acc.groupby(["condition", "rows", "learner"], sort=False)
    out = cells[["paper_column", "noise_rate", "sparsity"]].first()
    out["n_seeds"], out["seeds"] = cells.size(), cells["seed"].agg(lambda s: " ".join(map(str, s)))
    for key in ("final_acc", "best_acc"):
        out[f"{key}_mean"], out[f"{key}_std"] = cells[key].mean(), cells[key].std()
    out = out.reset_index()
    found = [paper.get((r.rows, r.learner, r.paper_column), (None, None)) for r in out.itertuples()]
    out["paper_acc"] = pd.Series([a for a, _ in found], dtype=float)
    out["paper_measure"] = [m for _, m in found]
    for key in ("final_acc", "best_acc"):
        out[f"{key}_delta"] = out[f"{key}_mean"] - out["paper_acc"]
    first = ["condition", "paper_column", "noise_rate", "sparsity", "rows", "learner"]
    return _rows(out[first + [c for c in out if c not in first]])


def cleaning_summary(records: list[Accuracy], coteach_configs: dict[Cell, dict]) -> tuple[list[dict], list[str]]:
    """Does cleaning help? (rows, not compared). One row per (condition, mask, learner) whose learner also
    ran on all rows with the same options for seeds they share: the paired difference at the final epoch
    (``paired.paired_difference``). A pair trained with other options, or with no seed in common, is
    not compared: one line each, naming why. ``coteach_configs``: ``collect``'s, by cell."""
    by_cell: dict[Cell, dict[int, float]] = {}
    for r in records:
        by_cell.setdefault((r.condition, r.rows, r.learner), {})[r.seed] = r.final_acc
    rows, skipped = [], []
    for (cond, rows_, learner), cleaned in by_cell.items():
        baseline = by_cell.get((cond, "none", learner))
        if rows_ == "none" or baseline is None:
            continue
        what = f"{cond} {cell_name(rows_, learner)} against {cell_name('none', learner)}"
        mine, theirs = coteach_configs[cond, rows_, learner], coteach_configs[cond, "none", learner]
        diff = ", ".join(
            f"{k}={mine.get(k)!r} (all rows: {theirs.get(k)!r})"
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        )
        if diff:
            skipped.append(
                f"{what}: not compared, trained with other options: {diff}; rerun one with the other's options"
            )
        elif not set(cleaned) & set(baseline):
            skipped.append(f"{what}: not compared, no seed in common (seeds {sorted(cleaned)} and {sorted(baseline)})")
        else:
            rows.append(
                {
                    "condition": cond,
                    "rows": rows_,
                    "learner": learner,
                    "name": cell_name(rows_, learner),
                    "baseline": cell_name("none", learner),
                    **paired.paired_difference(cleaned, baseline),
                }
            )
    order = {pair: i for i, pair in enumerate((r, lr) for r in ROWS for lr in BY_NAME)}
    conds = list(dict.fromkeys(r.condition for r in records))
    return sorted(rows, key=lambda r: (conds.index(r["condition"]), order[r["rows"], r["learner"]])), skipped


def detection_summary(records: list[Detection]) -> list[dict]:
    """One row per (condition, method) with detection: precision, recall, F1 and fraction kept on this
    run's psx (``run_*``) and on the paper's (``paper_*``), None where absent or undefined."""
    det = pd.DataFrame(records)
    if det.empty:
        return []
    measures = ["precision", "recall", "f1", "keep_fraction"]
    wide = det.pivot(index=["condition", "paper_column", "method"], columns="psx", values=measures)
    wide.columns = [f"{psx}_{k}" for k, psx in wide.columns]
    wide = wide.reset_index()
    wide = wide[
        ["condition", "paper_column", "method"] + [f"{psx}_{k}" for psx in det["psx"].unique() for k in measures]
    ]
    order = {m: i for i, m in enumerate(CL_METHODS.values())}
    wide = wide.sort_values(
        ["condition", "method"],
        key=lambda c: c.map(
            order if c.name == "method" else {cond: i for i, cond in enumerate(det["condition"].unique())}
        ),
    )
    return _rows(wide)


def _pct(v: float | None, std: float | None = None, sign: bool = False) -> str:
    if v is None:
        return "–"
    return (f"{100 * v:+.1f}" if sign else f"{100 * v:.1f}") + ("" if std is None else f" ± {100 * std:.1f}")


def _prf(r: dict, psx: str) -> str:
    if r.get(f"{psx}_keep_fraction") is None:
        return "–"
    num = lambda v: "–" if v is None else f"{v:.2f}"
    return (
        " / ".join(num(r[f"{psx}_{k}"]) for k in ("precision", "recall", "f1"))
        + f" (keep {r[f'{psx}_keep_fraction']:.2f})"
    )


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pairs(acc: list[dict]) -> list[tuple[str, str]]:
    """The (rows, learner) pairs with results, in ROWS x learners order."""
    have = {(r["rows"], r["learner"]) for r in acc}
    return [(rows, learner) for rows in ROWS for learner in BY_NAME if (rows, learner) in have]


@dataclass
class Tables:
    """What ``table.md`` shows: the ``accuracy_summary``, ``detection_summary`` and ``cleaning_summary`` rows;
    each condition's column heading, in the report's order; the paper's table compared with (its title, and its
    rows with no learner here); the notes under the tables; a line for each result left out."""

    accuracy: list[dict]
    detection: list[dict]
    cleaning: list[dict]
    headings: dict[str, str]
    paper_title: str
    unmatched: list[str]
    notes: list[str]
    left_out: list[str]


def markdown(t: Tables) -> str:
    """The report's Markdown: accuracy per (rows, learner) x condition (final, best epoch), beside the paper's
    cells, whether cleaning helps, and detection on both psx, then the results left out."""
    acc, det, conds = t.accuracy, t.detection, list(t.headings)
    cols = {r["condition"]: r["paper_column"] for r in acc + det if r["paper_column"]}
    header = ["rows × learner"] + list(t.headings.values())
    seeds = sorted({int(s) for r in acc for s in r["seeds"].split()})
    most = max((r["n_seeds"] for r in acc), default=0)
    out = []
    for key, title in (
        ("final_acc", "final epoch (mean of the networks)"),
        ("best_acc", "best epoch of any network, as the CL paper reported"),
    ):
        rows = []
        for pair in _pairs(acc):
            cells = {
                r["condition"]: _pct(r[f"{key}_mean"], r[f"{key}_std"])
                + (f" (n={r['n_seeds']})" if r["n_seeds"] < most else "")
                for r in acc
                if (r["rows"], r["learner"]) == pair
            }
            rows.append([cell_name(*pair)] + [cells.get(c, "–") for c in conds])
        out.append(
            f"## Test accuracy (%), {title}; seeds {seeds}, mean ± std over seeds\n\n"
            + (_markdown(header, rows) if rows else "No coteach results for these conditions and seeds (make coteach).")
        )
    paired = [r for r in acc if r["paper_acc"] is not None]
    if paired:
        rows = [
            [
                r["condition"],
                cols[r["condition"]],
                cell_name(r["rows"], r["learner"]),
                _pct(r["paper_acc"]),
                r["paper_measure"],
                _pct(r["final_acc_mean"], r["final_acc_std"]),
                _pct(r["final_acc_delta"], sign=True),
                _pct(r["best_acc_mean"], r["best_acc_std"]),
                _pct(r["best_acc_delta"], sign=True),
            ]
            for r in paired
        ]
        header = [
            "condition",
            "paper column",
            "rows × learner",
            "paper",
            "paper measure",
            "ours, final",
            "Δ final",
            "ours, best",
            "Δ best",
        ]
        extra = f" Rows of that table with no learner here: {', '.join(t.unmatched)}." if t.unmatched else ""
        out.append(
            f"## Beside {t.paper_title}\n\nOurs at the final epoch and, separately, at the best epoch; Δ = ours - paper. "
            f"(rows, learner) pairs without a published row are in the tables above only.{extra}\n\n"
            + _markdown(header, rows)
        )
    if t.cleaning:
        rows = [
            [
                r["condition"],
                r["name"],
                r["baseline"],
                " ".join(map(str, r["seeds"])),
                _pct(r["mean"], sign=True),
                "–" if r["ci_low"] is None else f"[{_pct(r['ci_low'], sign=True)}, {_pct(r['ci_high'], sign=True)}]",
                r["verdict"],
            ]
            for r in t.cleaning
        ]
        out.append(
            "## Does cleaning help? Cleaned rows against all rows, same learner, paired by seed\n\n"
            "Test accuracy at the final epoch; per seed, the cleaned run minus the all-rows run (both share the seed's "
            "initialisation and batch order); mean and 95% paired-t interval over the seeds, in points. "
            "`helps` / `hurts`: the interval excludes 0. Per-seed differences: `cleaning_helps.png`.\n\n"
            + _markdown(["condition", "cleaned", "against", "seeds", "mean Δ", "95% CI", "verdict"], rows)
        )
    if det:
        rows = [[r["condition"], ROWS_NAMES[r["method"]], _prf(r, "run"), _prf(r, "paper")] for r in det]
        out.append(
            "## Label-error detection: precision / recall / F1 (fraction kept)\n\nAgainst the labels the run knows "
            "to be true; – where undefined (a condition with the dataset's own labels has no known errors).\n\n"
            + _markdown(["condition", "method", "this run's masks", "the paper's psx (ResNet-50)"], rows)
        )
    if t.left_out:
        out.append(
            "## Not shown: stale or changed results (rerun the stage each names)\n\n"
            + "\n".join(f"- {e}" for e in t.left_out)
        )
    body = "\n\n".join(out) + "\n\n" + "\n".join(f"- {n}" for n in t.notes)
    return "# Confident Learning: which rows x which learner\n\n" + body + "\n"


def _csv(path: Path, rows: list[dict]) -> None:
    files.save(path, pd.DataFrame(rows, dtype=object).to_csv(index=False, lineterminator="\r\n").encode())


def review_pages(run: RunDir, conds: list[str]) -> tuple[list[str], list[str]]:
    """(a line linking each condition's review page, made by review from the files as they are now; a line
    for each page that is damaged or whose inputs changed since)."""
    lines, stale = [], []
    for cond in conds:
        path = run.label_issues(cond).with_suffix(".html")
        if not path.exists():
            continue
        try:
            manifest = store.verify(path)  # intact, and so is every input up the chain
        except PipelineError as e:
            stale.append(str(e))
            continue
        link = os.path.relpath(path, run.report_dir)
        lines.append(
            f"Review page of {cond}: [{link}]({link}) ({manifest['info']['cards']} flagged rows to look at and "
            "decide; its exported decisions are labels for noise --labels)"
        )
    return lines, stale


def consensus_lines(run: RunDir, conds: list[str]) -> tuple[list[str], list[str]]:
    """(a line for each condition of several annotators with a current consensus (``pipeline.consensus``): how the
    annotators are trusted and, where the truth is known, how often each source is wrong; a line for each stale one)."""
    lines, stale = [], []
    for cond in conds:
        if not run.consensus(cond).exists():
            continue
        try:
            info = store.verify(run.consensus(cond))["info"]
        except PipelineError as e:
            stale.append(str(e))
            continue
        trusted = ", ".join(
            f"{a['name']} {a['quality']:.3f} (agrees with the consensus on {100 * a['agreement_with_consensus']:.1f}%)"
            for a in info["annotators"]
        )
        wrong = info.get("error_vs_truth")
        lines.append(
            f"Several annotators of {cond}: the consensus (condition {cond}_consensus) changes "
            f"{info['changed_from_vote']} of the vote's labels; each annotator's estimated quality: {trusted}"
            + (
                "; wrong against the truth: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in wrong.items())
                if wrong
                else ""
            )
        )
    return lines, stale


def column_heading(loaded: conditions.Loaded) -> str:
    """``n40_s20 (40%, paper 2_4)``; CIFAR-10N conditions say they are real human noise; labels that are
    the dataset's own say so, not 0% (on your own data their noise is what the run tries to find)."""
    c = loaded.condition
    what = f", paper {c.paper_column}" if c.paper_column else ", real human noise" if c.kind == "cifar10n" else ""
    rate = "labels as given" if loaded.noise_rate == 0 else f"{100 * loaded.noise_rate:.0f}%"
    return f"{c.name} ({rate}{what})"


def write(
    run: RunDir, conds: list[str], seeds: list[int] | None = None, paper_which: str = "published"
) -> tuple[list[Path], str]:
    """Write the report into ``report/``: ``table.md``, ``table.csv`` (every record), ``accuracy.csv``,
    ``detection.csv`` and ``cleaning.csv`` (the summaries), ``noise_matrices.png``, ``accuracy_vs_noise.png``
    and ``cleaning_helps.png``.
    ``paper_which``: the paper's table to compare with (``PAPER_TABLES``). Returns (the files written, the Markdown)."""
    found = collect(run, conds, seeds)
    paper, unmatched = paper_table(paper_which)
    acc = accuracy_summary(found.accuracy, paper)
    cleaning, not_compared = cleaning_summary(found.accuracy, found.configs["coteach"])
    dirs = sorted({r.psx_dir for r in found.detection if r.psx == "paper"})
    if not any(c.condition.paper_key for c in found.loaded.values()):
        note = "The paper's psx: no condition here has the paper's labels; detection on them skipped."
    elif not dirs:
        note = (
            f"The paper's psx: no detection on them (make masks makes it where {PAPER_PSX}, or masks "
            "--paper-psx DIR, holds the paper's psx files)."
        )
    else:
        note = f"The paper's psx: {', '.join(dirs)} (4-fold cross-validated ResNet-50, from the paper's repository)."
    table, title = PAPER_TABLES[paper_which]
    pages, stale_pages = review_pages(run, list(found.loaded))
    reconciled, stale_consensus = consensus_lines(run, list(found.loaded))
    tables = Tables(
        accuracy=acc,
        detection=detection_summary(found.detection),
        cleaning=cleaning,
        headings={c: column_heading(cond) for c, cond in found.loaded.items()},
        paper_title=title,
        unmatched=unmatched,
        notes=[
            note,
            f"The paper's cells: {title} ({table.relative_to(ROOT)}; its 'measure' column says what each row measured).",
            *config_notes(found.configs),
            *pages,
            *reconciled,
        ],
        left_out=found.stale + stale_pages + stale_consensus + not_compared,
    )
    d = run.report_dir
    written = [
        d / "table.md",
        d / "table.csv",
        d / "accuracy.csv",
        d / "detection.csv",
        d / "cleaning.csv",
        d / "noise_matrices.png",
        d / "accuracy_vs_noise.png",
        d / "cleaning_helps.png",
    ]
    text = markdown(tables)
    files.save(written[0], text.encode())
    for path, rows in zip(written[1:5], (found.table(), tables.accuracy, tables.detection, tables.cleaning)):
        _csv(path, rows)
    published = {}
    for (rows, learner, col), (value, _) in paper.items():
        c = PAPER_CONDITIONS[col]
        published.setdefault((rows, learner, c.sparsity), []).append((100 * c.noise, 100 * value))
    plots.noise_matrices({c: (cond.noise_matrix, cond.noise_rate) for c, cond in found.loaded.items()}, written[5])
    plots.accuracy_vs_noise(acc, {pair: cell_name(*pair) for pair in _pairs(acc)}, published, written[6])
    plots.cleaning_helps(cleaning, written[7])
    return written, text
