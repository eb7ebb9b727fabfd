"""lslib.stats against the score equation that defines the Wilson interval, solved here by
bisection, and against its textbook values."""

from __future__ import annotations

import math

import pytest

from lslib.stats import format_interval, wilson_interval


def _score_root(k: int, n: int, z: float, lower: bool) -> float:
    """The p on one side of k/n where |k/n - p| = z sqrt(p (1 - p) / n), by bisection."""
    phat = k / n

    def f(p: float) -> float:
        return abs(phat - p) - z * math.sqrt(p * (1 - p) / n)

    lo, hi = (0.0, phat) if lower else (phat, 1.0)
    if f(lo if lower else hi) <= 0:  # the bound is the edge of [0, 1]
        return lo if lower else hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if (f(mid) > 0) == lower:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize(("k", "n"), [(0, 500), (1, 500), (71, 500), (250, 500), (499, 500),
                                      (500, 500), (3, 10), (0, 1)])
def test_the_bounds_solve_the_score_equation(k, n):
    z = 1.959963984540054
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(_score_root(k, n, z, True), abs=1e-9)
    assert hi == pytest.approx(_score_root(k, n, z, False), abs=1e-9)
    assert 0 <= lo <= k / n <= hi <= 1


def test_textbook_values_and_formatting():
    # 81 successes in 263 trials (Newcombe 1998, example): 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert format_interval(0.5, 100) == "0.500 [0.404, 0.596]"
    assert format_interval(float("nan"), 100) == "not run"
    lo99, hi99 = wilson_interval(50, 100, confidence=0.99)
    assert lo99 < 0.404 and hi99 > 0.596


@pytest.mark.parametrize(("args", "match"), [((1, 0), "n must"), ((5, 4), "k must"),
                                             ((-1, 4), "k must"), ((1, 4, 1.0), "confidence")])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        wilson_interval(*args)
