"""lslib.losses: bad inputs raise clear errors; float16/bfloat16/autocast and CUDA behave."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lslib.losses import (
    METHODS,
    SmoothCrossEntropyLoss,
    logit_penalty,
    smooth_cross_entropy,
    smooth_targets,
)

Z = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


def _entry_points(logits, target, method="standard", **kw):
    """Call every public entry point with the same (possibly bad) arguments."""
    alpha = kw.pop("alpha", 0.1)
    temperature = kw.pop("temperature", 1.0)
    yield lambda: smooth_targets(logits, target, method, alpha, temperature, **kw)
    yield lambda: smooth_cross_entropy(logits, target, method, alpha, temperature, **kw)
    yield lambda: SmoothCrossEntropyLoss(method, alpha, temperature, **kw)(logits, target)


# ------------------------------------------------------------------------------------------------
# scalars: alpha, temperature, method, reduction, boltzmann_scale
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), float("inf")])
def test_alpha_out_of_range(alpha):
    for call in _entry_points(Z, Y, alpha=alpha):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            call()


@pytest.mark.parametrize("alpha", ["0.1", None, True, torch.tensor(0.1)])
def test_alpha_wrong_type(alpha):
    for call in _entry_points(Z, Y, alpha=alpha):
        with pytest.raises(TypeError, match="alpha must be a real number"):
            call()


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("-inf")])
def test_temperature_not_positive(temperature):
    for call in _entry_points(Z, Y, "boltzmann", temperature=temperature):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            call()
    with pytest.raises(ValueError, match="temperature"):
        logit_penalty(Z, Y, "boltzmann", temperature)


@pytest.mark.parametrize("method", ["uniform", "", "als2"])
def test_unknown_method(method):
    for call in [*_entry_points(Z, Y, method), lambda: logit_penalty(Z, Y, method)]:
        with pytest.raises(ValueError, match=r"method must be one of 'standard'.*got"):
            call()


def test_method_wrong_type():
    with pytest.raises(TypeError, match="method must be a string"):
        smooth_cross_entropy(Z, Y, 3)


def test_reduction_and_scale_choices():
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'"):
        smooth_cross_entropy(Z, Y, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        SmoothCrossEntropyLoss(reduction="batchmean")
    with pytest.raises(ValueError, match="reduction must be one of"):
        logit_penalty(Z, Y, "standard", reduction="elementwise_mean")
    for call in _entry_points(Z, Y, "boltzmann", boltzmann_scale="probs"):
        with pytest.raises(ValueError, match="boltzmann_scale must be one of 'logits', "
                                             "'probabilities'"):
            call()


def test_module_checks_arguments_at_construction():
    with pytest.raises(ValueError, match="alpha"):
        SmoothCrossEntropyLoss("adversarial", alpha=2.0)
    with pytest.raises(ValueError, match="temperature"):
        SmoothCrossEntropyLoss("boltzmann", temperature=0.0)
    with pytest.raises(ValueError, match="method"):
        SmoothCrossEntropyLoss("worst")


# ------------------------------------------------------------------------------------------------
# tensors: logits and target
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("logits,match", [
    (torch.randn(4), r"logits must be 2-D of shape \(N, K\)"),
    (torch.randn(4, 3, 2), r"logits must be 2-D"),
    (torch.randn(4, 1), r"logits must have K >= 2 classes"),
    (torch.randint(0, 3, (4, 3)), r"logits must be a floating-point tensor"),
    (Z.numpy(), r"logits must be a torch.Tensor"),
])
def test_bad_logits(logits, match):
    for call in [*_entry_points(logits, Y), lambda: logit_penalty(logits, Y, "standard")]:
        with pytest.raises((ValueError, TypeError), match=match):
            call()


@pytest.mark.parametrize("target,match", [
    (Y.float(), r"target must hold integer class indices"),
    (Y.bool(), r"target must hold integer class indices"),
    (torch.tensor([0, 1, 3, 1]),
     r"target must lie in \[0, 2\] for 3 classes, got values in \[0, 3\]"),
    (torch.tensor([0, -1, 2, 1]), r"target must lie in \[0, 2\]"),
    (torch.tensor([0, 1, 2]), r"target has 3 entries but the batch has 4"),
    (Y.unsqueeze(1), r"target must be 1-D"),
    ([0, 1, 2, 1], r"target must be a torch.Tensor"),
])
def test_bad_target(target, match):
    for method in METHODS:
        for call in [*_entry_points(Z, target, method),
                     lambda m=method: logit_penalty(Z, target, m)]:
            with pytest.raises((ValueError, TypeError), match=match):
                call()


def test_integer_dtypes_accepted_for_target():
    for dtype in (torch.int32, torch.int16, torch.uint8, torch.int64):
        torch.testing.assert_close(smooth_cross_entropy(Z, Y.to(dtype), "adversarial"),
                                   smooth_cross_entropy(Z, Y, "adversarial"))


# ------------------------------------------------------------------------------------------------
# a user q' that is not a distribution
# ------------------------------------------------------------------------------------------------
def _uniform(logits, target):
    return torch.full_like(logits, 1.0 / logits.shape[1])


@pytest.mark.parametrize("qprime,err,match", [
    (lambda z, y: _uniform(z, y)[:, :2], ValueError, r"q' returned by the callable `method` must "
                                                     r"have shape \(4, 3\), got \(4, 2\)"),
    (lambda z, y: _uniform(z, y)[0], ValueError, r"must have shape \(4, 3\)"),
    (lambda z, y: _uniform(z, y) * torch.tensor([2.0, -1.0, 0.0]), ValueError,
     r"`method` must be a probability distribution per row: it has negative entries"),
    (lambda z, y: _uniform(z, y) * 1.1, ValueError, r"rows must sum to 1"),
    (lambda z, y: _uniform(z, y).index_fill(1, torch.tensor([0]), float("nan")), ValueError,
     r"`method` must be a probability distribution per row: it has NaN"),
    (lambda z, y: _uniform(z, y).long(), TypeError, r"`method` must be a floating-point tensor"),
    (lambda z, y: [[1, 0, 0]] * 4, TypeError, r"`method` must be a torch.Tensor"),
])
def test_bad_user_qprime(qprime, err, match):
    for call in [*_entry_points(Z, Y, qprime), lambda: logit_penalty(Z, Y, qprime)]:
        with pytest.raises(err, match=match):
            call()


def test_user_qprime_rounding_is_tolerated():
    def almost(z, y):
        return z.softmax(1) + 1e-7  # float32 rounding-sized error

    smooth_cross_entropy(Z, Y, almost)


# ------------------------------------------------------------------------------------------------
# dtypes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", [*METHODS, "bls-probs"])
def test_half_logits_computed_in_float32(dtype, method):
    kw = {}
    if method == "bls-probs":
        method, kw = "boltzmann", {"temperature": 1e-2, "boltzmann_scale": "probabilities"}
    z = (torch.randn(16, 10) * 3).to(dtype).requires_grad_()
    y = torch.randint(0, 10, (16,))
    out = smooth_cross_entropy(z, y, method, 0.2, **kw)
    assert out.dtype == torch.float32
    ref = smooth_cross_entropy(z.detach().float(), y, method, 0.2, **kw)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)  # the same float32 computation
    out.backward()
    assert z.grad.dtype == dtype and bool(z.grad.isfinite().all())
    q = smooth_targets(z, y, method, 0.2, **kw)
    assert q.dtype == torch.float32
    pen = logit_penalty(z, y, method, **kw)
    assert pen.dtype == torch.float32


def test_float64_stays_float64_and_float32_stays_float32():
    for dtype in (torch.float32, torch.float64):
        z = torch.randn(5, 4, dtype=dtype)
        y = torch.randint(0, 4, (5,))
        for m in METHODS:
            assert smooth_cross_entropy(z, y, m).dtype == dtype
            assert smooth_targets(z, y, m, 0.1).dtype == dtype


@pytest.mark.parametrize("method", METHODS)
def test_cpu_autocast_bfloat16(method):
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 10)
    x, y = torch.randn(32, 20), torch.randint(0, 10, (32,))
    loss_fn = SmoothCrossEntropyLoss(method, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(logits.detach().float(), y))
    # close to the full-precision model too (bf16 has ~3 significant digits)
    torch.testing.assert_close(loss, loss_fn(model(x), y), rtol=2e-2, atol=2e-2)
    loss.backward()
    assert model.weight.grad is not None and bool(model.weight.grad.isfinite().all())


def test_large_logits_are_stable():
    """log_softmax, not log(softmax): no inf/NaN for confident logits, even in float16."""
    z = torch.tensor([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]])
    y = torch.tensor([0, 0])
    for m in METHODS:
        for t in (z, z.half()):
            out = smooth_cross_entropy(t.clone().requires_grad_(), y, m, 0.1)
            assert bool(out.isfinite())
    # the exact value: row 0 has p_y = 1, so the loss is alpha * (z_y - z_min) / 2 for ALS
    als = smooth_cross_entropy(z[:1], y[:1], "adversarial", 0.1)
    assert float(als) == pytest.approx(0.1 * 2e4, rel=1e-6)


def test_empty_batch_behaves_like_cross_entropy():
    z = torch.randn(0, 5)
    y = torch.zeros(0, dtype=torch.long)
    for m in METHODS:
        assert smooth_cross_entropy(z, y, m, reduction="none").shape == (0,)
        assert float(smooth_cross_entropy(z, y, m, reduction="sum")) == 0.0
        assert smooth_targets(z, y, m, 0.1).shape == (0, 5)


# ------------------------------------------------------------------------------------------------
# CUDA
# ------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("method", [*METHODS, "bls-probs"])
def test_cuda_matches_cpu(cuda_device, method):
    kw = {}
    if method == "bls-probs":
        method, kw = "boltzmann", {"temperature": 1e-2, "boltzmann_scale": "probabilities"}
    torch.manual_seed(0)
    z = torch.randn(64, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (64,))
    zc = z.to(cuda_device, copy=True).requires_grad_()
    out = smooth_cross_entropy(zc, y.to(cuda_device), method, 0.2, **kw)
    out.backward()
    assert out.device == zc.device
    zz = z.clone().requires_grad_()
    ref = smooth_cross_entropy(zz, y, method, 0.2, **kw)
    ref.backward()
    torch.testing.assert_close(out.cpu(), ref)
    torch.testing.assert_close(zc.grad.cpu(), zz.grad)
    q = smooth_targets(z.to(cuda_device), y.to(cuda_device), method, 0.2, **kw)
    torch.testing.assert_close(q.cpu(), smooth_targets(z, y, method, 0.2, **kw))
    # a user q' on the GPU and the label check on the GPU
    smooth_cross_entropy(zc, y.to(cuda_device), lambda a, b: a.softmax(1), 0.2)
    with pytest.raises(ValueError, match="target must lie in"):
        smooth_cross_entropy(zc, torch.full((64,), 10, device=cuda_device), method, 0.2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast(cuda_device, dtype):
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 10).to(cuda_device)
    x = torch.randn(32, 20, device=cuda_device)
    y = torch.randint(0, 10, (32,), device=cuda_device)
    for m in METHODS:
        loss_fn = SmoothCrossEntropyLoss(m, 0.1)
        with torch.autocast(cuda_device.type, dtype=dtype):
            logits = model(x)
            assert logits.dtype == dtype
            loss = loss_fn(logits, y)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, loss_fn(logits.detach().float(), y))
        loss.backward()
        assert bool(model.weight.grad.isfinite().all())
        model.zero_grad()
    # nn.CrossEntropyLoss under autocast also returns float32: same contract
    with torch.autocast(cuda_device.type, dtype=dtype):
        assert F.cross_entropy(model(x), y).dtype == torch.float32
