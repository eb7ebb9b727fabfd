"""Speed of lslib.gaussian for the book's sliders (CPU, one process).

Budgets (the fading-Gaussian issue): a 200-eps accuracy curve for one w under 5 ms; fitting one
ALS classifier at d = 10 under 1 s. Also: the exact expected loss by our quadrature against
scipy.integrate.quad (a speed ratio measured in this run), and how the fit scales with d.

    python bench/bench_gaussian.py          # exits 1 if a budget is missed
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time

import numpy as np
from scipy import integrate

from lslib import gaussian as g


def timed(fn, repeat: int, number: int = 1) -> tuple[float, float]:
    """(best, median) seconds per call over ``repeat`` rounds of ``number`` calls."""
    rounds = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t) / number)
    return min(rounds), statistics.median(rounds)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} us"


def quad_expected_loss(a: float, s: float, alpha: float) -> float:
    def f(m):
        return g.smoothed_loss(m, alpha) * math.exp(-0.5 * ((m - a) / s) ** 2) / (
            s * math.sqrt(2 * math.pi))

    lo, hi = a - 40 * s, a + 40 * s
    return (integrate.quad(f, lo, 0.0, limit=500, epsabs=1e-14, epsrel=1e-13)[0]
            + integrate.quad(f, 0.0, hi, limit=500, epsabs=1e-14, epsrel=1e-13)[0])


def main() -> int:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load:.2f}")
    failures = []
    mu, sigma = g.paper_setting(10)
    eps = np.linspace(0.0, 0.5, 200)
    w = g.bayes_weights(mu, sigma)

    best, med = timed(lambda: g.adversarial_accuracy(w, mu, sigma, eps), repeat=50, number=20)
    print(f"accuracy curve, 200 eps, one w (d=10):        best {fmt(best)}  median {fmt(med)}"
          f"   budget 5 ms: {5e-3 / med:7.0f}x under")
    if med > 5e-3:
        failures.append("accuracy curve over 5 ms")

    ws = g.smoothed_weights(mu, sigma, g.DEFAULT_ALPHAS)
    best, med = timed(lambda: g.adversarial_accuracy(ws, mu, sigma, eps), repeat=50, number=20)
    print(f"accuracy curves, 200 eps, {len(ws)} w at once:      best {fmt(best)}  "
          f"median {fmt(med)}")

    best, med = timed(lambda: g.expected_loss_and_grad(w, mu, sigma, 0.1), repeat=20, number=50)
    print(f"expected ALS loss + gradient (d=10):          best {fmt(best)}  median {fmt(med)}")

    # our quadrature against scipy.integrate.quad, on the same margin laws (both rules)
    laws = [(1.0, 0.5), (3.0, 1.2), (7.7, 3.9), (-2.0, 10.0)]
    ours = timed(lambda: [g.expected_loss([1.0], [a], [s], 0.1) for a, s in laws], repeat=20)[1]
    ref = timed(lambda: [quad_expected_loss(a, s, 0.1) for a, s in laws], repeat=5)[1]
    err = max(abs(g.expected_loss([1.0], [a], [s], 0.1) - quad_expected_loss(a, s, 0.1))
              for a, s in laws)
    print(f"expected loss, {len(laws)} laws: ours {fmt(ours)}, scipy quad {fmt(ref)}: "
          f"{ref / ours:.0f}x faster, max |difference| {err:.1e}")

    fit_times = []
    for method in ("adversarial", "standard"):
        for alpha in g.DEFAULT_ALPHAS:
            fit_times.append(timed(lambda a=alpha, m=method: g.fit_smoothed(mu, sigma, a, m),
                                   repeat=5)[1])
    worst = max(fit_times)
    print(f"fit one classifier, d=10 ({len(fit_times)} fits: ALS and SLS x 6 alphas): "
          f"median {fmt(statistics.median(fit_times))}, worst {fmt(worst)}"
          f"   budget 1 s: {1.0 / worst:5.0f}x under")
    if worst > 1.0:
        failures.append("an ALS fit over 1 s")

    _, med = timed(lambda: g.fit_smoothed(mu, sigma, 0.1, l2=0.01), repeat=3)
    print(f"fit one ALS classifier with weight decay (BFGS), d=10: median {fmt(med)}")

    best, med = timed(lambda: g.figure2(), repeat=5)
    print(f"figure2() (6 ALS fits + 7 curves):            best {fmt(best)}  median {fmt(med)}")

    for d in (100, 1000):
        mu_d, sigma_d = g.paper_setting(d)
        _, med = timed(lambda m=mu_d, s=sigma_d: g.fit_smoothed(m, s, 0.1), repeat=3)
        print(f"fit one ALS classifier, d={d:<5d}                median {fmt(med)}")

    if failures:
        print("MISSED:", "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
