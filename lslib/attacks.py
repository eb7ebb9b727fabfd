r"""Adversarial attacks: FGSM, BIM/PGD (L-inf), DeepFool and Carlini-Wagner (L2), batched.

Each attack is written as the paper that introduced it states it; the shared machinery (argument
checks, eval mode, the model's device and dtype, the exact eps-box, result assembly)
lives in :mod:`lslib._attack_base`, behind the decorator ``@attack``. Conventions:

- Inputs ``x`` lie in [0, 1], shape (N, ...); labels ``y`` are integer class indices (N,).
  Normalisation belongs inside the model (see :mod:`lslib.models`).
- Every attack returns an :class:`AttackResult` whose ``adversarial`` has the shape, dtype and
  device of ``x``; ``success`` is exactly ``model(adversarial).argmax(1) != y``, so a point the
  model already misclassifies is a success with a zero perturbation (in :func:`robust_accuracy`
  a failure of the model, as in the paper).
- Nothing is mutated: not ``x``, not the model's parameters, buffers or ``.grad`` (gradients are
  taken with respect to the input only), not the train/eval flag of any submodule (the attack
  runs in eval mode and restores each flag).

The loss of FGSM and BIM/PGD (``loss=``) is maximised: ``"ce"`` (default), cross-entropy against
the TRUE label; ``"margin"``, the Carlini-Wagner margin :math:`\max_{j \ne y} z_j - z_y`; or any
callable ``loss(logits, y) -> (N,)``, e.g. ``lslib.losses.SmoothCrossEntropyLoss(method, alpha,
reduction="none")``, the loss against the model's own smoothed target that the paper's original
code attacked (at large alpha a step on it can *raise* the true-class probability, so robustness
looks better than it is; the book shows both protocols).

DeepFool and Carlini-Wagner are minimal-norm attacks: their ``norms`` are the L2 norms of the
perturbations they found, and :func:`robust_accuracy` turns those into the median/mean norm and an
accuracy-versus-L2-budget curve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lslib._attack_base import (
    AttackLoss,
    AttackResult,
    at_least,
    attack,
    attack_context,
    check_logits,
    check_model,
    check_x,
    check_y_shape,
    clean_logits,
    compute_device_dtype,
    eval_mode,
    input_grad,
    linf_box,
    loss_and_grad,
    margin,
    positive_or_none,
    resolve_loss,
    rows,
    signed_step,
)
from lslib._checks import check_choice, check_int_at_least, check_nonnegative, check_positive

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
    "margin",
    "robust_accuracy",
    "ATTACKS",
]


# --------------------------------------------------------------------------------------------
# L-inf: FGSM, BIM, PGD
# --------------------------------------------------------------------------------------------


@attack("linf", x_dtype=True, eps=check_nonnegative, loss=resolve_loss)
def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
         loss: AttackLoss = "ce") -> AttackResult:
    r"""Fast gradient sign method (Goodfellow et al. 2015), one signed-gradient step:

    .. math:: x' = \operatorname{clip}_{[0, 1]}\big(x + \epsilon\,
              \operatorname{sign}(\nabla_x \mathcal{L}(f(x), y))\big)

    One forward and one backward. It is :func:`bim` with one step of ``eps`` (the tests check
    it). The result lies in the eps-ball around ``x`` (exactly, as computed in x's dtype) and in
    [0, 1].
    """
    grad, _ = loss_and_grad(model, x, y, loss)
    return signed_step(x, grad.to(x.dtype), eps)  # in x's own precision: exactly in the ball


@attack("linf", eps=check_nonnegative, step_size=positive_or_none, steps=at_least(1),
        restarts=at_least(1), loss=resolve_loss)
def bim(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, step_size: float | None = None,
        steps: int = 10, random_start: bool = False, restarts: int = 1,
        loss: AttackLoss = "ce", generator: torch.Generator | None = None,
        early_stop: bool = False) -> AttackResult:
    r"""Basic iterative method (Kurakin et al. 2017); with ``random_start`` it is L-inf PGD:

    .. math:: x^{t+1} = \Pi_{B_\infty(x, \epsilon) \cap [0, 1]^d}\big(x^t + a\,
              \operatorname{sign}(\nabla_x \mathcal{L}(f(x^t), y))\big)

    ``steps`` steps of ``step_size`` a (default ``2.5 * eps / steps``, so that the path can cross
    the ball), from ``x`` or, with ``random_start``, from a uniform draw in the ball. One forward
    and one backward per step. A sample's returned point is its last iterate, unless that is
    not adversarial while an earlier iterate was: then the first adversarial iterate is
    returned, so the attack is never weaker than plain BIM. ``restarts`` > 1 (needs
    ``random_start``) re-attacks, from a new random start, only the samples not yet fooled.
    ``generator`` (on the model's device) makes the random starts reproducible.

    ``early_stop``: a sample leaves the loop at its first adversarial iterate, which is
    returned. Which samples succeed is the same as without it (a sample counts as fooled when
    any iterate fooled it), so robust accuracy is unchanged while steps on fooled samples are
    saved.
    """
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (without it every restart is "
                         "the same deterministic run)")
    step = 2.5 * eps / steps if step_size is None else step_size
    lo, hi = linf_box(x, eps)
    todo = torch.arange(x.shape[0], device=x.device)  # the samples not yet fooled
    for restart in range(restarts):
        start = _random_start(x[todo], eps, lo[todo], hi[todo], generator) if random_start \
            else x
        adv, ok = _bim_run(model, start, y[todo], lo[todo], hi[todo], steps=steps, step=step,
                           loss=loss, early_stop=early_stop)
        if restart == 0:
            final, success = adv, ok
        else:
            final[todo], success[todo] = adv, ok
        todo = todo[~ok]
        if todo.numel() == 0:
            break
    # success was judged on the returned rows in one batch only for one plain run
    return final, (success if restarts == 1 and not early_stop else None)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, step_size: float | None = None,
        steps: int = 40, restarts: int = 1, loss: AttackLoss = "ce",
        generator: torch.Generator | None = None, early_stop: bool = False) -> AttackResult:
    """L-inf projected gradient descent (Madry et al. 2018): :func:`bim` with a random start."""
    return bim(model, x, y, eps, step_size=step_size, steps=steps, random_start=True,
               restarts=restarts, loss=loss, generator=generator, early_stop=early_stop)


def bim_last_iterate(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
                     step_size: float | None = None, steps: int = 10,
                     random_start: bool = False, loss: AttackLoss = "ce",
                     generator: torch.Generator | None = None) -> Tensor:
    """The last iterate of BIM (of L-inf PGD with ``random_start``), and nothing else.

    The same steps as :func:`bim`, but no forward pass judges the result and no earlier iterate
    is kept: the final iterate is returned as a tensor of x's shape and dtype, whether it fools
    the model or not. This is what PGD adversarial training (Madry et al. 2018) trains on;
    :func:`bim` is the attack. Runs in eval mode, as every attack.
    """
    eps = check_nonnegative("eps", eps)
    steps = check_int_at_least("steps", steps, 1)
    step = 2.5 * eps / steps if step_size is None else check_positive("step_size", step_size)
    loss_fn = resolve_loss("loss", loss)
    with attack_context(model, x, y) as (xc, yc):
        if xc.shape[0] == 0:
            return x.detach().clone()
        lo, hi = linf_box(xc, eps)
        adv = _random_start(xc, eps, lo, hi, generator) if random_start else xc
        for _ in range(steps):
            grad, _ = loss_and_grad(model, adv, yc, loss_fn)
            adv = _linf_step(adv, grad, step, lo, hi)
        if adv.dtype != x.dtype:  # computed in the model's dtype: the ball must hold in x's too
            lo, hi = linf_box(x.detach(), eps)
            return torch.clamp(adv.to(device=x.device, dtype=x.dtype), lo, hi)
        return adv.to(device=x.device)


# --------------------------------------------------------------------------------------------
# L2 minimal-norm: DeepFool, Carlini-Wagner
# --------------------------------------------------------------------------------------------


def _check_surrogate(name: str, value: object) -> tuple[float, ...]:
    """A check for :func:`deepfool`'s ``relu_surrogate``: a sequence of real numbers > 0."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of softplus sharpnesses (numbers > 0), "
                        f"got {type(value).__name__}")
    return tuple(check_positive(f"{name}[{i}]", v) for i, v in enumerate(value))


@attack("l2", minimal=True, steps=at_least(1), overshoot=check_nonnegative,
        candidates=at_least(2), relu_surrogate=_check_surrogate)
def deepfool(model: nn.Module, x: Tensor, y: Tensor, *, steps: int = 50, overshoot: float = 0.02,
             candidates: int = 10, relu_surrogate: Sequence[float] = ()) -> AttackResult:
    r"""DeepFool, L2, untargeted (Moosavi-Dezfooli et al. 2016), batched over samples and classes.

    At each iterate :math:`x^t` every candidate boundary :math:`f_k = z_k - z_y = 0` is
    linearised, :math:`w_k = \nabla_x f_k(x^t)`, and the step goes to the nearest:

    .. math:: l = \arg\min_k \frac{|f_k(x^t)|}{\|w_k\|_2}, \qquad
              r^t = \Big(\frac{|f_l(x^t)|}{\|w_l\|_2} + 10^{-4}\Big) \frac{w_l}{\|w_l\|_2},
              \qquad x^{t+1} = \operatorname{clip}_{[0,1]}\Big(x + (1 + \eta) \sum_{s \le t}
              r^s\Big)

    The candidates are the top-``candidates`` classes of the clean logits; one forward per
    iterate and one backward per candidate (for the whole batch at once). The 1e-4 push is that
    of the authors' reference code: without it a point whose steps are partly clipped away
    approaches the boundary geometrically and may never cross it. The overshoot :math:`\eta`
    applies to the total perturbation; a sample stops as soon as its clipped iterate is
    misclassified. On a linear classifier one step lands at exactly ``(1 + overshoot) *
    (d + 1e-4)``, d the distance to the boundary. Samples the model already misclassifies are
    returned unchanged (norm 0, success); where ``steps`` run out, the last iterate.

    ``relu_surrogate`` (default: none) is a fallback for ReLU networks. Where every unit of a
    ReLU layer is off, the logits do not depend on the input, their gradient is exactly 0 and
    DeepFool's step is 0: a linearised step that turns the true class's last units off can land
    there and stay, though the point can be moved (see :mod:`lslib.survivors`). Each point
    DeepFool leaves is attacked again from ``x``, once per sharpness :math:`\beta` of
    ``relu_surrogate``, by the same DeepFool whose backward pass takes every :class:`~torch.nn.ReLU`
    module of ``model`` as :math:`\mathrm{softplus}_\beta(u) = \log(1 + e^{\beta u}) / \beta`
    (derivative :math:`\sigma(\beta u)`, never 0) while its forward pass stays exact: a backward
    pass differentiable approximation (BPDA, Athalye et al. 2018). Success is judged on the
    exact model, and of the perturbations that fool it the smallest is kept.
    """
    adv = _deepfool_run(model, x, y, steps=steps, overshoot=overshoot, candidates=candidates)
    if not relu_surrogate:
        return adv
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("relu_surrogate needs a model with nn.ReLU modules; this one has none")
    with torch.no_grad():
        left = (model(adv).argmax(1) == y).nonzero().squeeze(1)
    best = torch.full((left.numel(),), math.inf, dtype=x.dtype, device=x.device)
    for beta in relu_surrogate:
        if left.numel() == 0:
            break
        with _softplus_backward(relus, beta):
            cand = _deepfool_run(model, x[left], y[left], steps=steps, overshoot=overshoot,
                                 candidates=candidates)
        with torch.no_grad():
            fooled = model(cand).argmax(1) != y[left]
        norm = (cand - x[left]).flatten(1).norm(dim=1)
        better = fooled & (norm < best)
        best = torch.where(better, norm, best)
        adv[left[better]] = cand[better]
    return adv


def _deepfool_run(model: nn.Module, x: Tensor, y: Tensor, *, steps: int, overshoot: float,
                  candidates: int) -> Tensor:
    """DeepFool's iterations (see :func:`deepfool`): the adversarial batch."""
    logits = clean_logits(model, x, y)
    k = min(candidates, logits.shape[1])
    cand = logits.topk(k, dim=1).indices  # (N, k): column 0 is the prediction
    adv = x.clone()
    active = (cand[:, 0] == y).nonzero().squeeze(1)  # misclassified already: x is the answer
    x0, ya, others = x[active], y[active], cand[active, 1:]
    r_total = torch.zeros_like(x0)
    xa = x0
    for _ in range(steps):
        if active.numel() == 0:
            break
        # 1. where the iterate stands
        xg = xa.detach().requires_grad_(True)
        with torch.enable_grad():
            z = model(xg)
        fooled = z.detach().argmax(1) != ya
        adv[active[fooled]] = xa[fooled]
        if bool(fooled.all()):
            break
        # 2. the nearest linearised boundary, and the step onto it (plus the push)
        dist, w = _nearest_boundary(z, xg, ya, others)
        assert dist.shape == (xa.shape[0],) and w.shape == xa.shape
        r = rows((dist + _DF_PUSH) / w.flatten(1).norm(dim=1).clamp_min(1e-12), w.ndim) * w
        # 3. the samples still correct take it; the overshoot scales the total
        keep = ~fooled
        active, x0, ya, others = active[keep], x0[keep], ya[keep], others[keep]
        r_total = r_total[keep] + r[keep]
        xa = (x0 + (1.0 + overshoot) * r_total).clamp(0.0, 1.0)
    else:
        adv[active] = xa  # out of steps: the last iterate, fooled or not
    return adv


@contextmanager
def _softplus_backward(relus: list[nn.Module], beta: float) -> Iterator[None]:
    r"""For the duration, each module of ``relus`` computes ReLU exactly forward and
    :math:`\sigma(\beta u)` as its derivative backward (see :func:`deepfool`); in-place ReLUs
    run out of place meanwhile. Hooks and flags are restored however the block ends."""
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        smooth = F.softplus(inputs[0], beta=beta)
        return smooth + (out - smooth).detach()

    flags = [(m, getattr(m, "inplace", False)) for m in relus]
    handles = []
    try:
        for m, _ in flags:
            m.inplace = False
            handles.append(m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.inplace = flag


@attack("l2", minimal=True, revert_failures=True, binary_search_steps=at_least(1),
        steps=at_least(1), lr=check_positive, initial_const=check_positive,
        kappa=check_nonnegative, start=lambda name, v: check_choice(name, v, _CW_STARTS))
def carlini_wagner_l2(model: nn.Module, x: Tensor, y: Tensor, *, binary_search_steps: int = 9,
                      steps: int = 1000, lr: float = 0.01, initial_const: float = 1e-3,
                      kappa: float = 0.0, abort_early: bool = True,
                      start: str = "input") -> AttackResult:
    r"""Carlini-Wagner L2, untargeted (Carlini & Wagner 2017), batched, per-sample search over c.

    Minimises over :math:`w`, with :math:`x' = (\tanh w + 1) / 2` (so that :math:`x'` stays in
    [0, 1]) and :func:`margin` :math:`m(z) = \max_{j \ne y} z_j - z_y`,

    .. math:: \|x' - x\|_2^2 + c\, \max(\kappa - m(f(x')), 0)

    with Adam (``lr``), starting from ``atanh((2x - 1)(1 - 1e-6))`` so that pixels at exactly 0
    or 1 can move. ``c`` is searched per sample: x10 until the first success, then bisection,
    over ``binary_search_steps`` runs of at most ``steps`` Adam steps (with 10 or more search
    steps the last run uses the upper bound, as in the original code). ``abort_early``: every
    tenth of the steps, a sample leaves the run when its own objective has not fallen by 0.01%
    since the last check (the reference rule, applied per sample: a rule on the batch's total
    stops samples that are still progressing, and left points unfooled that a run without it
    fools). Over all runs and steps the smallest-L2 point with margin >= kappa is kept; a final
    bisection along the segment from x to that point (10 forward passes) trims the overshoot of
    Adam's last step and never lengthens it. Where no adversarial was found the original input
    is returned (success False, norm 0); samples already misclassified are returned unchanged.

    ``start``: where each run of Adam starts. ``"input"`` (default, as Carlini and Wagner): at
    x. ``"deepfool"``: at the adversarial that :func:`deepfool` (default settings) finds, where
    it finds one; CW then only has to shrink a perturbation that already crosses the boundary,
    and never returns a longer one. On models whose logits are nearly flat around the data
    (gradient masking: a smoothed model's logit gradient can be a few hundredths), CW from x
    needs a constant c beyond what a short search reaches and can still stall short of the
    boundary that DeepFool's normalised steps cross.
    """
    n = x.shape[0]
    todo = (clean_logits(model, x, y).argmax(1) == y).nonzero().squeeze(1)
    best = _Best(x.clone(), torch.full((n,), math.inf, dtype=x.dtype, device=x.device))
    const = torch.full((n,), initial_const, dtype=x.dtype, device=x.device)
    lower, upper = torch.zeros_like(const), torch.full_like(const, math.inf)
    w0 = _to_tanh_space(x if start == "input" else _deepfool_start(model, x, y))
    for search in range(binary_search_steps):
        if todo.numel() == 0:
            break
        if binary_search_steps >= 10 and search == binary_search_steps - 1:
            const = upper.clamp(max=1e10)  # repeat the search once at the upper bound
        found = _cw_run(model, x, y, w0, const, todo, best, steps=steps, lr=lr, kappa=kappa,
                        abort_early=abort_early)
        # the search over c: x10 until the first success, then bisection
        f, c = found[todo], const[todo]
        upper[todo] = torch.where(f, torch.minimum(upper[todo], c), upper[todo])
        lower[todo] = torch.where(f, lower[todo], torch.maximum(lower[todo], c))
        up, lo = upper[todo], lower[todo]
        const[todo] = torch.where(torch.isinf(up), c * 10, (lo + up) / 2)
    return _trim_to_boundary(model, x, best.adv, y, kappa, torch.isfinite(best.l2))


# --------------------------------------------------------------------------------------------
# the attacks' stages
# --------------------------------------------------------------------------------------------


def _bim_run(model: nn.Module, adv: Tensor, y: Tensor, lo: Tensor, hi: Tensor, *, steps: int,
             step: float, loss: Callable[[Tensor, Tensor], Tensor], early_stop: bool
             ) -> tuple[Tensor, Tensor]:
    """One BIM run from ``adv``: (each sample's returned point, success), fresh tensors."""
    first = adv.clone()  # each sample's first adversarial iterate, where there is one
    found = torch.zeros(adv.shape[0], dtype=torch.bool, device=adv.device)
    active = torch.arange(adv.shape[0], device=adv.device)  # the samples still iterated
    for _ in range(steps):
        grad, logits = loss_and_grad(model, adv, y, loss)
        hit = logits.argmax(1) != y  # the iterate just differentiated fools the model
        new = hit & ~found[active]
        first[active[new]] = adv[new]
        found[active[new]] = True
        if early_stop and bool(hit.any()):  # fooled samples leave at their first success
            keep = ~hit
            active, adv, grad, y, lo, hi = (t[keep] for t in (active, adv, grad, y, lo, hi))
            if active.numel() == 0:
                break
        adv = _linf_step(adv, grad, step, lo, hi)
    if active.numel():
        with torch.no_grad():
            last_hit = model(adv).argmax(1) != y
        last = last_hit | ~found[active]  # keep the last iterate unless only an earlier fooled
        first[active[last]] = adv[last]
        found[active] |= last_hit
    return first, found


def _random_start(x: Tensor, eps: float, lo: Tensor, hi: Tensor,
                  generator: torch.Generator | None) -> Tensor:
    """A uniform draw from the eps-ball around x, projected onto the box [lo, hi] (PGD's start)."""
    noise = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
    return torch.clamp(x + noise, lo, hi)


def _linf_step(adv: Tensor, grad: Tensor, step: float, lo: Tensor, hi: Tensor) -> Tensor:
    """``clip(adv + step * sign(grad), lo, hi)`` as a fresh tensor."""
    return torch.add(adv, torch.sign(grad), alpha=step).clamp_(lo, hi)


_DF_PUSH = 1e-4  # added to each DeepFool step's distance, as in the authors' reference code


def _nearest_boundary(z: Tensor, xg: Tensor, y: Tensor, others: Tensor) -> tuple[Tensor, Tensor]:
    """DeepFool's linearisation: over the candidate classes k (columns of ``others``), the
    boundary ``f_k = z_k - z_y = 0`` nearest in the linear approximation at ``xg``:
    ``(|f_l| / ||w_l||, w_l)`` with ``w_k = grad f_k``. One backward per candidate."""
    zd = z.detach()
    zy = zd.gather(1, y[:, None])
    best_dist = torch.full((z.shape[0],), math.inf, dtype=z.dtype, device=z.device)
    best_w = torch.zeros_like(xg)
    last = others.shape[1] - 1
    for j in range(others.shape[1]):
        cj = others[:, j : j + 1]
        f_grad = torch.zeros_like(z).scatter_(1, cj, 1.0).scatter_(1, y[:, None], -1.0)
        w = input_grad(z, xg, f_grad, retain_graph=j < last)  # grad of z_k - z_y
        dist = (zd.gather(1, cj) - zy).squeeze(1).abs() / w.flatten(1).norm(dim=1).clamp_min(
            1e-12)
        better = dist < best_dist
        best_dist = torch.where(better, dist, best_dist)
        best_w[better] = w[better]
    return best_dist, best_w


@dataclass
class _Best:
    """CW's best adversarial so far per sample (``l2`` is its squared L2 norm, inf if none)."""

    adv: Tensor
    l2: Tensor


@dataclass
class _Adam:
    """Adam's state for one run (per element; the samples of a run share the step count)."""

    lr: float
    m: Tensor
    v: Tensor
    t: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def step(self, w: Tensor, grad: Tensor) -> None:
        """One Adam step on ``w``, in place."""
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = self.v.sqrt().div_(math.sqrt(1 - b2**self.t)).add_(self.eps)
        w.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))

    def keep(self, mask: Tensor) -> None:
        self.m, self.v = self.m[mask], self.v[mask]


_CW_STARTS = ("input", "deepfool")


def _deepfool_start(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """DeepFool's adversarial where it found one, else x (CW's ``start="deepfool"``)."""
    adv = deepfool.__wrapped__(model, x, y, steps=50, overshoot=0.02, candidates=10)
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    return torch.where(rows(fooled, x.ndim), adv, x)


def _to_tanh_space(x: Tensor) -> Tensor:
    # shrink [0, 1] into the open interval, so that pixels at exactly 0 or 1 get a finite w
    return torch.atanh((2.0 * x - 1.0) * (1.0 - 1e-6))


def _from_tanh_space(w: Tensor) -> Tensor:
    return (torch.tanh(w) + 1.0) * 0.5


def _cw_objective(model: nn.Module, w: Tensor, x: Tensor, y: Tensor, c: Tensor, kappa: float
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CW's objective at ``w`` (per sample) and what it saw: (objective, x', ||x' - x||^2,
    logits)."""
    xa = _from_tanh_space(w)
    z = model(xa)
    l2sq = (xa - x).flatten(1).square().sum(1)
    return l2sq + c * (kappa - margin(z, y)).clamp(min=0.0), xa, l2sq, z


def _cw_run(model: nn.Module, x: Tensor, y: Tensor, w0: Tensor, const: Tensor, todo: Tensor,
            best: _Best, *, steps: int, lr: float, kappa: float, abort_early: bool) -> Tensor:
    """One run of at most ``steps`` Adam steps at each sample's c, over the samples ``todo``.
    Updates ``best``; returns which samples (N,) the run fooled."""
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    idx, xs, ys, c, w = todo, x[todo], y[todo], const[todo], w0[todo]
    adam = _Adam(lr, torch.zeros_like(w), torch.zeros_like(w))
    prev = torch.full_like(c, math.inf)
    check_every = max(1, math.ceil(steps / 10))
    for step in range(steps):
        wg = w.detach().requires_grad_(True)
        with torch.enable_grad():
            loss, xa, l2sq, z = _cw_objective(model, wg, xs, ys, c, kappa)
            grad = input_grad(loss.sum(), wg)
        with torch.no_grad():
            loss, l2sq, z = loss.detach(), l2sq.detach(), z.detach()
            hit = z.argmax(1) != ys
            if kappa > 0:
                hit &= margin(z, ys) >= kappa
            found[idx[hit]] = True
            better = hit & (l2sq < best.l2[idx])
            best.l2[idx[better]] = l2sq[better]
            best.adv[idx[better]] = xa.detach()[better]
            adam.step(w, grad)
            if abort_early and step % check_every == 0:  # a sample whose objective stalls
                keep = loss <= 0.9999 * prev  # leaves the run
                prev = loss
                if not bool(keep.all()):
                    idx, xs, ys, c, w, prev = (t[keep] for t in (idx, xs, ys, c, w, prev))
                    adam.keep(keep)
                    if idx.numel() == 0:
                        break
    return found


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
            z = model(xs + rows(mid, xs.ndim) * d)
            ok = (z.argmax(1) != ys) & (margin(z, ys) >= kappa)
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
    out = adv.clone()
    out[idx] = xs + rows(hi, xs.ndim) * d
    return out


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

    check_model(model)
    check_x(x)
    check_y_shape(y, x.shape[0])
    batch_size = check_int_at_least("batch_size", batch_size, 1)
    if not callable(attack):
        raise TypeError(f"attack must be a callable (model, x, y) -> AttackResult, "
                        f"got {type(attack).__name__}")
    name = _attack_name(attack)
    device, dtype = compute_device_dtype(model, x)
    n = x.shape[0]
    clean, succ, norms = [], [], []
    norm_type, minimal = "linf", False
    start = time.perf_counter()
    with tqdm(total=n, desc=name, unit="img", disable=not progress, leave=False) as bar:
        for i in range(0, n, batch_size):
            xb = x[i : i + batch_size].to(device=device, dtype=dtype)
            yb = y[i : i + batch_size].to(device=device)
            with torch.no_grad(), eval_mode(model):
                logits = model(xb)
            check_logits(logits, yb)
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
