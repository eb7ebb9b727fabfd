r"""The fading-Gaussian analysis of Section 3.1: eqs. (8)-(11), Lemma 1, Bayes against ALS, exactly.

The model (the paper's Section 3.1, after Tsipras et al.): :math:`Y` is uniform on
:math:`\{-1, +1\}` and, given :math:`Y = y`, the features are independent,
:math:`X_j \sim \mathcal N(y\mu_j, \sigma_j^2)`, :math:`j = 1..d`. A linear classifier is
:math:`f_w(x) = \operatorname{sign}(w^T x)`. The paper's experiment (:func:`paper_setting`) takes
:math:`\sigma_i = 1 - (i-1)/d` and :math:`\mu_i = \sigma_i^2`.

Everything here is NumPy/SciPy and exact (closed forms or quadrature accurate to ~1e-13); nothing
draws random numbers except :func:`sample`.

The margin
    For any :math:`w` the margin :math:`m = y\,w^T x` is Gaussian,
    :math:`m \sim \mathcal N(w^T\mu,\ \sum_j w_j^2\sigma_j^2)`, whatever :math:`y` is (flip the sign
    of :math:`x` when :math:`y = -1`). Accuracies and smoothed losses of a linear model depend on
    :math:`w` only through this one-dimensional law (:func:`margin_law`).

Accuracies (eqs. 8, 9)
    :math:`\mathrm{acc}(f_w) = \Phi(w^T\mu / \|w\|_\Sigma)` and, against an :math:`\ell_\infty`
    attack of size :math:`\varepsilon`,
    :math:`\mathrm{acc}_\varepsilon(f_w) = \Phi((w^T\mu - \varepsilon\|w\|_1) / \|w\|_\Sigma)`,
    the worst perturbation being :math:`x - \varepsilon y\,\mathrm{sign}(w)`.
    Convention: :math:`w = 0` is the constant classifier; it is right half the time whatever the
    attack, so both accuracies are 1/2 there. This is the value eq. (11) gives when every
    :math:`|\mu_j| \le \varepsilon` (the Lemma 1 weights are then 0).

Smoothed losses in the binary case
    The model is a 2-class softmax with logits :math:`z = (w^Tx/2, -w^Tx/2)` for classes
    :math:`(+1, -1)`, i.e. :math:`p_{+1} = \mathrm{sigmoid}(w^Tx)` as in the paper. The
    cross-entropy against the smoothed target :math:`q = (1-\alpha)\mathbf y + \alpha q'` (eq. 1),
    written with the margin :math:`m = y w^T x` and :math:`\mathrm{sp}(t) = \log(1 + e^t)`, is

    * ``"standard"`` (SLS, eq. 5), ``"boltzmann"`` (BLS, eq. 6) and ``"second_best"`` (SBLS, eq. 7):
      :math:`\ell(m) = \mathrm{sp}(-m) + \alpha m`. With K = 2 there is a single wrong class, and
      all three put the mass :math:`\alpha` on it always: SLS spreads :math:`\alpha` uniformly over
      the K - 1 = 1 wrong classes, BLS's Boltzmann distribution runs over the classes
      :math:`k \ne y` only (one class, so every temperature T gives the same q'), and SBLS picks the
      most likely wrong class (the only one). So these three are one loss when K = 2; the fitter
      accepts all three names and gives the same weights.
    * ``"adversarial"`` (ALS, eq. 4): :math:`\ell(m) = \mathrm{sp}(-m) + \alpha\max(m, 0)`. The
      "worst" class is the argmin of the logits over *all* K classes, the true class included. When
      the model is right (:math:`m > 0`) the worst class is the wrong one and the loss is the one
      above; when it is wrong (:math:`m < 0`) the worst class is the true class, q stays one-hot and
      the loss is plain :math:`\mathrm{sp}(-m)`. These are the paper's :math:`l_1, ..., l_4` (which
      are missing a minus sign in the paper's text).

    With :math:`\alpha = 0` every method is the logistic loss. Theorem 1's penalty is
    :math:`\alpha(z_y - z_{y'})` with :math:`z_y - z_{y'} = m`: SLS/BLS/SBLS penalise
    :math:`\alpha m` always, ALS only when the model is right.

The expected loss, exactly
    :math:`\mathbb E[\ell(m)] = \mathbb E[\mathrm{sp}(-m)] + \alpha\,\mathbb E[\text{penalty}]`. The
    penalty carries the only kink (ALS at :math:`m = 0`) and has a closed form:
    :math:`\mathbb E[m] = a` and :math:`\mathbb E[m_+] = a\Phi(a/s) + s\varphi(a/s)` with
    :math:`a = w^T\mu`, :math:`s = \|w\|_\Sigma`. The remaining term is smooth and is computed by
    quadrature, with no Monte Carlo: for :math:`s \le 1.5`, 64-node Gauss-Hermite on
    :math:`\mathrm{sp}(-(a + s t))` (analytic in a strip of half-width :math:`\pi/s`); for larger
    :math:`s` that strip gets thin and Gauss-Hermite slows down, so the integral is split at the
    softplus' own kink: :math:`\mathrm{sp}(-m) = (-m)_+ + \log(1 + e^{-|m|})`, the first in closed
    form, the second folded onto :math:`[0, \infty)` and integrated by 64-node Gauss-Laguerre.
    Both agree with ``scipy.integrate.quad`` to ~1e-13 (``tests/test_gaussian.py``). The gradient
    in :math:`w` is the exact derivative of the same formulas.

The smoothed classifiers
    The loss is strictly convex in :math:`w` (a convex function of :math:`m`, strictly so for the
    softplus part, and :math:`m` is linear in :math:`w` with a non-degenerate :math:`X`) and grows
    at least linearly as :math:`\|w\| \to \infty` for every :math:`\alpha \in [0, 1]` (the Gaussian
    classes overlap), so the minimiser is unique and finite: :func:`fit_smoothed` returns a
    definite :math:`w`, not only a direction. Accuracies depend on the direction only.

    Because the loss depends on :math:`w` only through :math:`(a, s)`, its minimiser always lies
    on the Bayes ray :math:`c\,\mu/\sigma^2` (proof in :func:`fit_smoothed`): label smoothing of
    any of the four kinds changes the scale of the population-optimal linear classifier, never its
    direction, so it never changes its standard or adversarial accuracy. Exact special cases:
    :math:`\alpha = 0` gives :math:`w = 2\mu/\sigma^2` (the model is well specified,
    :math:`P(Y=1|x) = \mathrm{sigmoid}(2\sum_j \mu_j x_j/\sigma_j^2)`); ALS with
    :math:`\alpha \ge 1/2` gives :math:`w = 0` (then :math:`\ell(m) \ge \log 2` with equality only
    at :math:`m = 0`); SLS with :math:`\alpha = 1/2` gives 0 and with :math:`\alpha > 1/2` weights
    of the wrong sign (its target then favours the wrong class).

    So the paper's Figure 2 claim (ALS classifiers more robust than Bayes at d = 10) does not hold
    for the exact ALS classifier: its accuracy curves are the Bayes curve. It does hold once weight
    decay is added (``fit_smoothed(..., l2=...)``), and then the gain comes from the decay: in the
    paper's setting with ``l2 = 0.01``, the same decay without smoothing is at least as robust for
    eps >= 0.1 (``tests/test_gaussian.py`` records the numbers).

Figures
    :func:`figure1` (the smoothed classifiers' weights for several alphas), :func:`figure2`
    (standard and adversarial accuracy against eps for Bayes and ALS classifiers at d = 10, with the
    Lemma 1 envelope), :func:`figure3` (the d = 2 density with decision boundaries of
    w = (1, 1) and w = (4, 1)); each returns plain arrays for the book to draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special

__all__ = [
    "METHODS",
    "DEFAULT_ALPHAS",
    "paper_setting",
    "sample",
    "margin_law",
    "accuracy",
    "adversarial_accuracy",
    "optimal_perturbation",
    "robust_weights",
    "best_adversarial_accuracy",
    "bayes_weights",
    "crossover_eps",
    "smoothed_loss",
    "expected_loss",
    "expected_loss_and_grad",
    "fit_smoothed",
    "smoothed_weights",
    "AccuracyCurves",
    "accuracy_curves",
    "DensityView",
    "density_view",
    "figure1",
    "figure2",
    "figure3",
]

#: Smoothing methods, named as in :mod:`lslib.losses`: SLS (eq. 5), ALS (eq. 4), BLS (eq. 6),
#: SBLS (eq. 7). With K = 2, "standard", "boltzmann" and "second_best" are the same loss.
METHODS = ("standard", "adversarial", "boltzmann", "second_best")

#: The alphas drawn by :func:`figure1` and :func:`figure2` unless told otherwise (the paper's
#: experiments use 0.005, 0.1 and 0.4; the others fill the range where ALS is not degenerate,
#: alpha < 1/2).
DEFAULT_ALPHAS = (0.005, 0.01, 0.05, 0.1, 0.2, 0.4)

_SQRT_2PI = math.sqrt(2.0 * math.pi)

# Quadrature rules for E[softplus(-m)], m ~ N(a, s^2) (see the module docstring).
_SPLIT_S = 1.5  # Gauss-Hermite for s <= this, closed form + Gauss-Laguerre above
_GH_T, _GH_W = np.polynomial.hermite_e.hermegauss(64)
_GH_W = _GH_W / _SQRT_2PI  # weights of E[f(t)], t ~ N(0, 1)
_GL_U, _GL_W = np.polynomial.laguerre.laggauss(64)  # int_0^inf e^{-u} f(u) du
_GL_WH = _GL_W * np.exp(_GL_U) * np.log1p(np.exp(-_GL_U))  # weights times e^u log(1 + e^{-u})


# --------------------------------------------------------------------------------------------
# argument checks (NumPy versions: lslib._checks imports torch, which this module does not need)


def _real_array(name: str, value: ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers, got {value!r}") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def _params(mu: ArrayLike, sigma: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``mu`` and ``sigma`` as 1-D float arrays of one length d >= 1, ``sigma > 0``."""
    mu = _real_array("mu", mu)
    sigma = _real_array("sigma", sigma)
    if mu.ndim != 1 or mu.size == 0:
        raise ValueError(f"mu must be a non-empty 1-D array of shape (d,), got shape {mu.shape}")
    if sigma.shape != mu.shape:
        raise ValueError(f"sigma must have the shape of mu {mu.shape}, got shape {sigma.shape}")
    if np.any(sigma <= 0):
        raise ValueError(f"sigma must be > 0 in every coordinate, got a minimum of {sigma.min()!r} "
                         f"(coordinate {int(np.argmin(sigma))})")
    return mu, sigma


def _weights(w: ArrayLike, d: int) -> np.ndarray:
    """``w`` as a float array of shape (..., d)."""
    w = _real_array("w", w)
    if w.ndim == 0 or w.shape[-1] != d:
        raise ValueError(f"w must have shape (..., d) with d = {d}, "
                         f"got shape {w.shape}")
    return w


def _eps(eps: ArrayLike) -> np.ndarray:
    eps = _real_array("eps", eps)
    if np.any(eps < 0):
        raise ValueError(f"eps must be >= 0, got a minimum of {eps.min()!r}")
    return eps


def _alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {type(alpha).__name__}")
    a = float(alpha)
    if not 0.0 <= a <= 1.0:  # also rejects NaN
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return a


def _alphas(alphas: Sequence[float] | ArrayLike) -> np.ndarray:
    """``alphas`` as a non-empty 1-D float array of values in [0, 1] (a scalar is one alpha)."""
    if isinstance(alphas, str | bytes):
        raise TypeError(f"alphas must be a sequence of real numbers in [0, 1], got {alphas!r}")
    arr = np.atleast_1d(_real_array("alphas", alphas))
    if arr.ndim != 1:
        raise ValueError(f"alphas must be 1-D (a list of alphas), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("alphas is empty: give at least one alpha in [0, 1]")
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"alphas must lie in [0, 1], got {arr.tolist()}")
    return arr


def _method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _scalar_or_array(x: np.ndarray) -> np.ndarray | float:
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------------------------
# the model


def paper_setting(d: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's experiment: ``sigma_i = 1 - (i - 1)/d`` and ``mu_i = sigma_i**2``, i = 1..d.

    Returns ``(mu, sigma)``, each of shape (d,). The Bayes weights ``mu / sigma**2`` are all 1.
    """
    if isinstance(d, bool) or not isinstance(d, Integral) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    sigma = 1.0 - np.arange(int(d), dtype=np.float64) / d
    return sigma**2, sigma


def sample(n: int, mu: ArrayLike, sigma: ArrayLike,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws ``(X, y)`` from the model: ``y`` uniform on {-1, +1} (int64, shape (n,)) and
    ``X[i] ~ N(y[i] * mu, diag(sigma**2))`` (float64, shape (n, d)). ``rng`` is a NumPy
    ``Generator`` (``np.random.default_rng(seed)``)."""
    mu, sigma = _params(mu, sigma)
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    y = 2 * rng.integers(0, 2, size=int(n), dtype=np.int64) - 1
    x = y[:, None] * mu + sigma * rng.standard_normal((int(n), mu.size))
    return x, y


def margin_law(w: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> tuple[np.ndarray | float,
                                                                         np.ndarray | float]:
    """Mean and standard deviation of the margin ``y * w @ x``: ``(w @ mu, ||w||_Sigma)``.

    ``w`` has shape (..., d); each output has shape ``w.shape[:-1]`` (a float for one ``w``).
    """
    mu, sigma = _params(mu, sigma)
    w = _weights(w, mu.size)
    a, s = _margin_moments(w, mu, sigma)
    return _scalar_or_array(a), _scalar_or_array(s)


def _margin_moments(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    return w @ mu, np.sqrt((w * w) @ (sigma * sigma))


# --------------------------------------------------------------------------------------------
# accuracies: eqs. (8) and (9)


def adversarial_accuracy(w: ArrayLike, mu: ArrayLike, sigma: ArrayLike,
                         eps: ArrayLike) -> np.ndarray | float:
    r"""Eq. (9): accuracy of ``sign(w @ x)`` under the worst :math:`\ell_\infty` perturbation of
    size ``eps``, :math:`\Phi((w^T\mu - \varepsilon\|w\|_1)/\|w\|_\Sigma)`.

    Vectorised: ``w`` has shape (..., d) (many classifiers) and ``eps`` any shape (many budgets);
    the result has shape ``w.shape[:-1] + eps.shape`` (a float for one ``w`` and one ``eps``).
    ``w = 0`` (the constant classifier) has accuracy 1/2 at every ``eps``.
    """
    mu, sigma = _params(mu, sigma)
    w = _weights(w, mu.size)
    eps = _eps(eps)
    a, s = _margin_moments(w, mu, sigma)
    l1 = np.abs(w).sum(axis=-1)
    expand = (...,) + (None,) * eps.ndim
    a, s, l1 = a[expand], s[expand], l1[expand]
    zero = s == 0.0
    z = np.where(zero, 0.0, (a - eps * l1) / np.where(zero, 1.0, s))
    return _scalar_or_array(special.ndtr(z))


def accuracy(w: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> np.ndarray | float:
    r"""Eq. (8): standard accuracy of ``sign(w @ x)``, :math:`\Phi(w^T\mu/\|w\|_\Sigma)`.

    ``w`` has shape (..., d); the result has shape ``w.shape[:-1]``. ``w = 0`` gives 1/2.
    """
    return adversarial_accuracy(w, mu, sigma, 0.0)


def optimal_perturbation(x: ArrayLike, y: ArrayLike, w: ArrayLike, eps: float) -> np.ndarray:
    r"""The worst :math:`\ell_\infty` perturbation of size ``eps`` against ``sign(w @ x)``:
    ``x - eps * y * sign(w)`` (it lowers the margin ``y * w @ x`` by ``eps * ||w||_1``, the most
    any perturbation in the ball can).

    ``x`` has shape (n, d), ``y`` shape (n,) with values in {-1, +1}, ``w`` shape (d,).
    """
    x = _real_array("x", x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got shape {x.shape}")
    w = _weights(w, x.shape[1])
    if w.ndim != 1:
        raise ValueError(f"w must have shape (d,), got shape {w.shape}")
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got shape {y.shape}")
    if not np.all((y == 1) | (y == -1)):
        raise ValueError("y must hold labels in {-1, +1}")
    eps_ = _eps(eps)
    if eps_.ndim != 0:
        raise ValueError(f"eps must be a scalar here, got shape {eps_.shape}")
    return x - float(eps_) * y[:, None] * np.sign(w)


# --------------------------------------------------------------------------------------------
# Lemma 1 (eqs. 10, 11) and the Bayes classifier


def robust_weights(mu: ArrayLike, sigma: ArrayLike, eps: ArrayLike) -> np.ndarray:
    r"""Lemma 1, eq. (10): the most robust linear weights against :math:`\ell_\infty` attacks of
    size ``eps``, :math:`w_j = \sigma_j^{-2}\,\mathrm{sign}(\mu_j)\,(|\mu_j| - \varepsilon)_+`.

    Defined up to a positive scale; this scale makes ``eps = 0`` give the Bayes weights exactly.
    All zero when every ``|mu_j| <= eps``: no linear classifier then beats the constant one
    (accuracy 1/2, eq. 11). ``eps`` of any shape gives shape ``eps.shape + (d,)``.
    """
    mu, sigma = _params(mu, sigma)
    eps = _eps(eps)[..., None]
    return np.sign(mu) * np.maximum(np.abs(mu) - eps, 0.0) / sigma**2


def best_adversarial_accuracy(mu: ArrayLike, sigma: ArrayLike,
                              eps: ArrayLike) -> np.ndarray | float:
    r"""Lemma 1, eq. (11): the best adversarial accuracy of any linear classifier,
    :math:`\Phi(\sqrt{\Delta(\varepsilon)})`, :math:`\Delta = \sum_j \sigma_j^{-2}(|\mu_j| -
    \varepsilon)_+^2`. ``eps`` of any shape; the result has its shape."""
    mu, sigma = _params(mu, sigma)
    eps = _eps(eps)
    delta = (np.maximum(np.abs(mu) - eps[..., None], 0.0) ** 2 / sigma**2).sum(axis=-1)
    return _scalar_or_array(special.ndtr(np.sqrt(delta)))


def bayes_weights(mu: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """The Bayes classifier's weights ``mu / sigma**2`` (P(Y=1|x) = sigmoid(2 * w @ x))."""
    mu, sigma = _params(mu, sigma)
    return mu / sigma**2


def crossover_eps(w1: ArrayLike, w2: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> float:
    """The attack size at which classifiers ``w1`` and ``w2`` (each non-zero, shape (d,)) have
    the same adversarial accuracy. Eq. (9) is Phi of a function affine in eps, so the two curves
    cross at most once; ``nan`` when they do not cross at any eps >= 0 (parallel or identical).
    """
    mu, sigma = _params(mu, sigma)
    w1, w2 = _weights(w1, mu.size), _weights(w2, mu.size)
    if w1.ndim != 1 or w2.ndim != 1:
        raise ValueError("w1 and w2 must each have shape (d,)")
    (a1, s1), (a2, s2) = _margin_moments(w1, mu, sigma), _margin_moments(w2, mu, sigma)
    if s1 == 0 or s2 == 0:
        raise ValueError("w1 and w2 must be non-zero")
    slope = np.abs(w1).sum() / s1 - np.abs(w2).sum() / s2
    gap = a1 / s1 - a2 / s2
    if slope == 0:
        return math.nan
    e = gap / slope
    return float(e) if e >= 0 else math.nan


# --------------------------------------------------------------------------------------------
# smoothed losses and their exact expectation


def smoothed_loss(m: ArrayLike, alpha: float, method: str = "adversarial") -> np.ndarray | float:
    """The smoothed cross-entropy of a binary linear model as a function of the margin
    ``m = y * w @ x`` (see the module docstring): ``softplus(-m) + alpha * max(m, 0)`` for ALS,
    ``softplus(-m) + alpha * m`` for SLS, BLS and SBLS (the same loss when K = 2)."""
    alpha, method = _alpha(alpha), _method(method)
    m = _real_array("m", m)
    penalty = np.maximum(m, 0.0) if method == "adversarial" else m
    return _scalar_or_array(np.logaddexp(0.0, -m) + alpha * penalty)


def _softplus_expectation(a: np.ndarray, s: np.ndarray):
    """``E[softplus(-m)]`` for ``m ~ N(a, s^2)`` and its derivatives in ``a`` and ``s``."""
    f = np.empty_like(a)
    fa = np.empty_like(a)
    fs = np.empty_like(a)
    narrow = s <= _SPLIT_S
    if np.any(narrow):  # Gauss-Hermite: the integrand is analytic in a wide strip
        an, sn = a[narrow][:, None], s[narrow][:, None]
        m = an + sn * _GH_T
        sig = special.expit(-m)  # = -d softplus(-m) / dm
        f[narrow] = np.logaddexp(0.0, -m) @ _GH_W
        fa[narrow] = -(sig @ _GH_W)
        fs[narrow] = -(sig @ (_GH_W * _GH_T))
    wide = ~narrow
    if np.any(wide):  # (-m)_+ in closed form + Gauss-Laguerre for log(1 + e^{-|m|})
        aw, sw = a[wide], s[wide]
        z = aw / sw
        phi = np.exp(-0.5 * z * z) / _SQRT_2PI
        cdf_neg = special.ndtr(-z)
        aw, sw = aw[:, None], sw[:, None]
        zp, zm = (_GL_U - aw) / sw, (_GL_U + aw) / sw  # the two halves, folded onto u >= 0
        np_, nm = np.exp(-0.5 * zp * zp) / sw, np.exp(-0.5 * zm * zm) / sw
        f[wide] = -a[wide] * cdf_neg + s[wide] * phi + ((np_ + nm) @ _GL_WH) / _SQRT_2PI
        fa[wide] = -cdf_neg + ((np_ * zp - nm * zm) / sw) @ _GL_WH / _SQRT_2PI
        fs[wide] = phi + ((np_ * (zp * zp - 1) + nm * (zm * zm - 1)) / sw) @ _GL_WH / _SQRT_2PI
    return f, fa, fs


def _expected_loss_parts(a: np.ndarray, s: np.ndarray, alpha: float, method: str):
    """Expected smoothed loss for margin law N(a, s^2), and its derivatives in a and s."""
    f, fa, fs = _softplus_expectation(a, s)
    if alpha == 0.0:
        return f, fa, fs
    if method == "adversarial":  # E[m_+] = a Phi(a/s) + s phi(a/s); m_+ = max(a, 0) when s = 0
        pos = s > 0
        z = np.where(pos, a / np.where(pos, s, 1.0), 0.0)
        cdf = np.where(pos, special.ndtr(z), (a > 0).astype(float))
        phi = np.where(pos, np.exp(-0.5 * z * z) / _SQRT_2PI, 0.0)
        return (f + alpha * (a * cdf + s * phi), fa + alpha * cdf, fs + alpha * phi)
    return f + alpha * a, fa + alpha, fs  # E[m] = a


def expected_loss(w: ArrayLike, mu: ArrayLike, sigma: ArrayLike, alpha: float,
                  method: str = "adversarial") -> np.ndarray | float:
    """The population smoothed loss ``E[smoothed_loss(y * w @ x)]``, exactly (quadrature, see the
    module docstring). ``w`` has shape (..., d); the result has shape ``w.shape[:-1]``."""
    alpha, method = _alpha(alpha), _method(method)
    mu, sigma = _params(mu, sigma)
    w = _weights(w, mu.size)
    a, s = _margin_moments(w, mu, sigma)
    loss, _, _ = _expected_loss_parts(np.atleast_1d(a), np.atleast_1d(s), alpha, method)
    return _scalar_or_array(loss.reshape(np.shape(a)))


def expected_loss_and_grad(w: ArrayLike, mu: ArrayLike, sigma: ArrayLike, alpha: float,
                           method: str = "adversarial") -> tuple[float, np.ndarray]:
    """:func:`expected_loss` for one ``w`` of shape (d,) and its exact gradient in ``w``.

    At ``w = 0`` the margin's standard deviation is not differentiable; the gradient returned
    there is the one of the mean term alone.
    """
    alpha, method = _alpha(alpha), _method(method)
    mu, sigma = _params(mu, sigma)
    w = _weights(w, mu.size)
    if w.ndim != 1:
        raise ValueError(f"w must have shape (d,), got shape {w.shape}")
    return _loss_and_grad(w, mu, sigma, alpha, method)


def _loss_and_grad(w, mu, sigma, alpha, method, l2=0.0):
    var = sigma * sigma
    a, s = np.array([w @ mu]), np.array([math.sqrt((w * w) @ var)])
    loss, la, ls = _expected_loss_parts(a, s, alpha, method)
    grad = la[0] * mu
    if s[0] > 0:
        grad = grad + (ls[0] / s[0]) * var * w
    if l2:
        return float(loss[0]) + 0.5 * l2 * float(w @ w), grad + l2 * w
    return float(loss[0]), grad


def _ray_slope(c: float, r: float, alpha: float, method: str) -> float:
    """d/dc of the expected loss at ``w = c * mu / sigma**2``, where the margin law is
    N(c r^2, c^2 r^2) with r the Bayes signal-to-noise ratio."""
    a, s = np.array([c * r * r]), np.array([abs(c) * r])
    _, la, ls = _expected_loss_parts(a, s, alpha, method)
    return float(la[0] * r * r + math.copysign(ls[0] * r, c))


def _fit_on_bayes_ray(mu, sigma, alpha, method) -> np.ndarray:
    bayes = mu / sigma**2
    r = math.sqrt(float(mu @ bayes))
    if r == 0.0:  # mu = 0: the margin has mean 0 whatever w is; the loss is smallest at w = 0
        return np.zeros_like(mu)
    if alpha == 0.0:  # logistic regression on a well-specified model: P(Y=1|x) = sigmoid(2 bayes x)
        return 2.0 * bayes
    if method == "adversarial" and alpha >= 0.5:  # loss >= log 2 with equality only at m = 0
        return np.zeros_like(mu)
    if method != "adversarial" and alpha == 0.5:  # loss log(2 cosh(m/2)): even, smallest at 0
        return np.zeros_like(mu)
    # The slope is nondecreasing in c (convexity) and the loss is coercive: bracket its sign change.
    tiny = 1e-300
    side = 1.0 if _ray_slope(tiny, r, alpha, method) < 0 else -1.0
    if side < 0 and _ray_slope(-tiny, r, alpha, method) <= 0:
        return np.zeros_like(mu)  # the minimum is the kink at w = 0 (e.g. SLS with alpha = 1/2)
    far = 1.0
    while side * _ray_slope(side * far, r, alpha, method) < 0:
        far *= 2.0
        if far > 1e300:
            raise RuntimeError("fit_smoothed: no minimiser found on the Bayes ray")
    c = optimize.brentq(lambda t: _ray_slope(side * t, r, alpha, method), tiny, far,
                        xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return side * c * bayes


def fit_smoothed(mu: ArrayLike, sigma: ArrayLike, alpha: float, method: str = "adversarial", *,
                 l2: float = 0.0) -> np.ndarray:
    """The linear classifier that minimises the population smoothed loss (:func:`expected_loss`)
    plus ``l2 / 2 * ||w||^2`` (weight decay, 0 by default). The problem is strictly convex with a
    finite minimiser, so the result is the global one, scale included (module docstring).

    Without weight decay the minimiser lies exactly on the Bayes ray ``c * mu / sigma**2``, for
    every method and alpha: the loss depends on ``w`` only through ``a = w @ mu`` and
    ``s = ||w||_Sigma``, so its gradient is ``L_a mu + (L_s / s) Sigma w``. On the Bayes ray that
    gradient is parallel to ``mu``, so it vanishes where the loss is smallest along the ray, and
    strict convexity makes that point the minimiser. Smoothing then changes the scale of ``w``,
    never its direction, and so never its standard or adversarial accuracy. The fit is therefore
    a one-dimensional root search (the slope along the ray, to machine precision, at any d), with
    exact answers where they exist: ``alpha = 0`` gives ``2 mu / sigma**2`` (well-specified
    logistic model) and ALS with ``alpha >= 1/2`` gives 0. ``tests/test_gaussian.py`` checks the
    result against a general minimisation over all of R^d.

    With weight decay (``l2 > 0``) the direction tilts towards ``mu`` (a ridge-like shrinkage of
    the features with small sigma); that fit runs BFGS with the exact gradient, in the whitened
    coordinates ``sigma * w``, from the ``l2 = 0`` solution. Meant for small d (the book's d = 10):
    it costs O(d^2) per iteration.

    ``method`` is one of :data:`METHODS`; "standard", "boltzmann" and "second_best" give the same
    weights (they are one loss when K = 2). SLS with ``alpha > 1/2`` gives weights of the wrong
    sign (its target favours the wrong class). Raises ``RuntimeError`` if BFGS does not converge.
    """
    alpha, method = _alpha(alpha), _method(method)
    mu, sigma = _params(mu, sigma)
    if isinstance(l2, bool) or not isinstance(l2, Real) or not 0.0 <= l2 < math.inf:
        raise ValueError(f"l2 must be a finite real number >= 0, got {l2!r}")
    w_ray = _fit_on_bayes_ray(mu, sigma, alpha, method)
    if l2 == 0.0:
        return w_ray
    if not np.any(w_ray):  # start off the kink at 0, where the gradient is not defined
        w_ray = 1e-3 * mu / sigma**2

    # BFGS rather than L-BFGS-B: at this size scipy's L-BFGS-B spends its time in threaded
    # OpenBLAS calls, which get 10-50 times slower when the machine is busy. Whitened
    # coordinates v = sigma * w remove the spread of the sigmas from the Hessian.
    def objective(v):
        loss, grad = _loss_and_grad(v / sigma, mu, sigma, alpha, method, float(l2))
        return loss, grad / sigma

    gtol = 1e-10
    res = optimize.minimize(objective, sigma * w_ray, jac=True, method="BFGS",
                            options={"gtol": gtol, "maxiter": 10_000})
    grad_norm = float(np.max(np.abs(res.jac)))
    if not res.success and grad_norm > 1e3 * gtol:  # "precision loss" near the optimum is fine
        raise RuntimeError(f"fit_smoothed did not converge: {res.message} "
                           f"(|grad| = {grad_norm:.2e})")
    return res.x / sigma


def smoothed_weights(mu: ArrayLike, sigma: ArrayLike, alphas: Sequence[float] | ArrayLike,
                     method: str = "adversarial", *, l2: float = 0.0) -> np.ndarray:
    """:func:`fit_smoothed` for each alpha in ``alphas``: shape (len(alphas), d)."""
    alphas = _alphas(alphas)
    return np.stack([fit_smoothed(mu, sigma, float(al), method, l2=l2) for al in alphas])


# --------------------------------------------------------------------------------------------
# what the book's figures need


@dataclass(frozen=True)
class AccuracyCurves:
    """Accuracy against attack size for several linear classifiers (Figure 2).

    ``accuracy[i, k]`` is eq. (9) for classifier ``labels[i]`` (weights ``weights[i]``) at
    ``eps[k]``; ``best[k]`` is eq. (11), the best any linear classifier can do.
    """

    eps: np.ndarray  # (n_eps,)
    labels: tuple[str, ...]  # (n_classifiers,)
    weights: np.ndarray  # (n_classifiers, d)
    accuracy: np.ndarray  # (n_classifiers, n_eps)
    best: np.ndarray  # (n_eps,)
    standard: np.ndarray  # (n_classifiers,): eq. (8), the accuracy at eps = 0

    def long_format(self) -> dict[str, np.ndarray]:
        """Columns ``eps``, ``classifier``, ``accuracy`` (one row per classifier and eps, the
        Lemma 1 optimum as classifier "Lemma 1 (best linear)"), e.g. for ``pandas.DataFrame``."""
        labels = (*self.labels, "Lemma 1 (best linear)")
        acc = np.vstack([self.accuracy, self.best[None, :]])
        return {
            "eps": np.tile(self.eps, len(labels)),
            "classifier": np.repeat(np.array(labels, dtype=object), self.eps.size),
            "accuracy": acc.ravel(),
        }


def accuracy_curves(weights: Mapping[str, ArrayLike], mu: ArrayLike, sigma: ArrayLike,
                    eps: ArrayLike) -> AccuracyCurves:
    """Eq. (9) for each named classifier in ``weights`` at each attack size in ``eps`` (1-D)."""
    mu, sigma = _params(mu, sigma)
    eps = _eps(eps)
    if eps.ndim != 1:
        raise ValueError(f"eps must be 1-D, got shape {eps.shape}")
    if not weights:
        raise ValueError("weights must name at least one classifier")
    w = np.stack([_weights(v, mu.size) for v in weights.values()])
    if w.ndim != 2:
        raise ValueError("each entry of weights must have shape (d,)")
    return AccuracyCurves(
        eps=eps, labels=tuple(weights), weights=w,
        accuracy=np.asarray(adversarial_accuracy(w, mu, sigma, eps)).reshape(len(w), eps.size),
        best=np.asarray(best_adversarial_accuracy(mu, sigma, eps)).reshape(eps.size),
        standard=np.asarray(accuracy(w, mu, sigma)).reshape(len(w)),
    )


def _label(method: str, alpha: float, l2: float) -> str:
    short = {"standard": "SLS", "adversarial": "ALS", "boltzmann": "BLS", "second_best": "SBLS"}
    return f"{short[method]} alpha={alpha:g}" + (f" l2={l2:g}" if l2 else "")


def figure1(d: int = 10, alphas: Sequence[float] = DEFAULT_ALPHAS,
            method: str = "adversarial", *, l2: float = 0.0) -> dict[str, np.ndarray]:
    """Figure 1: the fitted smoothed classifiers' weights in the paper's setting.

    Returns ``{"feature": 1..d, "alpha": (n_alpha,), "weights": (n_alpha, d), "bayes": (d,),
    "mu": (d,), "sigma": (d,)}``.
    """
    mu, sigma = paper_setting(d)
    alphas = _alphas(alphas)
    return {"feature": np.arange(1, d + 1), "alpha": alphas,
            "weights": smoothed_weights(mu, sigma, alphas, method, l2=l2),
            "bayes": bayes_weights(mu, sigma), "mu": mu, "sigma": sigma}


def figure2(d: int = 10, alphas: Sequence[float] = DEFAULT_ALPHAS, eps: ArrayLike | None = None,
            method: str = "adversarial", *, l2: float = 0.0) -> AccuracyCurves:
    """Figure 2: standard and adversarial accuracy against eps for the Bayes classifier and the
    smoothed classifiers of :func:`figure1`, in the paper's setting (default eps: 200 values in
    [0, 0.5]). The first classifier is "Bayes"."""
    mu, sigma = paper_setting(d)
    alphas = _alphas(alphas)
    eps = np.linspace(0.0, 0.5, 200) if eps is None else eps
    named = {"Bayes": bayes_weights(mu, sigma)}
    for al, w in zip(alphas, smoothed_weights(mu, sigma, alphas, method, l2=l2), strict=True):
        named[_label(method, float(al), l2)] = w
    return accuracy_curves(named, mu, sigma, eps)


@dataclass(frozen=True)
class DensityView:
    """The d = 2 picture (Figure 3): the exact density of X on a grid and lines to draw on it.

    ``density[i, j]`` is the density at ``(x1[j], x2[i])`` (rows follow x2, as ``imshow`` and
    ``contour`` expect). ``boundaries[label]`` and ``main_axis`` are the end points of segments
    clipped to the grid's box, shape (2, 2): rows are points, columns (x1, x2).
    """

    x1: np.ndarray
    x2: np.ndarray
    density: np.ndarray
    boundaries: dict[str, np.ndarray]
    main_axis: np.ndarray  # the line through -mu and +mu
    mu: np.ndarray
    sigma: np.ndarray


def _segment(direction: np.ndarray, half_extent: np.ndarray) -> np.ndarray:
    """The segment of the line through 0 along ``direction`` inside the box |x_i| <= half_extent."""
    nz = direction != 0
    t = np.min(half_extent[nz] / np.abs(direction[nz]))
    return np.stack([-t * direction, t * direction])


def density_view(mu: ArrayLike, sigma: ArrayLike, weights: Mapping[str, ArrayLike], *,
                 half_extent: ArrayLike | None = None, grid: int = 200) -> DensityView:
    """Exact density of X (the mixture of N(mu, Sigma) and N(-mu, Sigma)) for d = 2, with the
    decision boundary ``w @ x = 0`` of each named ``w`` and the axis through the class means.
    ``half_extent`` (default ``|mu| + 3.5 sigma``) is the half-width of the box per axis."""
    mu, sigma = _params(mu, sigma)
    if mu.size != 2:
        raise ValueError(f"density_view draws d = 2 only, got d = {mu.size}")
    if isinstance(grid, bool) or not isinstance(grid, Integral) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
    ext = np.abs(mu) + 3.5 * sigma if half_extent is None else _real_array("half_extent",
                                                                              half_extent)
    if ext.shape != (2,) or np.any(ext <= 0):
        raise ValueError(f"half_extent must be 2 positive numbers, got {ext.tolist()}")
    x1 = np.linspace(-ext[0], ext[0], grid)
    x2 = np.linspace(-ext[1], ext[1], grid)
    pts = np.stack(np.meshgrid(x1, x2), axis=-1)  # (grid, grid, 2), [i, j] = (x1[j], x2[i])
    norm = 1.0 / (2.0 * math.pi * sigma.prod())
    dens = 0.5 * norm * sum(np.exp(-0.5 * (((pts - sgn * mu) / sigma) ** 2).sum(-1))
                            for sgn in (1.0, -1.0))
    bounds = {}
    for label, w in weights.items():
        w = _weights(w, 2)
        if w.ndim != 1 or not np.any(w):
            raise ValueError(f"weights[{label!r}] must be a non-zero vector of shape (2,)")
        bounds[label] = _segment(np.array([-w[1], w[0]]), ext)
    main = _segment(mu, ext) if np.any(mu) else np.zeros((2, 2))
    return DensityView(x1=x1, x2=x2, density=dens, boundaries=bounds, main_axis=main,
                       mu=mu, sigma=sigma)


def figure3(grid: int = 200) -> DensityView:
    """Figure 3: the paper's setting at d = 2 (mu = (1, 0.25), sigma = (1, 0.5)) with the
    boundaries of the Bayes classifier w = (1, 1) and of w = (4, 1), which is orthogonal to the
    axis through the class means. For the paper's KDE, draw :func:`sample` from the same setting."""
    mu, sigma = paper_setting(2)
    return density_view(mu, sigma, {"Bayes w=(1, 1)": (1.0, 1.0), "w=(4, 1)": (4.0, 1.0)},
                        grid=grid)
