"""lslib.gaussian against independent truths: Monte Carlo, numerical search, scipy quadrature,
finite differences, closed-form special cases; and the paper's Section 3.1 claims."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import integrate, optimize, special

from lslib import gaussian as g

MC_N = 1_000_000


def _random_setting(rng: np.random.Generator, d: int, signs: bool = True):
    mu = rng.uniform(0.05, 1.0, d) * (rng.choice([-1.0, 1.0], d) if signs else 1.0)
    sigma = rng.uniform(0.2, 1.5, d)
    return mu, sigma


def _within_4_se(estimate: float, truth: float, n: int) -> None:
    se = math.sqrt(max(truth * (1 - truth), 1e-12) / n)
    assert abs(estimate - truth) <= 4 * se, (estimate, truth, se)


# ------------------------------------------------------------------------------------------
# the model and the sampler


def test_paper_setting():
    mu, sigma = g.paper_setting(10)
    np.testing.assert_allclose(sigma, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(mu, sigma**2)
    np.testing.assert_allclose(g.bayes_weights(mu, sigma), np.ones(10))


def test_sample_moments():
    rng = np.random.default_rng(0)
    mu, sigma = _random_setting(rng, 3)
    x, y = g.sample(200_000, mu, sigma, rng)
    assert x.shape == (200_000, 3) and y.shape == (200_000,) and set(np.unique(y)) == {-1, 1}
    assert abs(y.mean()) < 4 / math.sqrt(200_000)
    for label in (-1, 1):
        xs = x[y == label]
        se = sigma.max() / math.sqrt(len(xs))
        np.testing.assert_allclose(xs.mean(0), label * mu, atol=4 * se)
        np.testing.assert_allclose(xs.std(0), sigma, rtol=0.01)
    x2, y2 = g.sample(10, mu, sigma, np.random.default_rng(5))
    x3, y3 = g.sample(10, mu, sigma, np.random.default_rng(5))
    np.testing.assert_array_equal(x2, x3)
    np.testing.assert_array_equal(y2, y3)


def test_margin_law_matches_samples():
    rng = np.random.default_rng(1)
    mu, sigma = _random_setting(rng, 4)
    w = rng.normal(size=4)
    x, y = g.sample(MC_N, mu, sigma, rng)
    m = y * (x @ w)
    a, s = g.margin_law(w, mu, sigma)
    assert abs(m.mean() - a) < 4 * s / math.sqrt(MC_N)
    assert abs(m.std() - s) < 4 * s / math.sqrt(MC_N / 2)
    for label in (-1, 1):  # the same law whatever y is
        assert abs(m[y == label].mean() - a) < 6 * s / math.sqrt(MC_N / 2)


# ------------------------------------------------------------------------------------------
# eqs. (8) and (9) against Monte Carlo, and the optimal perturbation


def test_standard_accuracy_eq8_against_monte_carlo():
    rng = np.random.default_rng(2)
    mu, sigma = g.paper_setting(10)
    x, y = g.sample(MC_N, mu, sigma, rng)
    weights = [np.ones(10), mu, rng.normal(size=10), -np.ones(10)]
    exact = g.accuracy(np.stack(weights), mu, sigma)
    assert exact.shape == (4,)
    for w, acc in zip(weights, exact, strict=True):
        _within_4_se(float(np.mean(np.sign(x @ w) == y)), float(acc), MC_N)


def test_adversarial_accuracy_eq9_against_monte_carlo_of_the_attack():
    rng = np.random.default_rng(3)
    mu, sigma = _random_setting(rng, 6)
    x, y = g.sample(MC_N, mu, sigma, rng)
    w = g.bayes_weights(mu, sigma) + 0.3 * rng.normal(size=6)
    eps = np.array([0.0, 0.05, 0.2, 0.4])
    exact = g.adversarial_accuracy(w, mu, sigma, eps)
    assert exact.shape == (4,)
    for e, acc in zip(eps, exact, strict=True):
        x_adv = g.optimal_perturbation(x, y, w, e)
        assert np.max(np.abs(x_adv - x)) <= e + 1e-12
        _within_4_se(float(np.mean(np.sign(x_adv @ w) == y)), float(acc), MC_N)


def test_accuracy_vectorised_shapes_and_constant_classifier():
    mu, sigma = g.paper_setting(5)
    w = np.random.default_rng(4).normal(size=(3, 2, 5))
    eps = np.linspace(0, 0.3, 7)
    out = g.adversarial_accuracy(w, mu, sigma, eps)
    assert out.shape == (3, 2, 7)
    for i in range(3):
        for j in range(2):
            for k in range(7):
                assert out[i, j, k] == pytest.approx(g.adversarial_accuracy(w[i, j], mu, sigma,
                                                                            eps[k]), abs=1e-15)
    assert isinstance(g.accuracy(np.ones(5), mu, sigma), float)
    np.testing.assert_array_equal(g.adversarial_accuracy(np.zeros(5), mu, sigma, eps), 0.5)
    np.testing.assert_allclose(out[..., 0], g.accuracy(w, mu, sigma))


def test_no_perturbation_in_the_ball_beats_the_closed_form():
    rng = np.random.default_rng(6)
    mu, sigma = _random_setting(rng, 5)
    w = rng.normal(size=5)
    w[2] = 0.0  # a zero weight: the closed form leaves that coordinate alone
    eps = 0.3
    x, y = g.sample(200, mu, sigma, rng)
    closed = y * (g.optimal_perturbation(x, y, w, eps) @ w)
    np.testing.assert_allclose(closed, y * (x @ w) - eps * np.abs(w).sum(), atol=1e-12)
    # random search: vertices of the cube and uniform points inside it
    for kind in ("vertices", "interior"):
        if kind == "vertices":
            delta = eps * rng.choice([-1.0, 1.0], size=(2000, 5))
        else:
            delta = rng.uniform(-eps, eps, size=(2000, 5))
        margins = y[:, None] * ((x[:, None, :] + delta[None]) @ w)  # (200, 2000)
        assert np.all(margins.min(axis=1) >= closed - 1e-12)
    # projected gradient descent on the margin, from random starts
    delta = rng.uniform(-eps, eps, size=x.shape)
    for _ in range(20):
        grad = y[:, None] * w[None, :]  # d(margin)/d(delta)
        delta = np.clip(delta - 0.05 * np.sign(grad) - 0.01 * grad, -eps, eps)
        assert np.all(y * ((x + delta) @ w) >= closed - 1e-12)
    np.testing.assert_allclose(y * ((x + delta) @ w), closed, atol=1e-12)  # it converges there


# ------------------------------------------------------------------------------------------
# Lemma 1


def _numerical_best(mu, sigma, eps, rng, starts=5):
    """Maximise eq. (9) over w numerically: the ratio is scale-free, so maximise its numerator
    on the ellipsoid ||w||_Sigma <= 1, with w = u - v (u, v >= 0) to make ||w||_1 smooth. SLSQP
    from several random starts; the best value found goes through Phi."""
    d = mu.size
    var = sigma**2

    def neg(uv):
        u, v = uv[:d], uv[d:]
        return -(mu @ (u - v) - eps * (u + v).sum())

    def neg_grad(uv):
        return -np.concatenate([mu - eps, -mu - eps])

    cons = {"type": "ineq", "fun": lambda uv: 1.0 - ((uv[:d] - uv[d:]) ** 2) @ var,
            "jac": lambda uv: np.concatenate([-2 * var * (uv[:d] - uv[d:]),
                                              2 * var * (uv[:d] - uv[d:])])}
    best = -np.inf
    for _ in range(starts):
        x0 = rng.uniform(0, 1, 2 * d) / math.sqrt(d * var.max())
        res = optimize.minimize(neg, x0, jac=neg_grad, method="SLSQP", constraints=[cons],
                                bounds=[(0, None)] * (2 * d), options={"ftol": 1e-14})
        w = res.x[:d] - res.x[d:]
        s = math.sqrt(float((w * w) @ var))
        if s > 0:  # evaluate eq. (9) itself at the point found
            best = max(best, (w @ mu - eps * np.abs(w).sum()) / s)
    return special.ndtr(best)


@pytest.mark.parametrize("seed", range(10))
def test_lemma1_beats_numerical_maximisation_of_eq9(seed):
    rng = np.random.default_rng(100 + seed)
    d = int(rng.integers(2, 6))
    mu, sigma = _random_setting(rng, d)
    eps = float(rng.uniform(0.0, 0.8 * np.abs(mu).max()))
    w_star = g.robust_weights(mu, sigma, eps)
    closed = g.best_adversarial_accuracy(mu, sigma, eps)
    assert g.adversarial_accuracy(w_star, mu, sigma, eps) == pytest.approx(closed, abs=1e-13)
    numeric = _numerical_best(mu, sigma, eps, rng)
    assert numeric <= closed + 1e-12  # nothing found beats eq. (10)
    assert numeric >= closed - 1e-6  # and the search is good enough to have found it


def test_lemma1_vectorised_and_edge_cases():
    mu, sigma = g.paper_setting(10)
    np.testing.assert_allclose(g.robust_weights(mu, sigma, 0.0), g.bayes_weights(mu, sigma))
    assert g.best_adversarial_accuracy(mu, sigma, 0.0) == pytest.approx(
        g.accuracy(g.bayes_weights(mu, sigma), mu, sigma), abs=1e-15)
    eps = np.linspace(0, 1.2, 50)
    ws = g.robust_weights(mu, sigma, eps)
    assert ws.shape == (50, 10)
    best = g.best_adversarial_accuracy(mu, sigma, eps)
    diag = np.array([g.adversarial_accuracy(w, mu, sigma, e) for w, e in zip(ws, eps, strict=True)])
    np.testing.assert_allclose(diag, best, atol=1e-13)
    assert np.all(np.diff(best) <= 0)
    # every |mu_j| <= eps: weights 0, best accuracy 1/2, no division by zero
    with np.errstate(all="raise"):
        assert not np.any(g.robust_weights(mu, sigma, 1.0))
        assert g.best_adversarial_accuracy(mu, sigma, 1.0) == 0.5
        assert g.adversarial_accuracy(np.zeros(10), mu, sigma, 1.0) == 0.5
    # and then every non-zero linear classifier does worse than the constant one
    rng = np.random.default_rng(7)
    assert np.all(g.adversarial_accuracy(rng.normal(size=(500, 10)), mu, sigma, 1.0) < 0.5)


def test_lemma1_signs_follow_mu():
    mu, sigma = np.array([0.5, -0.8, 0.1, -0.05]), np.array([1.0, 0.5, 0.3, 2.0])
    w = g.robust_weights(mu, sigma, 0.2)
    np.testing.assert_allclose(w, [0.3, -0.6 / 0.25, 0.0, 0.0])


# ------------------------------------------------------------------------------------------
# smoothed losses: pointwise forms, exact expectation, gradient


def test_pointwise_losses_match_the_smoothed_cross_entropy():
    """Build q and p for the 2-class softmax and compare -q^T log p with the margin formulas."""
    rng = np.random.default_rng(8)
    t = rng.normal(scale=4, size=1000)  # w^T x
    y = rng.choice([-1, 1], size=1000)
    z = np.stack([t / 2, -t / 2], axis=1)  # logits of classes (+1, -1)
    logp = z - special.logsumexp(z, axis=1, keepdims=True)
    true = (y == -1).astype(int)
    onehot = np.eye(2)[true]
    other = np.eye(2)[1 - true]
    worst = np.eye(2)[np.argmin(z, axis=1)]  # ALS: argmin over all K classes
    for alpha in (0.0, 0.1, 0.7):
        q_als = (1 - alpha) * onehot + alpha * worst
        q_sls = (1 - alpha) * onehot + alpha * other  # = BLS = SBLS when K = 2
        m = y * t
        np.testing.assert_allclose(g.smoothed_loss(m, alpha, "adversarial"),
                                   -(q_als * logp).sum(1), atol=1e-12)
        for method in ("standard", "boltzmann", "second_best"):
            np.testing.assert_allclose(g.smoothed_loss(m, alpha, method),
                                       -(q_sls * logp).sum(1), atol=1e-12)


def test_pointwise_losses_match_lslib_losses():
    """The same margin formulas from the project's torch implementation (lslib.losses, the API
    contract ``smooth_cross_entropy``), every temperature and BLS scale included."""
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("lslib.losses")
    gen = torch.Generator().manual_seed(0)
    t = 4 * torch.randn(500, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 2, (500,), generator=gen)  # class 0 is y = +1, class 1 is y = -1
    logits = torch.stack([t / 2, -t / 2], dim=1)
    m = ((1 - 2 * target).double() * t).numpy()
    options = [("standard", {}), ("adversarial", {}), ("second_best", {}), ("boltzmann", {}),
               ("boltzmann", {"temperature": 0.3}),
               ("boltzmann", {"boltzmann_scale": "probabilities"})]
    for method, kw in options:
        for alpha in (0.1, 0.7):
            ours = g.smoothed_loss(m, alpha, method)
            theirs = losses.smooth_cross_entropy(logits, target, method, alpha, reduction="none",
                                                 **kw).numpy()
            np.testing.assert_allclose(ours, theirs, atol=1e-12)


def _quad_expected_loss(a, s, alpha, method):
    def f(m):
        return g.smoothed_loss(m, alpha, method) * math.exp(-0.5 * ((m - a) / s) ** 2) / (
            s * math.sqrt(2 * math.pi))

    lo, hi = a - 40 * s, a + 40 * s
    pieces = [lo, 0.0, hi] if lo < 0 < hi else [lo, hi]
    return sum(integrate.quad(f, p, q, limit=500, epsabs=1e-14, epsrel=1e-13)[0]
               for p, q in zip(pieces[:-1], pieces[1:], strict=False))


@pytest.mark.parametrize("method", ["adversarial", "standard"])
def test_quadrature_against_scipy_quad(method):
    """Both rules (Gauss-Hermite for s <= 1.5, closed form + Gauss-Laguerre above), kink at 0."""
    worst = 0.0
    for s in (0.05, 0.5, 1.0, 1.4999, 1.5001, 2.0, 5.0, 20.0, 100.0):
        for a in (-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 30.0):
            ours = g.expected_loss([1.0], [a], [s], 0.1, method)  # margin ~ N(a, s^2)
            worst = max(worst, abs(ours - _quad_expected_loss(a, s, 0.1, method)))
    assert worst < 1e-11


def test_expected_loss_against_monte_carlo():
    rng = np.random.default_rng(9)
    mu, sigma = g.paper_setting(10)
    x, y = g.sample(MC_N, mu, sigma, rng)
    for w in (np.ones(10), 0.3 * np.ones(10), rng.normal(size=10)):  # both quadrature rules
        m = y * (x @ w)
        for method, alpha in (("adversarial", 0.1), ("adversarial", 0.4), ("standard", 0.2)):
            vals = g.smoothed_loss(m, alpha, method)
            se = vals.std() / math.sqrt(MC_N)
            assert abs(vals.mean() - g.expected_loss(w, mu, sigma, alpha, method)) < 4 * se


def test_expected_loss_vectorised():
    mu, sigma = g.paper_setting(4)
    w = np.random.default_rng(10).normal(scale=2, size=(5, 3, 4))
    out = g.expected_loss(w, mu, sigma, 0.1)
    assert out.shape == (5, 3)
    assert out[2, 1] == pytest.approx(g.expected_loss(w[2, 1], mu, sigma, 0.1), abs=1e-15)
    assert g.expected_loss(np.zeros(4), mu, sigma, 0.3) == pytest.approx(math.log(2), abs=1e-15)


@pytest.mark.parametrize("method", g.METHODS)
def test_gradient_against_finite_differences(method):
    rng = np.random.default_rng(11)
    mu, sigma = _random_setting(rng, 6)
    for scale in (0.2, 1.0, 4.0):  # both quadrature rules
        w = scale * rng.normal(size=6)
        _, grad = g.expected_loss_and_grad(w, mu, sigma, 0.15, method)
        h = 1e-6
        fd = np.array([(g.expected_loss(w + h * e, mu, sigma, 0.15, method)
                        - g.expected_loss(w - h * e, mu, sigma, 0.15, method)) / (2 * h)
                       for e in np.eye(6)])
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------
# the fitter


def _general_minimiser(mu, sigma, alpha, method, rng, starts=3):
    """Minimise the expected loss over all of R^d with a general-purpose method (BFGS on the
    exact gradient, in whitened coordinates, tight tolerance) from random starts."""
    best = None
    for _ in range(starts):
        v0 = rng.normal(size=mu.size)

        def f(v):
            loss, grad = g.expected_loss_and_grad(v / sigma, mu, sigma, alpha, method)
            return loss, grad / sigma

        res = optimize.minimize(f, v0, jac=True, method="BFGS", options={"gtol": 1e-11})
        if best is None or res.fun < best.fun:
            best = res
    return best.x / sigma, best.fun


@pytest.mark.parametrize("seed", range(5))
def test_fit_matches_a_general_minimisation_over_all_weights(seed):
    """The fitter solves on the Bayes ray (and uses closed forms at alpha = 0 and ALS alpha >=
    1/2); a search over all of R^d from random starts must find the same point and no lower
    loss. This is also the test that smoothing never changes the direction of the minimiser."""
    rng = np.random.default_rng(300 + seed)
    mu, sigma = _random_setting(rng, int(rng.integers(2, 7)))
    for method in ("adversarial", "standard"):
        for alpha in (0.0, float(rng.uniform(0.001, 0.45)), 0.7):
            w = g.fit_smoothed(mu, sigma, alpha, method)
            w_num, loss_num = _general_minimiser(mu, sigma, alpha, method, rng)
            loss = g.expected_loss(w, mu, sigma, alpha, method)
            assert loss <= loss_num + 1e-12
            scale = max(np.linalg.norm(w), 1e-3)
            np.testing.assert_allclose(w, w_num, atol=1e-5 * scale)


@pytest.mark.parametrize("alpha", [0.005, 0.1, 0.3])
def test_fit_is_the_global_minimiser(alpha):
    rng = np.random.default_rng(13)
    mu, sigma = _random_setting(rng, 5)
    for method in ("adversarial", "standard"):
        w = g.fit_smoothed(mu, sigma, alpha, method)
        loss, grad = g.expected_loss_and_grad(w, mu, sigma, alpha, method)
        assert np.max(np.abs(grad)) < 1e-12
        others = w + rng.normal(scale=0.3, size=(2000, 5))
        assert np.all(g.expected_loss(others, mu, sigma, alpha, method) >= loss)


def test_fit_at_high_dimension_is_exact():
    """The paper's setting at d = 1000: tiny losses, yet the slope along the ray is exact."""
    mu, sigma = g.paper_setting(1000)
    w = g.fit_smoothed(mu, sigma, 0.01)
    _, grad = g.expected_loss_and_grad(w, mu, sigma, 0.01)
    assert np.max(np.abs(grad)) < 1e-12
    np.testing.assert_allclose(g.fit_smoothed(mu, sigma, 0.0), 2 * mu / sigma**2)


def test_sls_bls_sbls_coincide_and_als_differs():
    mu, sigma = g.paper_setting(10)
    for alpha in (0.05, 0.3):
        ws = [g.fit_smoothed(mu, sigma, alpha, m) for m in ("standard", "boltzmann", "second_best")]
        np.testing.assert_array_equal(ws[0], ws[1])
        np.testing.assert_array_equal(ws[0], ws[2])
        als = g.fit_smoothed(mu, sigma, alpha, "adversarial")
        assert np.max(np.abs(als - ws[0])) > 1e-3


def test_degenerate_fits_are_the_constant_classifier():
    mu, sigma = g.paper_setting(6)
    rng = np.random.default_rng(14)
    for alpha in (0.5, 0.8, 1.0):  # ALS: loss >= log 2, equality only at w = 0
        np.testing.assert_array_equal(g.fit_smoothed(mu, sigma, alpha), np.zeros(6))
        others = rng.normal(scale=2, size=(2000, 6))
        assert np.all(g.expected_loss(others, mu, sigma, alpha) > math.log(2))
    np.testing.assert_array_equal(g.fit_smoothed(mu, sigma, 0.5, "standard"), np.zeros(6))
    np.testing.assert_array_equal(g.fit_smoothed(np.zeros(6), sigma, 0.1), np.zeros(6))


def test_sls_with_alpha_above_half_picks_the_wrong_class():
    mu, sigma = g.paper_setting(6)
    w = g.fit_smoothed(mu, sigma, 0.7, "standard")
    assert g.accuracy(w, mu, sigma) < 0.5
    assert np.max(np.abs(g.expected_loss_and_grad(w, mu, sigma, 0.7, "standard")[1])) < 1e-12


def test_weight_decay_tilts_the_direction():
    mu, sigma = g.paper_setting(10)
    w = g.fit_smoothed(mu, sigma, 0.1, l2=0.01)
    loss, grad = g.expected_loss_and_grad(w, mu, sigma, 0.1)
    np.testing.assert_allclose(grad + 0.01 * w, 0.0, atol=1e-8)
    assert np.all(np.diff(w) < 0)  # noisy-looking features (small sigma, smaller mu) lose weight


# ------------------------------------------------------------------------------------------
# the paper's claims (Section 3.1, Figures 1-3)


def test_paper_claim_fig2_als_beats_bayes_does_not_hold_at_the_population_optimum():
    """Claimed: at d = 10 ALS classifiers have higher adversarial accuracy than Bayes over a range
    of eps, with standard accuracy close to Bayes'. What holds for the exact ALS minimiser: its
    accuracy curve is the Bayes curve, for every alpha < 1/2 (the direction is Bayes'); alpha >=
    1/2 gives the constant classifier (1/2 everywhere)."""
    curves = g.figure2(d=10, eps=np.linspace(0, 0.5, 200))
    bayes = curves.accuracy[0]
    gap = np.max(np.abs(curves.accuracy[1:] - bayes))
    assert gap < 1e-12, gap  # rounding only; the paper's figure shows gains of order 1e-2
    # by hand: Bayes margin SNR = sqrt(sum sigma_i^2) = sqrt(3.85)
    assert curves.standard[0] == pytest.approx(special.ndtr(math.sqrt(3.85)), abs=1e-15)


def test_paper_claims_hold_with_weight_decay_and_come_from_it():
    """With weight decay (l2 = 0.01) ALS beats Bayes for eps in a range, standard accuracy stays
    within 0.3 points, the gain is largest for small alpha (as the paper says), and alpha = 0
    (no smoothing, same weight decay) is at least as robust for eps >= 0.1: the gain comes from
    the decay."""
    mu, sigma = g.paper_setting(10)
    eps = np.linspace(0, 0.5, 201)
    bayes = g.adversarial_accuracy(g.bayes_weights(mu, sigma), mu, sigma, eps)
    alphas = (0.0, 0.005, 0.1, 0.4)
    acc = np.stack([g.adversarial_accuracy(g.fit_smoothed(mu, sigma, a, l2=0.01), mu, sigma, eps)
                    for a in alphas])
    better = eps[acc[1] > bayes]
    assert better.min() < 0.06 and better.max() == eps[-1]
    assert np.all(np.abs(acc[:, 0] - bayes[0]) < 0.003)
    at = np.searchsorted(eps, 0.2)
    assert np.all(np.diff(acc[:, at]) < 0)  # more smoothing, less robust
    big = eps >= 0.1
    assert np.all(acc[0, big] >= acc[1:, big] - 1e-12)


def test_paper_claim_fig1_feature_ordering():
    """Claimed: the ALS weights are "correctly ordered" (more important features, higher w).
    What holds: exactly flat (all equal, like Bayes) without weight decay; decreasing with
    weight decay; Lemma 1's robust weights decrease for eps > 0."""
    fig = g.figure1(d=10)
    assert fig["weights"].shape == (len(g.DEFAULT_ALPHAS), 10)
    for w in fig["weights"]:
        np.testing.assert_allclose(w, w[0], rtol=1e-7)
    assert np.all(np.diff(fig["weights"][:, 0]) < 0)  # more smoothing, smaller weights
    assert np.all(np.diff(g.figure1(d=10, l2=0.01)["weights"], axis=1) < 0)
    mu, sigma = g.paper_setting(10)
    assert np.all(np.diff(g.robust_weights(mu, sigma, 0.05)) <= 0)  # zero once mu_j <= eps


def test_paper_claim_fig3_w41_more_robust_beyond_a_crossover():
    """Claimed: the w = (4, 1) boundary (orthogonal to the axis of the means) has higher
    adversarial accuracy than Bayes w = (1, 1). What holds: for eps above 0.1162; below it Bayes
    wins (it is optimal at eps = 0)."""
    fig = g.figure3()
    mu, sigma = fig.mu, fig.sigma
    np.testing.assert_allclose(mu, [1.0, 0.25])
    np.testing.assert_allclose(sigma, [1.0, 0.5])
    e = g.crossover_eps(np.array([1.0, 1.0]), np.array([4.0, 1.0]), mu, sigma)
    # by hand: (1.25 - 2e)/sqrt(1.25) = (4.25 - 5e)/sqrt(16.25)
    r1, r2 = 1 / math.sqrt(1.25), 1 / math.sqrt(16.25)
    assert e == pytest.approx((1.25 * r1 - 4.25 * r2) / (2 * r1 - 5 * r2), rel=1e-12)
    assert e == pytest.approx(0.1162, abs=1e-4)
    acc = g.adversarial_accuracy(np.array([[1.0, 1.0], [4.0, 1.0]]), mu, sigma,
                                 [0.0, e - 0.01, e, e + 0.01, 0.3])
    assert acc[0, 0] > acc[1, 0] and acc[0, 1] > acc[1, 1]
    assert acc[0, 2] == pytest.approx(acc[1, 2], abs=1e-14)
    assert acc[1, 3] > acc[0, 3] and acc[1, 4] > acc[0, 4]
    # (4, 1)'s boundary is orthogonal to the axis through the means
    seg = fig.boundaries["w=(4, 1)"]
    axis = fig.main_axis
    assert abs(np.dot(seg[1] - seg[0], axis[1] - axis[0])) < 1e-12


def test_lemma1_envelope_over_figure2():
    curves = g.figure2(d=10, alphas=(0.01, 0.2))
    assert np.all(curves.accuracy <= curves.best + 1e-12)
    assert curves.best[0] == pytest.approx(curves.accuracy[0, 0], abs=1e-15)  # Bayes at eps = 0


# ------------------------------------------------------------------------------------------
# figure data


def test_figure2_layout():
    c = g.figure2(d=10, alphas=(0.05, 0.1))
    assert c.labels == ("Bayes", "ALS alpha=0.05", "ALS alpha=0.1")
    assert c.eps.shape == (200,) and c.accuracy.shape == (3, 200) and c.weights.shape == (3, 10)
    np.testing.assert_allclose(c.standard, c.accuracy[:, 0])
    cols = c.long_format()
    assert {k: len(v) for k, v in cols.items()} == {"eps": 800, "classifier": 800, "accuracy": 800}
    assert cols["classifier"][-1] == "Lemma 1 (best linear)"
    np.testing.assert_allclose(cols["accuracy"][-200:], c.best)
    sls = g.figure2(d=4, alphas=(0.1,), eps=[0.0, 0.1], method="standard")
    assert sls.labels == ("Bayes", "SLS alpha=0.1") and sls.accuracy.shape == (2, 2)


def test_figure3_density_and_lines():
    v = g.figure3(grid=301)
    assert v.density.shape == (301, 301)
    mass = integrate.trapezoid(integrate.trapezoid(v.density, v.x1, axis=1), v.x2)
    assert mass == pytest.approx(1.0, abs=2e-3)
    rng = np.random.default_rng(15)
    # the grid's density is the mixture density (check against scipy at a random point)
    j, i = rng.integers(0, 301, size=2)
    pt = np.array([v.x1[j], v.x2[i]])
    ref = sum(0.5 * math.prod(math.exp(-0.5 * ((pt[k] - sgn * v.mu[k]) / v.sigma[k]) ** 2)
                              / (v.sigma[k] * math.sqrt(2 * math.pi)) for k in range(2))
              for sgn in (1, -1))
    assert v.density[i, j] == pytest.approx(ref, rel=1e-12)
    for label, w in (("Bayes w=(1, 1)", (1.0, 1.0)), ("w=(4, 1)", (4.0, 1.0))):
        seg = v.boundaries[label]
        np.testing.assert_allclose(seg @ np.array(w), 0.0, atol=1e-12)
        on_edge = np.isclose(np.abs(seg), [v.x1[-1], v.x2[-1]]).any(axis=1)
        assert on_edge.all()


# ------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_rejected_with_a_clear_error():
    mu, sigma = g.paper_setting(3)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        g.accuracy(np.ones(3), mu, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        g.sample(5, mu, [1.0, -1.0, 1.0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        g.adversarial_accuracy(np.ones(3), mu, sigma, [0.1, -0.1])
    with pytest.raises(ValueError, match="eps must be >= 0"):
        g.robust_weights(mu, sigma, -1.0)
    with pytest.raises(ValueError, match="sigma must have the shape of mu"):
        g.best_adversarial_accuracy(mu, sigma[:2], 0.1)
    with pytest.raises(ValueError, match=r"w must have shape \(\.\.\., d\) with d = 3"):
        g.accuracy(np.ones(4), mu, sigma)
    with pytest.raises(ValueError, match="y must have shape"):
        g.optimal_perturbation(np.ones((4, 3)), np.ones(3), np.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"y must hold labels in \{-1, \+1\}"):
        g.optimal_perturbation(np.ones((2, 3)), np.array([0, 1]), np.ones(3), 0.1)
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            g.fit_smoothed(mu, sigma, alpha)
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            g.expected_loss(np.ones(3), mu, sigma, alpha)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        g.smoothed_loss(0.0, "0.1")
    with pytest.raises(ValueError, match="method must be one of"):
        g.fit_smoothed(mu, sigma, 0.1, "uniform")
    with pytest.raises(ValueError, match="must be finite"):
        g.accuracy([np.nan, 1.0, 1.0], mu, sigma)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        g.sample(5, mu, sigma, 0)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        g.paper_setting(0)
    with pytest.raises(ValueError, match="l2 must be"):
        g.fit_smoothed(mu, sigma, 0.1, l2=-1.0)
    with pytest.raises(ValueError, match="d = 2 only"):
        g.density_view(mu, sigma, {})


# ------------------------------------------------------------------------------------------
# speed (the book's sliders): budgets 5 ms per 200-eps curve and 1 s per fit, with ample margin


def _best_time(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def test_speed_budgets():
    mu, sigma = g.paper_setting(10)
    eps = np.linspace(0, 0.5, 200)
    w = np.ones(10)
    assert _best_time(lambda: g.adversarial_accuracy(w, mu, sigma, eps)) < 5e-3
    assert _best_time(lambda: g.fit_smoothed(mu, sigma, 0.1), repeat=3) < 1.0
