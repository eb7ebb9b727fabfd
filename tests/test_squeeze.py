"""lslib.toy and lslib.squeeze against independent truths: the two-moons geometry, closed-form
linear-model gradient gaps (||W_y - W_j||_1 / sigma), finite differences, and brute-force L-inf
boundary distances of a linear model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lslib.models import LinearModel
from lslib.squeeze import (
    gradient_gaps,
    linear_radius,
    linear_robust,
    linear_robust_curve,
    logit_jacobian,
    paper_fgsm_threshold,
)
from lslib.toy import probability_grid, train_moons_mlp, two_moons

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_moons_without_noise_lies_on_the_half_circles():
    x, y = two_moons(101, noise=0.0, shuffle=False)
    x = x.double()
    assert x.shape == (101, 2) and y.tolist() == [0] * 50 + [1] * 51
    outer, inner = x[y == 0], x[y == 1]
    assert torch.allclose(outer.norm(dim=1), torch.ones(50, dtype=torch.float64), atol=1e-6)
    assert torch.allclose((inner - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1),
                          torch.ones(51, dtype=torch.float64), atol=1e-6)
    assert (outer[:, 1] >= -1e-7).all() and (inner[:, 1] <= 0.5 + 1e-7).all()


def test_two_moons_noise_and_seed():
    g = torch.Generator().manual_seed(3)
    x1, y1 = two_moons(4000, noise=0.2, generator=g)
    x0, y0 = two_moons(4000, noise=0.0, shuffle=False)
    x2, _ = two_moons(4000, noise=0.2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2)
    assert sorted(y1.tolist()) == y0.tolist()
    with pytest.raises(ValueError):
        two_moons(1)
    with pytest.raises(ValueError):
        two_moons(10, noise=-1.0)


def test_moons_mlp_learns_and_smoothing_squeezes_confidence():
    g = torch.Generator().manual_seed(0)
    x, y = two_moons(200, noise=0.1, generator=g)
    nat = train_moons_mlp(x, y, steps=300)
    sls = train_moons_mlp(x, y, method="standard", alpha=0.4, steps=300)
    for m in (nat, sls):
        assert (m(x).argmax(1) == y).float().mean() > 0.95
    # with alpha = 0.4 the SLS target on the true class is 0.8 (K = 2): probabilities stay near it
    p_sls = torch.softmax(sls(x), 1).max(1).values
    p_nat = torch.softmax(nat(x), 1).max(1).values
    assert p_sls.median() < 0.9 < p_nat.median()
    xx, yy, p = probability_grid(sls, (-1.5, 2.5), (-1.0, 1.5), resolution=7)
    assert xx.shape == yy.shape == p.shape == (7, 7) and ((p >= 0) & (p <= 1)).all()
    assert xx[0, 0] == -1.5 and xx[0, -1] == 2.5 and yy[0, 0] == -1.0 and yy[-1, 0] == 1.5


def _linear(seed: int = 0, k: int = 5, std: float = 0.3) -> LinearModel:
    torch.manual_seed(seed)
    m = LinearModel(in_features=12, num_classes=k, mean=0.2, std=std).double()
    with torch.no_grad():
        m.fc.weight.normal_()
    return m


def test_linear_gaps_are_weight_differences_over_sigma():
    m = _linear()
    x = torch.rand(6, 1, 3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    gaps = gradient_gaps(m, x, y)
    w = m.fc.weight.detach()
    sigma = float(m.normalize.std)  # 0.3 stored in float32
    for n in range(6):
        for j in range(5):
            assert math.isclose(float(gaps[n, j]), float((w[y[n]] - w[j]).abs().sum()) / sigma,
                                rel_tol=1e-12, abs_tol=1e-12)
    thr = paper_fgsm_threshold(gaps, y)
    assert torch.allclose(thr, 1 / gaps.max(1).values)


def test_jacobian_matches_finite_differences_on_an_mlp():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.rand(2, 1, 2, 3, dtype=torch.float64)
    jac = logit_jacobian(m, x)
    h = 1e-6
    for n in range(2):
        for d in range(6):
            e = torch.zeros(6, dtype=torch.float64)
            e[d] = h
            e = e.reshape(1, 1, 2, 3)
            fd = (m(x[n : n + 1] + e) - m(x[n : n + 1] - e))[0] / (2 * h)
            assert torch.allclose(jac[n, :, d], fd, atol=1e-7)


def test_linear_radius_is_the_exact_linf_distance_to_the_boundary():
    m = _linear(k=4)
    x = 0.4 + 0.2 * torch.rand(30, 1, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        y = m(x).argmax(1)
    r = linear_radius(m, x, y)
    assert (r > 0).all()
    w = m.fc.weight.detach() / float(m.normalize.std)
    for n in range(30):
        # the closest boundary point: step -r * sign(w_y - w_j) for the arg-min class j
        d = torch.stack([(w[y[n]] - w[j]) for j in range(4) if j != y[n]])
        with torch.no_grad():
            z = m(x[n : n + 1])[0]
        others = [j for j in range(4) if j != y[n]]
        ratios = [(z[y[n]] - z[j]) / d[i].abs().sum() for i, j in enumerate(others)]
        assert math.isclose(float(r[n]), float(min(ratios)), rel_tol=1e-10)
        i = int(torch.tensor(ratios).argmin())
        step = (-r[n] * 1.000001 * d[i].sign()).reshape(1, 1, 3, 4)
        with torch.no_grad():
            assert m(x[n : n + 1] + step).argmax(1).item() != y[n]
            # no perturbation strictly inside the radius changes the class (worst vertex per j)
            for dj in d:
                zz = m(x[n : n + 1] + (-r[n] * 0.999 * dj.sign()).reshape(1, 1, 3, 4))[0]
                assert zz.argmax().item() == y[n]


def test_bad_inputs():
    m = _linear()
    with pytest.raises(ValueError):
        gradient_gaps(m, torch.rand(3, 12, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError):
        gradient_gaps("model", torch.rand(3, 12), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("eps", [0.02, 0.1, 0.3])
def test_linear_robust_matches_brute_force_over_the_vertices(eps):
    """The feasible set (ball cut by the box) is a box, so a linear function's minimum over it is
    at one of its 2^D vertices: enumerate them all (D = 6)."""
    import itertools

    torch.manual_seed(2)
    m = LinearModel(in_features=6, num_classes=3, mean=0.1, std=0.5).double()
    with torch.no_grad():
        m.fc.weight.normal_()
        m.fc.bias.normal_(std=0.1)
    x = torch.rand(40, 1, 2, 3, dtype=torch.float64)
    x[:10, 0, 0, 0] = 0.0  # some pixels on the box
    x[10:20, 0, 1, 2] = 1.0
    with torch.no_grad():
        y = m(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3
    robust = linear_robust(m, x, y, eps)
    free = linear_robust(m, x, y, eps, box=None)
    assert torch.equal(free, linear_radius(m, x, y) > eps)
    for n in range(40):
        flat = x[n].reshape(-1)
        lo = torch.clamp(flat - eps, 0, 1)
        hi = torch.clamp(flat + eps, 0, 1)
        verts = torch.stack([torch.where(torch.tensor(bits, dtype=torch.bool), hi, lo)
                             for bits in itertools.product([0, 1], repeat=6)])
        with torch.no_grad():
            pred = m(verts.reshape(-1, 1, 2, 3)).argmax(1)
        assert bool(robust[n]) == bool((pred == y[n]).all())
    assert (free.long() <= robust.long()).all()  # the box only helps the model


def test_linear_robust_curve_is_linear_robust_at_each_budget():
    """One Jacobian for the whole curve gives what one call per budget gives (itself checked
    against brute force above), row by row; bad budgets are refused by name."""
    torch.manual_seed(3)
    m = LinearModel(in_features=6, num_classes=3, mean=0.1, std=0.5).double()
    x = torch.rand(30, 1, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        y = m(x).argmax(1)
    grid = [0.0, 0.01, 0.05, 0.2, 0.6]
    for box in ((0.0, 1.0), None):
        curve = linear_robust_curve(m, x, y, grid, box=box)
        assert curve.shape == (len(grid), 30)
        for row, e in zip(curve, grid, strict=True):
            assert torch.equal(row, linear_robust(m, x, y, e, box=box))
    assert curve[0].all() and not curve[-1].all()  # the grid spans robust to fooled
    with pytest.raises(ValueError, match="eps"):
        linear_robust_curve(m, x, y, [0.1, -0.1])
