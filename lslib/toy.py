"""Two-moons toy problem for the logit-squeezing figure (Section 3.2.1, Fig. 4a).

scikit-learn is not a dependency, so :func:`two_moons` re-implements ``sklearn.datasets.make_moons``
(two interleaving half circles plus Gaussian noise). :func:`train_moons_mlp` trains a small MLP on
it with plain cross-entropy or a smoothed loss of :mod:`lslib.losses` (eq. 3), and
:func:`probability_grid` evaluates the predicted probability of class 1 over a grid of the plane.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lslib._checks import check_int_at_least, check_nonnegative, check_positive, check_unit_interval

__all__ = ["two_moons", "moons_mlp", "train_moons_mlp", "probability_grid"]


def two_moons(n: int, noise: float = 0.1, generator: torch.Generator | None = None,
              *, shuffle: bool = True) -> tuple[Tensor, Tensor]:
    """``n`` points of the two-moons data: ``(x float32 (n, 2), y long (n,))``.

    As ``sklearn.datasets.make_moons``: ``n // 2`` points (class 0) on the upper half circle
    ``(cos t, sin t)`` and ``n - n // 2`` (class 1) on ``(1 - cos t, 1/2 - sin t)``, ``t`` evenly
    spaced in ``[0, pi]``, plus isotropic Gaussian noise of standard deviation ``noise``.
    """
    n = check_int_at_least("n", n, 2)
    noise = check_nonnegative("noise", noise)
    n_out = n // 2
    n_in = n - n_out
    t_out = torch.linspace(0.0, math.pi, n_out, dtype=torch.float64)
    t_in = torch.linspace(0.0, math.pi, n_in, dtype=torch.float64)
    outer = torch.stack([torch.cos(t_out), torch.sin(t_out)], 1)
    inner = torch.stack([1.0 - torch.cos(t_in), 0.5 - torch.sin(t_in)], 1)
    x = torch.cat([outer, inner])
    y = torch.cat([torch.zeros(n_out, dtype=torch.long), torch.ones(n_in, dtype=torch.long)])
    if noise > 0:
        x = x + noise * torch.randn(x.shape, dtype=torch.float64, generator=generator)
    if shuffle:
        perm = torch.randperm(n, generator=generator)
        x, y = x[perm], y[perm]
    return x.float(), y


def moons_mlp(hidden: int = 32, depth: int = 2) -> nn.Sequential:
    """A small ReLU MLP 2 -> hidden (x depth) -> 2 for the two-moons plane."""
    hidden = check_int_at_least("hidden", hidden, 1)
    depth = check_int_at_least("depth", depth, 1)
    layers: list[nn.Module] = []
    width = 2
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def train_moons_mlp(x: Tensor, y: Tensor, *, method: str | None = None, alpha: float = 0.0,
                    temperature: float = 1.0, hidden: int = 32, depth: int = 2, steps: int = 1000,
                    lr: float = 1e-2, seed: int = 0) -> nn.Sequential:
    """Train :func:`moons_mlp` full-batch with Adam on ``(x, y)``; returned in eval mode.

    ``method=None`` (or ``alpha=0``) is natural training (cross-entropy); otherwise the loss is
    :func:`lslib.losses.smooth_cross_entropy` with ``method`` ("standard" = SLS eq. 5,
    "adversarial" = ALS eq. 4, ...) and ``alpha``. The same ``seed`` gives the same initial
    weights for every method, so the figures compare losses, not initialisations.
    """
    alpha = check_unit_interval("alpha", alpha)
    steps = check_int_at_least("steps", steps, 1)
    lr = check_positive("lr", lr)
    torch.manual_seed(seed)
    model = moons_mlp(hidden, depth)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if method is None or alpha == 0.0:
        def loss_fn(z: Tensor) -> Tensor:
            return F.cross_entropy(z, y)
    else:
        from lslib.losses import smooth_cross_entropy

        def loss_fn(z: Tensor) -> Tensor:
            return smooth_cross_entropy(z, y, method, alpha, temperature)
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x))
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def probability_grid(model: nn.Module, xlim: tuple[float, float], ylim: tuple[float, float],
                     resolution: int = 60) -> tuple[Tensor, Tensor, Tensor]:
    """``(xx, yy, p1)``, each (resolution, resolution): the predicted probability of class 1
    (softmax of the logits) at the grid points ``(xx, yy)`` spanning ``xlim`` x ``ylim``."""
    resolution = check_int_at_least("resolution", resolution, 2)
    gx = torch.linspace(float(xlim[0]), float(xlim[1]), resolution)
    gy = torch.linspace(float(ylim[0]), float(ylim[1]), resolution)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    p1 = torch.softmax(model(pts), 1)[:, 1].reshape(resolution, resolution)
    return xx, yy, p1
