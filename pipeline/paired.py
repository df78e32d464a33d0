"""Does cleaning help? Each (mask, learner) against the same learner on all rows, paired by seed.

Seed s of both runs shares its initialisation and its batch order (``loader.Batches``), so the
per-seed difference in test accuracy removes most of the seed-to-seed spread that makes unpaired
comparisons flip sign. Over n seeds: the mean difference, a 95% confidence interval from the paired
t distribution (scipy's ``ttest_rel``), and a verdict in plain words.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def paired_difference(cleaned: dict[int, float], baseline: dict[int, float]) -> dict:
    """``cleaned`` - ``baseline`` over the seeds both have (accuracies by seed): seeds, differences, mean,
    sd, the 95% paired-t interval (None below 2 seeds or with sd 0) and the verdict."""
    from scipy import stats

    seeds = sorted(set(cleaned) & set(baseline))
    a, b = (np.array([x[s] for s in seeds], dtype=np.float64) for x in (cleaned, baseline))
    d = a - b
    n = len(d)
    mean = float(d.mean()) if n else None
    sd = float(d.std(ddof=1)) if n > 1 else None
    lo = hi = None
    if n > 1 and sd > 1e-12:
        lo, hi = map(float, stats.ttest_rel(a, b).confidence_interval(LEVEL))
    return {
        "seeds": seeds,
        "differences": d.tolist(),
        "n": n,
        "mean": mean,
        "sd": sd,
        "ci_low": lo,
        "ci_high": hi,
        "verdict": verdict(n, lo, hi),
    }


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
