"""The report: Table 2 (test accuracy per method and condition, mean ± std over seeds) and the
label-error detection quality of every CL method, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.coteach import METHODS
from pipeline.layout import RunDir
from pipeline.masks import CL_METHODS

ROW_NAMES = {**{v: k for k, v in CL_METHODS.items()}, "none": "Co-Teaching alone", "plain": "plain training"}


def collect(run: RunDir, conds: list[str]) -> list[dict]:
    """One record per (condition, method, seed) metrics file and per (condition, method) detection."""
    records = []
    for cond in conds:
        info = store.read_manifest(run.require(run.labels(cond), "noise"))["info"]
        base = {"condition": cond, "paper_column": info.get("paper_column"), "noise_rate": info["actual_noise_rate"]}
        if run.masks(cond).exists():
            for method, d in store.read_manifest(run.masks(cond))["info"]["detection"].items():
                records.append({**base, "kind": "detection", "method": method, **d})
        for method in METHODS:
            for path in sorted(run.coteach(cond, method, 0).parent.glob("seed*.json")):
                if path.name.endswith(".manifest.json"):
                    continue
                m = store.load_json(path)
                records.append({**base, "kind": "accuracy", "method": method, "seed": m["seed"],
                                "final_acc": m["final_acc"], "best_acc": m["best_acc"], "n_train": m["n_train"]})
    return records


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    pct = 100 * np.asarray(values)
    return f"{pct.mean():.1f}" if len(pct) == 1 else f"{pct.mean():.1f} ± {pct.std(ddof=1):.1f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def tables(records: list[dict], conds: list[str]) -> str:
    acc = [r for r in records if r["kind"] == "accuracy"]
    det = [r for r in records if r["kind"] == "detection"]
    noise = {r["condition"]: r["noise_rate"] for r in records}
    header = ["method"] + [f"{c} ({100 * noise.get(c, float('nan')):.0f}%)" for c in conds]
    out = []
    for key, title in (("final_acc", "final epoch"), ("best_acc", "best epoch of either network, as the paper reported")):
        rows = [
            [ROW_NAMES[m]] + [_cell([r[key] for r in acc if r["method"] == m and r["condition"] == c]) for c in conds]
            for m in METHODS if any(r["method"] == m for r in acc)
        ]
        seeds = sorted({r["seed"] for r in acc})
        out.append(f"## Test accuracy (%), {title}; seeds {seeds} (mean ± std where several)\n\n{_markdown(header, rows)}")
    if det:
        rows = []
        for m in CL_METHODS.values():
            cells = []
            for c in conds:
                d = next((r for r in det if r["method"] == m and r["condition"] == c), None)
                fmt = lambda v: "–" if v is None else f"{v:.2f}"
                cells.append("–" if d is None else f"{fmt(d['f1'])} ({fmt(d['precision'])}/{fmt(d['recall'])}) keep {d['keep_fraction']:.2f}")
            rows.append([ROW_NAMES[m]] + cells)
        out.append(f"## Label-error detection: F1 (precision/recall), fraction kept\n\n{_markdown(header, rows)}")
    return "\n\n".join(out) + "\n"


def write(run: RunDir, conds: list[str]) -> tuple[Path, str]:
    """Write ``report/table.md`` and ``report/table.csv``; returns (folder, the Markdown)."""
    records = collect(run, conds)
    text = "# Confident Learning + Co-Teaching\n\n" + tables(records, conds)
    store.atomic_write(run.report_dir / "table.md", lambda f: f.write(text.encode()))
    fields = sorted({k for r in records for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(records)
    store.atomic_write(run.report_dir / "table.csv", lambda f: f.write(buf.getvalue().encode()))
    return run.report_dir, text
