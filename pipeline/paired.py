"""Does cleaning help? Each (mask, learner) against the same learner on all rows, paired by seed.

Seed s of both runs shares its initialisation and its batch order (``loader.Batches``), so the
per-seed difference in test accuracy removes most of the seed-to-seed spread that makes unpaired
comparisons flip sign. Over n seeds: the mean difference, a 95% confidence interval from the paired
t distribution (mean ± t(0.975, n-1) · sd / sqrt(n), sample sd), and a verdict in plain words.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline import plots

LEVEL = 0.95


def paired_difference(cleaned: dict[int, float], baseline: dict[int, float]) -> dict:
    """``cleaned`` - ``baseline`` over the seeds both have (accuracies by seed): seeds, differences, mean,
    sd, the 95% paired-t interval (None below 2 seeds or with sd 0) and the verdict."""
    from scipy import stats

    seeds = sorted(set(cleaned) & set(baseline))
    d = np.array([cleaned[s] - baseline[s] for s in seeds], dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else None
    sd = float(d.std(ddof=1)) if n > 1 else None
    if n > 1 and sd > 1e-12:
        half = float(stats.t.ppf((1 + LEVEL) / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = None
    return {"seeds": seeds, "differences": d.tolist(), "n": n, "mean": mean, "sd": sd, "ci_low": lo, "ci_high": hi,
            "verdict": verdict(n, lo, hi)}


def verdict(n: int, lo: float | None, hi: float | None) -> str:
    """Plain words for the interval; none below 2 seeds, or when every seed gave the same difference (a
    zero-width t interval is no evidence: on a small test set accuracy moves in coarse steps)."""
    if n == 0:
        return "no paired seeds"
    if n == 1:
        return "one seed: no interval (train SEEDS=0,1,2,3,4)"
    if lo is None:
        return f"all {n} seeds gave the same difference: no interval (train more seeds)"
    if lo > 0:
        return "helps"
    if hi < 0:
        return "hurts"
    return f"no detectable difference with {n} seeds"


def plot(rows: list[dict], path: Path) -> None:
    """``cleaning_helps.png``: per comparison, each seed's difference (dots), the mean and its 95% interval."""

    if not rows:
        return plots.placeholder("No (mask, learner) with the same learner on all rows for the same seeds yet "
                            "(make coteach LEARNERS=plain SEEDS=0,1,2,3,4)", path)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        d = 100 * np.array(r["differences"])
        ax.scatter(d, np.full(len(d), y), s=14, color="grey", zorder=2)
        if r["ci_low"] is not None:
            ax.plot([100 * r["ci_low"], 100 * r["ci_high"]], [y, y], color="black", lw=2, zorder=3)
        colour = {"helps": "tab:green", "hurts": "tab:red"}.get(r["verdict"], "tab:blue")
        ax.scatter([100 * r["mean"]], [y], s=40, color=colour, zorder=4, marker="D")
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [f"{r['condition']}: {r['name']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy, cleaned rows - all rows (points), same learner, same seed")
    ax.set_title("Does cleaning help? Per-seed paired differences; diamond = mean, bar = 95% paired-t interval", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plots.save(fig, path)
