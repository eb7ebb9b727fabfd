"""lslib.losses against independent truths: the definitions of Section 2 computed with plain Python
loops, Theorem 1, Lemma 2 (a linear program), torch's own label smoothing, and gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from lslib.losses import (
    METHODS,
    SmoothCrossEntropyLoss,
    logit_penalty,
    smooth_cross_entropy,
    smooth_targets,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# reference implementations: plain Python loops over samples and classes, straight from the paper
# ------------------------------------------------------------------------------------------------
def _split(hits: list[int], k: int) -> list[float]:
    return [1.0 / len(hits) if j in hits else 0.0 for j in range(k)]


def ref_qprime(z: torch.Tensor, y: torch.Tensor, method: str, temperature: float = 1.0,
               scale: str = "logits") -> torch.Tensor:
    """q' row by row, ties split equally (the documented rule)."""
    rows = []
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        k = len(zi)
        wrong = [j for j in range(k) if j != yi]
        if method == "standard":  # eq. (5)
            rows.append([0.0 if j == yi else 1.0 / (k - 1) for j in range(k)])
        elif method == "adversarial":  # eq. (4): argmin over ALL classes
            m = min(zi)
            rows.append(_split([j for j in range(k) if zi[j] == m], k))
        elif method == "second_best":  # eq. (7): argmax over the wrong classes
            m = max(zi[j] for j in wrong)
            rows.append(_split([j for j in wrong if zi[j] == m], k))
        elif method == "boltzmann":  # eq. (6), or the original code's probability scale
            if scale == "probabilities":
                mx = max(zi)
                ex = [math.exp(v - mx) for v in zi]
                e = [v / sum(ex) for v in ex]
            else:
                e = zi
            lo = min(e[j] for j in wrong)
            w = [0.0 if j == yi else math.exp(-(e[j] - lo) / temperature) for j in range(k)]
            rows.append([v / sum(w) for v in w])
        else:
            raise AssertionError(method)
    return torch.tensor(rows, dtype=F64)


def ref_q(z, y, method, alpha, temperature=1.0, scale="logits") -> torch.Tensor:
    """Eq. (1) with an explicit loop for the one-hot part."""
    q = alpha * ref_qprime(z, y, method, temperature, scale)
    for i, yi in enumerate(y.tolist()):
        q[i, yi] += 1.0 - alpha
    return q


def ref_smooth_ce(z, q, reduction="mean") -> torch.Tensor:
    """The definition SmoothCE = -q^T log p, with log p = z - logsumexp(z) computed per row."""
    out = []
    for zi, qi in zip(z.tolist(), q.tolist(), strict=True):
        mx = max(zi)
        lse = mx + math.log(sum(math.exp(v - mx) for v in zi))
        out.append(-sum(qk * (zk - lse) for qk, zk in zip(qi, zi, strict=True)))
    t = torch.tensor(out, dtype=F64)
    return {"mean": t.mean(), "sum": t.sum(), "none": t}[reduction]


def custom_qprime(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A user q' that depends on the logits: softmax of the logits over the wrong classes."""
    return logits.scatter(1, target.unsqueeze(1), float("-inf")).softmax(dim=1)


def ref_custom(z, y):
    rows = []
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        w = [0.0 if j == yi else math.exp(v) for j, v in enumerate(zi)]
        rows.append([v / sum(w) for v in w])
    return torch.tensor(rows, dtype=F64)


# (method passed to lslib, kwargs, reference q' builder)
CASES = {
    "standard": ("standard", {}, lambda z, y: ref_qprime(z, y, "standard")),
    "adversarial": ("adversarial", {}, lambda z, y: ref_qprime(z, y, "adversarial")),
    "second_best": ("second_best", {}, lambda z, y: ref_qprime(z, y, "second_best")),
    "boltzmann-logits-T0.7": ("boltzmann", {"temperature": 0.7},
                              lambda z, y: ref_qprime(z, y, "boltzmann", 0.7)),
    "boltzmann-probs-T0.05": ("boltzmann", {"temperature": 0.05,
                                            "boltzmann_scale": "probabilities"},
                              lambda z, y: ref_qprime(z, y, "boltzmann", 0.05, "probabilities")),
    "callable": (custom_qprime, {}, ref_custom),
}


def _data(n=7, k=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=F64) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return z, y


# ------------------------------------------------------------------------------------------------
# Theorem 1: SmoothCE == CE + alpha * R_n, in value and gradient
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_theorem1_value(case, reduction):
    method, kw, ref = CASES[case]
    alpha = 0.3
    for seed in range(3):
        z, y = _data(seed=seed)
        q = alpha * ref(z, y)
        q[torch.arange(len(y)), y] += 1 - alpha
        truth = ref_smooth_ce(z, q, reduction)  # the definition, eq. (2)
        ours = smooth_cross_entropy(z, y, method, alpha, reduction=reduction, **kw)
        decomposed = (F.cross_entropy(z, y, reduction=reduction)
                      + alpha * logit_penalty(z, y, method, reduction=reduction, **kw))
        torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(decomposed, truth, rtol=1e-12, atol=1e-12)
        # and smooth_targets gives the same q as the loops
        torch.testing.assert_close(smooth_targets(z, y, method, alpha, **kw), q,
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_theorem1_gradient_detached(case):
    """With detached targets the gradient is (softmax(z) - q) / N, on both sides of Theorem 1."""
    method, kw, ref = CASES[case]
    alpha = 0.4
    z, y = _data(n=6, k=4, seed=1)
    q = alpha * ref(z, y)
    q[torch.arange(len(y)), y] += 1 - alpha
    truth = (z.softmax(1) - q) / len(y)
    z1 = z.clone().requires_grad_()
    smooth_cross_entropy(z1, y, method, alpha, **kw).backward()
    z2 = z.clone().requires_grad_()
    (F.cross_entropy(z2, y) + alpha * logit_penalty(z2, y, method, **kw)).backward()
    torch.testing.assert_close(z1.grad, truth, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z2.grad, truth, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["boltzmann-logits-T0.7", "boltzmann-probs-T0.05", "callable"])
def test_theorem1_gradient_not_detached(case):
    """Theorem 1 also holds for the gradient through q' (sum_k dq'_k = 0 kills the lse term)."""
    method, kw, _ = CASES[case]
    alpha = 0.4
    z, y = _data(n=6, k=4, seed=2)
    z1 = z.clone().requires_grad_()
    smooth_cross_entropy(z1, y, method, alpha, detach_targets=False, **kw).backward()
    z2 = z.clone().requires_grad_()
    (F.cross_entropy(z2, y) + alpha * logit_penalty(z2, y, method, detach_targets=False, **kw)
     ).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-12)
    z3 = z.clone().requires_grad_()
    smooth_cross_entropy(z3, y, method, alpha, **kw).backward()
    assert not torch.allclose(z1.grad, z3.grad)  # the q' path really contributes


def test_corollary1_and_closed_forms():
    """R_n: ALS z_y - min z (Corollary 1); SBLS z_y - max_{k!=y} z; SLS (K z_y - sum z)/(K-1)."""
    z, y = _data(n=9, k=6, seed=3)
    zl, yl = z.tolist(), y.tolist()
    als = [zi[yi] - min(zi) for zi, yi in zip(zl, yl, strict=True)]
    sbls = [zi[yi] - max(v for j, v in enumerate(zi) if j != yi)
            for zi, yi in zip(zl, yl, strict=True)]
    sls = [(6 * zi[yi] - sum(zi)) / 5 for zi, yi in zip(zl, yl, strict=True)]
    for method, truth in [("adversarial", als), ("second_best", sbls), ("standard", sls)]:
        torch.testing.assert_close(logit_penalty(z, y, method, reduction="none"),
                                   torch.tensor(truth, dtype=F64))
    # Corollary 1: the ALS penalty is never negative
    assert min(als) >= 0


# ------------------------------------------------------------------------------------------------
# every q lies in the uncertainty set U_alpha
# ------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 8),
    k=st.integers(2, 12),
    alpha=st.floats(0.0, 1.0),
    temperature=st.floats(1e-3, 1e3),
    method=st.sampled_from(list(METHODS) + ["sls", "ALS", "bls", "sbls", "custom"]),
    scale=st.sampled_from(["logits", "probabilities"]),
    ties=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_targets_lie_in_uncertainty_set(n, k, alpha, temperature, method, scale, ties, seed):
    g = torch.Generator().manual_seed(seed)
    if ties:  # small integers: many exact ties, including with the true class
        z = torch.randint(-2, 3, (n, k), generator=g).to(F64)
    else:
        z = torch.randn(n, k, generator=g, dtype=F64) * 5
    y = torch.randint(0, k, (n,), generator=g)
    m = custom_qprime if method == "custom" else method
    q = smooth_targets(z, y, m, alpha, temperature, boltzmann_scale=scale)
    assert q.shape == (n, k) and q.dtype == F64
    assert bool((q >= 0).all())
    torch.testing.assert_close(q.sum(1), torch.ones(n, dtype=F64), rtol=0, atol=1e-12)
    assert bool((q[torch.arange(n), y] >= 1 - alpha - 1e-12).all())
    # TV(q || y) = 1 - q_y <= alpha
    tv = 0.5 * (q - F.one_hot(y, k).to(F64)).abs().sum(1)
    assert bool((tv <= alpha + 1e-12).all())


# ------------------------------------------------------------------------------------------------
# Lemma 2: ALS is the worst case over U_alpha
# ------------------------------------------------------------------------------------------------
def test_lemma2_als_maximises_smoothed_loss_over_uncertainty_set():
    rng = np.random.default_rng(0)
    for trial in range(25):
        k = int(rng.integers(2, 9))
        alpha = float(rng.uniform(0, 1))
        z = torch.tensor(rng.normal(size=(1, k)) * 3, dtype=F64)
        y = torch.tensor([int(rng.integers(0, k))])
        lp = z.log_softmax(1)[0].numpy()
        # max_q -q^T log p  s.t. q >= 0, sum q = 1, q_y >= 1 - alpha   (linprog minimises)
        a_ub = np.zeros((1, k))
        a_ub[0, int(y)] = -1.0
        res = linprog(c=lp, A_ub=a_ub, b_ub=[-(1 - alpha)], A_eq=np.ones((1, k)), b_eq=[1.0],
                      bounds=[(0, None)] * k, method="highs")
        assert res.status == 0, res.message
        lp_value = -res.fun
        als = float(smooth_cross_entropy(z, y, "adversarial", alpha))
        assert als == pytest.approx(lp_value, rel=1e-9, abs=1e-9), trial
        q = smooth_targets(z, y, "adversarial", alpha)[0].numpy()
        assert float(-(q @ lp)) == pytest.approx(lp_value, rel=1e-9, abs=1e-9)
        # every other method's target is feasible, so its loss cannot exceed the worst case
        for method in ("standard", "second_best", "boltzmann"):
            assert float(smooth_cross_entropy(z, y, method, alpha)) <= lp_value + 1e-9


# ------------------------------------------------------------------------------------------------
# brute force and the tie rule
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("method", ["adversarial", "second_best", "standard"])
def test_targets_equal_brute_force(method, ties):
    g = torch.Generator().manual_seed(5)
    if ties:
        z = torch.randint(-1, 2, (40, 6), generator=g).to(F64)
    else:
        z = torch.randn(40, 6, generator=g, dtype=F64)
    y = torch.randint(0, 6, (40,), generator=g)
    torch.testing.assert_close(smooth_targets(z, y, method, 0.25), ref_q(z, y, method, 0.25),
                               rtol=0, atol=1e-15)


def test_tie_rule_splits_equally_and_gradient_follows():
    """All logits equal (e.g. a zero-initialised last layer): ALS puts alpha/K on every class,
    SBLS alpha/(K-1) on every wrong class, and the gradient is softmax - q for that q."""
    k, alpha = 4, 0.2
    z = torch.zeros(2, k, dtype=F64)
    y = torch.tensor([0, 3])
    q = smooth_targets(z, y, "adversarial", alpha)
    expect = torch.full((2, k), alpha / k, dtype=F64)
    expect[[0, 1], [0, 3]] += 1 - alpha
    torch.testing.assert_close(q, expect)
    q_sb = smooth_targets(z, y, "second_best", alpha)
    torch.testing.assert_close(q_sb, smooth_targets(z, y, "standard", alpha))
    for method, target in [("adversarial", q), ("second_best", q_sb)]:
        zz = z.clone().requires_grad_()
        smooth_cross_entropy(zz, y, method, alpha, reduction="sum").backward()
        torch.testing.assert_close(zz.grad, z.softmax(1) - target)


def test_als_includes_true_class_sbls_excludes_it():
    z = torch.tensor([[-3.0, 0.0, 1.0], [2.0, -1.0, 0.5]], dtype=F64)
    y = torch.tensor([0, 0])
    q = smooth_targets(z, y, "adversarial", 0.3)
    # sample 0: the true class has the smallest logit -> ALS gives back the one-hot label
    torch.testing.assert_close(q[0], torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    torch.testing.assert_close(q[1], torch.tensor([0.7, 0.3, 0.0], dtype=F64))
    q_sb = smooth_targets(z, y, "second_best", 0.3)
    torch.testing.assert_close(q_sb, torch.tensor([[0.7, 0, 0.3], [0.7, 0, 0.3]], dtype=F64))


# ------------------------------------------------------------------------------------------------
# BLS limits
# ------------------------------------------------------------------------------------------------
def _wrong_argmin_gap(z, y):
    masked = z.scatter(1, y.unsqueeze(1), float("inf"))
    s = masked.sort(1).values
    return s[:, 1] - s[:, 0]


@pytest.mark.parametrize("scale", ["logits", "probabilities"])
def test_bls_tends_to_als_as_temperature_goes_to_zero(scale):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(200, 5, generator=g, dtype=F64)
    y = torch.randint(0, 5, (200,), generator=g)
    e, t, gap = (z, 1e-4, 0.05) if scale == "logits" else (z.softmax(1), 1e-5, 0.005)
    keep = _wrong_argmin_gap(e, y) > gap  # separated minima: exp(-gap / T) = exp(-500) is "0"
    true_is_min = z.argmin(1) == y
    bls = smooth_targets(z, y, "boltzmann", 0.3, t, boltzmann_scale=scale)
    als = smooth_targets(z, y, "adversarial", 0.3)
    # the limit is the argmin over the WRONG classes ...
    wrong_min = z.scatter(1, y.unsqueeze(1), float("inf")).argmin(1)
    limit = 0.3 * F.one_hot(wrong_min, 5).to(F64) + 0.7 * F.one_hot(y, 5).to(F64)
    torch.testing.assert_close(bls[keep], limit[keep], rtol=0, atol=1e-12)
    # ... which is ALS wherever the true class is not the argmin of all logits
    sel = keep & ~true_is_min
    assert sel.sum() > 80
    torch.testing.assert_close(bls[sel], als[sel], rtol=0, atol=1e-12)
    # and is not ALS where the true class has the smallest logit (the documented subtlety)
    sel2 = keep & true_is_min
    assert sel2.sum() > 5
    assert bool(((bls[sel2] - als[sel2]).abs().amax(1) > 0.29).all())


@pytest.mark.parametrize("scale", ["logits", "probabilities"])
def test_bls_tends_to_sls_as_temperature_goes_to_infinity(scale):
    z, y = _data(n=50, k=7, seed=8)
    sls = smooth_targets(z, y, "standard", 0.3)
    for t, tol in [(1e3, 1e-2), (1e6, 1e-5), (1e9, 1e-8)]:
        bls = smooth_targets(z, y, "boltzmann", 0.3, t, boltzmann_scale=scale)
        assert float((bls - sls).abs().max()) < tol
    inf = smooth_targets(z, y, "boltzmann", 0.3, float("inf"), boltzmann_scale=scale)
    torch.testing.assert_close(inf, sls, rtol=0, atol=1e-15)


def test_boltzmann_scales_differ():
    """Eq. (6) (logits) and the original code (probabilities) are different targets at equal T."""
    z, y = _data(n=20, k=5, seed=9)
    a = smooth_targets(z, y, "boltzmann", 0.5, 0.5)
    b = smooth_targets(z, y, "boltzmann", 0.5, 0.5, boltzmann_scale="probabilities")
    assert float((a - b).abs().max()) > 0.05


# ------------------------------------------------------------------------------------------------
# SLS against torch's own label smoothing
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_sls_equals_torch_label_smoothing(k, reduction):
    g = torch.Generator().manual_seed(k)
    z = torch.randn(33, k, generator=g, dtype=F64) * 3
    y = torch.randint(0, k, (33,), generator=g)
    for alpha in [0.0, 0.05, 0.1, 0.3, (k - 1) / k]:
        eps = alpha * k / (k - 1)
        assert eps <= 1 + 1e-12
        torch.testing.assert_close(
            smooth_cross_entropy(z, y, "standard", alpha, reduction=reduction),
            F.cross_entropy(z, y, reduction=reduction, label_smoothing=min(eps, 1.0)),
            rtol=1e-12, atol=1e-12)


def test_alpha_zero_is_cross_entropy_and_aliases_agree():
    z, y = _data(n=10, k=5, seed=10)
    for m in METHODS:
        torch.testing.assert_close(smooth_cross_entropy(z, y, m, 0.0), F.cross_entropy(z, y))
    for alias, full in [("sls", "standard"), ("ALS", "adversarial"), ("bls", "boltzmann"),
                        ("SBLS", "second_best"), ("Adversarial", "adversarial")]:
        torch.testing.assert_close(smooth_cross_entropy(z, y, alias, 0.2),
                                   smooth_cross_entropy(z, y, full, 0.2))


@pytest.mark.parametrize("scale", ["logits", "probabilities"])
def test_bls_targets_equal_torch_softmax_in_every_layout(scale):
    """BLS's q' (two softmaxes, over the transposed view on the CPU) is the plain softmax
    formula, contiguous, detached or not."""
    z, y = _data(n=9, k=6, seed=24)
    energy = z if scale == "logits" else torch.softmax(z, 1)
    truth = (energy / -0.7).scatter(1, y[:, None], float("-inf")).softmax(1)
    for detach in (True, False):
        q = smooth_targets(z, y, "boltzmann", 1.0, 0.7, boltzmann_scale=scale, detach=detach)
        assert q.is_contiguous()
        torch.testing.assert_close(q, truth, rtol=1e-12, atol=1e-12)


def test_callable_qprime_output_is_not_modified():
    """The loss scales and shifts a q' it built itself in place; a callable's q' belongs to the
    caller and is left as it was."""
    z, y = _data(n=6, k=4, seed=22)
    fixed = torch.full((6, 4), 0.25, dtype=F64)
    smooth_cross_entropy(z, y, lambda logits, target: fixed, 0.3)
    smooth_targets(z, y, lambda logits, target: fixed, 0.3)
    assert torch.equal(fixed, torch.full((6, 4), 0.25, dtype=F64))


# ------------------------------------------------------------------------------------------------
# gradcheck
# ------------------------------------------------------------------------------------------------
def _const_qprime(logits, target):
    """A q' that does not depend on the logits (so detached and not detached agree)."""
    k = logits.shape[1]
    w = torch.arange(1, k + 1, dtype=logits.dtype, device=logits.device).expand_as(logits)
    return w / w.sum(1, keepdim=True)


GRADCHECK = [
    ("standard", {}),
    ("adversarial", {}),
    ("second_best", {}),
    ("boltzmann", {"temperature": 0.8}),
    ("boltzmann", {"temperature": 0.1, "boltzmann_scale": "probabilities"}),
    (custom_qprime, {}),
    (_const_qprime, {}),
]


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("method,kw", GRADCHECK)
def test_gradcheck_not_detached(method, kw, reduction):
    z, y = _data(n=4, k=5, seed=11)
    z.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: smooth_cross_entropy(t, y, method, 0.3, detach_targets=False,
                                       reduction=reduction, **kw), (z,))
    assert torch.autograd.gradgradcheck(
        lambda t: smooth_cross_entropy(t, y, method, 0.3, detach_targets=False,
                                       reduction=reduction, **kw), (z,))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("method", ["standard", "adversarial", "second_best", _const_qprime])
def test_gradcheck_detached(method, reduction):
    """Detached targets: exact gradcheck where q' is locally constant in z (away from ties)."""
    z, y = _data(n=4, k=5, seed=12)
    z.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: smooth_cross_entropy(t, y, method, 0.3, reduction=reduction), (z,))


@pytest.mark.parametrize("method,kw", GRADCHECK[3:6])
def test_detached_gradient_holds_targets_fixed(method, kw):
    """For a q' that moves with z, detach_targets=True is the gradient with q held fixed: gradcheck
    a function in which q is computed once, outside, as a constant."""
    z, y = _data(n=4, k=5, seed=13)
    q = smooth_targets(z, y, method, 0.3, **kw)
    ours = z.clone().requires_grad_()
    smooth_cross_entropy(ours, y, method, 0.3, **kw).backward()
    fixed = z.clone().requires_grad_()
    torch.autograd.gradcheck(lambda t: -(q * t.log_softmax(1)).sum(1).mean(), (fixed,))
    (-(q * fixed.log_softmax(1)).sum(1).mean()).backward()
    torch.testing.assert_close(ours.grad, fixed.grad)


# ------------------------------------------------------------------------------------------------
# the nn.Module
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("method,kw", GRADCHECK)
def test_module_matches_functional(method, kw, reduction):
    z, y = _data(n=8, k=5, seed=14)
    mod = SmoothCrossEntropyLoss(method, 0.2, reduction=reduction, **kw)
    torch.testing.assert_close(mod(z, y), smooth_cross_entropy(z, y, method, 0.2,
                                                               reduction=reduction, **kw))
    assert isinstance(mod, torch.nn.Module) and "alpha=0.2" in repr(mod)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_behave_like_cross_entropy_loss(reduction):
    z, y = _data(n=8, k=5, seed=15)
    z32 = z.float()
    ce = torch.nn.CrossEntropyLoss(reduction=reduction)
    out0 = SmoothCrossEntropyLoss("adversarial", 0.0, reduction=reduction)(z32, y)
    torch.testing.assert_close(out0, ce(z32, y))
    assert out0.shape == ce(z32, y).shape and out0.dtype == torch.float32
    for m in METHODS:
        per = SmoothCrossEntropyLoss(m, 0.3, reduction="none")(z, y)
        out = SmoothCrossEntropyLoss(m, 0.3, reduction=reduction)(z, y)
        expect = {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
        torch.testing.assert_close(out, expect)
        assert per.shape == (8,)


def test_default_targets_are_detached_and_callable_sees_detached_logits():
    z, y = _data(n=5, k=4, seed=16)
    z.requires_grad_()
    assert not smooth_targets(z, y, "boltzmann", 0.2).requires_grad
    assert smooth_targets(z, y, "boltzmann", 0.2, detach=False).requires_grad
    seen = []

    def spy(logits, target):
        seen.append(logits.requires_grad)
        return _const_qprime(logits, target)

    smooth_cross_entropy(z, y, spy, 0.2)
    smooth_cross_entropy(z, y, spy, 0.2, detach_targets=False)
    assert seen == [False, True]


def test_training_steps_decrease_the_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 4)
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    for method in METHODS:
        loss_fn = SmoothCrossEntropyLoss(method, 0.1)
        w, b = (p.detach().clone().requires_grad_() for p in model.parameters())
        first = float(loss_fn(F.linear(x, w, b), y).detach())
        for _ in range(20):
            loss_fn(F.linear(x, w, b), y).backward()
            with torch.no_grad():  # plain SGD, lr 0.5
                for p in (w, b):
                    p -= 0.5 * p.grad
                    p.grad = None
        assert float(loss_fn(F.linear(x, w, b), y).detach()) < first
