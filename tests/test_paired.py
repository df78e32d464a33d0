"""Does cleaning help? The paired statistics against hand-computed examples."""

import pytest

from pipeline.paired import paired_difference


def acc(values, base=0.8):
    return {s: base + v for s, v in enumerate(values)}


def test_five_seeds_that_all_gain_help():
    # d = 1..5 points: mean 3, sd sqrt(2.5e-4) = 0.0158114, t(0.975, 4) = 2.776445, half width 0.0196330.
    r = paired_difference(acc([0.01, 0.02, 0.03, 0.04, 0.05]), acc([0, 0, 0, 0, 0]))
    assert r["seeds"] == [0, 1, 2, 3, 4] and r["n"] == 5
    assert r["mean"] == pytest.approx(0.03) and r["sd"] == pytest.approx(0.0158114, rel=1e-5)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.0103670, rel=1e-4), pytest.approx(0.0496330, rel=1e-4))
    assert r["verdict"] == "helps"
    flipped = paired_difference(acc([0, 0, 0, 0, 0]), acc([0.01, 0.02, 0.03, 0.04, 0.05]))
    assert flipped["verdict"] == "hurts" and flipped["ci_high"] == pytest.approx(-0.0103670, rel=1e-4)


def test_mixed_signs_are_no_detectable_difference():
    # d = 2, -1, 1 points: mean 0.6667, sd 0.0152753, t(0.975, 2) = 4.302653, half width 0.0379460.
    r = paired_difference(acc([0.02, -0.01, 0.01]), acc([0, 0, 0]))
    assert r["ci_low"] == pytest.approx(0.0066667 - 0.0379460, rel=1e-4)
    assert r["ci_high"] == pytest.approx(0.0066667 + 0.0379460, rel=1e-4)
    assert r["verdict"] == "no detectable difference with 3 seeds"


def test_only_seeds_both_runs_have_are_paired():
    r = paired_difference({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.75, 2: 0.71, 3: 0.5})
    assert r["seeds"] == [1, 2] and r["differences"] == [pytest.approx(0.05), pytest.approx(-0.01)]
    one = paired_difference({0: 0.9}, {0: 0.8})
    assert one["ci_low"] is None and one["verdict"].startswith("one seed: no interval")


def test_the_same_difference_on_every_seed_gives_no_interval_not_a_verdict():
    # 2/360 on each of 3 seeds (a small test set moves in steps): the t interval would have zero width.
    r = paired_difference({0: 300 / 360, 1: 310 / 360, 2: 320 / 360}, {0: 298 / 360, 1: 308 / 360, 2: 318 / 360})
    assert r["mean"] == pytest.approx(2 / 360) and r["ci_low"] is None and r["ci_high"] is None
    assert r["verdict"] == "all 3 seeds gave the same difference: no interval (train more seeds)"
