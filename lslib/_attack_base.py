"""The machinery every attack of :mod:`lslib.attacks` shares, behind one decorator, :func:`attack`.

An attack body receives the batch already checked, moved to the model's device and dtype, in
eval mode and non-empty; it returns the adversarial batch, and
:func:`attack` turns that into an :class:`AttackResult`. What lives here:

- argument checks (model, inputs in [0, 1], integer labels, the logits' shape and the labels'
  range at the first forward, each attack's own parameters through the decorator's ``checks``);
- :func:`eval_mode` (restores every submodule's own flag) and the device/dtype of the model;
- the attack losses (cross-entropy, :func:`margin`) and one forward+backward to the input;
- the exact L-inf eps-box (:func:`linf_box`, :func:`signed_step`): ``x +- eps`` computed in
  floating point can round one ulp outside the ball, these never do;
- result assembly (:func:`finish`): back to x's dtype and device, success judged on exactly what
  is returned, norms.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lslib._checks import check_int_at_least, check_labels, check_positive

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
# the decorator
# --------------------------------------------------------------------------------------------


def attack(norm: NormType, *, minimal: bool = False, revert_failures: bool = False,
           x_dtype: bool = False, **checks: Callable[[str, object], object]) -> Callable:
    """Turns ``body(model, x, y, **params) -> adversarial`` into a checked, batched attack.

    ``checks`` maps a parameter name to ``check(name, value) -> value`` (run once per call).
    The body gets ``x`` and ``y`` on the model's device and dtype, in eval mode, never empty;
    it returns the adversarial batch, or ``(adversarial, success)``
    where ``success`` was judged on exactly those rows. ``revert_failures``: rows that do not
    fool the model are returned as ``x`` (norm 0). With ``norm="linf"`` the parameter ``eps``
    bounds the result in x's own dtype too. ``x_dtype``: the body gets ``x`` in the caller's
    own dtype (on the model's device), to take a step in that precision.
    """

    def wrap(body: Callable[..., Tensor | tuple[Tensor, Tensor | None]]
             ) -> Callable[..., AttackResult]:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def run(model: nn.Module, x: Tensor, y: Tensor, *args: object, **kwargs: object
                ) -> AttackResult:
            check_attack_args(model, x, y)
            params = signature.bind(model, x, y, *args, **kwargs)
            params.apply_defaults()
            kw = dict(list(params.arguments.items())[3:])
            for name, check in checks.items():
                kw[name] = check(name, kw[name])
            eps = kw.get("eps") if norm == "linf" else None
            with attack_context(model, x, y) as (xc, yc):
                if xc.shape[0] == 0:
                    return _empty_result(x, norm, minimal)
                xb = x.detach().to(xc.device) if x_dtype else xc
                out = body(model, xb, yc, **kw)
                adv, success = out if isinstance(out, tuple) else (out, None)
                return finish(model, x, adv, yc, norm=norm, minimal=minimal, success=success,
                              revert_failures=revert_failures, eps=eps, xc=xc)

        return run

    return wrap


# --------------------------------------------------------------------------------------------
# checks and context
# --------------------------------------------------------------------------------------------


def at_least(minimum: int) -> Callable[[str, int], int]:
    """A check for :func:`attack`: an integer >= ``minimum``."""
    return lambda name, value: check_int_at_least(name, value, minimum)


def positive_or_none(name: str, value: float | None) -> float | None:
    """A check for :func:`attack`: None or a real number > 0."""
    return None if value is None else check_positive(name, value)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
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


def compute_device_dtype(model: nn.Module, x: Tensor) -> tuple[torch.device, torch.dtype]:
    """The model's device and floating dtype (its first floating parameter or buffer)."""
    for t in chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return x.device, x.dtype


def check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_x(x: Tensor) -> None:
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


def check_y_shape(y: Tensor, n: int) -> None:
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


def check_logits(logits: Tensor, y: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (N, K), "
                         f"got shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"the model must return at least 2 classes, got {logits.shape[1]}")
    check_labels("y", y, num_classes=logits.shape[1], batch_size=logits.shape[0])


def check_attack_args(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """The checks every attack makes of its model, inputs and labels (the labels' range is
    checked at the first forward, once the number of classes is known)."""
    check_model(model)
    check_x(x)
    check_y_shape(y, x.shape[0])
    if torch.is_inference_mode_enabled():
        raise RuntimeError("attacks need autograd: call them outside torch.inference_mode()")


@contextmanager
def attack_context(model: nn.Module, x: Tensor, y: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Checks the arguments, moves x and y to the model's device/dtype, runs in eval mode."""
    check_attack_args(model, x, y)
    device, dtype = compute_device_dtype(model, x)
    xc = x.detach().to(device=device, dtype=dtype)
    yc = y.detach().to(device=device, dtype=torch.long)
    with eval_mode(model):
        yield xc, yc


# --------------------------------------------------------------------------------------------
# losses and gradients
# --------------------------------------------------------------------------------------------


def margin(logits: Tensor, y: Tensor) -> Tensor:
    r"""The Carlini-Wagner margin :math:`\max_{j \ne y} z_j - z_y` (N,): positive iff the point
    is misclassified. The max masks the true class with :math:`-\infty`, right for any sign."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def resolve_loss(name: str, loss: AttackLoss) -> Callable[[Tensor, Tensor], Tensor]:
    """``"ce"``, ``"margin"`` or a callable per-sample loss, as a callable."""
    if isinstance(loss, str) and loss in ("ce", "margin"):
        return cross_entropy if loss == "ce" else margin
    if isinstance(loss, str) or not callable(loss):
        got = repr(loss) if isinstance(loss, str) else type(loss).__name__
        raise (ValueError if isinstance(loss, str) else TypeError)(
            f"{name} must be 'ce', 'margin' or a callable (logits, y) -> (N,), got {got}")
    return loss


def loss_and_grad(model: nn.Module, xa: Tensor, y: Tensor,
                  loss_fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """One forward and one backward: (d sum(loss) / d xa, logits), in the model's dtype. Only
    the input's gradient is computed."""
    xg = xa.detach().to(compute_device_dtype(model, xa)[1]).requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        check_logits(logits, y)
        losses = loss_fn(logits, y)
        if not isinstance(losses, Tensor) or losses.shape != (xa.shape[0],):
            shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(f"the attack loss must return per-sample losses of shape "
                             f"({xa.shape[0]},), got {shape} (use reduction='none')")
        grad = input_grad(losses.sum(), xg)
    return grad, logits.detach()


def input_grad(out: Tensor, xg: Tensor, grad_outputs: Tensor | None = None,
               retain_graph: bool = False) -> Tensor:
    """d out / d xg (zeros where out does not depend on xg); no parameter gradient."""
    if not out.requires_grad:
        raise RuntimeError("the model's output does not depend differentiably on its input "
                           "(is the model wrapped in torch.no_grad?)")
    (g,) = torch.autograd.grad(out, xg, grad_outputs, retain_graph=retain_graph,
                               allow_unused=True)
    return torch.zeros_like(xg) if g is None else g


def clean_logits(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The model's logits on the clean batch (no graph), checked against the labels."""
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, y)
    return logits


# --------------------------------------------------------------------------------------------
# the exact L-inf box
# --------------------------------------------------------------------------------------------


def rows(mask: Tensor, ndim: int) -> Tensor:
    """A (N,) tensor shaped to broadcast over (N, ...)."""
    return mask.view(-1, *([1] * (ndim - 1)))


def linf_box(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
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


def signed_step(x: Tensor, direction: Tensor, eps: float) -> Tensor:
    """``clip(x + eps * sign(direction), 0, 1)``, rounded into the eps-ball exactly (see
    :func:`linf_box`: where the sum rounds one ulp too far, the next float towards x is inside)."""
    e = float(torch.tensor(eps, dtype=x.dtype))
    adv = torch.add(x, torch.sign(direction), alpha=e).clamp_(0.0, 1.0)
    return _select(torch.sub(adv, x).abs_().gt_(e), torch.nextafter(adv, x), adv)


def _select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``torch.where(mask, a, b)`` for FINITE a and b and a float mask of 0s and 1s, as
    ``lerp(b, a, mask)``: exact for such weights and several times faster on the CPU, where
    ``torch.where`` runs element by element."""
    return torch.lerp(b, a, mask)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


def finish(model: nn.Module, x: Tensor, adv: Tensor, y: Tensor, *, norm: NormType,
           minimal: bool, success: Tensor | None = None, revert_failures: bool = False,
           eps: float | None = None, xc: Tensor | None = None) -> AttackResult:
    """Cast back to x's dtype/device, evaluate success on exactly what is returned, norms.

    Where the model's dtype differs from x's: rows the attack left unchanged (equal to ``xc``)
    are ``x`` itself, and with ``eps`` the cast result is projected once more onto the eps-ball
    in x's dtype."""
    out = adv.detach().to(device=x.device, dtype=x.dtype)
    if out.dtype != adv.dtype:  # computed in the model's dtype: mind the rounding of the cast
        success = None  # re-evaluate what is returned
        if eps is not None:
            lo, hi = linf_box(x.detach(), eps)
            out = torch.clamp(out, lo, hi)
        if xc is not None:
            same = (adv == xc).flatten(1).all(1).to(x.device)
            out = torch.where(rows(same, out.ndim), x.detach(), out)
    if success is None:
        device, dtype = compute_device_dtype(model, x)
        with torch.no_grad():
            success = model(out.to(device=device, dtype=dtype)).argmax(1) != y
        if revert_failures and not bool(success.all()):
            out = torch.where(rows(~success.to(x.device), out.ndim), x.detach(), out)
    delta = torch.sub(out, x.detach()).flatten(1)
    norms = delta.abs_().amax(1) if norm == "linf" else delta.norm(dim=1)
    if out.data_ptr() == x.data_ptr():  # never hand back (a view of) the caller's tensor
        out = out.clone()
    return AttackResult(out, success.to(x.device), norms, norm, minimal)


def _empty_result(x: Tensor, norm: NormType, minimal: bool) -> AttackResult:
    return AttackResult(x.detach().clone(), torch.zeros(0, dtype=torch.bool, device=x.device),
                        torch.zeros(0, dtype=x.dtype, device=x.device), norm, minimal)
