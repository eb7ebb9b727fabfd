"""lslib.attacks: closed forms on linear classifiers, argument errors, the loss options, mode and
state handling, robust_accuracy, and CUDA (skipped without one).

Independent truths used here: for a linear classifier the FGSM point and the minimal L2
distance to the decision boundary have closed forms; CW cannot beat that minimal distance and
must come close to it; logits shifted by a constant define the same classifier.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor, nn

from lslib import attacks as A
from lslib.losses import SmoothCrossEntropyLoss

pytestmark = pytest.mark.usefixtures("one_thread")


class Affine(nn.Module):
    """logits = W x + b (+ shift) on the flattened input, float64."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, shift: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(b.clone())
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w.T + self.b + self.shift


def binary_linear(d: int, seed: int = 0):
    """Two logits (-f/2, f/2) with f = w.x + b: class 1 iff f > 0."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.randn((), generator=g, dtype=torch.float64) * 0.1
    model = Affine(torch.stack([-w / 2, w / 2]), torch.stack([-b / 2, b / 2]))
    return model, w, b


def near_boundary_points(w, b, n, seed=1, dist=0.05):
    """Points around 0.5 at L2 distance ``dist`` from the hyperplane w.x + b = 0 (no clipping)."""
    g = torch.Generator().manual_seed(seed)
    d = w.numel()
    x = 0.5 + 0.05 * (torch.rand(n, d, generator=g, dtype=torch.float64) - 0.5)
    f = x @ w + b
    side = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).double()
    x = x + ((side * dist - f) / w.dot(w))[:, None] * w  # move onto the chosen level set
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------------
# closed forms
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.3, 1.0])
def test_fgsm_closed_form_binary_linear(eps):
    model, w, b = binary_linear(30)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 30, generator=g, dtype=torch.float64)
    x[:8] = x[:8].round()  # pixels exactly at the bounds
    y = torch.randint(0, 2, (64,), generator=g)
    ysign = (2 * y - 1).double()
    expected = (x - eps * ysign[:, None] * torch.sign(w)[None, :]).clamp(0, 1)
    res = A.fgsm(model, x, y, eps)
    torch.testing.assert_close(res.adversarial, expected, rtol=0, atol=1e-15)


def test_fgsm_margin_loss_closed_form_multiclass():
    g = torch.Generator().manual_seed(0)
    k, d = 5, 12
    model = Affine(torch.randn(k, d, generator=g, dtype=torch.float64),
                   torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.rand(40, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (40,), generator=g)
    z = model(x).detach()
    best_other = z.scatter(1, y[:, None], float("-inf")).argmax(1)
    direction = model.w.detach()[best_other] - model.w.detach()[y]  # gradient of the margin
    expected = (x + 0.1 * direction.sign()).clamp(0, 1)
    res = A.fgsm(model, x, y, 0.1, loss="margin")
    torch.testing.assert_close(res.adversarial, expected, rtol=0, atol=1e-15)


def test_bim_on_linear_model_reaches_the_fgsm_corner():
    # the CE loss of a linear classifier is maximised over the box at the FGSM corner
    model, w, b = binary_linear(20, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(32, 20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (32,), generator=g)
    corner = A.fgsm(model, x, y, 0.1).adversarial
    res = A.bim(model, x, y, 0.1, steps=5)  # 5 steps of 2.5 * eps / 5 = eps / 2
    torch.testing.assert_close(res.adversarial, corner, rtol=0, atol=1e-15)
    one = A.bim(model, x, y, 0.1, steps=1, step_size=0.1)  # BIM with one step of eps is FGSM
    torch.testing.assert_close(one.adversarial, corner, rtol=0, atol=1e-15)


@pytest.mark.parametrize("overshoot", [0.0, 0.02, 0.1])
def test_deepfool_binary_linear_one_step_exact(overshoot):
    model, w, b = binary_linear(25, seed=7)
    x = near_boundary_points(w, b, 50, dist=0.04)
    y = model(x).argmax(1)  # correctly classified by construction
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    res = A.deepfool(model, x, y, overshoot=overshoot)
    f = x @ w + b
    dist = f.abs() / w.norm()  # exact minimal L2 distance to the boundary
    # one step to the boundary (+1e-4 push of the authors' reference code), times (1+overshoot)
    expected_norm = (1 + overshoot) * (dist + 1e-4)
    torch.testing.assert_close(res.norms, expected_norm, rtol=1e-10, atol=1e-12)
    direction = -torch.sign(f)[:, None] * w / w.norm()
    torch.testing.assert_close(res.adversarial, x + expected_norm[:, None] * direction,
                               rtol=0, atol=1e-12)
    assert bool(res.success.all())
    # the clean pass, first iterate, the check after the single step, the final verdict
    assert calls == [50, 50, 50, 50]


@pytest.mark.parametrize("candidates", [2, 3, 6])
def test_deepfool_multiclass_linear_nearest_candidate_boundary(candidates):
    g = torch.Generator().manual_seed(11)
    k, d = 6, 16
    model = Affine(0.5 * torch.randn(k, d, generator=g, dtype=torch.float64),
                   torch.zeros(k, dtype=torch.float64))
    x = 0.5 + 0.02 * (torch.rand(80, d, generator=g, dtype=torch.float64) - 0.5)
    z = model(x).detach()
    y = z.argmax(1)
    top = z.topk(candidates, dim=1).indices[:, 1:]
    wdiff = model.w.detach()[top] - model.w.detach()[y][:, None, :]  # (N, c-1, d)
    fdiff = (z.gather(1, top) - z.gather(1, y[:, None])).abs()
    dists = fdiff / wdiff.norm(dim=2)
    dmin, arg = dists.min(1)
    res = A.deepfool(model, x, y, overshoot=0.02)
    first = dmin < 0.15  # far points would be clipped; the near ones are a pure single step
    expected = 1.02 * (dmin + 1e-4)
    torch.testing.assert_close(res.norms[first], expected[first], rtol=1e-9, atol=1e-12)
    u = wdiff[torch.arange(80), arg]
    cos = ((res.adversarial - x) * u).sum(1) / (res.norms * u.norm(dim=1))
    torch.testing.assert_close(cos[first], torch.ones_like(cos[first]))
    assert bool(res.success.all())


def _flat_trap() -> nn.Module:
    """2 inputs -> units relu(x0 - 0.5), relu(x1 - 0.6) -> logits (u0 + 0.1, 2 u1).

    At (0.7, 0.3) only unit 0 is on: DeepFool's linearised step to z1 = z0 turns it off and
    lands where both units are off, the logits the constant biases (0.1, 0), class 0 still, and
    the gradient zero. Class 1 lies the other way: where unit 1 is on and 2 u1 > u0 + 0.1."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.copy_(torch.tensor([-0.5, -0.6]))
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        net[2].bias.copy_(torch.tensor([0.1, 0.0]))
    return net.eval()


def _nearest_other_class_on_a_grid(model: nn.Module, x: Tensor, y: int, n: int = 2001) -> float:
    """Brute force: the L2 distance from ``x`` (2 pixels) to the nearest point of an n x n grid
    of [0, 1]^2 that ``model`` puts in a class other than ``y``."""
    g = torch.linspace(0, 1, n, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        other = model(grid).argmax(1) != y
    return float((grid[other] - x).norm(dim=1).min())


@pytest.mark.parametrize("betas", [(3.0,), (1.0,), (10.0, 3.0, 1.0)])
def test_deepfool_relu_surrogate_leaves_the_flat_region_it_walked_into(betas):
    net = _flat_trap()
    x, y = torch.tensor([[0.7, 0.3]], dtype=torch.float64), torch.tensor([0])
    plain = A.deepfool(net, x, y)
    assert not bool(plain.success[0])  # stuck where both units are off
    from lslib.survivors import last_relu_units
    assert int(last_relu_units(net, plain.adversarial)[0]) == 0
    res = A.deepfool(net, x, y, relu_surrogate=betas)
    assert bool(res.success[0])
    with torch.no_grad():  # judged on the exact model, not the surrogate
        assert int(net(res.adversarial).argmax(1)[0]) == 1
    assert float(res.adversarial.min()) >= 0.0 and float(res.adversarial.max()) <= 1.0
    # no perturbation is shorter than the distance to the other class (brute force: the grid's
    # nearest point of class 1, within the grid's half-diagonal); the closed form is 0.45/1.25^.5
    nearest = _nearest_other_class_on_a_grid(net, x[0], 0)
    assert nearest == pytest.approx(0.45 / 1.25 ** 0.5, abs=1e-3)
    assert float(res.norms[0]) >= nearest - 1e-3
    assert float(res.norms[0]) <= 2 * nearest  # and it is not a far point of that class


def test_deepfool_relu_surrogate_keeps_the_points_deepfool_fools_and_the_smallest_result():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                        nn.Linear(24, 5)).double().eval()
    with torch.no_grad():
        net[2].bias.sub_(0.3)  # a sparser last ReLU layer: DeepFool leaves a few points
    x = torch.rand(200, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (200,))
    plain = A.deepfool(net, x, y, steps=20)
    both = A.deepfool(net, x, y, steps=20, relu_surrogate=(10.0, 1.0))
    assert bool((~plain.success).any())  # the test has points to re-attack
    done = plain.success
    assert torch.equal(both.adversarial[done], plain.adversarial[done])  # untouched
    assert bool(both.success[done].all()) and int(both.success.sum()) > int(plain.success.sum())
    # each re-attacked point keeps the smaller of the two sharpnesses' successful perturbations
    again = ~done
    for_beta = [A.deepfool(net, x[again], y[again], steps=20, relu_surrogate=(b,))
                for b in (10.0, 1.0)]
    norms = torch.stack([torch.where(r.success, r.norms, torch.full_like(r.norms, math.inf))
                         for r in for_beta])
    expected = norms.min(0).values
    got = torch.where(both.success[again], both.norms[again],
                      torch.full_like(expected, math.inf))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_deepfool_relu_surrogate_restores_the_model():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True), nn.Linear(2, 2)).double().eval()
    trap = _flat_trap()
    net.load_state_dict(trap.state_dict())
    x, y = torch.tensor([[0.7, 0.3]], dtype=torch.float64), torch.tensor([0])
    before = net(x).detach()
    res = A.deepfool(net, x, y, relu_surrogate=(3.0,))
    assert bool(res.success[0])  # the in-place ReLU is given its input, not its output
    torch.testing.assert_close(res.adversarial, A.deepfool(trap, x, y, relu_surrogate=(3.0,))
                               .adversarial, rtol=0, atol=0)
    assert net[1].inplace and not net[1]._forward_hooks
    assert torch.equal(net(x).detach(), before)


def test_deepfool_relu_surrogate_needs_a_relu():
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2)).double()
    x, y = torch.full((1, 2), 0.5, dtype=torch.float64), torch.tensor([0])
    with pytest.raises(ValueError, match="relu_surrogate.*nn.ReLU"):
        A.deepfool(net, x, y, relu_surrogate=(1.0,))
    A.deepfool(net, x, y)  # without it, any model


def test_cw_linear_close_to_the_exact_minimal_distance():
    model, w, b = binary_linear(20, seed=2)
    x = near_boundary_points(w, b, 24, dist=0.3)
    y = model(x).argmax(1)
    res = A.carlini_wagner_l2(model.float(), x.float(), y, binary_search_steps=6, steps=300,
                              lr=0.01)
    dist = ((x @ w + b).abs() / w.norm()).float()
    assert bool(res.success.all())
    assert bool((res.norms >= dist * (1 - 1e-4)).all())  # nobody beats the exact minimum
    assert float((res.norms / dist).max()) < 1.05


def test_cw_moves_pixels_at_exactly_zero_and_one():
    # class 1 iff sum(x) > 3: the images hold only exact 0s and 1s, so the only way to change
    # the class is to raise pixels that are exactly 0. A plain atanh(2x - 1) change of
    # variables maps them to -inf, where they never move.
    d = 10
    w = torch.ones(d, dtype=torch.float64)
    model = Affine(torch.stack([-w / 2, w / 2]),
                   torch.tensor([1.5, -1.5], dtype=torch.float64)).float()
    x = torch.zeros(6, d)
    x[3:, :2] = 1.0
    y = model(x).argmax(1)
    assert bool((y == 0).all())
    # (abort_early off: starting 1e-6 from a bound, the first Adam steps change x by ~1e-6,
    # which the 0.01%-progress rule would read as a stall)
    res = A.carlini_wagner_l2(model, x, y, binary_search_steps=5, steps=200, lr=0.05,
                              abort_early=False)
    assert bool(res.success.all())
    # the smallest change spreads evenly over the zero pixels: sum must rise by 3 (resp. 1)
    need = torch.tensor([3.0] * 3 + [1.0] * 3)
    free = torch.tensor([10.0] * 3 + [8.0] * 3)
    assert bool((res.norms >= need / free.sqrt() * (1 - 1e-3)).all())
    assert bool((res.norms <= need / free.sqrt() * 1.1).all())
    df = A.deepfool(model, x, y)
    assert bool(df.success.all())


def test_margin_is_right_for_negative_logits():
    z = torch.tensor([[-5.0, -2.0, -3.0], [-1.0, -7.0, -9.0]])
    y = torch.tensor([1, 0])
    torch.testing.assert_close(A.margin(z, y), torch.tensor([-1.0, -6.0]))


@pytest.mark.parametrize("attack", ["cw", "deepfool", "bim-margin"])
def test_shifting_all_logits_changes_nothing(attack):
    # z + c is the same classifier; a max over (1 - onehot) * z (torchattacks' CW) breaks here
    g = torch.Generator().manual_seed(21)
    k, d = 4, 12
    w, b = torch.randn(k, d, generator=g, dtype=torch.float64), torch.zeros(k).double()
    x = 0.5 + 0.1 * (torch.rand(16, d, generator=g, dtype=torch.float64) - 0.5)
    base, shifted = Affine(w, b).float(), Affine(w, b, shift=-100.0).float()
    x = x.float()
    y = base(x).argmax(1)
    run = {
        "cw": functools.partial(A.carlini_wagner_l2, binary_search_steps=4, steps=100),
        "deepfool": A.deepfool,
        "bim-margin": functools.partial(A.bim, eps=0.3, loss="margin"),
    }[attack]
    r0, r1 = run(base, x, y), run(shifted, x, y)
    assert bool(r0.success.any())
    assert torch.equal(r0.success, r1.success)
    torch.testing.assert_close(r1.norms, r0.norms, rtol=2e-3, atol=1e-4)


def test_cw_returns_the_smallest_adversarial_it_ever_evaluated():
    # record every point the model sees during the attack (one sample per call, so that every
    # row belongs to it): the result must be the smallest-L2 misclassified one among them
    model = _small_mlp(seed=2).eval()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((i[0].detach(), o.detach())))
    g = torch.Generator().manual_seed(7)
    for _ in range(4):
        x = torch.rand(1, 9, generator=g)
        y = model(x).argmax(1)
        seen.clear()
        res = A.carlini_wagner_l2(model, x, y, binary_search_steps=3, steps=40, lr=0.05,
                                  initial_const=0.1)
        pts = torch.cat([p for p, _ in seen])
        fooled = torch.cat([o for _, o in seen]).argmax(1) != y
        assert bool(res.success.all())
        best = (pts[fooled] - x).norm(dim=1).min()
        assert float(res.norms[0]) <= float(best) * (1 + 1e-6)


def test_cw_keeps_the_original_input_where_it_fails():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return 0.0 * self.lin(x) + torch.tensor([1.0, 0.0, 0.0])

    model = Constant()
    x = torch.rand(5, 4)
    y = torch.zeros(5, dtype=torch.long)
    res = A.carlini_wagner_l2(model, x, y, binary_search_steps=2, steps=5)
    assert not bool(res.success.any())
    assert torch.equal(res.adversarial, x) and bool((res.norms == 0).all())


# ------------------------------------------------------------------------------------------
# losses, modes, state
# ------------------------------------------------------------------------------------------


def _small_mlp(seed=0, k=4, d=9):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, k))


def test_paper_protocol_loss_is_accepted_and_alpha_zero_is_ce():
    model = _small_mlp().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 9, generator=g), torch.randint(0, 4, (32,), generator=g)
    plain = A.bim(model, x, y, 0.1, steps=3)
    sls0 = A.bim(model, x, y, 0.1, steps=3,
                 loss=SmoothCrossEntropyLoss("standard", alpha=0.0, reduction="none"))
    torch.testing.assert_close(sls0.adversarial, plain.adversarial)
    als = A.fgsm(model, x, y, 0.1, loss=SmoothCrossEntropyLoss("adversarial", alpha=0.9,
                                                                reduction="none"))
    assert als.adversarial.shape == x.shape


def test_loss_must_be_per_sample():
    model = _small_mlp()
    x, y = torch.rand(8, 9), torch.randint(0, 4, (8,))
    with pytest.raises(ValueError, match="per-sample"):
        A.fgsm(model, x, y, 0.1, loss=SmoothCrossEntropyLoss("standard", alpha=0.1))
    with pytest.raises(ValueError, match="loss must be"):
        A.bim(model, x, y, 0.1, loss="hinge")


def test_attacks_run_in_eval_mode_and_restore_each_flag():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    model = nn.Sequential(Probe(), _small_mlp())
    model.train()
    model[1][2].eval()  # a mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    x, y = torch.rand(6, 9), torch.randint(0, 4, (6,))
    for attack in (functools.partial(A.fgsm, eps=0.1), functools.partial(A.pgd, eps=0.1, steps=2),
                   A.deepfool, functools.partial(A.carlini_wagner_l2, steps=3,
                                                 binary_search_steps=1)):
        attack(model, x, y)
        assert [m.training for m in model.modules()] == flags
    assert seen and not any(seen)


def test_mode_is_restored_when_the_model_raises():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(3, 3), Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        A.fgsm(model, torch.rand(2, 3), torch.zeros(2, dtype=torch.long), 0.1)
    assert all(m.training for m in model.modules())


def test_no_parameter_gradient_is_touched_or_computed():
    model = _small_mlp()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    x, y = torch.rand(8, 9), torch.randint(0, 4, (8,))
    A.bim(model, x, y, 0.1, steps=2)
    A.deepfool(model, x, y)
    A.carlini_wagner_l2(model, x, y, steps=3, binary_search_steps=1)
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")


def test_pgd_restarts_only_add_successes():
    model = _small_mlp(seed=3).eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 9, generator=g), torch.randint(0, 4, (64,), generator=g)
    one = A.pgd(model, x, y, 0.05, steps=3, generator=torch.Generator().manual_seed(9))
    three = A.pgd(model, x, y, 0.05, steps=3, restarts=3,
                  generator=torch.Generator().manual_seed(9))
    assert bool((three.success >= one.success).all())
    same = one.success  # restart 1 is the same run: its successes are kept as they were
    assert torch.equal(three.adversarial[same], one.adversarial[same])


def test_bim_keeps_an_adversarial_iterate():
    # the last iterate of BIM can fall back to the true class; lslib then returns the earlier
    # adversarial iterate, so its success contains that of every iterate
    model = _small_mlp(seed=5).eval()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(128, 9, generator=g), torch.randint(0, 4, (128,), generator=g)
    res = A.bim(model, x, y, 0.2, steps=6, step_size=0.15)
    for steps in range(1, 7):
        partial = A.bim(model, x, y, 0.2, steps=steps, step_size=0.15)
        assert bool((res.success >= partial.success).all())


@pytest.mark.parametrize("random_start", [False, True])
def test_bim_last_iterate_is_the_plain_iteration(random_start):
    """The last iterate of the textbook BIM/PGD loop (written out here with torch.clamp to the
    ball), with no judging forward, whether or not it fools the model."""
    model = _small_mlp(seed=3).double().eval()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(40, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=g)
    eps, step, steps = 0.2, 0.07, 5
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = A.bim_last_iterate(model, x, y, eps, step_size=step, steps=steps,
                             random_start=random_start,
                             generator=torch.Generator().manual_seed(9))
    assert calls == [40] * steps  # one forward per step, nothing else
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    adv = x.clone()
    if random_start:
        noise = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(9))
        adv = torch.clamp(x + noise, lo, hi)
    for _ in range(steps):
        xg = adv.clone().requires_grad_()
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xg), y,
                                                                       reduction="sum"), xg)
        adv = torch.clamp(adv + step * grad.sign(), lo, hi)
    torch.testing.assert_close(out, adv, rtol=0, atol=1e-15)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert float((out - x).abs().max()) <= eps


class _CountingModel(nn.Module):
    """Counts the sample-forwards (the sum of the batch sizes the model saw)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.model(x)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("random_start,restarts", [(False, 1), (True, 1), (True, 3)])
@pytest.mark.parametrize("loss", ["ce", "margin", "smoothed"])
def test_bim_early_stop_fools_the_same_samples_with_fewer_passes(seed, random_start, restarts,
                                                                 loss):
    model = _small_mlp(seed=seed).double().eval()
    g = torch.Generator().manual_seed(10 + seed)
    x = torch.rand(96, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (96,), generator=g)
    fn = (SmoothCrossEntropyLoss("adversarial", alpha=0.3, reduction="none")
          if loss == "smoothed" else loss)
    for eps in (0.02, 0.1, 0.3):
        runs = {}
        for early in (False, True):
            counted = _CountingModel(model)
            res = A.bim(counted, x, y, eps, steps=8, random_start=random_start,
                        restarts=restarts, loss=fn, early_stop=early,
                        generator=torch.Generator().manual_seed(5))
            runs[early] = (res, counted.seen)
        (plain, plain_passes), (early, early_passes) = runs[False], runs[True]
        assert torch.equal(plain.success, early.success)
        adv = early.adversarial
        assert bool(((adv - x).abs() <= eps).all()) and bool(((adv >= 0) & (adv <= 1)).all())
        with torch.no_grad():
            assert torch.equal(model(adv).argmax(1) != y, early.success)
        if bool(early.success.any()):
            assert early_passes < plain_passes


def test_bim_early_stop_returns_the_first_adversarial_iterate():
    model = _small_mlp(seed=5).double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(64, 9, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=g)
    early = A.bim(model, x, y, 0.2, steps=6, step_size=0.05, early_stop=True)
    pending = torch.ones(64, dtype=torch.bool)
    for steps in range(1, 7):  # BIM with t steps ends at iterate t; iterate 0 is x itself
        it = A.bim(model, x, y, 0.2, steps=steps - 1, step_size=0.05).adversarial if steps > 1 \
            else x
        with torch.no_grad():
            first = pending & (model(it).argmax(1) != y)
        torch.testing.assert_close(early.adversarial[first], it[first])
        pending &= ~first


# ------------------------------------------------------------------------------------------
# argument errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x, y: A.fgsm(m, x, y, -0.1), ValueError, "eps"),
        (lambda m, x, y: A.fgsm(m, x, y, math.nan), ValueError, "eps"),
        (lambda m, x, y: A.bim(m, x, y, 0.1, step_size=0.0), ValueError, "step_size"),
        (lambda m, x, y: A.bim(m, x, y, 0.1, step_size=-1.0), ValueError, "step_size"),
        (lambda m, x, y: A.bim(m, x, y, 0.1, steps=0), ValueError, "steps"),
        (lambda m, x, y: A.pgd(m, x, y, 0.1, restarts=0), ValueError, "restarts"),
        (lambda m, x, y: A.bim(m, x, y, 0.1, restarts=2), ValueError, "random_start"),
        (lambda m, x, y: A.deepfool(m, x, y, steps=0), ValueError, "steps"),
        (lambda m, x, y: A.deepfool(m, x, y, overshoot=-0.1), ValueError, "overshoot"),
        (lambda m, x, y: A.deepfool(m, x, y, candidates=1), ValueError, "candidates"),
        (lambda m, x, y: A.deepfool(m, x, y, relu_surrogate=(3.0, 0.0)), ValueError,
         r"relu_surrogate\[1\]"),
        (lambda m, x, y: A.deepfool(m, x, y, relu_surrogate=3.0), TypeError, "relu_surrogate"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y, steps=0), ValueError, "steps"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y, binary_search_steps=0), ValueError,
         "binary_search_steps"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y, lr=0), ValueError, "lr"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y, kappa=-1), ValueError, "kappa"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y, initial_const=0), ValueError,
         "initial_const"),
        (lambda m, x, y: A.fgsm(m, x * 2, y, 0.1), ValueError, r"\[0, 1\]"),
        (lambda m, x, y: A.deepfool(m, x - 0.5, y), ValueError, r"\[0, 1\]"),
        (lambda m, x, y: A.fgsm(m, x.masked_fill(x > 0.5, math.nan), y, 0.1), ValueError, "NaN"),
        (lambda m, x, y: A.fgsm(m, (x * 255).long(), y, 0.1), TypeError, "floating"),
        (lambda m, x, y: A.fgsm(m, x, y[:-1], 0.1), ValueError, "entries"),
        (lambda m, x, y: A.carlini_wagner_l2(m, x, y[:-1]), ValueError, "entries"),
        (lambda m, x, y: A.deepfool(m, x, y.float()), TypeError, "integer"),
        (lambda m, x, y: A.bim(m, x, y + 10, 0.1), ValueError, r"\[0, 3\]"),
        (lambda m, x, y: A.deepfool(m, x, y - 10), ValueError, r"\[0, 3\]"),
        (lambda m, x, y: A.fgsm(m, x[0], y, 0.1), ValueError, "shape"),
        (lambda m, x, y: A.fgsm("model", x, y, 0.1), TypeError, "nn.Module"),
        (lambda m, x, y: A.robust_accuracy(m, x, y, A.deepfool, batch_size=0), ValueError,
         "batch_size"),
        (lambda m, x, y: A.robust_accuracy(m, x, y, functools.partial(A.fgsm, eps=0.1),
                                           l2_budgets=[0.5], progress=False), ValueError,
         "minimal-norm"),
    ],
)
def test_bad_arguments_give_clear_errors(call, error, match):
    model = _small_mlp()
    x, y = torch.rand(8, 9), torch.randint(0, 4, (8,))
    with pytest.raises(error, match=match):
        call(model, x, y)


def test_inference_mode_is_refused_clearly():
    model = _small_mlp()
    x, y = torch.rand(4, 9), torch.randint(0, 4, (4,))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        A.fgsm(model, x, y, 0.1)


def test_empty_batch():
    model = _small_mlp()
    x, y = torch.rand(0, 9), torch.zeros(0, dtype=torch.long)
    for attack in (functools.partial(A.fgsm, eps=0.1), functools.partial(A.bim, eps=0.1),
                   A.deepfool, A.carlini_wagner_l2):
        res = attack(model, x, y)
        assert res.adversarial.shape == (0, 9) and res.success.shape == (0,)


# ------------------------------------------------------------------------------------------
# robust_accuracy
# ------------------------------------------------------------------------------------------


def test_robust_accuracy_counts_clean_errors_as_failures():
    model = _small_mlp(seed=8).eval()
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(50, 9, generator=g), torch.randint(0, 4, (50,), generator=g)
    clean = model(x).argmax(1) == y
    assert 0 < int(clean.sum()) < 50
    rep = A.robust_accuracy(model, x, y, functools.partial(A.fgsm, eps=0.0), batch_size=7,
                            progress=False)
    assert rep.clean_accuracy == pytest.approx(float(clean.double().mean()))
    assert rep.robust_accuracy == pytest.approx(rep.clean_accuracy)  # eps = 0: no attack
    assert rep.success_rate == 0.0 and rep.median_norm is None
    strong = A.robust_accuracy(model, x, y, functools.partial(A.bim, eps=0.5, steps=10),
                               progress=False)
    assert strong.robust_accuracy <= rep.robust_accuracy
    assert "bim" in str(strong)


def test_robust_accuracy_minimal_norm_statistics_and_batching():
    model = _small_mlp(seed=8).eval()
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(60, 9, generator=g), torch.randint(0, 4, (60,), generator=g)
    budgets = [0.0, 0.1, 0.3, 1.0, 10.0]
    rep = A.robust_accuracy(model, x, y, A.deepfool, batch_size=500, progress=False,
                            l2_budgets=budgets)
    small = A.robust_accuracy(model, x, y, A.deepfool, batch_size=7, progress=False,
                              l2_budgets=budgets)
    res = A.deepfool(model, x, y)
    clean = model(x).argmax(1) == y
    fooled = clean & res.success
    assert rep.minimal_norm and rep.norm_type == "l2"
    assert rep.median_norm == pytest.approx(float(res.norms[fooled].double().median()))
    assert rep.mean_norm == pytest.approx(float(res.norms[fooled].double().mean()))
    for b, acc in zip(budgets, rep.accuracy_at_budget.tolist(), strict=True):
        assert acc == pytest.approx(float((clean & ~(res.success & (res.norms <= b)))
                                          .double().mean()))
    assert rep.accuracy_at_budget[0] == pytest.approx(rep.clean_accuracy)
    torch.testing.assert_close(small.norms, rep.norms, rtol=1e-4, atol=1e-6)
    assert torch.equal(small.success, rep.success)


# ------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_attacks_on_cuda_match_cpu(cuda_device):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    cpu = {name: fn(model, x, y) for name, fn in _cuda_attacks().items()}
    model_cuda = model.to(cuda_device)
    xc, yc = x.to(cuda_device), y.to(cuda_device)
    for name, fn in _cuda_attacks().items():
        res = fn(model_cuda, xc, yc)
        assert res.adversarial.device.type == "cuda" and res.success.device.type == "cuda"
        assert float((res.adversarial - xc).abs().amax()) <= 1.0
        if name in ("fgsm", "deepfool"):
            agree = (res.success.cpu() == cpu[name].success).double().mean()
            assert float(agree) >= 0.9
    # CPU data with a CUDA model: computed on the GPU, returned on the CPU
    res = A.fgsm(model_cuda, x, y, 0.1)
    assert res.adversarial.device.type == "cpu"
    rep = A.robust_accuracy(model_cuda, x, y, A.deepfool, progress=False)
    assert rep.n == 32


def _cuda_attacks():
    return {
        "fgsm": functools.partial(A.fgsm, eps=0.1),
        "pgd": functools.partial(A.pgd, eps=0.1, steps=5),
        "deepfool": A.deepfool,
        "cw": functools.partial(A.carlini_wagner_l2, steps=20, binary_search_steps=2),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 7e-8, 1 / 255, 0.03137, 0.1, 0.3, 0.5, 1.0])
def test_linf_bounds_are_exactly_inside_the_ball_and_tight(dtype, eps):
    # the one-correction argument of _linf_box / _signed_step, checked on many pixels (a third
    # at exactly 0 or 1) in every dtype: inside the ball as computed in the dtype, and never
    # more than one ulp short of the naive bound
    from lslib._attack_base import linf_box as _linf_box
    from lslib._attack_base import signed_step as _signed_step

    g = torch.Generator().manual_seed(0)
    x = torch.rand(300_000, generator=g).to(dtype)
    x[::5], x[1::7] = 0.0, 1.0
    e = torch.tensor(eps, dtype=dtype)
    lo, hi = _linf_box(x, eps)
    assert bool(((x - lo) <= e).all() and ((hi - x) <= e).all())
    assert bool((lo >= 0).all() and (hi <= 1).all() and (lo <= x).all() and (hi >= x).all())
    naive_lo, naive_hi = (x - e).clamp(min=0), (x + e).clamp(max=1)
    assert bool(((lo == naive_lo) | (lo == torch.nextafter(naive_lo, x))).all())
    assert bool(((hi == naive_hi) | (hi == torch.nextafter(naive_hi, x))).all())
    direction = torch.randn(x.shape, generator=g).to(dtype)
    adv = _signed_step(x, direction, eps)
    assert bool(((adv - x).abs() <= e).all() and (adv >= 0).all() and (adv <= 1).all())
    naive = (x + e * direction.sign()).clamp(0, 1)
    assert bool(((adv == naive) | (adv == torch.nextafter(naive, x))).all())


def test_cw_started_at_deepfool_never_ends_further_than_deepfool():
    # five Adam steps of 0.01 cannot carry x to a boundary 0.3 away; started at DeepFool's
    # adversarial, CW only shrinks a perturbation that already crosses: it fools every point
    # DeepFool fools, never further than DeepFool and never closer than the exact distance
    model, w, b = binary_linear(20, seed=3)
    x = near_boundary_points(w, b, 16, dist=0.3)
    y = model(x).argmax(1)
    kw = dict(binary_search_steps=2, steps=5, lr=0.01, initial_const=1.0)
    plain = A.carlini_wagner_l2(model, x, y, **kw)
    started = A.carlini_wagner_l2(model, x, y, **kw, start="deepfool")
    df = A.deepfool(model, x, y)
    assert not bool(plain.success.any())
    assert bool(started.success.all()) and bool(df.success.all())
    assert bool((started.norms <= df.norms * (1 + 1e-9)).all())
    dist = (x @ w + b).abs() / w.norm()
    assert bool((started.norms >= dist * (1 - 1e-6)).all())
    with pytest.raises(ValueError, match="start"):
        A.carlini_wagner_l2(model, x, y, start="pgd")
