"""Intervals for the accuracies the book reports.

An accuracy on ``n`` test points is a binomial proportion: :func:`wilson_interval` gives its
Wilson score interval (Wilson 1927), the set of true proportions ``p`` for which the observed
``k / n`` lies within ``z`` standard errors ``sqrt(p (1 - p) / n)`` of ``p``. Unlike the normal
(Wald) interval it stays inside [0, 1] and does not collapse to a point at 0 or 1, where many
robust accuracies sit. It treats the ``n`` test images as a sample of the test distribution, for
the model as trained (the seed of training is not varied).
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_interval", "format_interval"]


def wilson_interval(k: int | float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of a proportion ``k / n`` at ``confidence``.

    ``k`` may be given as a count or recovered from an accuracy (``k = round(acc * n)`` is the
    caller's job); ``n`` must be at least 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n] = [0, {n}], got {k!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exactly 0 and 1 at the edges (no
    high = 1.0 if k == n else min(1.0, centre + half)  # rounding leftovers)
    return low, high


def format_interval(accuracy: float, n: int, digits: int = 3) -> str:
    """``"0.142 [0.114, 0.176]"``: an accuracy on ``n`` points with its 95 % Wilson interval."""
    if not math.isfinite(accuracy):
        return "not run"
    lo, hi = wilson_interval(round(accuracy * n), n)
    return f"{accuracy:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
