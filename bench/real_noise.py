"""Label-error detection measured against the truth, condition by condition, from a run's own artifacts: how the
five methods and the label-quality ranking do on real human noise (CIFAR-10N) beside generated noise of the
same rate, and what a consensus of several annotators gets right.

    python -m bench.real_noise --run-dir runs/c10n --cond c10n_aggre,n10_s0 --json docs/results/real-noise-cpu/probe.json

For each condition (its psx made by combine, its masks by masks; the dataset's labels are the truth): every
method's precision / recall / F1; the ranking by cleanlab's label-quality score (self-confidence) against the
true errors: average precision, AUROC, and the precision of the lowest 1% and 5% (what a person reviews first);
the noise rate and noise matrix cleanlab estimates (``count.estimate_joint``) beside the true ones; and for a
condition of several annotators with a consensus (make consensus), each one's error beside the vote's and the
consensus's. ``--fold K`` measures one fold's held-out rows from its shard alone (a psx source too slow to
cross-validate whole here). Reads only: never trains, never asserts a figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipeline import cli, conditions, datasets, files, store
from pipeline.masks import CL_METHODS, detection, find_masks, mask_paths
from pipeline.options import Range
from stages.crossval import MAX_FOLDS


def measure(run, cond: str, fold: int | None = None) -> dict:
    """Every figure of one condition, from its current artifacts (a stale one is refused by ``store.read``);
    ``fold``: of that fold's held-out rows alone, from its shard (the five methods run here on its rows)."""
    from cleanlab.count import estimate_joint
    from cleanlab.rank import get_label_quality_scores
    from sklearn.metrics import average_precision_score, roc_auc_score

    start = time.perf_counter()
    ds = datasets.cached(run.require(run.dataset, "data"))
    noisy, true, k = store.read(run.labels(cond)), ds.train_y, ds.num_classes
    if fold is None:
        psx = store.read(run.require(run.psx(cond), "combine")).astype(np.float64)
        masks = {paper: store.read(mask_paths(run, cond)[ours]) for paper, ours in CL_METHODS.items()}
    else:
        shard = store.read(run.require(run.shard(cond, fold), "crossval"))
        rows, psx = shard["indices"], shard["probs"].astype(np.float64)
        noisy, true = noisy[rows], true[rows]
        found = find_masks(noisy, psx)
        masks = {paper: found[ours] for paper, ours in CL_METHODS.items()}
    errors = noisy != true
    quality = get_label_quality_scores(noisy, psx)
    order = np.argsort(quality, kind="stable")  # lowest quality first: most likely wrong
    joint = estimate_joint(noisy, psx)
    out = {
        "condition": cond if fold is None else f"{cond} fold {fold}",
        "rows": len(noisy),
        "true_noise_rate": float(errors.mean()),
        "estimated_noise_rate": float(1 - np.trace(joint)),
        "psx_accuracy_vs_truth": float(np.mean(psx.argmax(1) == true)),
        "ranking": {
            "average_precision": float(average_precision_score(errors, -quality)),
            "auroc": float(roc_auc_score(errors, -quality)),
            **{
                f"precision_lowest_{p}pct": float(errors[order[: max(1, len(order) * p // 100)]].mean()) for p in (1, 5)
            },
        },
        "methods": {paper: detection(keep, noisy, true) for paper, keep in masks.items()},
        "true_noise_matrix": np.round(conditions.noise_matrix(noisy, true, k), 4).tolist(),
        "estimated_noise_matrix": np.round(joint / np.maximum(joint.sum(0, keepdims=True), 1e-12), 4).tolist(),
    }
    if fold is None and run.consensus(cond).exists():
        out["consensus"] = store.verify(run.consensus(cond))["info"]
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def table(results: list[dict]) -> str:
    """The figures as markdown: one row per condition."""
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
    lines = [
        "| condition | wrong (true / estimated) | best method: P / R / F1 | AP | AUROC | precision lowest 1% / 5% |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        name, best = max(r["methods"].items(), key=lambda m: m[1]["f1"] or 0)
        rk = r["ranking"]
        lines.append(
            f"| {r['condition']} | {pct(r['true_noise_rate'])}% / {pct(r['estimated_noise_rate'])}% | {name}: "
            f"{pct(best['precision'])} / {pct(best['recall'])} / {pct(best['f1'])} | {rk['average_precision']:.3f} | "
            f"{rk['auroc']:.3f} | {pct(rk['precision_lowest_1pct'])} / {pct(rk['precision_lowest_5pct'])} |"
        )
    methods = ["", "| condition | " + " | ".join(CL_METHODS) + " |", "|---|" + "---|" * len(CL_METHODS)]
    for r in results:
        cells = [f"{pct(d['precision'])} / {pct(d['recall'])} / {pct(d['f1'])}" for d in r["methods"].values()]
        methods.append(f"| {r['condition']} | " + " | ".join(cells) + " |")
    lines += methods
    for r in results:
        if "error_vs_truth" in r.get("consensus", {}):
            errs = r["consensus"]["error_vs_truth"]
            lines.append(
                f"\n{r['condition']}: wrong against the truth: " + ", ".join(f"{k} {pct(v)}%" for k, v in errs.items())
            )
    return "\n".join(lines)


def parser() -> cli.Parser:
    p = cli.parser(__doc__)
    p.add_argument("--cond", default="", help="comma-separated conditions (default: all with a psx)")
    p.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument(
        "--fold",
        type=Range(int, 0, MAX_FOLDS - 1, optional=True),
        default=None,
        help="measure one fold's held-out rows from its shard (where the other folds are too slow to train)",
    )
    return p


def main(args) -> None:
    run = cli.run_dir(args.run_dir)
    names = conditions.names(run, args.cond)
    results = [measure(run, c, args.fold) for c in names if args.cond or run.psx(c).exists()]
    print(table(results))
    if args.json:
        files.atomic_write(args.json, lambda f: f.write(json.dumps(results, indent=1).encode()))


if __name__ == "__main__":
    cli.main(lambda: main(parser().parse_args()))  # a stale or missing artifact: one line, exit 2
