r"""Logit gradients and the linear FGSM threshold (Section 3.2.1, Fig. 4b).

With a first-order (linear) model of the logits around ``x``, a perturbation ``delta`` with
``||delta||_inf <= eps`` can make class ``j`` beat the true class ``y`` iff

.. math:: z_y(x) - z_j(x) \le \varepsilon \, \|\nabla_x z_y(x) - \nabla_x z_j(x)\|_1,

(the worst ``delta`` is ``-eps * sign(grad (z_y - z_j))``, the L-inf / L1 duality). The paper
normalises the margin to one and writes the FGSM condition as
:math:`\varepsilon \ge 1 / \|\nabla_x z_y - \nabla_x z_j\|_1`: the smaller the *gradient gap*
the larger the budget an FGSM-like attack needs. For a linear model ``z = W (x - mu)/sigma + b``
the gap is exactly ``||W_y - W_j||_1 / sigma`` and the margin/gap ratio is the exact L-inf distance
to the y/j decision boundary (ignoring the [0, 1] box).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "logit_jacobian",
    "gradient_gaps",
    "linear_radius",
    "linear_robust",
    "linear_robust_curve",
    "paper_fgsm_threshold",
]


def _check(model: nn.Module, x: Tensor, y: Tensor) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.ndim < 2:
        raise ValueError("x must be a floating tensor of shape (N, ...)")
    if not isinstance(y, Tensor) or y.dtype != torch.long or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a long tensor of shape ({x.shape[0]},)")


def logit_jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """``J`` of shape (N, K, D): ``J[n, k] = grad_x z_k(x_n)`` flattened (D = x[0].numel()).

    One backward pass per class; the model runs in eval mode (samples must not interact, as in
    eval-mode batch norm) and its mode is restored.
    """
    was = model.training
    model.eval()
    try:
        xg = x.detach().clone().requires_grad_(True)
        z = model(xg)
        if z.ndim != 2 or z.shape[0] != x.shape[0]:
            raise ValueError(f"model must return logits (N, K), got shape {tuple(z.shape)}")
        rows = []
        for k in range(z.shape[1]):
            (g,) = torch.autograd.grad(z[:, k].sum(), xg, retain_graph=k + 1 < z.shape[1])
            rows.append(g.reshape(x.shape[0], -1))
        return torch.stack(rows, 1)
    finally:
        model.train(was)


def gradient_gaps(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``G`` (N, K): ``G[n, j] = ||grad_x z_y(x_n) - grad_x z_j(x_n)||_1`` (0 at ``j = y_n``)."""
    _check(model, x, y)
    jac = logit_jacobian(model, x)
    own = jac[torch.arange(x.shape[0]), y]  # (N, D)
    return (own[:, None, :] - jac).abs().sum(-1)


def linear_radius(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """First-order L-inf distance to the boundary: ``min_{j != y} (z_y - z_j) / G[:, j]`` (N,).

    Exact for a linear model when the [0, 1] box does not bind; negative for misclassified
    points. ``inf`` where every gap is zero (no gradient: gradient-based attacks cannot move).
    """
    _check(model, x, y)
    with torch.no_grad():
        z = model(x)
    gaps = gradient_gaps(model, x, y)
    idx = torch.arange(x.shape[0])
    margin = z[idx, y][:, None] - z
    ratio = margin / gaps
    ratio[idx, y] = float("inf")
    return ratio.min(1).values


def paper_fgsm_threshold(gaps: Tensor, y: Tensor) -> Tensor:
    """The paper's ``1 / ||grad z_y - grad z_j||_1`` for the most attackable class (N,):
    ``min_{j != y} 1 / G[:, j] = 1 / max_j G[:, j]`` (margin normalised to one)."""
    if gaps.ndim != 2 or y.shape != (gaps.shape[0],):
        raise ValueError("gaps must be (N, K) and y (N,)")
    return 1.0 / gaps.max(1).values


def linear_robust(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
                  box: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """Whether each point is robust (bool, N) to every L-inf perturbation of size ``eps`` that
    keeps the input in ``box``, for the first-order model of the logits at ``x``.

    Exact for a linear model: ``min_delta (z_y - z_j)(x + delta)`` over the box
    ``[max(-eps, lo - x), min(eps, hi - x)]`` separates over the coordinates (each at the end of
    its interval that the sign of ``grad(z_y - z_j)`` picks), so the point is robust iff every
    such minimum over ``j != y`` is positive. ``box=None`` drops the pixel box (then it is
    ``linear_radius > eps``). Misclassified points are never robust.
    """
    return linear_robust_curve(model, x, y, [eps], box=box)[0]


def linear_robust_curve(model: nn.Module, x: Tensor, y: Tensor, eps: Sequence[float], *,
                        box: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """:func:`linear_robust` at every budget of ``eps`` (bool, ``(len(eps), N)``), from one
    Jacobian: a robust-accuracy curve costs one set of backward passes, not one per budget."""
    _check(model, x, y)
    eps = [float(e) for e in eps]
    bad = [e for e in eps if not e >= 0]
    if bad:
        raise ValueError(f"eps must be >= 0, got {bad[0]!r}")
    with torch.no_grad():
        z = model(x)
    jac = logit_jacobian(model, x)  # (N, K, D)
    idx = torch.arange(x.shape[0])
    g = jac[idx, y][:, None, :] - jac  # grad of z_y - z_j, (N, K, D)
    flat = x.detach().reshape(x.shape[0], 1, -1).to(jac.dtype)
    margin = z[idx, y][:, None] - z
    # With x inside the box every interval [lo, hi] holds 0, so min(g lo, g hi) = g+ lo + g- hi
    # and the sum over the coordinates is two batched matrix-vector products.
    inside = box is None or bool(((flat >= box[0]) & (flat <= box[1])).all())
    g_pos, g_neg = g.clamp(min=0), g.clamp(max=0)
    rows = []
    for e in eps:
        lo = torch.full_like(flat, -e)
        hi = torch.full_like(flat, e)
        if box is not None:
            lo = torch.maximum(lo, box[0] - flat)
            hi = torch.minimum(hi, box[1] - flat)
        if inside:
            drop = (g_pos @ lo.transpose(1, 2) + g_neg @ hi.transpose(1, 2)).squeeze(-1)
        else:
            drop = torch.minimum(g * lo, g * hi).sum(-1)
        worst = margin + drop  # (N, K)
        worst[idx, y] = float("inf")
        rows.append((worst > 0).all(1))
    return torch.stack(rows) if rows else torch.zeros(0, x.shape[0], dtype=torch.bool)
