r"""Adversarial attacks: FGSM, BIM/PGD (L-inf), DeepFool and Carlini-Wagner (L2), batched.

Conventions shared by every attack:

- Inputs ``x`` lie in [0, 1], shape (N, ...); labels ``y`` are integer class indices (N,).
  Normalisation belongs inside the model (see :mod:`lslib.models`).
- The attack runs on the model's device and in the model's floating dtype, and returns an
  :class:`AttackResult` whose ``adversarial`` has the shape, dtype and device of ``x``.
- Nothing is mutated: not ``x``, not the model's parameters, buffers or their ``.grad`` (gradients
  are taken with :func:`torch.autograd.grad` with respect to the input only, so no parameter
  gradient is even computed), and not the train/eval mode of any submodule: the attack runs the
  model in eval mode and restores every submodule's own flag afterwards.
- On the CPU a large batch is attacked in chunks (:func:`chunk_size`, :data:`CPU_CHUNK_BYTES`)
  when the model's activations are large: the result is what attacking each chunk on its own
  returns (for CW, whose early abort watches a run's total loss, that total is the chunk's).
- ``success`` is exactly ``model(adversarial).argmax(1) != y`` (evaluated on the returned tensor),
  so a point the model already misclassifies counts as a success with a zero perturbation: in
  :func:`robust_accuracy` it is a failure of the model, as in the paper.

The attack loss of FGSM and BIM/PGD (``loss=``) is maximised:

- ``"ce"`` (default): cross-entropy against the TRUE label;
- ``"margin"``: the Carlini-Wagner margin :math:`\max_{j \ne y} z_j - z_y` (a max over the wrong
  classes computed by masking the true class with :math:`-\infty`, right for negative logits);
- any callable ``loss(logits, y) -> (N,)`` returning per-sample losses, e.g.
  ``lslib.losses.SmoothCrossEntropyLoss(method, alpha, reduction="none")``: the loss against the
  model's own smoothed target, which is what the paper's original code attacked. At large alpha a
  step on that loss can *raise* the true-class probability, so robustness looks better than it
  is; the book shows both protocols.

DeepFool and Carlini-Wagner are minimal-norm attacks: their ``norms`` are the L2 norms of the
perturbations they found, and :func:`robust_accuracy` turns those into the median/mean norm and an
accuracy-versus-L2-budget curve.
"""

from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lslib._checks import (
    check_int_at_least,
    check_labels,
    check_nonnegative,
    check_positive,
)

__all__ = [
    "AttackResult",
    "AttackLoss",
    "RobustnessReport",
    "fgsm",
    "bim",
    "bim_last_iterate",
    "pgd",
    "deepfool",
    "carlini_wagner_l2",
    "robust_accuracy",
    "ATTACKS",
    "CPU_CHUNK_BYTES",
    "chunk_size",
]

AttackLoss = Literal["ce", "margin"] | Callable[[Tensor, Tensor], Tensor]
"""``"ce"``, ``"margin"`` or a callable ``(logits (N, K), y (N,)) -> per-sample loss (N,)``."""

NormType = Literal["linf", "l2"]


@dataclass
class AttackResult:
    """What every attack returns.

    ``adversarial`` has the shape, dtype and device of the attacked ``x``; ``success`` is a bool
    (N,) tensor equal to ``model(adversarial).argmax(1) != y``; ``norms`` (N,) holds the norm of
    ``adversarial - x`` (L-inf for FGSM/BIM/PGD, L2 for DeepFool/CW), in ``x``'s dtype.
    ``norm_type`` names that norm and ``minimal_norm`` is True for the minimal-norm attacks
    (DeepFool, CW), whose norms are meaningful as distances to the decision boundary.
    """

    adversarial: Tensor
    success: Tensor
    norms: Tensor
    norm_type: NormType = "linf"
    minimal_norm: bool = False

    def __len__(self) -> int:
        return int(self.success.shape[0])


# --------------------------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------------------------


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; restores each submodule's own ``training`` flag exactly."""
    modes = [(m, m.training) for m in model.modules()]
    if not any(flag for _, flag in modes):  # already in eval mode throughout (the usual case)
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag


def _compute_device_dtype(model: nn.Module, x: Tensor) -> tuple[torch.device, torch.dtype]:
    """The model's device and floating dtype (its first floating parameter or buffer)."""
    for t in chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return x.device, x.dtype


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of inputs in [0, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of inputs in [0, 1], got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, ...) with at least 2 dimensions, "
                         f"got shape {tuple(x.shape)}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())
        lo_, hi_ = float(lo), float(hi)
        if math.isnan(lo_) or math.isnan(hi_):
            raise ValueError("x contains NaN; inputs must lie in [0, 1]")
        if lo_ < 0.0 or hi_ > 1.0:
            raise ValueError(f"x must lie in [0, 1] (normalisation belongs inside the model), "
                             f"got values in [{lo_:.6g}, {hi_:.6g}]")


def _check_y_shape(y: Tensor, n: int) -> None:
    # the range of the labels is checked once the number of classes is known (first forward)
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor of integer class indices, "
                        f"got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices (e.g. torch.long), got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D of shape (N,), got shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} entries but the batch x has {n}")


def _check_logits(logits: Tensor, y: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, K), "
                         f"got shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"the model must return at least 2 classes, got {logits.shape[1]}")
    check_labels("y", y, num_classes=logits.shape[1], batch_size=logits.shape[0])


def _check_attack_args(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """The checks every attack makes of its model, inputs and labels (the labels' range is
    checked at the first forward, once the number of classes is known)."""
    _check_model(model)
    _check_x(x)
    _check_y_shape(y, x.shape[0])
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need autograd: call them outside torch.inference_mode()")


@contextmanager
def _attack_context(model: nn.Module, x: Tensor, y: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Checks the arguments, moves x and y to the model's device/dtype, runs in eval mode."""
    _check_attack_args(model, x, y)
    device, dtype = _compute_device_dtype(model, x)
    xc = x.detach().to(device=device, dtype=dtype)
    yc = y.detach().to(device=device, dtype=torch.long)
    with _eval_mode(model):
        yield xc, yc


def _resolve_loss(loss: AttackLoss) -> Callable[[Tensor, Tensor], Tensor]:
    if isinstance(loss, str):
        if loss == "ce":
            return _ce_loss
        if loss == "margin":
            return _margin_loss
        raise ValueError(f"loss must be 'ce', 'margin' or a callable (logits, y) -> (N,), "
                         f"got {loss!r}")
    if not callable(loss):
        raise TypeError(f"loss must be 'ce', 'margin' or a callable (logits, y) -> (N,), "
                        f"got {type(loss).__name__}")
    return loss


def _ce_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """max over wrong classes minus the true logit (masking with -inf: right for any sign)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def _loss_and_grad(model: nn.Module, xa: Tensor, y: Tensor,
                   loss_fn: Callable[[Tensor, Tensor], Tensor], *,
                   check: bool = False) -> tuple[Tensor, Tensor]:
    """One forward and one backward: (d sum(loss) / d xa, logits). Only the input's gradient."""
    xg = xa.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        if check:
            _check_logits(logits, y)
        losses = loss_fn(logits, y)
        if not isinstance(losses, Tensor) or losses.shape != (xa.shape[0],):
            shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(f"the attack loss must return per-sample losses of shape "
                             f"({xa.shape[0]},), got {shape} (use reduction='none')")
        grad = _input_grad(losses.sum(), xg)
    return grad, logits.detach()


def _clean_logits(model: nn.Module, xc: Tensor, yc: Tensor) -> Tensor:
    """The model's logits on the clean batch (no graph), checked against the labels."""
    with torch.no_grad():
        logits = model(xc)
    _check_logits(logits, yc)
    return logits


def _input_grad(out: Tensor, xg: Tensor, grad_outputs: Tensor | None = None,
                retain_graph: bool = False) -> Tensor:
    if not out.requires_grad:
        raise RuntimeError("the model's output does not depend differentiably on its input "
                           "(is the model wrapped in torch.no_grad?)")
    (g,) = torch.autograd.grad(out, xg, grad_outputs, retain_graph=retain_graph,
                               allow_unused=True)
    return torch.zeros_like(xg) if g is None else g


def _finish(model: nn.Module, x: Tensor, adv: Tensor, y: Tensor, norm_type: NormType,
            minimal: bool, success: Tensor | None = None, revert_failures: bool = False,
            eps: float | None = None, xc: Tensor | None = None) -> AttackResult:
    """Cast back to x's dtype/device, evaluate success on exactly what is returned, norms.

    ``eps`` (L-inf attacks): where the model's dtype differs from x's, the cast result is
    projected once more onto the eps-ball in x's dtype, so the ball holds exactly there too."""
    out = adv.detach().to(device=x.device, dtype=x.dtype)
    if out.dtype != adv.dtype:  # computed in the model's dtype: mind the rounding of the cast
        success = None  # re-evaluate what is returned
        if eps is not None:  # the ball must hold in x's dtype too
            lo, hi = _linf_box(x.detach(), eps)
            out = torch.clamp(out, lo, hi)
        if xc is not None:  # rows the attack left unchanged are x itself, not x rounded
            same = (adv == xc).flatten(1).all(1).to(x.device)
            out = torch.where(_rows(same, out.ndim), x.detach(), out)
    if success is None:
        device, dtype = _compute_device_dtype(model, x)
        with torch.no_grad():
            success = model(out.to(device=device, dtype=dtype)).argmax(1) != y
        if revert_failures and not bool(success.all()):
            out = torch.where(_rows(~success.to(x.device), out.ndim), x.detach(), out)
    delta = torch.sub(out, x.detach()).flatten(1)
    norms = delta.abs_().amax(1) if norm_type == "linf" else delta.norm(dim=1)
    if out.data_ptr() == x.data_ptr():  # never hand back (a view of) the caller's tensor
        out = out.clone()
    return AttackResult(out, success.to(x.device), norms, norm_type, minimal)


def _rows(mask: Tensor, ndim: int) -> Tensor:
    """A (N,) mask shaped to broadcast over (N, ...)."""
    return mask.view(-1, *([1] * (ndim - 1)))


def _linf_box(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Bounds lo <= adv <= hi of the eps-ball intersected with [0, 1], EXACT in floating point:
    ``(x - lo) <= eps`` and ``(hi - x) <= eps`` hold as computed in x's dtype (plain ``x - eps``
    can round one ulp outside the ball).

    One correction suffices: ``fl(x - eps)`` is the float nearest to the true ``x - eps``; when it
    lies below, the next float up lies at or above it, so the true distance is then <= eps and,
    rounding being monotone and eps a float of x's dtype, so is the computed one."""
    e = float(torch.tensor(eps, dtype=x.dtype))  # eps as x's dtype holds it
    lo = torch.sub(x, e).clamp_(min=0.0)
    hi = torch.add(x, e).clamp_(max=1.0)
    lo = _select(torch.sub(x, lo).gt_(e), torch.nextafter(lo, x), lo)
    hi = _select(torch.sub(hi, x).gt_(e), torch.nextafter(hi, x), hi)
    return lo, hi


def _select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``torch.where(mask, a, b)`` for FINITE a and b and a float mask of 0s and 1s, as
    ``lerp(b, a, mask)``: exact for such weights (``b + 0 * (a - b)`` and ``a - (a - b) * 0``)
    and several times faster on the CPU, where ``torch.where`` runs element by element."""
    return torch.lerp(b, a, mask)


def _signed_step(x: Tensor, direction: Tensor, eps: float) -> Tensor:
    """``clip(x + eps * sign(direction), 0, 1)``, rounded into the eps-ball exactly (see
    :func:`_linf_box`: where the sum rounds one ulp too far, the next float towards x is inside).
    Cheaper than clamping to the box when only one step is taken (FGSM)."""
    e = float(torch.tensor(eps, dtype=x.dtype))
    adv = torch.add(x, torch.sign(direction), alpha=e).clamp_(0.0, 1.0)
    return _select(torch.sub(adv, x).abs_().gt_(e), torch.nextafter(adv, x), adv)


def _empty_result(x: Tensor, norm_type: NormType, minimal: bool) -> AttackResult:
    return AttackResult(x.detach().clone(), torch.zeros(0, dtype=torch.bool, device=x.device),
                        torch.zeros(0, dtype=x.dtype, device=x.device), norm_type, minimal)


#: On the CPU a batch is attacked in chunks sized so that the model's largest activation (the
#: largest output of any of its modules) stays under this many bytes per chunk. Why: glibc's
#: malloc hands a freed buffer of more than a few MB back to the kernel, which maps and zeroes
#: fresh pages for it at the next pass; below that size memory is reused. On the MNIST LeNet a
#: forward+backward of 1000 images takes 1.4x as long in one batch as in chunks of 250 (page
#: faults: ``python bench/bench_attacks.py`` times the bare passes both ways). Models whose
#: activations are small (the MLP) are not chunked. Set to 0 to switch chunking off.
CPU_CHUNK_BYTES = 3 * 2**20
_MIN_CHUNK = 32


_ACTIVATION_BYTES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = (
    weakref.WeakKeyDictionary())


def _largest_activation_bytes(model: nn.Module, x1: Tensor) -> int:
    """Bytes per sample of the largest tensor any module of ``model`` outputs, from one forward
    of the single sample ``x1`` (no graph, eval mode); remembered per model, input shape, dtype
    and device (the sizes depend on the architecture only)."""
    key = (tuple(x1.shape[1:]), x1.dtype, x1.device)
    known = _ACTIVATION_BYTES.setdefault(model, {})
    if key not in known:
        known[key] = _probe_activation_bytes(model, x1)
    return known[key]


def _probe_activation_bytes(model: nn.Module, x1: Tensor) -> int:
    largest = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, Tensor) and output.ndim:
            per_sample = output.numel() // max(output.shape[0], 1)
            largest = max(largest, per_sample * output.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), _eval_mode(model):
            model(x1)
    finally:
        for h in handles:
            h.remove()
    return largest


def chunk_size(model: nn.Module, x: Tensor) -> int:
    """How many samples of ``x`` the attacks take at a time on ``model``: all of them unless the
    model runs on the CPU and its largest activation for the whole batch would exceed
    :data:`CPU_CHUNK_BYTES` (then at least 32). Each chunk is attacked as a call of its own."""
    n = x.shape[0]
    device, dtype = _compute_device_dtype(model, x)
    if device.type != "cpu" or CPU_CHUNK_BYTES <= 0 or n <= _MIN_CHUNK:
        return n
    per_sample = _largest_activation_bytes(model, x[:1].detach().to(device=device, dtype=dtype))
    return min(n, max(_MIN_CHUNK, CPU_CHUNK_BYTES // max(per_sample, 1)))


def _in_chunks(attack: Callable[..., AttackResult]) -> Callable[..., AttackResult]:
    """Runs ``attack(model, x, y, ...)`` on chunks of :func:`chunk_size` samples and joins the
    results (the same as calling it on each chunk). Arguments are checked first."""

    @functools.wraps(attack)
    def run(model: nn.Module, x: Tensor, y: Tensor, *args: object, **kwargs: object
            ) -> AttackResult:
        _check_attack_args(model, x, y)  # before slicing (each chunk is checked again)
        size = chunk_size(model, x)
        if size >= x.shape[0]:
            return attack(model, x, y, *args, **kwargs)
        parts = [attack(model, x[i : i + size], y[i : i + size], *args, **kwargs)
                 for i in range(0, x.shape[0], size)]
        return AttackResult(torch.cat([p.adversarial for p in parts]),
                            torch.cat([p.success for p in parts]),
                            torch.cat([p.norms for p in parts]),
                            parts[0].norm_type, parts[0].minimal_norm)

    return run


# --------------------------------------------------------------------------------------------
# L-inf: FGSM, BIM, PGD
# --------------------------------------------------------------------------------------------


@_in_chunks
def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
         loss: AttackLoss = "ce") -> AttackResult:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad loss))``.

    One forward and one backward. The result lies in the eps-ball around ``x`` and in [0, 1].
    """
    eps = check_nonnegative("eps", eps)
    loss_fn = _resolve_loss(loss)
    with _attack_context(model, x, y) as (xc, yc):
        if xc.shape[0] == 0:
            return _empty_result(x, "linf", False)
        grad, _ = _loss_and_grad(model, xc, yc, loss_fn, check=True)
        if xc.dtype == x.dtype:
            adv = _signed_step(xc, grad, eps)
        else:  # take the step in x's own precision
            adv = _signed_step(x.detach().to(xc.device), grad.to(x.dtype), eps)
        return _finish(model, x, adv, yc, "linf", False)


@_in_chunks
def bim(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, step_size: float | None = None,
        steps: int = 10, random_start: bool = False, restarts: int = 1,
        loss: AttackLoss = "ce", generator: torch.Generator | None = None,
        early_stop: bool = False) -> AttackResult:
    """Basic iterative method (Kurakin et al. 2017); with ``random_start`` it is L-inf PGD.

    ``steps`` signed-gradient steps of ``step_size`` (default ``2.5 * eps / steps``, so that the
    path can cross the ball), each projected onto the eps-ball and [0, 1]: one forward and one
    backward per step and nothing else. A sample's returned point is its last iterate, unless
    that is not adversarial while an earlier iterate (or an earlier restart) was: then that
    adversarial iterate is returned, so the attack is never weaker than plain BIM. ``restarts``
    > 1 (needs ``random_start``) re-attacks, from a new random start, only the samples not yet
    fooled. ``generator`` (on the model's device) makes the random starts reproducible.

    ``early_stop``: a sample leaves the batch at the first iterate that fools the model, and
    that iterate is returned. Which samples succeed is the same as without it (a sample counts
    as fooled when any iterate fooled it), so robust accuracy is unchanged while the steps on
    fooled samples are saved; only the returned point of a fooled sample differs.
    """
    eps = check_nonnegative("eps", eps)
    steps = check_int_at_least("steps", steps, 1)
    restarts = check_int_at_least("restarts", restarts, 1)
    step_size = 2.5 * eps / steps if step_size is None else check_positive("step_size", step_size)
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (without it every restart is "
                         "the same deterministic run)")
    loss_fn = _resolve_loss(loss)
    with _attack_context(model, x, y) as (xc, yc):
        n = xc.shape[0]
        if n == 0:
            return _empty_result(x, "linf", False)
        lo_all, hi_all = _linf_box(xc, eps)
        idx: Tensor | None = None  # None: the whole batch (no copies); set by the first run
        for restart in range(restarts):
            xs, ys, lo, hi = ((xc, yc, lo_all, hi_all) if idx is None
                              else (xc[idx], yc[idx], lo_all[idx], hi_all[idx]))
            start = _random_start(xs, eps, lo, hi, generator) if random_start else xs
            run = _bim_early_stop if early_stop else _bim_run
            rows, ok = run(model, start, ys, lo, hi, steps, step_size, loss_fn, restart == 0)
            if idx is None:  # the first run: its tensors are fresh, later runs write into them
                final, success = rows, ok
            else:
                final[idx] = rows
                success[idx] = ok
            remaining = (~success).nonzero().squeeze(1)
            if remaining.numel() == 0:
                break
            idx = remaining
        # a single full-batch run evaluated success on the returned rows in batches of the same
        # size: exact. Restarts or early stops evaluated sub-batches: re-evaluate once.
        exact = restarts == 1 and not early_stop and x.dtype == xc.dtype
        return _finish(model, x, final, yc, "linf", False, success if exact else None, eps=eps)


def _bim_run(model: nn.Module, adv: Tensor, ys: Tensor, lo: Tensor, hi: Tensor, steps: int,
             step_size: float, loss_fn: Callable[[Tensor, Tensor], Tensor],
             check: bool) -> tuple[Tensor, Tensor]:
    """One BIM run from ``adv`` over the whole batch: (returned rows, success). The returned
    tensors are fresh (never ``adv`` itself)."""
    found = torch.zeros(adv.shape[0], dtype=torch.bool, device=adv.device)
    first_idx: list[Tensor] = []  # each sample's first adversarial iterate: its index ...
    first_rows: list[Tensor] = []  # ... and the row (only these rows are copied)
    for t in range(steps):
        grad, logits = _loss_and_grad(model, adv, ys, loss_fn, check=check and t == 0)
        hit = logits.argmax(1) != ys  # was the iterate just differentiated adversarial?
        new = hit & ~found
        if bool(new.any()):
            idx = new.nonzero().squeeze(1)
            first_idx.append(idx)
            first_rows.append(adv[idx])
            found |= new
        adv = _linf_step(adv, grad, step_size, lo, hi)
    with torch.no_grad():
        last_hit = model(adv).argmax(1) != ys
    if first_idx:
        idx, rows = torch.cat(first_idx), torch.cat(first_rows)
        back = ~last_hit[idx]  # an earlier iterate fooled the model, the last one does not
        if bool(back.any()):
            adv[idx[back]] = rows[back]
    return adv, last_hit | found


def _random_start(x: Tensor, eps: float, lo: Tensor, hi: Tensor,
                  generator: torch.Generator | None) -> Tensor:
    """A uniform draw from the eps-ball around x, projected onto the box [lo, hi] (PGD's start)."""
    noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    return torch.clamp(x + noise, lo, hi)


def _linf_step(adv: Tensor, grad: Tensor, step_size: float, lo: Tensor, hi: Tensor) -> Tensor:
    """``clip(adv + step_size * sign(grad), lo, hi)`` as a fresh tensor (one allocation)."""
    return torch.add(adv, torch.sign(grad), alpha=step_size).clamp_(lo, hi)


def _bim_early_stop(model: nn.Module, adv: Tensor, ys: Tensor, lo: Tensor, hi: Tensor,
                    steps: int, step_size: float, loss_fn: Callable[[Tensor, Tensor], Tensor],
                    check: bool) -> tuple[Tensor, Tensor]:
    """:func:`_bim_run` where a sample leaves at its first adversarial iterate."""
    rows = adv.clone()
    ok = torch.zeros(adv.shape[0], dtype=torch.bool, device=adv.device)
    active = torch.arange(adv.shape[0], device=adv.device)
    for t in range(steps):
        grad, logits = _loss_and_grad(model, adv, ys, loss_fn, check=check and t == 0)
        hit = logits.argmax(1) != ys
        if bool(hit.any()):
            rows[active[hit]] = adv[hit]
            ok[active[hit]] = True
            keep = ~hit
            active, adv, grad, ys, lo, hi = (active[keep], adv[keep], grad[keep], ys[keep],
                                             lo[keep], hi[keep])
            if active.numel() == 0:
                return rows, ok
        adv = _linf_step(adv, grad, step_size, lo, hi)
    with torch.no_grad():
        last_hit = model(adv).argmax(1) != ys
    rows[active] = adv
    ok[active] = last_hit
    return rows, ok


def bim_last_iterate(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
                     step_size: float | None = None, steps: int = 10,
                     random_start: bool = False, loss: AttackLoss = "ce",
                     generator: torch.Generator | None = None) -> Tensor:
    """The last iterate of BIM (of L-inf PGD with ``random_start``), and nothing else.

    ``steps`` signed-gradient steps of ``step_size`` (default ``2.5 * eps / steps``), each
    projected onto the eps-ball and [0, 1], exactly as in :func:`bim`; but no forward pass judges
    the result and no earlier iterate is kept: the final iterate is returned as a tensor of x's
    shape and dtype, whether it fools the model or not. This is what PGD adversarial training
    (Madry et al. 2018) trains on; :func:`bim` is the attack. Runs in eval mode, as every attack.
    """
    eps = check_nonnegative("eps", eps)
    steps = check_int_at_least("steps", steps, 1)
    step_size = 2.5 * eps / steps if step_size is None else check_positive("step_size", step_size)
    loss_fn = _resolve_loss(loss)
    with _attack_context(model, x, y) as (xc, yc):
        if xc.shape[0] == 0:
            return x.detach().clone()
        lo, hi = _linf_box(xc, eps)
        adv = _random_start(xc, eps, lo, hi, generator) if random_start else xc
        for t in range(steps):
            grad, _ = _loss_and_grad(model, adv, yc, loss_fn, check=t == 0)
            adv = _linf_step(adv, grad, step_size, lo, hi)
        if adv.dtype != x.dtype:  # computed in the model's dtype: the ball must hold in x's too
            lo, hi = _linf_box(x.detach(), eps)
            return torch.clamp(adv.to(device=x.device, dtype=x.dtype), lo, hi)
        return adv.to(device=x.device)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, step_size: float | None = None,
        steps: int = 40, restarts: int = 1, loss: AttackLoss = "ce",
        generator: torch.Generator | None = None, early_stop: bool = False) -> AttackResult:
    """L-inf projected gradient descent (Madry et al. 2018): :func:`bim` with a random start."""
    return bim(model, x, y, eps, step_size=step_size, steps=steps, random_start=True,
               restarts=restarts, loss=loss, generator=generator, early_stop=early_stop)


# --------------------------------------------------------------------------------------------
# L2 minimal-norm: DeepFool, Carlini-Wagner
# --------------------------------------------------------------------------------------------


_DF_PUSH = 1e-4  # added to each step's distance, as in the authors' reference code


@_in_chunks
def deepfool(model: nn.Module, x: Tensor, y: Tensor, *, steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10) -> AttackResult:
    """DeepFool, L2, untargeted (Moosavi-Dezfooli et al. 2016), batched over samples and classes.

    The candidate classes are the top-``candidates`` of the clean logits. Each iteration does ONE
    forward on the samples still correctly classified and one backward per candidate class
    (``z_k - z_y`` for the whole sub-batch at once), linearises every candidate boundary, and
    steps to the nearest: ``r = (|f_l| / ||w_l|| + 1e-4) * w_l / ||w_l||`` (the 1e-4 push of the
    authors' reference code: without it a point whose steps are partly clipped away approaches
    the boundary geometrically and may never cross it). The overshoot applies to the total
    perturbation, ``x_adv = clip(x + (1 + overshoot) * r_total, 0, 1)``, and misclassification is
    checked on that clipped point; a sample stops as soon as it is misclassified. On a linear
    classifier one step lands at exactly ``(1 + overshoot) * (d + 1e-4)``, d the distance to the
    boundary.
    Samples the model already misclassifies are returned unchanged (norm 0, success). ``norms``
    are the L2 norms of the returned perturbations (of the last iterate where it failed).
    """
    steps = check_int_at_least("steps", steps, 1)
    overshoot = check_nonnegative("overshoot", overshoot)
    candidates = check_int_at_least("candidates", candidates, 2)
    with _attack_context(model, x, y) as (xc, yc):
        n = xc.shape[0]
        if n == 0:
            return _empty_result(x, "l2", True)
        logits0 = _clean_logits(model, xc, yc)
        k = min(candidates, logits0.shape[1])
        cand = logits0.topk(k, dim=1).indices  # column 0 is the prediction
        adv = xc.clone()
        active = (cand[:, 0] == yc).nonzero().squeeze(1)
        x0, ya, others = xc[active], yc[active], cand[active, 1:]
        r_tot = torch.zeros_like(x0)
        xa = x0
        scale = 1.0 + overshoot
        for it in range(steps + 1):
            if active.numel() == 0:
                break
            xg = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                z = model(xg)
            fooled = z.detach().argmax(1) != ya
            if it == steps:
                adv[active] = xa  # out of iterations: the last iterate (fooled or not)
                break
            if bool(fooled.any()):
                adv[active[fooled]] = xa[fooled]
            keep = ~fooled
            if not bool(keep.any()):
                break
            # best candidate boundary, one backward per candidate class for the whole sub-batch
            zy = z.detach().gather(1, ya[:, None])
            best_dist = torch.full((z.shape[0],), float("inf"), dtype=z.dtype, device=z.device)
            best_w = torch.zeros_like(xa)
            m = xa.ndim
            for j in range(k - 1):
                cj = others[:, j : j + 1]
                go = torch.zeros_like(z).scatter_(1, cj, 1.0).scatter_(1, ya[:, None], -1.0)
                w = _input_grad(z, xg, go, retain_graph=j < k - 2)
                f = (z.detach().gather(1, cj) - zy).squeeze(1).abs()
                wn = w.flatten(1).norm(dim=1).clamp_min(1e-12)
                dist = f / wn
                better = dist < best_dist
                best_dist = torch.where(better, dist, best_dist)
                best_w[better] = w[better]  # rows only (torch.where runs per element on a CPU)
            del z, xg
            wn = best_w.flatten(1).norm(dim=1).clamp_min(1e-12)
            r_step = _rows((best_dist + _DF_PUSH) / wn, m) * best_w
            if not bool(keep.all()):
                active, x0, ya, others = active[keep], x0[keep], ya[keep], others[keep]
                r_tot, r_step = r_tot[keep], r_step[keep]
            r_tot = r_tot + r_step
            xa = (x0 + scale * r_tot).clamp(0.0, 1.0)
        return _finish(model, x, adv, yc, "l2", True, xc=xc)


def _trim_to_boundary(model: nn.Module, x: Tensor, adv: Tensor, y: Tensor, kappa: float,
                      mask: Tensor, iters: int = 10) -> Tensor:
    """Where ``mask``: replace adv by x + t (adv - x) with the smallest t in [0, 1] (bisection,
    ``iters`` forward passes) that is still adversarial with margin >= kappa. Never longer."""
    idx = mask.nonzero().squeeze(1)
    if idx.numel() == 0:
        return adv
    xs, d, ys = x[idx], adv[idx] - x[idx], y[idx]
    lo = torch.zeros(idx.numel(), dtype=x.dtype, device=x.device)
    hi = torch.ones_like(lo)
    with torch.no_grad():
        for _ in range(iters):
            mid = (lo + hi) / 2
            z = model(xs + _rows(mid, xs.ndim) * d)
            true = z.gather(1, ys[:, None]).squeeze(1)
            other = z.scatter(1, ys[:, None], float("-inf")).amax(1)
            ok = (z.argmax(1) != ys) & (other - true >= kappa)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
    out = adv.clone()
    out[idx] = xs + _rows(hi, xs.ndim) * d
    return out


def _to_tanh_space(x: Tensor) -> Tensor:
    # shrink [0, 1] into the open interval, so that pixels at exactly 0 or 1 get a finite w
    return torch.atanh((2.0 * x - 1.0) * (1.0 - 1e-6))


def _from_tanh_space(w: Tensor) -> Tensor:
    return (torch.tanh(w) + 1.0) * 0.5


@_in_chunks
def carlini_wagner_l2(model: nn.Module, x: Tensor, y: Tensor, *, binary_search_steps: int = 9,
                      steps: int = 1000, lr: float = 0.01, initial_const: float = 1e-3,
                      kappa: float = 0.0, abort_early: bool = True) -> AttackResult:
    r"""Carlini-Wagner L2, untargeted (Carlini & Wagner 2017), batched, per-sample search over c.

    Minimises :math:`\|x' - x\|_2^2 + c \max(z_y - \max_{j \ne y} z_j + \kappa, 0)` over
    :math:`x' = (\tanh w + 1)/2` with Adam (``lr``); the change of variables starts from
    ``atanh((2x - 1)(1 - 1e-6))`` so that pixels at exactly 0 or 1 can move. The max over the
    wrong classes masks the true class with :math:`-\infty` (right for negative logits).
    ``c`` is searched per sample: x10 until the first success, then bisection, over
    ``binary_search_steps`` runs of at most ``steps`` Adam steps (with 10 or more search steps,
    the last run uses the upper bound, as in the original code). ``abort_early``: every tenth
    of the steps a run stops when its total loss has not fallen by 0.01% (the reference rule),
    and a sample not yet fooled in the run leaves it when its own loss has not (its c is too
    small; this only saves time). Over all runs and steps the smallest-L2 point with margin
    >= kappa is kept; a final bisection along the segment from x to that point (10 forward
    passes) trims the overshoot of Adam's last step, and never lengthens it. Where no
    adversarial was found the original input is returned (success False, norm 0). Samples
    already misclassified are returned unchanged (norm 0, success). Pixels that start at
    exactly 0 or 1 move slowly at first (tanh is flat there); with ``abort_early`` a run can
    read that as a stall.
    """
    binary_search_steps = check_int_at_least("binary_search_steps", binary_search_steps, 1)
    steps = check_int_at_least("steps", steps, 1)
    lr = check_positive("lr", lr)
    initial_const = check_positive("initial_const", initial_const)
    kappa = check_nonnegative("kappa", kappa)
    with _attack_context(model, x, y) as (xc, yc):
        n = xc.shape[0]
        if n == 0:
            return _empty_result(x, "l2", True)
        logits0 = _clean_logits(model, xc, yc)
        dev, dt = xc.device, xc.dtype
        todo = (logits0.argmax(1) == yc).nonzero().squeeze(1)  # misclassified: x is the answer
        best_adv = xc.clone()
        best_l2 = torch.full((n,), float("inf"), dtype=dt, device=dev)
        const = torch.full((n,), initial_const, dtype=dt, device=dev)
        lower = torch.zeros(n, dtype=dt, device=dev)
        upper = torch.full((n,), float("inf"), dtype=dt, device=dev)
        w0_all = _to_tanh_space(xc)
        check_every = max(1, math.ceil(steps / 10))
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
        for bs in range(binary_search_steps):
            if todo.numel() == 0:
                break
            if binary_search_steps >= 10 and bs == binary_search_steps - 1:
                const = upper.clamp(max=1e10)  # repeat the search once at the upper bound
            idx = todo
            w = w0_all[idx]
            xs, ys, c = xc[idx], yc[idx], const[idx]
            true_mask = F.one_hot(ys, logits0.shape[1]).bool()
            mom = torch.zeros_like(w)
            vel = torch.zeros_like(w)
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            prev = torch.full((idx.numel(),), float("inf"), dtype=dt, device=dev)
            prev_total = float("inf")
            for step in range(steps):
                wg = w.detach().requires_grad_(True)
                with torch.enable_grad():
                    xa = _from_tanh_space(wg)
                    z = model(xa)
                    true = z.gather(1, ys[:, None]).squeeze(1)
                    other = z.masked_fill(true_mask, float("-inf")).amax(1)
                    l2sq = (xa - xs).flatten(1).square().sum(1)
                    loss = l2sq + c * (true - other + kappa).clamp(min=0.0)
                    grad = _input_grad(loss.sum(), wg)
                with torch.no_grad():
                    loss, l2sq, zd = loss.detach(), l2sq.detach(), z.detach()
                    hit = zd.argmax(1) != ys
                    if kappa > 0:
                        hit &= (other.detach() - true.detach()) >= kappa
                    if bool(hit.any()):
                        found[idx[hit]] = True
                        better = hit & (l2sq < best_l2[idx])
                        if bool(better.any()):
                            gi = idx[better]
                            best_l2[gi] = l2sq[better]
                            best_adv[gi] = xa.detach()[better]
                    # Adam, in place (per element; the samples of a run share the step count)
                    t = step + 1
                    mom.lerp_(grad, 1 - beta1)
                    vel.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = vel.sqrt().div_(math.sqrt(1 - beta2**t)).add_(adam_eps)
                    w.addcdiv_(mom, denom, value=-lr / (1 - beta1**t))
                    if abort_early and step % check_every == 0:
                        # the run stops when the total loss stalls (the reference rule) ...
                        total = float(loss.sum())
                        if not total <= 0.9999 * prev_total:
                            break
                        prev_total = total
                        # ... and a sample not fooled in this run leaves it when its own loss
                        # stalls: its c is too small (nothing it could still find is lost)
                        stalled = ~(loss <= 0.9999 * prev) & ~found[idx]
                        prev = loss
                        if bool(stalled.any()):
                            keep = ~stalled
                            idx, w, mom, vel = idx[keep], w[keep], mom[keep], vel[keep]
                            xs, ys, c, prev = xs[keep], ys[keep], c[keep], prev[keep]
                            true_mask = true_mask[keep]
                            if idx.numel() == 0:
                                break
            # per-sample search over c
            f = found[todo]
            ct = const[todo]
            upper[todo] = torch.where(f, torch.minimum(upper[todo], ct), upper[todo])
            lower[todo] = torch.where(f, lower[todo], torch.maximum(lower[todo], ct))
            up, lo_ = upper[todo], lower[todo]
            const[todo] = torch.where(torch.isinf(up), ct * 10, (lo_ + up) / 2)
        best_adv = _trim_to_boundary(model, xc, best_adv, yc, kappa, torch.isfinite(best_l2))
        return _finish(model, x, best_adv, yc, "l2", True, revert_failures=True, xc=xc)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class RobustnessReport:
    """The outcome of :func:`robust_accuracy` (per-sample tensors on the CPU).

    ``robust_accuracy`` counts a point as robust when the model classifies it correctly AND the
    attack failed on it (so clean-misclassified points are failures of the model). For the
    minimal-norm attacks (``minimal_norm``), ``median_norm`` and ``mean_norm`` are taken over
    the clean-correct points the attack fooled, and ``accuracy_at_budget[i]`` is the accuracy
    when only perturbations of L2 norm <= ``l2_budgets[i]`` count (see :meth:`accuracy_at`).
    """

    attack: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float  # fooled / clean-correct
    clean_correct: Tensor
    success: Tensor
    norms: Tensor
    norm_type: str
    minimal_norm: bool
    median_norm: float | None = None
    mean_norm: float | None = None
    l2_budgets: Tensor | None = None
    accuracy_at_budget: Tensor | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def accuracy_at(self, budgets: float | Sequence[float] | Tensor) -> Tensor:
        """Accuracy under the attack restricted to perturbations of norm <= each budget."""
        b = torch.as_tensor(budgets, dtype=torch.float64).reshape(-1)
        broken = self.success[None, :] & (self.norms.double()[None, :] <= b[:, None])
        return (self.clean_correct[None, :] & ~broken).double().mean(1)

    def __str__(self) -> str:
        s = (f"{self.attack}: n={self.n}  clean {self.clean_accuracy:.4f}  "
             f"robust {self.robust_accuracy:.4f}  success {self.success_rate:.4f}")
        if self.median_norm is not None:
            s += f"  median {self.norm_type} {self.median_norm:.4f}  mean {self.mean_norm:.4f}"
        return s + f"  ({self.seconds:.1f} s)"


def _attack_name(attack: Callable) -> str:
    func = getattr(attack, "func", attack)
    return getattr(func, "__name__", type(func).__name__)


def _check_attack_result(res: object, xb: Tensor) -> None:
    """What an attack handed to :func:`robust_accuracy` returned must cover its batch."""
    if not isinstance(res, AttackResult):
        raise TypeError(f"attack must return an AttackResult, got {type(res).__name__}")
    n = xb.shape[0]
    for what in ("success", "norms"):
        value = getattr(res, what)
        if not isinstance(value, Tensor) or tuple(value.shape) != (n,):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"attack returned an AttackResult whose {what} is {got} for a "
                             f"batch of {n} images: it must be a tensor of shape ({n},)")
    if res.success.dtype != torch.bool:
        raise TypeError(f"attack returned success of dtype {res.success.dtype}, torch.bool "
                        f"expected")
    adv = res.adversarial
    if not isinstance(adv, Tensor) or adv.shape != xb.shape:
        got = tuple(adv.shape) if isinstance(adv, Tensor) else type(adv).__name__
        raise ValueError(f"attack returned adversarial {got} for a batch of shape "
                         f"{tuple(xb.shape)}: it must have the batch's shape")


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor,
                    attack: Callable[[nn.Module, Tensor, Tensor], AttackResult], *,
                    batch_size: int = 500, progress: bool = True,
                    l2_budgets: Sequence[float] | Tensor | None = None) -> RobustnessReport:
    """Attack ``(x, y)`` in batches and summarise (a :class:`RobustnessReport`).

    ``attack(model, xb, yb) -> AttackResult``, e.g. ``functools.partial(bim, eps=0.1)``. Data may
    live on the CPU: each batch is moved to the model's device. For minimal-norm attacks the
    report carries the median and mean perturbation norm and the accuracy at each L2 budget of
    ``l2_budgets`` (default: 21 points from 0 to the largest norm found).
    """
    from tqdm.auto import tqdm

    _check_model(model)
    _check_x(x)
    _check_y_shape(y, x.shape[0])
    batch_size = check_int_at_least("batch_size", batch_size, 1)
    if not callable(attack):
        raise TypeError(f"attack must be a callable (model, x, y) -> AttackResult, "
                        f"got {type(attack).__name__}")
    name = _attack_name(attack)
    device, dtype = _compute_device_dtype(model, x)
    n = x.shape[0]
    clean, succ, norms = [], [], []
    norm_type, minimal = "linf", False
    start = time.perf_counter()
    with tqdm(total=n, desc=name, unit="img", disable=not progress, leave=False) as bar:
        for i in range(0, n, batch_size):
            xb = x[i : i + batch_size].to(device=device, dtype=dtype)
            yb = y[i : i + batch_size].to(device=device)
            with torch.no_grad(), _eval_mode(model):
                logits = model(xb)
            _check_logits(logits, yb)
            res = attack(model, xb, yb)
            _check_attack_result(res, xb)
            clean.append((logits.argmax(1) == yb).cpu())
            succ.append(res.success.cpu())
            norms.append(res.norms.detach().double().cpu())
            norm_type, minimal = res.norm_type, res.minimal_norm
            bar.update(xb.shape[0])
    seconds = time.perf_counter() - start
    cc = torch.cat(clean) if clean else torch.zeros(0, dtype=torch.bool)
    sc = torch.cat(succ) if succ else torch.zeros(0, dtype=torch.bool)
    nc = torch.cat(norms) if norms else torch.zeros(0, dtype=torch.float64)
    robust = cc & ~sc
    fooled = cc & sc
    n_clean = int(cc.sum())
    report = RobustnessReport(
        attack=name, n=n,
        clean_accuracy=float(cc.double().mean()) if n else float("nan"),
        robust_accuracy=float(robust.double().mean()) if n else float("nan"),
        success_rate=float(fooled.sum()) / n_clean if n_clean else float("nan"),
        clean_correct=cc, success=sc, norms=nc, norm_type=norm_type, minimal_norm=minimal,
        seconds=seconds,
    )
    if minimal:
        fn = nc[fooled]
        report.median_norm = float(fn.median()) if fn.numel() else float("nan")
        report.mean_norm = float(fn.mean()) if fn.numel() else float("nan")
        if l2_budgets is None:
            top = float(fn.max()) if fn.numel() else 1.0
            budgets = torch.linspace(0.0, top, 21, dtype=torch.float64)
        else:
            budgets = torch.as_tensor(l2_budgets, dtype=torch.float64).reshape(-1)
            if budgets.numel() and (bool(torch.isnan(budgets).any()) or float(budgets.min()) < 0):
                raise ValueError("l2_budgets must be non-negative numbers")
        report.l2_budgets = budgets
        report.accuracy_at_budget = report.accuracy_at(budgets)
    elif l2_budgets is not None:
        raise ValueError(f"l2_budgets needs a minimal-norm attack (deepfool, carlini_wagner_l2); "
                         f"{name} is an L-inf budget attack")
    return report


ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "fgsm": fgsm,
    "bim": bim,
    "pgd": pgd,
    "deepfool": deepfool,
    "cw": carlini_wagner_l2,
}
"""The attacks by short name (what an experiment table refers to)."""
