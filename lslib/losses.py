r"""The unified label-smoothing framework of Section 2 (eqs. 1-7, Theorem 1).

Every method replaces the one-hot label :math:`\mathbf{y}` by

.. math::  q = (1 - \alpha)\,\mathbf{y} + \alpha\, q', \qquad q' \in \Delta_K        \quad (1)

and trains on the smoothed cross-entropy :math:`-q^\top \log p`, :math:`p = \mathrm{softmax}(z)`.
The methods differ only in :math:`q'` (computed per sample from the logits :math:`z`):

- ``"standard"`` (SLS, eq. 5): uniform on the K-1 wrong classes, :math:`(1-\mathbf{y})/(K-1)`;
- ``"adversarial"`` (ALS, eq. 4): one-hot of :math:`\mathrm{argmin}_k z_k` over ALL K classes;
- ``"boltzmann"`` (BLS, eq. 6): soft-min, weights :math:`\propto \exp(-z_k/T)` on the wrong classes;
- ``"second_best"`` (SBLS, eq. 7): one-hot of :math:`\mathrm{argmax}_{k \neq y} z_k`;
- a callable ``method(logits, target)`` returning q' (N, K): "any other choice of q'" (Sec. 2.2).

The aliases ``"sls"``, ``"als"``, ``"bls"`` and ``"sbls"`` are accepted (case-insensitive).

**Tie rule.** Lemma 2 allows any point of the convex hull of the tied extremes. lslib splits the
mass *equally* among tied minima (ALS) or tied maxima (SBLS): the rule of the authors' code, the
limit of BLS as T -> 0, and the only rule that does not depend on the order of the classes (at
initialisation, e.g. a zero-initialised linear layer, all K logits tie and ALS gives
:math:`q' = 1/K` everywhere). The gradient follows the same rule (it is ``softmax(z) - q``).

**ALS versus the BLS limit.** Eq. (4) takes the argmin over all K classes, true class included (as
the paper and its code do), so when the true class has the smallest logit ALS puts the whole mass
back on it and q is the one-hot label. BLS (eq. 6) and SBLS range over the wrong classes only, so
BLS at T -> 0 tends to the argmin over the *wrong* classes: it equals ALS except on samples whose
true class attains the smallest logit (alone or tied).

**Theorem 1.** ``smooth_cross_entropy(z, y, m, alpha) == cross_entropy(z, y) +
alpha * logit_penalty(z, y, m)``, with :math:`R_n = (\mathbf{y} - q')^\top z` exactly as in
Theorem 1 and Corollary 1. Table 1 of the paper prints the ALS, BLS and SBLS penalties with the
opposite sign, :math:`(q' - \mathbf{y})^\top z`; lslib follows Theorem 1, which the proof in
Appendix 1.1 and the SBLS display in Section 2.2 agree with (Table 1's sign breaks the identity).

**dtypes.** float16 / bfloat16 logits (plain or from autocast) are upcast: everything is
computed in float32 and the loss is float32 (as ``nn.CrossEntropyLoss`` under autocast); float32
and float64 logits are kept as they are. Gradients flow back to the logits in their own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lslib._checks import (
    check_choice,
    check_distribution_rows,
    check_labels,
    check_logits,
    check_positive,
    check_unit_interval,
)

__all__ = [
    "METHODS",
    "ALIASES",
    "QPrime",
    "smooth_targets",
    "smooth_cross_entropy",
    "logit_penalty",
    "SmoothCrossEntropyLoss",
]

# SLS eq. 5, ALS eq. 4, BLS eq. 6, SBLS eq. 7
METHODS = ("standard", "adversarial", "boltzmann", "second_best")
ALIASES = {"sls": "standard", "als": "adversarial", "bls": "boltzmann", "sbls": "second_best"}
REDUCTIONS = ("mean", "sum", "none")
BOLTZMANN_SCALES = ("logits", "probabilities")

QPrime = Callable[[Tensor, Tensor], Tensor]
"""A user q': ``(logits (N, K), target (N,)) -> q' (N, K)``, each row on the simplex."""

Reduction = Literal["mean", "sum", "none"]
BoltzmannScale = Literal["logits", "probabilities"]


# --------------------------------------------------------------------------------------------
# argument handling
# --------------------------------------------------------------------------------------------
def _resolve_method(method: str | QPrime) -> str | QPrime:
    if isinstance(method, str):
        key = method.lower()
        key = ALIASES.get(key, key)
        if key in METHODS:
            return key
        raise ValueError(
            f"method must be one of {', '.join(map(repr, METHODS))} (aliases "
            f"{', '.join(map(repr, ALIASES))}) or a callable (logits, target) -> q', got {method!r}"
        )
    if callable(method):
        return method
    raise TypeError(
        f"method must be a string (one of {', '.join(map(repr, METHODS))}) or a callable "
        f"(logits, target) -> q', got {type(method).__name__}"
    )


def _check_scalars(alpha: float, temperature: float, boltzmann_scale: str, *,
                   check_alpha: bool = True) -> float:
    if check_alpha:
        check_unit_interval("alpha", alpha)
    check_choice("boltzmann_scale", boltzmann_scale, BOLTZMANN_SCALES)
    return check_positive("temperature", temperature, allow_inf=True)


def _prepare(logits: Tensor, target: Tensor, labels_checked: bool = False
             ) -> tuple[Tensor, Tensor]:
    """Validate the tensors; return the logits in the computation dtype (>= float32) and the
    labels as int64 (both unchanged, without a copy, when they already are).
    ``labels_checked``: the caller checked the labels' values already (their range check is a
    device synchronisation); their type and shape are still checked."""
    check_logits("logits", logits)
    check_labels("target", target, logits.shape[1], logits.shape[0], values=not labels_checked)
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return logits, target.long()


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


# --------------------------------------------------------------------------------------------
# q' (eqs. 4-7) and the per-sample penalty (Theorem 1)
# --------------------------------------------------------------------------------------------
def _qprime(z: Tensor, target: Tensor, method: str | QPrime, temperature: float,
            boltzmann_scale: str, detach: bool) -> Tensor:
    """q' of shape (N, K) in z's dtype; no gradient unless ``detach`` is False (BLS, callables)."""
    src = z.detach() if detach else z
    n, k = z.shape
    t1 = target.unsqueeze(1)
    if callable(method):
        q = method(src, target)
        check_distribution_rows("the q' returned by the callable `method`", q, (n, k))
        return q.to(z.dtype)
    if method == "standard":
        return torch.full_like(src, 1.0 / (k - 1)).scatter_(1, t1, 0.0).detach()
    if method == "adversarial":
        hit = (src == src.amin(dim=1, keepdim=True)).to(z.dtype)
        return (hit / hit.sum(dim=1, keepdim=True)).detach()
    if method == "second_best":
        masked = src.detach().scatter(1, t1, float("-inf"))
        hit = (masked == masked.amax(dim=1, keepdim=True)).to(z.dtype)
        return hit / hit.sum(dim=1, keepdim=True)
    # boltzmann: soft-min over the wrong classes, on logits (eq. 6) or probabilities (the code)
    # a q' that keeps its graph uses torch's own kernel and layout (see _softmax)
    softmax = _softmax if detach else partial(torch.softmax, dim=1)
    energy = src if boltzmann_scale == "logits" else softmax(src)
    return softmax((energy / -temperature).scatter(1, t1, float("-inf"))).contiguous()


def _penalty(z: Tensor, target: Tensor, method: str | QPrime, temperature: float,
             boltzmann_scale: str, detach: bool) -> Tensor:
    """Per-sample (y - q')^T z, shape (N,). Closed forms for SLS, ALS and SBLS.

    The closed forms have the gradient y - q' with the equal-split tie rule (amin/amax share the
    gradient equally among tied entries), i.e. the same as with an explicit, detached q'.
    """
    t1 = target.unsqueeze(1)
    zy = z.gather(1, t1).squeeze(1)
    if method == "standard":
        k = z.shape[1]
        return (zy * k - z.sum(dim=1)) / (k - 1)
    if method == "adversarial":
        return zy - z.amin(dim=1)
    if method == "second_best":
        return zy - z.scatter(1, t1, float("-inf")).amax(dim=1)
    q = _qprime(z, target, method, temperature, boltzmann_scale, detach)
    return zy - (q * z).sum(dim=1)


def _softmax(x: Tensor) -> Tensor:
    """``torch.softmax(x, 1)`` of (N, K) scores for a target built outside the graph. On the CPU
    it runs over dim 0 of the transposed view: ATen's CPU kernel for the last dimension pays a
    fixed cost per row, which dominates for a handful of classes (two of these make BLS's q';
    ``python bench/bench_losses.py``, part B, times the losses)."""
    if x.device.type == "cpu":
        return torch.softmax(x.t(), 0).t()
    return torch.softmax(x, 1)


def _soft_cross_entropy(z: Tensor, q: Tensor, reduction: str) -> Tensor:
    """``-q^T log_softmax(z)`` per sample, reduced, for targets ``q`` (N, K) built outside the
    graph (what ``F.cross_entropy(z, q)`` computes). For "mean" and "sum" the batch is one dot
    product with q scaled beforehand, outside the graph: three recorded operations (log-softmax,
    a view, the dot) instead of five (log-softmax, product, sum, negation, mean)."""
    if reduction == "none" or z.shape[0] == 0:  # (an empty mean is NaN, as in torch)
        return F.cross_entropy(z, q, reduction=reduction)
    with torch.no_grad():
        w = q.mul_(-1.0 / z.shape[0] if reduction == "mean" else -1.0)  # q is ours
    return torch.dot(z.log_softmax(dim=1).reshape(-1), w.reshape(-1))


def _smooth_ce(z: Tensor, target: Tensor, method: str | QPrime, alpha: float, temperature: float,
               reduction: str, detach: bool, boltzmann_scale: str) -> Tensor:
    """Validated inputs. ``-q^T log_softmax(z)`` with q of eq. (1).

    With q held constant (detached targets, the default; and always for SLS, ALS and SBLS, whose
    q' is piecewise constant in z) q is built without recording a graph and the loss is
    :func:`_soft_cross_entropy`: gradient ``softmax(z) - q`` (ties split equally, as q is
    built), twice differentiable, and few recorded operations (on small models per-operation
    overhead dominates a training step). With ``detach=False`` (BLS, callables) the gradient
    also flows through q'."""
    if alpha == 0.0:
        return F.cross_entropy(z, target, reduction=reduction)
    if detach or method in ("standard", "adversarial", "second_best"):
        with torch.no_grad():
            q = _targets(z, target, method, alpha, temperature, boltzmann_scale, True)
        return _soft_cross_entropy(z, q, reduction)
    lp = z.log_softmax(dim=1)
    nll = F.nll_loss(lp, target, reduction=reduction)
    q = _qprime(z, target, method, temperature, boltzmann_scale, detach)
    s = (q * lp).sum(dim=1)
    return nll.mul(1.0 - alpha).sub(_reduce(s, reduction), alpha=alpha)


def _targets(z: Tensor, target: Tensor, method: str | QPrime, alpha: float, temperature: float,
             boltzmann_scale: str, detach: bool) -> Tensor:
    """q = (1 - alpha) y + alpha q' of eq. (1), shape (N, K); the body of :func:`smooth_targets`.

    Few operations (it runs at every training step): SLS is built directly, and a q' built
    here and outside any graph is scaled and shifted in place."""
    t1 = target.unsqueeze(1)
    if method == "standard":
        return torch.full_like(z, alpha / (z.shape[1] - 1)).scatter_(1, t1, 1.0 - alpha)
    q = _qprime(z, target, method, temperature, boltzmann_scale, detach)
    if callable(method) or q.requires_grad:  # the caller's tensor, or part of a graph
        ones = torch.full((z.shape[0], 1), 1.0 - alpha, dtype=q.dtype, device=q.device)
        return (q * alpha).scatter_add(1, t1, ones)
    return q.mul_(alpha).scatter_(1, t1, 1.0 - alpha, reduce="add")


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def smooth_targets(logits: Tensor, target: Tensor, method: str | QPrime, alpha: float,
                   temperature: float = 1.0, *, boltzmann_scale: BoltzmannScale = "logits",
                   detach: bool = True) -> Tensor:
    r"""The smoothed label distribution :math:`q = (1-\alpha)\mathbf{y} + \alpha q'` of eq. (1).

    Args:
        logits: (N, K) logits z, K >= 2 (float16/bfloat16 are computed in float32).
        target: (N,) integer labels in [0, K).
        method: ``"standard"`` (SLS, eq. 5), ``"adversarial"`` (ALS, eq. 4: argmin over all K
            logits, true class included), ``"boltzmann"`` (BLS, eq. 6), ``"second_best"`` (SBLS,
            eq. 7: argmax over the wrong classes), an alias (``"sls"``, ``"als"``, ``"bls"``,
            ``"sbls"``) or a callable ``(logits, target) -> q'`` whose rows lie on the simplex
            (checked: shape, finite, non-negative, rows summing to 1). Ties are split equally
            (see the module doc).
        alpha: smoothing parameter in [0, 1].
        temperature: BLS temperature T > 0 (``float("inf")`` allowed: it gives SLS exactly);
            ignored by the other methods but still checked.
        boltzmann_scale: ``"logits"`` (default): weights :math:`\propto \exp(-z_k/T)` over the wrong
            classes, which is what eq. (6) of the paper means. ``"probabilities"``: weights
            :math:`\propto \exp(-p_k/T)`, what the authors' code computed; the paper's advice
            "T = 0.001 is a good default" refers to this scale (p is in [0, 1], so T must be small).
            Both tend to the argmin over the wrong classes as T -> 0 and to SLS as T -> inf.
        detach: compute q' from ``logits.detach()`` (default; Algorithm 1 smooths the labels, then
            computes the loss). With ``False`` the BLS (and a callable's) q' keeps its gradient.

    Returns:
        q, shape (N, K), in the computation dtype: each row on the simplex with q_y >= 1 - alpha.
    """
    m = _resolve_method(method)
    temperature = _check_scalars(alpha, temperature, boltzmann_scale)
    z, target = _prepare(logits, target)
    return _targets(z, target, m, float(alpha), temperature, boltzmann_scale, detach)


def logit_penalty(logits: Tensor, target: Tensor, method: str | QPrime, temperature: float = 1.0,
                  *, reduction: Reduction = "mean", boltzmann_scale: BoltzmannScale = "logits",
                  detach_targets: bool = True) -> Tensor:
    r"""The logit penalty :math:`R_n = (\mathbf{y} - q')^\top z` of Theorem 1, so that

    ``smooth_cross_entropy(z, y, method, alpha)``
    ``== cross_entropy(z, y) + alpha * logit_penalty(z, y, method)``

    (in value always; in gradient too when both use the same ``detach_targets``). For ALS this is
    :math:`z_y - \min_k z_k` (Corollary 1), for SBLS :math:`z_y - \max_{k \neq y} z_k`, for SLS
    :math:`(K z_y - \sum_k z_k)/(K-1)`.

    Sign: this follows Theorem 1 and Corollary 1. Table 1 of the paper prints the ALS, BLS and
    SBLS penalties with the opposite sign, :math:`(q' - \mathbf{y})^\top z`; that sign does not
    satisfy the identity above.

    ``reduction`` is ``"mean"`` (the paper's 1/n sum), ``"sum"`` or ``"none"`` (shape (N,)). The
    other arguments are those of :func:`smooth_targets`.
    """
    m = _resolve_method(method)
    temperature = _check_scalars(0.0, temperature, boltzmann_scale, check_alpha=False)
    check_choice("reduction", reduction, REDUCTIONS)
    z, target = _prepare(logits, target)
    return _reduce(_penalty(z, target, m, temperature, boltzmann_scale, detach_targets), reduction)


def smooth_cross_entropy(logits: Tensor, target: Tensor, method: str | QPrime = "standard",
                         alpha: float = 0.1, temperature: float = 1.0, *,
                         reduction: Reduction = "mean", detach_targets: bool = True,
                         boltzmann_scale: BoltzmannScale = "logits",
                         validate_labels: bool = True) -> Tensor:
    r"""Smoothed cross-entropy :math:`-q^\top \log \mathrm{softmax}(z)` with q from eq. (1).

    Functional form of :class:`SmoothCrossEntropyLoss`; arguments as in :func:`smooth_targets`.
    ``reduction``: ``"mean"`` over the batch (default), ``"sum"``, or ``"none"`` (per-sample,
    shape (N,)), as in ``torch.nn.functional.cross_entropy``. ``alpha = 0`` is plain
    cross-entropy. Computed from ``log_softmax`` as ``(1 - alpha) * NLL(y) - alpha * q'^T log p``,
    with closed forms (no (N, K) target tensor) for SLS, ALS and SBLS. The result is float32
    for float16/bfloat16 logits, else the logits' dtype. ``validate_labels=False`` skips the
    check that the labels lie in [0, K) (see :class:`SmoothCrossEntropyLoss`).
    """
    m = _resolve_method(method)
    temperature = _check_scalars(alpha, temperature, boltzmann_scale)
    check_choice("reduction", reduction, REDUCTIONS)
    z, target = _prepare(logits, target, labels_checked=not validate_labels)
    return _smooth_ce(z, target, m, float(alpha), temperature, reduction, detach_targets,
                      boltzmann_scale)


class SmoothCrossEntropyLoss(nn.Module):
    r"""Cross-entropy against label-smoothed targets (Section 2): a drop-in replacement for
    ``nn.CrossEntropyLoss``; the Module form of :func:`smooth_cross_entropy`.

    For logits :math:`z \in \mathbb{R}^K` of a sample with label :math:`y` the loss is

    .. math::
        \ell(z, y) = -\sum_{k=1}^K q_k \log \mathrm{softmax}(z)_k, \qquad
        q = (1 - \alpha)\,\mathbf{y} + \alpha\, q' \qquad (1)

    where the method chooses :math:`q'` on the simplex from :math:`z`:

    - SLS (eq. 5): :math:`q'_k = (1 - \mathbf{y}_k) / (K - 1)`, uniform on the wrong classes;
    - ALS (eq. 4): :math:`q' = \mathbf{e}_{\arg\min_k z_k}` (over all K classes);
    - BLS (eq. 6): :math:`q'_k \propto (1 - \mathbf{y}_k)\, e^{-z_k / T}`;
    - SBLS (eq. 7): :math:`q' = \mathbf{e}_{\arg\max_{k \ne y} z_k}`.

    Equivalently (Theorem 1, eqs. 2-3), :math:`\ell = \mathrm{CE}(z, y) + \alpha\,
    (\mathbf{y} - q')^\top z`: cross-entropy plus a logit penalty (:func:`logit_penalty`).
    ALS minimises the adversarial smoothing objective of eq. (4); BLS tends to it as
    :math:`T \to 0` and to SLS as :math:`T \to \infty`.

    Args:
        method: ``"standard"`` (SLS), ``"adversarial"`` (ALS), ``"boltzmann"`` (BLS),
            ``"second_best"`` (SBLS), an alias (``"sls"``, ``"als"``, ``"bls"``, ``"sbls"``)
            or a callable ``(logits, target) -> q'`` (N, K); ties are split equally.
        alpha: smoothing parameter in [0, 1]; ``alpha = 0`` is plain cross-entropy.
        temperature: BLS temperature T > 0 (``inf`` gives SLS); checked for every method.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses; what an
            attack's ``loss=`` needs).
        detach_targets: build :math:`q'` from ``logits.detach()`` (default: the labels are
            smoothed, then the loss is computed). ``False`` lets BLS's (and a callable's)
            :math:`q'` carry gradient.
        boltzmann_scale: ``"logits"`` (eq. 6, default) or ``"probabilities"`` (the authors'
            code: :math:`e^{-p_k / T}`, hence their small T); see :func:`smooth_targets`.
        validate_labels: check on every call that the labels lie in [0, K) (a device
            synchronisation and a few small operations); ``False`` when they were checked
            beforehand, as :func:`lslib.train.train_model` does once for the whole data set.
            Their type and shape are checked either way.

    Shape:
        - Input: logits :math:`(N, K)`, :math:`K \ge 2` (float16/bfloat16 computed in
          float32).
        - Target: :math:`(N,)` integer class indices in :math:`[0, K)`.
        - Output: a scalar, or :math:`(N,)` with ``reduction="none"``.

    Unlike ``nn.CrossEntropyLoss``: no ``weight``, ``ignore_index``, soft targets or
    (N, K, d...) inputs. Arguments are checked once, here.

    Examples:
        >>> import torch
        >>> from lslib.losses import SmoothCrossEntropyLoss, logit_penalty
        >>> z, y = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0])
        >>> als = SmoothCrossEntropyLoss("adversarial", alpha=0.1)
        >>> ce = torch.nn.functional.cross_entropy(z, y)
        >>> torch.allclose(als(z, y), ce + 0.1 * logit_penalty(z, y, "adversarial"))  # Thm 1
        True
        >>> SmoothCrossEntropyLoss("sls", alpha=0.2, reduction="none")(z, y).shape
        torch.Size([1])
    """

    def __init__(self, method: str | QPrime = "standard", alpha: float = 0.1,
                 temperature: float = 1.0, reduction: Reduction = "mean",
                 detach_targets: bool = True, boltzmann_scale: BoltzmannScale = "logits",
                 validate_labels: bool = True) -> None:
        super().__init__()
        self._method = _resolve_method(method)
        self.method = method
        self.temperature = _check_scalars(alpha, temperature, boltzmann_scale)
        self.alpha = float(alpha)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.detach_targets = bool(detach_targets)
        self.boltzmann_scale = boltzmann_scale
        self.validate_labels = bool(validate_labels)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return smooth_cross_entropy(
            logits, target, self._method, self.alpha, self.temperature, reduction=self.reduction,
            detach_targets=self.detach_targets, boltzmann_scale=self.boltzmann_scale,
            validate_labels=self.validate_labels)

    def extra_repr(self) -> str:
        method = self.method if isinstance(self.method, str) else getattr(
            self.method, "__name__", repr(self.method))
        s = f"method={method!r}, alpha={self.alpha}, reduction={self.reduction!r}"
        if self._method == "boltzmann" or callable(self._method):
            s += f", temperature={self.temperature}, boltzmann_scale={self.boltzmann_scale!r}"
        if not self.detach_targets:
            s += ", detach_targets=False"
        if not self.validate_labels:
            s += ", validate_labels=False"
        return s
