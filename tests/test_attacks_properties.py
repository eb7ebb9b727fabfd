"""Property tests (hypothesis) for lslib.attacks over random small models, shapes, dtypes and
settings: the invariants every attack promises, checked against independent recomputation.

- shape, dtype and device of the result are those of x; the result lies in [0, 1];
- L-inf attacks stay inside the eps-ball (as computed in x's dtype); FGSM moves each pixel by
  exactly 0 or +-eps (clipped);
- ``success`` equals ``model(adversarial).argmax(1) != y`` recomputed here; ``norms`` equal the
  recomputed norms of ``adversarial - x``;
- nothing is mutated: x, y, parameters, buffers (BatchNorm running statistics included), their
  ``.grad`` and ``requires_grad``, and every submodule's train/eval flag;
- clean-misclassified points come back unchanged for the minimal-norm attacks, and CW returns the
  original input (norm 0) where it failed.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lslib import attacks as A
from lslib.losses import SmoothCrossEntropyLoss

pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def problems(draw):
    """A random small model (random train/eval flags and .grad), inputs and labels."""
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    kind = draw(st.sampled_from(["linear", "mlp", "conv"]))
    k = draw(st.integers(2, 5))
    n = draw(st.integers(0, 6))
    model_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    x_dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64]))
    if kind == "conv":
        c, h = draw(st.integers(1, 2)), draw(st.integers(4, 6))
        shape = (n, c, h, h)
        model = nn.Sequential(nn.Conv2d(c, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3),
                              nn.Linear(3 * (h // 2) ** 2, k))
    else:
        flat = draw(st.booleans())
        d = draw(st.integers(2, 20))
        shape = (n, d) if flat else (n, 1, 2, d)
        if kind == "linear":
            model = nn.Sequential(nn.Flatten(), nn.Linear(shape[1] if flat else 2 * d, k))
        else:
            act = draw(st.sampled_from([nn.ReLU, nn.Tanh]))
            model = nn.Sequential(nn.Flatten(), nn.Linear(d if flat else 2 * d, 8), act(),
                                  nn.Dropout(0.3), nn.BatchNorm1d(8), nn.Linear(8, k))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    model = model.to(model_dtype)
    for m in model.modules():
        m.training = draw(st.booleans())
    for p in model.parameters():
        choice = draw(st.sampled_from(["none", "grad", "frozen"]))
        if choice == "grad":
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        elif choice == "frozen":
            p.requires_grad_(False)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    # exact 0s and 1s, where naive tanh-space attacks get stuck
    x = torch.where(torch.rand(shape, generator=gen) < 0.2, x.round(), x).to(x_dtype)
    y = torch.randint(0, k, (n,), generator=gen)
    return model, x, y


def _snapshot(model, x, y):
    return {
        "x": x.clone(), "y": y.clone(),
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
    }


def _check_unchanged(model, x, y, snap):
    assert torch.equal(x, snap["x"]) and torch.equal(y, snap["y"])
    assert not x.requires_grad
    state = model.state_dict()
    for key, value in snap["state"].items():
        assert torch.equal(state[key], value), f"{key} was changed"
    for p, g, rg in zip(model.parameters(), snap["grad"], snap["requires_grad"], strict=True):
        assert p.requires_grad == rg
        assert (p.grad is None) == (g is None)
        if g is not None:
            assert torch.equal(p.grad, g)
    assert [m.training for m in model.modules()] == snap["training"]


def _model_verdict(model, adv, y):
    """Independent recomputation of success: eval mode, the model's own dtype."""
    flags = [m.training for m in model.modules()]
    model.eval()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        verdict = model(adv.to(dtype)).argmax(1) != y
    for m, f in zip(model.modules(), flags, strict=True):
        m.training = f
    return verdict


def _check_result(model, x, y, res, norm_type):
    adv = res.adversarial
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad
    assert x.numel() == 0 or adv.data_ptr() != x.data_ptr()
    assert res.success.dtype == torch.bool and res.success.shape == (x.shape[0],)
    assert res.norms.shape == (x.shape[0],)
    assert res.norm_type == norm_type
    assert bool(((adv >= 0) & (adv <= 1)).all())
    if x.shape[0]:
        assert torch.equal(res.success, _model_verdict(model, adv, y))
        delta = (adv - x).flatten(1)
        expected = delta.abs().amax(1) if norm_type == "linf" else delta.norm(dim=1)
        torch.testing.assert_close(res.norms, expected, rtol=0, atol=0)


def _losses():
    return st.sampled_from(["ce", "margin", "paper-als", "paper-sls"])


def _loss(name):
    if name == "paper-als":
        return SmoothCrossEntropyLoss("adversarial", alpha=0.4, reduction="none")
    if name == "paper-sls":
        return SmoothCrossEntropyLoss("standard", alpha=0.2, reduction="none")
    return name


@SETTINGS
@given(problem=problems(), eps=st.floats(0.0, 0.6), loss=_losses())
def test_fgsm_invariants(problem, eps, loss):
    model, x, y = problem
    snap = _snapshot(model, x, y)
    res = A.fgsm(model, x, y, eps, loss=_loss(loss))
    _check_unchanged(model, x, y, snap)
    _check_result(model, x, y, res, "linf")
    move = (res.adversarial - x).abs()
    assert bool((move <= eps).all())  # in x's dtype: exactly inside the ball
    # each pixel moves by 0 or by eps, clipped to [0, 1]
    up, down = (1 - x).clamp(max=eps), x.clamp(max=eps)
    tol = 4 * torch.finfo(x.dtype).eps
    ok = (move <= tol) | ((move - up).abs() <= tol) | ((move - down).abs() <= tol)
    assert bool(ok.all())


@SETTINGS
@given(problem=problems(), eps=st.floats(0.0, 0.6), steps=st.integers(1, 4),
       step_size=st.one_of(st.none(), st.floats(1e-3, 0.3)), random_start=st.booleans(),
       restarts=st.integers(1, 2), loss=_losses(), seed=st.integers(0, 1000))
def test_bim_pgd_invariants(problem, eps, steps, step_size, random_start, restarts, loss, seed):
    model, x, y = problem
    restarts = restarts if random_start else 1
    snap = _snapshot(model, x, y)
    gen = torch.Generator().manual_seed(seed)
    res = A.bim(model, x, y, eps, step_size=step_size, steps=steps, random_start=random_start,
                restarts=restarts, loss=_loss(loss), generator=gen)
    _check_unchanged(model, x, y, snap)
    _check_result(model, x, y, res, "linf")
    assert bool(((res.adversarial - x).abs() <= eps).all())
    if random_start:  # the same generator state gives the same attack
        again = A.pgd(model, x, y, eps, step_size=step_size, steps=steps, restarts=restarts,
                      loss=_loss(loss), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(again.adversarial, res.adversarial)


@SETTINGS
@given(problem=problems(), steps=st.integers(1, 6), overshoot=st.floats(0.0, 0.1),
       candidates=st.integers(2, 7))
def test_deepfool_invariants(problem, steps, overshoot, candidates):
    model, x, y = problem
    snap = _snapshot(model, x, y)
    res = A.deepfool(model, x, y, steps=steps, overshoot=overshoot, candidates=candidates)
    _check_unchanged(model, x, y, snap)
    _check_result(model, x, y, res, "l2")
    assert res.minimal_norm
    if x.shape[0]:
        wrong = _model_verdict(model, x, y)
        assert torch.equal(res.adversarial[wrong], x[wrong])
        assert bool(res.success[wrong].all())


@SETTINGS
@given(problem=problems(), bss=st.integers(1, 3), steps=st.integers(1, 8),
       lr=st.floats(1e-3, 0.2), kappa=st.sampled_from([0.0, 0.5]), abort=st.booleans(),
       const=st.sampled_from([1e-3, 1.0, 100.0]))
def test_cw_invariants(problem, bss, steps, lr, kappa, abort, const):
    model, x, y = problem
    snap = _snapshot(model, x, y)
    res = A.carlini_wagner_l2(model, x, y, binary_search_steps=bss, steps=steps, lr=lr,
                              initial_const=const, kappa=kappa, abort_early=abort)
    _check_unchanged(model, x, y, snap)
    _check_result(model, x, y, res, "l2")
    if x.shape[0]:
        failed = ~res.success
        assert torch.equal(res.adversarial[failed], x[failed])
        assert bool((res.norms[failed] == 0).all())
        wrong = _model_verdict(model, x, y)
        assert torch.equal(res.adversarial[wrong], x[wrong])


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problem=problems(), batch_size=st.integers(1, 4), which=st.sampled_from(["bim", "df"]))
def test_robust_accuracy_invariants(problem, batch_size, which):
    model, x, y = problem
    if x.shape[0] == 0:
        return
    snap = _snapshot(model, x, y)
    attack = (functools.partial(A.bim, eps=0.2, steps=2) if which == "bim"
              else functools.partial(A.deepfool, steps=3))
    rep = A.robust_accuracy(model, x, y, attack, batch_size=batch_size, progress=False)
    _check_unchanged(model, x, y, snap)
    clean = ~_model_verdict(model, x, y)
    assert torch.equal(rep.clean_correct, clean)
    assert rep.robust_accuracy <= rep.clean_accuracy
    assert rep.robust_accuracy == pytest.approx(float((clean & ~rep.success).double().mean()))
    assert not bool((rep.success & clean & ~rep.clean_correct).any())
    if which == "df":
        acc = rep.accuracy_at_budget
        assert acc is not None and bool((acc[1:] <= acc[:-1]).all())  # monotone in the budget
        assert float(acc[0]) == pytest.approx(rep.clean_accuracy)
        assert rep.accuracy_at(float("inf")).item() == pytest.approx(rep.robust_accuracy)
