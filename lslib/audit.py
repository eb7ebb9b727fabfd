r"""Is it real robustness? The gradient-masking checklist (Athalye et al. 2018; Carlini et al.
2019).

A defence that only hides the gradient (saturated softmax, squeezed logits, a non-differentiable
step) makes gradient attacks fail while the model stays easy to fool. :func:`audit` measures the
signs listed in "On evaluating adversarial robustness" and reports a pass or a fail for each:

1. ``single_step_beats_iterative``: FGSM reaches a lower accuracy than BIM/PGD at the same eps;
2. ``transfer_beats_white_box``: adversarials crafted on another (e.g. naturally trained) model
   fool the target more often than its own white-box attack;
3. ``gradient_free_beats_white_box``: the gradient-free Square attack (:func:`square_linf`) finds
   adversarials that the white-box attack missed;
4. ``no_zero_at_large_eps``: accuracy does not fall to ~0 as eps grows to 1 (an L-inf ball of radius
   1 around an image in [0, 1] holds every image, so an attack that works must reach 0);
5. ``not_monotone_in_eps``: accuracy rises somewhere as eps grows (a stronger budget is never
   weaker for a working attack);
6. ``autoattack_beats_white_box``: AutoAttack (Croce & Hein 2020, :func:`autoattack`: the
   standard ensemble APGD-CE, APGD-T, FAB-T and Square with its default budgets, or the cheaper
   APGD-CE + APGD-T as a named option) finds adversarials that the white-box attack missed (run
   where the ``pyautoattack`` package imports).

:func:`audit` runs the checklist's attacks on one model; :func:`compare_protocols` runs both
protocols on several models and keeps, per attack, which points stayed robust, from which
:func:`checklist` reads the same signs without attacking again (what :func:`audit_setup`, the
set-up audit of the book, does).

:func:`square_linf` is the L-inf Square attack of Andriushchenko et al. (2020): random search over
vertices of the eps-ball, updating square windows whose size shrinks on the authors' schedule,
keeping an update only when it lowers the margin loss ``z_y - max_{j != y} z_j``. It uses no
gradient, so gradient masking cannot stop it. :func:`transfer_attack` crafts adversarials on a
source model and evaluates them on the target. ``python -m lslib.audit`` audits a saved model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lslib._checks import check_int_at_least, check_nonnegative, check_unit_interval
from lslib.attacks import AttackResult, bim, fgsm

__all__ = [
    "autoattack",
    "autoattack_steps",
    "autoattack_available",
    "AUTOATTACK_CHEAP",
    "AUTOATTACK_STANDARD",
    "square_linf",
    "transfer_attack",
    "Sign",
    "AuditReport",
    "audit",
    "SIGNS",
    "load_checkpoint",
    "main",
    "AUDIT_DEFENCES",
    "AuditSettings",
    "PROTOCOL_ATTACKS",
    "audit_setup",
    "compare_protocols",
    "checklist",
    "encode_points",
    "decode_points",
    "AUTOATTACK_STEP_ROWS",
    "WHITE_BOX",
    "read_audit",
]

SIGNS = (
    "single_step_beats_iterative",
    "transfer_beats_white_box",
    "gradient_free_beats_white_box",
    "no_zero_at_large_eps",
    "not_monotone_in_eps",
    "autoattack_beats_white_box",
)

Attack = Callable[[nn.Module, Tensor, Tensor], AttackResult]


def _check_inputs(model: nn.Module, x: Tensor, y: Tensor) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.ndim != 4:
        raise ValueError("x must be a floating image tensor of shape (N, C, H, W) in [0, 1]")
    if not isinstance(y, Tensor) or y.dtype != torch.long or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a long tensor of shape ({x.shape[0]},)")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x must lie in [0, 1]")


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``z_y - max_{j != y} z_j`` (N,): negative iff misclassified (ties count as fooled)."""
    z = model(x)
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return zy - other


def _p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The authors' schedule: the window's share of the pixels halves at fixed fractions of a
    10 000-iteration run (rescaled to ``n_iters``)."""
    it = int(it / n_iters * 10000)
    for bound, div in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32),
                       (500, 16), (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / div
    return p_init


def square_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, queries: int = 1000,
                p_init: float = 0.8, generator: torch.Generator | None = None) -> AttackResult:
    """The L-inf Square attack (Andriushchenko et al. 2020), untargeted, margin loss.

    Starts from vertical stripes of ``+-eps``; each of ``queries - 1`` iterations redraws, for every
    sample not yet fooled, one square window (side ``round(sqrt(p * H * W))`` with ``p`` from the
    authors' schedule, at a random position per sample) with one random ``+-eps`` per channel, and
    keeps it when the margin ``z_y - max_{j != y} z_j`` drops (a window that would not change the
    image has its signs flipped). ``p_init`` 0.8 is AutoAttack's setting (the Square paper's 0.05
    is for ImageNet; on MNIST it is clearly weaker at the same queries). Uses forward passes only
    (no gradient). ``generator`` (a CPU generator) makes it reproducible. Returns an
    :class:`lslib.attacks.AttackResult` with L-inf norms.
    """
    _check_inputs(model, x, y)
    eps = check_nonnegative("eps", eps)
    queries = check_int_at_least("queries", queries, 1)
    p_init = check_unit_interval("p_init", p_init)
    device = _device(model)
    was = model.training
    model.eval()
    try:
        xc = x.detach().to(device)
        yc = y.to(device)
        n, c, h, w = xc.shape
        from lslib._attack_base import linf_box as _linf_box

        lo, hi = _linf_box(xc, eps)  # exact: (xc - eps) can round one ulp outside the ball

        def sign(shape: tuple[int, ...]) -> Tensor:
            r = torch.randint(0, 2, shape, generator=generator).to(device=device, dtype=xc.dtype)
            return (2 * r - 1) * eps

        best = torch.clamp(xc + sign((n, c, 1, w)), lo, hi)
        margin = _margin(model, best, yc)
        rows = torch.arange(h, device=device).view(1, 1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, 1, w)
        for it in range(queries - 1):
            active = (margin > 0).nonzero().squeeze(1)
            if active.numel() == 0 or eps == 0:
                break
            m = active.numel()
            p = _p_selection(p_init, it, queries)
            s = max(min(int(round((p * h * w) ** 0.5)), h, w), 1)
            top = torch.randint(0, h - s + 1, (m, 1, 1, 1), generator=generator).to(device)
            left = torch.randint(0, w - s + 1, (m, 1, 1, 1), generator=generator).to(device)
            window = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
            delta = sign((m, c, 1, 1))
            cand = torch.clamp(torch.where(window, xc[active] + delta, best[active]),
                               lo[active], hi[active])
            # a window equal to the current one wastes the query: flip its signs (as the authors
            # redraw until the window changes; with one channel there is only the flip)
            same = (cand == best[active]).flatten(1).all(1).view(-1, 1, 1, 1)
            if bool(same.any()):
                delta = torch.where(same, -delta, delta)
                cand = torch.clamp(torch.where(window, xc[active] + delta, best[active]),
                                   lo[active], hi[active])
            new_margin = _margin(model, cand, yc[active])
            better = new_margin < margin[active]
            upd = active[better]
            best[upd] = cand[better]
            margin[upd] = new_margin[better]
        with torch.no_grad():
            success = model(best).argmax(1) != yc
        adv = best.to(dtype=x.dtype, device=x.device)
        norms = (adv - x.detach()).flatten(1).abs().amax(1) if n else adv.new_zeros(0)
        return AttackResult(adversarial=adv, success=success.to(x.device), norms=norms,
                            norm_type="linf", minimal_norm=False)
    finally:
        model.train(was)


# --------------------------------------------------------------------------------------------
# AutoAttack (Croce & Hein 2020) through the pyautoattack package
# --------------------------------------------------------------------------------------------

AUTOATTACK_NAMES = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")


def autoattack_available() -> bool:
    """True when the ``pyautoattack`` package (AutoAttack, Croce & Hein 2020) imports."""
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        return False
    return True


def _import_autoattack():
    try:
        from pyautoattack import AutoAttack
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError("lslib.audit.autoattack needs the 'pyautoattack' package "
                          "(pip install pyautoattack, or lslib's 'test'/'book' extras)") from exc
    return AutoAttack


def _run_autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, version: str,
                    iters: int, seed: int) -> tuple[AttackResult, tuple[str, ...]]:
    """The standard ensemble (default budgets) or the cheaper one, with the names it ran."""
    if version not in ("standard", AUTOATTACK_CHEAP):
        raise ValueError(f"autoattack_version must be 'standard' or {AUTOATTACK_CHEAP!r}, "
                         f"got {version!r}")
    names = _autoattack_names(model, x)
    if version == "standard" and len(names) > 1:  # below 4 classes only APGD-CE can run
        return autoattack(model, x, y, eps, seed=seed), AUTOATTACK_STANDARD
    return autoattack(model, x, y, eps, version="custom", attacks=names, n_iter=iters,
                      seed=seed), names


def _autoattack_names(model: nn.Module, x: Tensor) -> tuple[str, ...]:
    """APGD-CE + APGD-T, or APGD-CE alone below 4 classes (the DLR loss needs 4)."""
    with torch.no_grad():
        k = int(model(x[:1].to(_device(model))).shape[1]) if x.shape[0] else 10
    return ("apgd-ce", "apgd-t") if k >= 4 else ("apgd-ce",)


class _Float32Logits(nn.Module):
    """pyautoattack casts inputs to float32: feed the model in its own dtype and hand the
    logits back as float32 (a float64 model then works too)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.to(self.dtype)).float()


@contextlib.contextmanager
def _quiet_autoattack(verbose: bool) -> Iterator[None]:
    """Silence pyautoattack's logger and warnings, keep the global torch RNG and the Python
    trace function (its dynamic-defence check calls ``sys.settrace(None)``) as they were."""
    logger = logging.getLogger("auto-attack")
    disabled, trace = logger.disabled, sys.gettrace()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=cuda):
            if not verbose:
                logger.disabled = True
                warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
        sys.settrace(trace)


#: The cheaper ensemble, kept as a named option (:attr:`AuditSettings.autoattack`): APGD on the
#: cross-entropy, then APGD-T on the targeted DLR loss; no FAB-T, no Square.
AUTOATTACK_CHEAP = "apgd-ce+apgd-t"
#: The published standard ensemble, in its order.
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
               attacks: Sequence[str] = ("apgd-ce", "apgd-t"), version: str = "standard",
               n_iter: int | None = None, restarts: int = 1, square_queries: int | None = None,
               seed: int = 0, batch_size: int = 500, device: str | torch.device | None = None,
               verbose: bool = False) -> AttackResult:
    """AutoAttack (Croce & Hein 2020) in the L-inf ball of radius ``eps``, from ``pyautoattack``.

    ``version="standard"`` (the default) is the published ensemble: APGD-CE, APGD-T (9 target
    classes), FAB-T (9 targets) and Square (5000 queries), each run on the points the previous
    ones left robust, with the package's default budgets (100 iterations) unless ``n_iter`` or
    ``square_queries`` are given; it ignores ``attacks``. ``version="custom"`` runs ``attacks``
    in turn (the cheaper ensemble :data:`AUTOATTACK_CHEAP`: APGD on the cross-entropy, then
    APGD-T on the targeted DLR loss, which is invariant to shifting and rescaling the logits)
    with ``n_iter`` iterations (100 if not given; FAB too) and ``restarts`` random restarts of
    APGD-CE/DLR. The DLR losses need at least 4 classes; below 10 classes the targeted attacks
    use ``K - 1`` targets.

    Same contract as :mod:`lslib.attacks`: ``x`` in [0, 1] (N, C, H, W), nothing mutated, the
    adversarials inside the eps-ball and [0, 1] EXACTLY in x's dtype (pyautoattack's can lie one
    float32 step outside: they are clipped into the box of :mod:`lslib.attacks`), the model's
    train/eval mode, the global torch RNG and the trace function restored; runs on the model's
    device (or ``device``); prints nothing unless ``verbose``. Returns an
    :class:`lslib.attacks.AttackResult` whose ``success`` is re-checked on ``model``. See
    :func:`autoattack_steps` for which attack of the ensemble fooled which point.
    """
    return autoattack_steps(model, x, y, eps, attacks=attacks, version=version, n_iter=n_iter,
                            restarts=restarts, square_queries=square_queries, seed=seed,
                            batch_size=batch_size, device=device, verbose=verbose)[0]


def autoattack_steps(model: nn.Module, x: Tensor, y: Tensor, eps: float, *,
                     attacks: Sequence[str] = ("apgd-ce", "apgd-t"), version: str = "standard",
                     n_iter: int | None = None, restarts: int = 1,
                     square_queries: int | None = None, seed: int = 0, batch_size: int = 500,
                     device: str | torch.device | None = None,
                     verbose: bool = False) -> tuple[AttackResult, dict[str, Tensor]]:
    """:func:`autoattack` (same arguments) plus, per attack of the ensemble in its order, the
    (N,) mask of the points that attack fooled first (the points it was run on are those the
    previous attacks left robust, as in pyautoattack's ``run_standard_evaluation``).

    The attacks are run one at a time, each through ``run_standard_evaluation`` on the points
    still robust, in the same batches and with the same seed as one call of the package would
    use, so the adversarials are those of one direct call (before the clipping into the exact
    box)."""
    _check_inputs(model, x, y)
    eps = check_nonnegative("eps", eps)
    if version not in ("custom", "standard", "plus"):
        raise ValueError(f"version must be 'custom', 'standard' or 'plus', got {version!r}")
    attacks = list(attacks)
    bad = [a for a in attacks if a not in AUTOATTACK_NAMES]
    if version == "custom" and (bad or not attacks):
        raise ValueError(f"attacks must be a non-empty list from {AUTOATTACK_NAMES}, got {attacks}")
    if n_iter is not None:
        n_iter = check_int_at_least("n_iter", n_iter, 1)
    restarts = check_int_at_least("restarts", restarts, 1)
    if square_queries is not None:
        square_queries = check_int_at_least("square_queries", square_queries, 1)
    batch_size = check_int_at_least("batch_size", batch_size, 1)
    AutoAttack = _import_autoattack()
    from lslib._attack_base import linf_box as _linf_box

    dev = torch.device(device) if device is not None else _device(model)
    dtype = next(iter(model.parameters()), x).dtype
    was = model.training
    model.eval()
    try:
        xc, yc = x.detach().to(dev), y.to(dev)
        with torch.no_grad():
            k = int(model(xc[:1].to(dtype)).shape[1]) if xc.shape[0] else 10
        if k < 4 and (version != "custom"
                      or any("dlr" in a or a == "apgd-t" for a in attacks)):
            raise ValueError(f"the DLR losses of apgd-dlr/apgd-t (in every AutoAttack version "
                             f"but 'custom') need at least 4 classes, the model has {k}")
        names = attacks if version == "custom" else (
            list(AUTOATTACK_STANDARD) if version == "standard"
            else ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"])
        fooled_by = {a: torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
                     for a in names}
        adv = xc.clone()
        if xc.shape[0] and eps > 0:
            wrapped = _Float32Logits(model, dtype).eval()
            xf = xc.float()
            with torch.no_grad():
                robust = wrapped(xf).argmax(1) == yc
            with _quiet_autoattack(verbose):
                aa = AutoAttack(wrapped, norm="Linf", eps=eps, seed=seed, device=dev,
                                version=version, attacks=attacks if version == "custom" else None)
                aa.verbose = verbose
                if n_iter is not None or version == "custom":
                    it = 100 if n_iter is None else n_iter
                    for apgd in (aa.apgd, aa.apgd_targeted):
                        apgd.n_iter = apgd.n_iter_orig = it
                        apgd.n_iter_2 = max(int(0.22 * it), 1)
                        apgd.n_iter_min = max(int(0.06 * it), 1)
                        apgd.size_decr = max(int(0.03 * it), 1)
                    aa.fab.n_iter = it
                for apgd in (aa.apgd, aa.apgd_targeted):
                    apgd.verbose = verbose
                targets = max(min(9, k - 1), 1)
                aa.apgd_targeted.n_target_classes = targets
                aa.fab.n_target_classes = targets
                if square_queries is not None:
                    aa.square.n_queries = square_queries
                if version == "custom":
                    aa.apgd.n_restarts = restarts
                for name in names:
                    idx = robust.nonzero().squeeze(1)
                    if idx.numel() == 0:
                        break
                    aa.attacks_to_run = [name]
                    xa, _ = aa.run_standard_evaluation(xf[idx], yc[idx], batch_size=batch_size)
                    with torch.no_grad():
                        hit = wrapped(xa).argmax(1) != yc[idx]
                    adv[idx[hit]] = xa[hit].to(xc.dtype)
                    robust[idx[hit]] = False
                    fooled_by[name][idx[hit].to(x.device)] = True
            lo, hi = _linf_box(xc, eps)
            adv = torch.clamp(adv, lo, hi)
        with torch.no_grad():
            success = model(adv.to(dtype)).argmax(1) != yc
        out = adv.to(dtype=x.dtype, device=x.device)
        norms = (out - x.detach()).flatten(1).abs().amax(1) if x.shape[0] else out.new_zeros(0)
        return AttackResult(adversarial=out, success=success.to(x.device), norms=norms,
                            norm_type="linf", minimal_norm=False), fooled_by
    finally:
        model.train(was)


def transfer_attack(source: nn.Module, target: nn.Module, x: Tensor, y: Tensor,
                    attack: Attack) -> AttackResult:
    """Craft adversarials with ``attack`` on ``source``; ``success`` is judged on ``target``.

    E.g. ``transfer_attack(natural_model, smoothed_model, x, y, functools.partial(pgd, eps=0.1))``:
    the black-box attack of Athalye et al. (2018) and of arXiv 2009.08233 against label smoothing.
    """
    _check_inputs(target, x, y)
    crafted = attack(source, x, y)
    was = target.training
    target.eval()
    try:
        with torch.no_grad():
            pred = target(crafted.adversarial.to(_device(target))).argmax(1)
    finally:
        target.train(was)
    return AttackResult(adversarial=crafted.adversarial, success=(pred != y.to(pred.device)).to(
        y.device), norms=crafted.norms, norm_type=crafted.norm_type,
        minimal_norm=crafted.minimal_norm)


@dataclass
class Sign:
    """One sign of the checklist: ``passed`` is True when the sign of masking is ABSENT."""

    name: str
    passed: bool
    detail: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class AuditReport:
    """Every sign plus the accuracy curves the signs were read from.

    ``curves[attack]`` is the accuracy (robust = correct and not fooled) at each eps of
    ``eps_grid``; ``accuracy`` the accuracies at the audit's own ``eps``.
    """

    eps: float
    eps_grid: list[float]
    clean_accuracy: float
    accuracy: dict[str, float]
    curves: dict[str, list[float]]
    signs: list[Sign]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.signs)

    def sign(self, name: str) -> Sign:
        for s in self.signs:
            if s.name == name:
                return s
        raise KeyError(f"no sign {name!r}; signs: {[s.name for s in self.signs]}")

    def rows(self) -> list[dict[str, object]]:
        """One dict per sign (name, passed, detail), e.g. for ``pandas.DataFrame``."""
        return [{"sign": s.name, "passed": s.passed, "detail": s.detail} for s in self.signs]

    def __str__(self) -> str:
        lines = [f"audit at eps={self.eps:g}: clean {self.clean_accuracy:.3f}, "
                 + ", ".join(f"{k} {v:.3f}" for k, v in self.accuracy.items() if k != "clean")]
        lines += [f"  [{'pass' if s.passed else 'FAIL'}] {s.name}: {s.detail}" for s in self.signs]
        return "\n".join(lines)


def _robust(model: nn.Module, x: Tensor, y: Tensor, res: AttackResult) -> Tensor:
    """correct on the clean point AND not fooled (bool, N)."""
    with torch.no_grad():
        clean = model(x.to(_device(model))).argmax(1).to(y.device) == y
    return clean & ~res.success.to(y.device)


def audit(model: nn.Module, x: Tensor, y: Tensor, *, eps: float,
          eps_grid: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
          source_model: nn.Module | None = None, white_box: Attack | None = None,
          single_step: Attack | None = None, square_queries: int = 1000,
          tolerance: float = 0.02, zero_tolerance: float = 0.02,
          generator: torch.Generator | None = None, use_autoattack: bool | None = None,
          autoattack_iters: int = 100, autoattack_version: str = "standard") -> AuditReport:
    """Run the checklist on ``model`` at budget ``eps`` (L-inf, pixels in [0, 1]).

    ``white_box(model, x, y) -> AttackResult`` defaults to BIM with 10 steps plus 5 random-start
    restarts (PGD); ``single_step`` to FGSM; both are also run over ``eps_grid`` (whose largest
    value should be 1). ``source_model`` (e.g. a naturally trained model of the same
    architecture) enables the transfer sign: its PGD adversarials are evaluated on ``model``;
    without it that sign is reported as passed with "not run". A sign fails when the
    difference it measures exceeds ``tolerance`` (a fraction of the points), and
    ``no_zero_at_large_eps`` fails when the best accuracy at the largest eps exceeds
    ``zero_tolerance``. ``use_autoattack`` (default: where ``pyautoattack`` imports) runs
    :func:`autoattack` at ``eps``: the standard ensemble with its default budgets, or with
    ``autoattack_version=AUTOATTACK_CHEAP`` the cheaper APGD-CE (plus APGD-T for 4 classes or
    more, ``autoattack_iters`` iterations each); without it that sign is reported as passed
    with "not run".
    """
    _check_inputs(model, x, y)
    eps = check_nonnegative("eps", eps)
    grid = sorted(check_nonnegative("eps_grid", float(e)) for e in eps_grid)
    if not grid:
        raise ValueError("eps_grid must not be empty")
    tolerance = check_unit_interval("tolerance", tolerance)
    zero_tolerance = check_unit_interval("zero_tolerance", zero_tolerance)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    if use_autoattack is None:
        use_autoattack = autoattack_available()
    if autoattack_version not in ("standard", AUTOATTACK_CHEAP):
        raise ValueError(f"autoattack_version must be 'standard' or {AUTOATTACK_CHEAP!r}, "
                         f"got {autoattack_version!r}")
    autoattack_iters = check_int_at_least("autoattack_iters", autoattack_iters, 1)

    def default_white(m: nn.Module, xx: Tensor, yy: Tensor, e: float) -> AttackResult:
        first = bim(m, xx, yy, e, steps=10)
        if e == 0:
            return first
        rest = bim(m, xx, yy, e, steps=10, random_start=True, restarts=5)
        keep = first.success | ~rest.success
        adv = torch.where(keep.view(-1, *[1] * (xx.ndim - 1)), first.adversarial,
                          rest.adversarial)
        return AttackResult(adversarial=adv, success=first.success | rest.success,
                            norms=torch.where(keep, first.norms, rest.norms))

    def white(e: float) -> Attack:
        if white_box is None:
            return functools.partial(default_white, e=e)
        return functools.partial(white_box, eps=e)

    def single(e: float) -> Attack:
        return functools.partial(single_step or fgsm, eps=e)

    with torch.no_grad():
        was = model.training
        model.eval()
        clean = model(x.to(_device(model))).argmax(1).to(y.device) == y
        model.train(was)
    n = max(x.shape[0], 1)

    def acc(mask: Tensor) -> float:
        return float(mask.double().sum()) / n

    res_white = white(eps)(model, x, y)
    rob_white = _robust(model, x, y, res_white)
    rob_single = _robust(model, x, y, single(eps)(model, x, y))
    res_square = square_linf(model, x, y, eps, queries=square_queries, generator=generator)
    rob_square = _robust(model, x, y, res_square)
    accuracy = {"clean": acc(clean), "single_step": acc(rob_single), "white_box": acc(rob_white),
                "square": acc(rob_square)}
    curves: dict[str, list[float]] = {"single_step": [], "white_box": []}
    for e in grid:
        curves["single_step"].append(acc(_robust(model, x, y, single(e)(model, x, y))))
        curves["white_box"].append(acc(_robust(model, x, y, white(e)(model, x, y))))

    signs: list[Sign] = []
    gap = accuracy["white_box"] - accuracy["single_step"]
    signs.append(Sign("single_step_beats_iterative", gap <= tolerance,
                      f"single-step accuracy {accuracy['single_step']:.3f} vs iterative "
                      f"{accuracy['white_box']:.3f}", {"difference": gap}))
    if source_model is not None:
        src_attack = functools.partial(bim, eps=eps, steps=10)
        rob_transfer = _robust(model, x, y, transfer_attack(source_model, model, x, y, src_attack))
        accuracy["transfer"] = acc(rob_transfer)
        gap = accuracy["white_box"] - accuracy["transfer"]
        signs.append(Sign("transfer_beats_white_box", gap <= tolerance,
                          f"transfer accuracy {accuracy['transfer']:.3f} vs white-box "
                          f"{accuracy['white_box']:.3f}", {"difference": gap}))
    else:
        signs.append(Sign("transfer_beats_white_box", True, "not run (no source model)"))
    missed = acc(rob_white & ~rob_square)
    signs.append(Sign("gradient_free_beats_white_box", missed <= tolerance,
                      f"Square fools {missed:.3f} of the points the white-box attack missed "
                      f"(Square accuracy {accuracy['square']:.3f})", {"missed": missed}))
    top = min(curves["white_box"][-1], curves["single_step"][-1])
    signs.append(Sign("no_zero_at_large_eps", top <= zero_tolerance,
                      f"accuracy {top:.3f} at eps={grid[-1]:g}"
                      + ("" if grid[-1] >= 1 else " (the grid should reach eps=1)"),
                      {"accuracy": top}))
    rises = [b - a for a, b in zip(curves["white_box"], curves["white_box"][1:], strict=False)]
    rise = max(rises, default=0.0)
    signs.append(Sign("not_monotone_in_eps", rise <= tolerance,
                      f"largest rise of the white-box accuracy along eps: {max(rise, 0.0):.3f}",
                      {"rise": rise}))
    if use_autoattack:
        res_aa, names = _run_autoattack(model, x, y, eps, autoattack_version, autoattack_iters,
                                        seed=0)
        rob_aa = _robust(model, x, y, res_aa)
        accuracy["autoattack"] = acc(rob_aa)
        missed = acc(rob_white & ~rob_aa)
        signs.append(Sign("autoattack_beats_white_box", missed <= tolerance,
                          f"AutoAttack ({'+'.join(names)}) fools {missed:.3f} of the points the "
                          f"white-box attack missed (AutoAttack accuracy "
                          f"{accuracy['autoattack']:.3f})", {"missed": missed}))
    else:
        signs.append(Sign("autoattack_beats_white_box", True,
                          "not run (pyautoattack not used)"))
    return AuditReport(eps=eps, eps_grid=grid, clean_accuracy=accuracy["clean"],
                       accuracy=accuracy, curves=curves, signs=signs)


# --------------------------------------------------------------------------------------------
# the paper's protocol against a strong one, on the same models
# --------------------------------------------------------------------------------------------

#: The attacks of :func:`compare_protocols`, with the protocol each belongs to.
PROTOCOL_ATTACKS: dict[str, str] = {
    "FGSM, smoothed target": "paper",
    "BIM-10, smoothed target": "paper",
    "FGSM": "strong",
    "BIM-10": "strong",
    "PGD, many steps + restarts": "strong",
    "transfer from natural": "strong",
    "Square (lslib)": "strong",
    "Square (pyautoattack)": "strong",
    "AutoAttack": "strong",
    "worst case": "strong",
}

#: The steps of AutoAttack reported by :func:`compare_protocols`: the accuracy left after each
#: attack of the ensemble in turn (protocol ``"AutoAttack step"``; the last one equals the
#: "AutoAttack" row).
AUTOATTACK_STEP_ROWS: dict[str, str] = {
    "apgd-ce": "AutoAttack after APGD-CE",
    "apgd-t": "AutoAttack after APGD-T",
    "fab-t": "AutoAttack after FAB-T",
    "square": "AutoAttack after Square",
}

#: The defences audited on a set-up: the natural model, the four smoothing methods at the
#: paper's largest and smallest alpha (BLS at the original code's T = 0.001) and the PGD-AT
#: baseline; in the order a run does them (a run stopped early has the first ones).
AUDIT_DEFENCES = (("natural", None, None), ("ALS", 0.4, None), ("SLS", 0.4, None),
                  ("BLS", 0.4, 0.001), ("SBLS", 0.4, None), ("PGD-AT", None, None),
                  ("ALS", 0.005, None), ("SLS", 0.005, None), ("BLS", 0.005, 0.001),
                  ("SBLS", 0.005, None))


@dataclass(frozen=True)
class AuditSettings:
    """How hard :func:`compare_protocols` attacks. ``pgd_steps`` x ``pgd_restarts``: the strong
    PGD (true label, random start, step ``2.5 eps / steps``); ``square_queries`` for both Square
    attacks of lslib and of pyautoattack run on their own; ``autoattack``: ``"standard"`` (the
    published ensemble APGD-CE, APGD-T, FAB-T, Square with the package's default budgets) or
    :data:`AUTOATTACK_CHEAP` (APGD-CE + APGD-T with ``autoattack_iters`` iterations each, the
    cheaper option); ``audit_queries`` for :func:`audit`'s Square; ``reference_square``: also
    run pyautoattack's Square on its own (``square_queries``), beside ours."""

    pgd_steps: int = 100
    pgd_restarts: int = 5
    square_queries: int = 1000
    autoattack_iters: int = 100
    audit_queries: int = 1000
    autoattack: str = "standard"
    reference_square: bool = True

    def __post_init__(self) -> None:
        if self.autoattack not in ("standard", AUTOATTACK_CHEAP):
            raise ValueError(f"autoattack must be 'standard' or {AUTOATTACK_CHEAP!r}, got "
                             f"{self.autoattack!r}")

    @classmethod
    def quick(cls) -> AuditSettings:
        """Reduced attacks for CI and live demos: the cheaper AutoAttack, few iterations."""
        return cls(pgd_steps=20, pgd_restarts=2, square_queries=100, autoattack_iters=10,
                   audit_queries=100, autoattack=AUTOATTACK_CHEAP)


def _reference_square(model: nn.Module, x: Tensor, y: Tensor, eps: float, queries: int,
                      seed: int) -> AttackResult:
    """pyautoattack's Square (L-inf, margin loss, p_init 0.8 as in AutoAttack) as an
    :class:`AttackResult`; global RNG and output silenced as in :func:`autoattack`."""
    from pyautoattack.square import SquareAttack

    dev = _device(model)
    dtype = next(iter(model.parameters()), x).dtype
    xc, yc = x.detach().to(dev), y.to(dev)
    if eps == 0 or xc.shape[0] == 0:
        adv = xc.clone()
    else:
        with _quiet_autoattack(False):
            sq = SquareAttack(_Float32Logits(model, dtype).eval(), norm="Linf", n_queries=queries,
                              eps=eps, p_init=0.8, seed=seed, device=dev, verbose=False)
            adv = sq.perturb(xc.float(), yc).to(xc.dtype)
        from lslib._attack_base import linf_box as _linf_box

        lo, hi = _linf_box(xc, eps)
        adv = torch.clamp(adv, lo, hi)
    with torch.no_grad():
        success = model(adv.to(dtype)).argmax(1) != yc
    return AttackResult(adversarial=adv.to(x.device, x.dtype), success=success.to(x.device),
                        norms=(adv.to(x.device, x.dtype) - x).flatten(1).abs().amax(1))


def encode_points(mask: Tensor) -> str:
    """A boolean (N,) mask as a hex string ``0x...`` (bit i of the integer is point i; the prefix
    keeps CSV readers from taking it for a number), as stored in the
    ``robust_points`` column of :func:`compare_protocols`' rows."""
    bits = mask.detach().to("cpu", torch.bool).tolist()
    return "0x" + format(sum(1 << i for i, b in enumerate(bits) if b), "x")  # never a number


def decode_points(code: str, n: int) -> Tensor:
    """The (N,) boolean mask of :func:`encode_points`."""
    value = int(code, 16)
    return torch.tensor([(value >> i) & 1 == 1 for i in range(n)], dtype=torch.bool)


def _suite(model: nn.Module, x: Tensor, y: Tensor, e: float, *, loss: Callable | str,
           settings: AuditSettings, seed: int, transferred: Tensor | None,
           reference: bool, steps: dict[str, Tensor]) -> dict[str, Callable[[], AttackResult]]:
    """The attacks of :func:`compare_protocols` on one model at one eps, as thunks."""
    from lslib.attacks import fgsm as _fgsm

    gen = torch.Generator(device=_device(model)).manual_seed(seed)
    step = e / 10 if e > 0 else None  # BIM-10 of the original: 10 steps of eps/10

    def _transfer() -> AttackResult:
        assert transferred is not None
        with torch.no_grad():
            pred = model(transferred.to(_device(model))).argmax(1).to(y.device)
        return AttackResult(adversarial=transferred, success=pred != y,
                            norms=(transferred - x).flatten(1).abs().amax(1))

    attacks: dict[str, Callable[[], AttackResult]] = {
        "FGSM, smoothed target": lambda: _fgsm(model, x, y, e, loss=loss),
        "BIM-10, smoothed target": lambda: bim(model, x, y, e, steps=10, step_size=step,
                                               loss=loss),
        "FGSM": lambda: _fgsm(model, x, y, e),
        "BIM-10": lambda: bim(model, x, y, e, steps=10, step_size=step),
        "PGD, many steps + restarts": lambda: bim(  # early stop: the same points, faster
            model, x, y, e, steps=settings.pgd_steps, random_start=True,
            restarts=settings.pgd_restarts, generator=gen, early_stop=True),
        "Square (lslib)": lambda: square_linf(model, x, y, e, queries=settings.square_queries,
                                              generator=torch.Generator().manual_seed(seed)),
    }
    if transferred is not None:
        attacks["transfer from natural"] = _transfer
    if reference and settings.reference_square:
        attacks["Square (pyautoattack)"] = lambda: _reference_square(
            model, x, y, e, settings.square_queries, seed)
    if reference:

        def _aa() -> AttackResult:
            # below 4 classes (no DLR loss) only the cheaper ensemble's APGD-CE can run
            if settings.autoattack == "standard" and len(_autoattack_names(model, x)) > 1:
                res, fooled = autoattack_steps(model, x, y, e, seed=seed)
            else:
                res, fooled = autoattack_steps(model, x, y, e, version="custom",
                                               attacks=_autoattack_names(model, x),
                                               n_iter=settings.autoattack_iters, seed=seed)
            steps.update(fooled)
            return res

        attacks["AutoAttack"] = _aa
    return attacks


def compare_protocols(models: dict[str, nn.Module], x: Tensor, y: Tensor, *,
                      eps_grid: Sequence[float], smoothed_losses: dict[str, Callable] | None = None,
                      source: nn.Module | None = None, settings: AuditSettings | None = None,
                      seed: int = 0, log: Callable[[str], None] | None = None) -> list[dict]:
    """Attack every model of ``models`` at every eps of ``eps_grid`` under both protocols.

    The paper's protocol (``../shared/notes/original-code.md``): FGSM and BIM (10 steps of
    eps/10, no random start) on the loss against the model's OWN SMOOTHED TARGET
    (``smoothed_losses[name]``, a per-sample loss ``(logits, y) -> (N,)``; cross-entropy when
    missing). The strong one: the same two attacks on the true label's cross-entropy; PGD with
    ``settings.pgd_steps`` steps and ``settings.pgd_restarts`` random restarts; PGD-10 crafted on
    ``source`` (a naturally trained model) and transferred; Square, ours (:func:`square_linf`)
    and pyautoattack's, each on its own; AutoAttack (:func:`autoattack`: the standard ensemble
    APGD-CE, APGD-T, FAB-T, Square with its default budgets, or the cheaper APGD-CE + APGD-T
    where ``settings.autoattack`` says so), with one ``"AutoAttack step"`` row per attack of the
    ensemble (:data:`AUTOATTACK_STEP_ROWS`: the accuracy left after it and those before it); and
    the per-point worst case over every strong attack (a point counts only if it survives all of
    them). The pyautoattack rows are left out where the package does not import. Every
    adversarial lies in the exact eps-ball and [0, 1] (the contract of :mod:`lslib.attacks`).

    Returns tidy rows: ``model``, ``attack``, ``protocol``, ``eps``, ``accuracy`` (robust:
    correct and not fooled, over the ``n`` points), ``n``, ``seconds``, ``robust_points``
    (which points stayed robust, :func:`encode_points`; :func:`decode_points` reads it) and
    ``seed`` (that of the attacks at this budget, e.g. AutoAttack's).
    """
    import time

    settings = settings or AuditSettings()
    smoothed_losses = smoothed_losses or {}
    have_aa = autoattack_available()
    log = log or (lambda msg: None)
    n = max(int(x.shape[0]), 1)
    rows: list[dict] = []
    grid = [check_nonnegative("eps_grid", float(e)) for e in eps_grid]
    transferred: dict[float, Tensor] = {}
    if source is not None:
        for e in grid:
            transferred[e] = bim(source, x, y, e, steps=10).adversarial
    for name, model in models.items():
        _check_inputs(model, x, y)
        loss = smoothed_losses.get(name, "ce")
        with torch.no_grad():
            model.eval()
            clean = model(x.to(_device(model))).argmax(1).to(y.device) == y
        for i, e in enumerate(grid):
            steps: dict[str, Tensor] = {}
            attacks = _suite(model, x, y, e, loss=loss, settings=settings, seed=seed + 1000 * i,
                             transferred=transferred.get(e), reference=have_aa, steps=steps)
            worst = clean.clone()
            first = len(rows)

            def row(attack: str, protocol: str, robust: Tensor, seconds: float,
                    _e: float = e, _name: str = name, _seed: int = seed + 1000 * i) -> dict:
                return {"model": _name, "attack": attack, "protocol": protocol, "eps": _e,
                        "accuracy": float(robust.double().sum()) / n, "n": int(x.shape[0]),
                        "seconds": seconds, "robust_points": encode_points(robust),
                        "seed": _seed}

            for attack, run in attacks.items():
                start = time.perf_counter()
                robust = clean & ~run().success.to(y.device)
                if PROTOCOL_ATTACKS[attack] == "strong":
                    worst &= robust
                rows.append(row(attack, PROTOCOL_ATTACKS[attack], robust,
                                time.perf_counter() - start))
                if attack == "AutoAttack":
                    left = clean.clone()
                    for step, fooled in steps.items():
                        left &= ~fooled.to(y.device)
                        rows.append(row(AUTOATTACK_STEP_ROWS.get(step, f"AutoAttack after "
                                                                       f"{step}"),
                                        "AutoAttack step", left, 0.0))
            rows.append(row("worst case", "strong", worst, 0.0))
            log(f"{name} eps={e:g}: " + ", ".join(
                f"{r['attack']} {r['accuracy']:.3f}" for r in rows[first:]))
    return rows


WHITE_BOX = "PGD, many steps + restarts"


def checklist(rows: Sequence[dict], eps: float, *, tolerance: float = 0.02,
              zero_tolerance: float = 0.02) -> list[Sign]:
    """The signs of :func:`audit` at budget ``eps``, read from the rows of
    :func:`compare_protocols` for ONE model (no attack is run again): the white-box attack is
    the strong PGD (:data:`WHITE_BOX`), the single-step one FGSM, the gradient-free one either
    Square (ours or pyautoattack's), the curves are PGD's and FGSM's over the rows' budgets
    (the largest should be 1), and AutoAttack is the rows' "AutoAttack". Each sign compares the
    very points (``robust_points``), e.g. "Square fools 0.012 of the points PGD missed"."""
    eps = float(eps)
    models = {r["model"] for r in rows}
    if len(models) != 1:
        raise ValueError(f"rows must hold one model, got {sorted(models)}")
    tolerance = check_unit_interval("tolerance", tolerance)
    zero_tolerance = check_unit_interval("zero_tolerance", zero_tolerance)
    at = {(r["attack"], float(r["eps"])): r for r in rows}
    if (WHITE_BOX, eps) not in at:
        raise ValueError(f"no {WHITE_BOX!r} row at eps={eps:g}")

    def mask(attack: str, e: float = eps) -> Tensor | None:
        r = at.get((attack, e))
        return None if r is None else decode_points(r["robust_points"], int(r["n"]))

    n = max(int(at[(WHITE_BOX, eps)]["n"]), 1)

    def acc(m: Tensor) -> float:
        return float(m.double().sum()) / n

    white = mask(WHITE_BOX)
    assert white is not None
    signs: list[Sign] = []

    def weaker_than_white_box(name: str, other: Tensor, label: str) -> Sign:
        """The sign fails when ``other`` leaves fewer points than the white-box attack."""
        gap = acc(white) - acc(other)
        return Sign(name, gap <= tolerance,
                    f"{label} accuracy {acc(other):.3f} vs PGD {acc(white):.3f}",
                    {"difference": gap})

    single = mask("FGSM")
    if single is not None:
        signs.append(weaker_than_white_box("single_step_beats_iterative", single, "FGSM"))
    transfer = mask("transfer from natural")
    if transfer is not None:
        signs.append(weaker_than_white_box("transfer_beats_white_box", transfer, "transfer"))
    else:
        signs.append(Sign("transfer_beats_white_box", True, "not run (no source model)"))
    squares = [m for m in (mask("Square (lslib)"), mask("Square (pyautoattack)")) if m is not None]
    if squares:
        fooled = ~squares[0] if len(squares) == 1 else ~(squares[0] & squares[1])
        missed = acc(white & fooled)
        signs.append(Sign("gradient_free_beats_white_box", missed <= tolerance,
                          f"Square fools {missed:.3f} of the points PGD missed",
                          {"missed": missed}))
    grid = sorted({float(r["eps"]) for r in rows if r["attack"] == WHITE_BOX})
    curve = [acc(m) for m in (mask(WHITE_BOX, e) for e in grid) if m is not None]
    fgsm_top = mask("FGSM", grid[-1])
    top = min(curve[-1], acc(fgsm_top) if fgsm_top is not None else 1.0)
    signs.append(Sign("no_zero_at_large_eps", top <= zero_tolerance,
                      f"accuracy {top:.3f} at eps={grid[-1]:g}"
                      + ("" if grid[-1] >= 1 else " (the budgets should reach eps=1)"),
                      {"accuracy": top}))
    rise = max((b - a for a, b in zip(curve, curve[1:], strict=False)), default=0.0)
    signs.append(Sign("not_monotone_in_eps", rise <= tolerance,
                      f"largest rise of the PGD accuracy along eps: {max(rise, 0.0):.3f}",
                      {"rise": rise}))
    aa = mask("AutoAttack")
    if aa is not None:
        missed = acc(white & ~aa)
        signs.append(Sign("autoattack_beats_white_box", missed <= tolerance,
                          f"AutoAttack fools {missed:.3f} of the points PGD missed "
                          f"(AutoAttack accuracy {acc(aa):.3f})", {"missed": missed}))
    else:
        signs.append(Sign("autoattack_beats_white_box", True, "not run (pyautoattack not used)"))
    return signs


def _defence_label(name: str, alpha: float | None) -> str:
    return name if alpha is None else f"{name} {alpha:g}"


def _audit_model_job(models: list[nn.Module], device: torch.device, *, setup: str, label: str,
                     config: Any, n: int, eps_list: list[float], eps_grid: list[float],
                     settings: AuditSettings, seed: int, data_root: str | None,
                     download: bool) -> tuple[list[dict], list[dict]]:
    """Both protocols and the checklist on one model (a :class:`lslib.runner.Job` function:
    ``models`` is ``[transfer source, model]``); returns its rows and signs."""
    from lslib.data import load_dataset
    from lslib.experiments import SETUPS
    from lslib.train import build_loss

    source, model = models
    test = load_dataset(SETUPS[setup].dataset, "test", data_root, limit=n, download=download)
    x, y = test.x.to(device), test.y.to(device)
    m_rows = compare_protocols({label: model}, x, y, eps_grid=eps_grid,
                               smoothed_losses={label: build_loss(config, reduction="none")},
                               source=source, settings=settings, seed=seed)
    m_signs = [{"model": label, "sign": s.name, "passed": s.passed, "detail": s.detail, "eps": e}
               for e in eps_list for s in checklist(m_rows, e)]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).double().mean())
    m_rows.append({"model": label, "attack": "clean", "protocol": "both", "eps": 0.0,
                   "accuracy": clean, "n": int(x.shape[0]), "seconds": 0.0})
    return m_rows, m_signs


def read_audit(path: str | os.PathLike) -> tuple[Any, Any, dict]:
    """A set-up audit as written by ``python -m lslib audit --setup --out PATH``: the rows
    (a DataFrame, ``robust_points`` kept as text), the checklist (``PATH`` with ``-signs``) and
    the provenance (``PATH.meta.json``)."""
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, dtype={"robust_points": str})
    signs = pd.read_csv(path.with_name(path.stem + "-signs" + path.suffix))
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    return table, signs, meta


def _audit_entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return "not an object with a string 'key'"
    for name in ("rows", "signs"):
        value = entry.get(name)
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            return f"{name!r} missing or not a list of objects"
    return None


def audit_setup(setup: str = "mnist-linear", *, n: int = 500,
                eps: float | Sequence[float] = (0.1, 0.2),
                eps_grid: Sequence[float] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                                             1.0),
                defences: Sequence[tuple[str, float | None, float | None]] = AUDIT_DEFENCES,
                quick: bool = False, settings: AuditSettings | None = None, seed: int = 0,
                cache: str | None = None, data_root: str | None = None,
                device: str | torch.device | None = None, download: bool = False,
                log: Callable[[str], None] | None = None,
                journal: str | os.PathLike | None = None,
                execution: Any = None,
                journal_only: bool = False,
                resumed: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """Both protocols and the checklist on the models of a set-up of
    :data:`lslib.experiments.SETUPS`: the very models of the sweep (trained and cached like the
    sweep's when the cache lacks them; ``quick`` uses the sweep's quick models), attacked on the
    first ``n`` test images at each budget of ``eps_grid``; the checklist (:func:`checklist`,
    read from those rows) at each budget of ``eps`` (added to the grid). The transfer source is
    a natural model of the same architecture trained with seed ``seed + 1``. Each model is one
    job of :mod:`lslib.runner`, so ``execution`` (an :class:`lslib.runner.Execution`) runs the
    audit on a local Ray or a Ray cluster exactly as it does a sweep; embedded by default.

    Returns ``(rows, signs)``: the rows of :func:`compare_protocols` (plus ``clean`` rows) and one
    row per model, budget and sign of :func:`audit` (``model``, ``sign``, ``passed``,
    ``detail``, ``eps``), each row also carrying ``defence``, ``alpha`` and ``T``.

    ``journal``: a JSON-lines file to which each model's rows are appended (flushed and
    fsync'ed) by this process as soon as that model is done; a later call with the same journal
    and the same settings takes those models from it instead of attacking them again, so a
    killed run loses at most the models it was working on (the command line keeps it beside
    ``--out``; damaged lines are set aside with a warning). Every random choice is seeded per
    budget, not per position in the run, so the rows are the same either way.

    ``journal_only``: attack nothing, return the rows of the models the journal holds (those of a
    run stopped early), in the order of ``defences``; the others are left out. ``resumed``: a
    list to which one ``{"model", "provenance"}`` is appended per model read back from the
    journal (its entry's provenance: commit, source hash, device, time; "not recorded" for
    entries written before the journal kept it).
    """
    from lslib.experiments import (
        SETUPS,
        Defence,
        append_journal,
        cache_dir,
        provenance,
        recover_journal,
    )
    from lslib.runner import Job, ModelSpec, run_jobs

    if setup not in SETUPS:
        raise ValueError(f"unknown setup {setup!r}: choose from {sorted(SETUPS)}")
    su = SETUPS[setup]
    settings = settings or (AuditSettings.quick() if quick else AuditSettings())
    log = log or (lambda msg: None)
    eps_list = [float(eps)] if isinstance(eps, (int, float)) else [float(v) for v in eps]
    eps_grid = sorted({float(e) for e in eps_grid} | set(eps_list))  # the checklist's budgets too
    source_cfg = Defence("natural").train_config(su, seed=seed + 1, quick=quick)
    dev_type = "cuda" if (execution is not None and execution.gpus_per_task) else (
        torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type)
    common = {"setup": setup, "n": n, "eps": eps_list, "eps_grid": [float(e) for e in eps_grid],
              "quick": quick, "settings": dataclasses.asdict(settings), "seed": seed,
              "source": source_cfg.key(), "device": dev_type, "version": _AUDIT_VERSION}
    done: dict[str, dict] = {}
    if journal is not None:
        done = {e["key"]: e for e in recover_journal(Path(journal), _audit_entry_problem, log)}
    plan = []
    for name, alpha, temperature in defences:
        cfg = Defence(name, alpha, temperature).train_config(su, seed=seed, quick=quick)
        key = hashlib.sha256(json.dumps({**common, "model": cfg.key()}, sort_keys=True)
                             .encode()).hexdigest()[:16]
        plan.append((name, alpha, temperature, cfg, key))
    results = {key: (done[key]["rows"], done[key]["signs"]) for *_, key in plan if key in done}
    if resumed is not None:  # what this call read back instead of computing, and its provenance
        resumed.extend({"model": _defence_label(name, alpha),
                        "provenance": done[key].get("provenance", "not recorded")}
                       for name, alpha, _, _, key in plan if key in done)
    jobs = [Job(key, (ModelSpec(setup, source_cfg), ModelSpec(setup, cfg)), _audit_model_job,
                dict(setup=setup, label=_defence_label(name, alpha), config=cfg, n=n,
                     eps_list=eps_list, eps_grid=[float(e) for e in eps_grid],
                     settings=settings, seed=seed,
                     data_root=None if data_root is None else str(data_root),
                     download=download))
            for name, alpha, temperature, cfg, key in plan if key not in done]
    meta = {key: {"defence": name, "alpha": alpha, "T": temperature, "model_key": cfg.key(),
                  "setup": setup} for name, alpha, temperature, cfg, key in plan}

    def on_result(job: Job, result: tuple[list[dict], list[dict]], records: dict,
                  ran_on: str) -> None:
        m_rows, m_signs = result
        for r in (*m_rows, *m_signs):
            r.update(meta[job.key])
        for r in m_rows:
            if r["attack"] != "clean":
                log(f"{r['model']} eps={r['eps']:g} {r['attack']}: {r['accuracy']:.3f}")
        if journal is not None:
            append_journal(Path(journal), {"key": job.key, "rows": m_rows, "signs": m_signs,
                                           "provenance": {**provenance(device or "cpu"),
                                                          "ran_on": ran_on,
                                                          "finished": datetime.now(timezone.utc)
                                                          .isoformat(timespec="seconds")}})
        results[job.key] = (m_rows, m_signs)

    if journal_only:
        if journal is None:
            raise ValueError("journal_only needs a journal")
        jobs = []
    run_jobs(jobs, on_result, execution=execution, cache=cache_dir(cache), data_root=data_root,
             download=download, device=device, log=log)
    rows: list[dict] = []
    signs: list[dict] = []
    for *_, key in plan:  # in the order of the defences
        if key in results:
            rows += results[key][0]
            signs += results[key][1]
    return rows, signs


#: Bump when a change here changes what audit_setup computes (journal entries of other
#: versions are recomputed).
_AUDIT_VERSION = 4


# --------------------------------------------------------------------------------------------
# command line: python -m lslib.audit --model mlp --checkpoint model.pt --eps 0.1
# --------------------------------------------------------------------------------------------


def load_checkpoint(name: str, path: str, device: str | torch.device = "cpu") -> nn.Module:
    """A :func:`lslib.models.build_model` model with the weights of ``path``: either a bare
    ``state_dict`` or the experiment cache's ``{"state_dict": ..., "record": ...}``."""
    from lslib._files import CheckpointError, read_checkpoint
    from lslib.models import build_model

    model = build_model(name)
    state = read_checkpoint(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(path, f"does not hold the weights of a {name!r} model "
                              f"({detail[:300]})", "give the --model the checkpoint was trained "
                              "as, or the checkpoint of this model") from None
    return model.to(device).eval()


def _report_dict(report: AuditReport) -> dict[str, object]:
    return {"eps": report.eps, "eps_grid": report.eps_grid, "passed": report.passed,
            "clean_accuracy": report.clean_accuracy, "accuracy": report.accuracy,
            "curves": report.curves,
            "signs": [{"name": s.name, "passed": s.passed, "detail": s.detail,
                       "values": s.values} for s in report.signs]}


def _write_audit(out: str, rows: list[dict], signs: list[dict], command: str,
                 started: str, wall: float, options: dict, prov: dict) -> None:
    """``out`` (the accuracies), ``out`` with ``-signs`` (the checklist) and ``.meta.json``
    (provenance taken when the run started: command, options, start, wall time, lslib version,
    git commit, source hashes, device...)."""
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    signs_path = path.with_name(path.stem + "-signs" + path.suffix)
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.10g")
    pd.DataFrame(signs).to_csv(signs_path, index=False)
    meta = {"command": command, "options": options, "started": started, "wall_seconds": wall,
            "files": [path.name, signs_path.name], **prov, "threads": torch.get_num_threads()}
    path.with_name(path.name + ".meta.json").write_text(json.dumps(meta, indent=2,
                                                                    default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Audit a saved model from the command line; prints the checklist (exit status 0), and
    writes it as JSON with ``--json``. With ``--setup`` (and no ``--checkpoint``) it audits the
    models of a sweep set-up instead (:func:`audit_setup`) and writes ``--out`` (CSV), its
    ``-signs`` CSV and a ``.meta.json`` with the provenance."""
    import argparse
    import json
    import time

    from lslib import _cli
    from lslib.data import DATASETS, load_dataset
    from lslib.experiments import SETUPS
    from lslib.models import MODELS
    from lslib.runner import RunnerError, add_execution_arguments, execution_from_args

    p = _cli.OneLineParser(
        prog="python -m lslib audit",
        description="Gradient-masking checklist for a saved model (--model, --checkpoint, "
                    "--eps), or both protocols and the checklist on a set-up's models (--setup).")
    p.add_argument("--model", choices=list(MODELS),
                   help="architecture (lslib.models.build_model name)")
    p.add_argument("--checkpoint", type=_cli.existing_file(),
                   help="state_dict or experiment-cache .pt file")
    p.add_argument("--dataset", default="mnist", choices=list(DATASETS))
    p.add_argument("--limit", type=_cli.int_at_least(1), default=1000,
                   help="test images to attack")
    p.add_argument("--eps", type=_cli.number(_cli.NONNEGATIVE), nargs="+",
                   help="L-inf budget (pixels in [0, 1]); with --setup, one or more budgets of "
                        "the checklist (default 0.1 0.2)")
    p.add_argument("--eps-grid", type=_cli.number(_cli.NONNEGATIVE), nargs="+", default=None,
                   help="with --setup: the budgets every attack runs at (default 0 0.05 0.1 "
                        "0.15 0.2 0.3 0.4 0.5 0.75 1; --eps is added)")
    p.add_argument("--source-model", default=None, choices=list(MODELS),
                   help="architecture of the transfer source")
    p.add_argument("--source-checkpoint", type=_cli.existing_file(),
                   default=None, help="weights of the transfer source")
    p.add_argument("--square-queries", type=_cli.int_at_least(1),
                   default=1000)
    p.add_argument("--autoattack", action=argparse.BooleanOptionalAction, default=None,
                   help="add AutoAttack (package pyautoattack) to the checklist of a "
                        "checkpoint (default: where pyautoattack imports)")
    p.add_argument("--autoattack-ensemble", default="standard",
                   choices=["standard", AUTOATTACK_CHEAP],
                   help="standard: APGD-CE, APGD-T, FAB-T, Square with the package's default "
                        "budgets; apgd-ce+apgd-t: the cheaper pair (--autoattack-iters each)")
    p.add_argument("--autoattack-iters", type=_cli.int_at_least(1),
                   default=100)
    p.add_argument("--reference-square", action=argparse.BooleanOptionalAction, default=True,
                   help="with --setup: also run pyautoattack's Square on its own, beside ours")
    p.add_argument("--data-root", type=_cli.data_dir(), default=None,
                   help="data folder (default: $LSLIB_DATA)")
    p.add_argument("--device", type=_cli.device_type(), default=None,
                   help="cpu, cuda, cuda:1, ... (default: cuda if available; with --workers/"
                   "--address the tasks choose)")
    p.add_argument("--json", type=_cli.output_file(), default=None,
                   help="also write the report to this JSON file")
    p.add_argument("--setup", default=None, choices=list(SETUPS),
                   help="audit the models of this sweep set-up (e.g. mnist-linear) instead")
    p.add_argument("--quick", action="store_true", help="with --setup: tiny models and attacks")
    p.add_argument("--out", type=_cli.output_file(), default=None,
                   help="with --setup: the CSV to write")
    p.add_argument("--cache", type=_cli.output_dir(), default=None,
                   help="with --setup: the model cache")
    p.add_argument("--threads", type=_cli.int_at_least(1), default=None,
                   help="torch threads")
    p.add_argument("--from-journal", action="store_true",
                   help="with --setup: attack nothing; write --out from the models the journal "
                        "of the same command holds (a run stopped early), marked partial")
    add_execution_arguments(p)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    here = "cuda" if torch.cuda.is_available() else "cpu"
    if args.setup is not None and args.checkpoint is None:
        if args.out is None:
            p.error("--setup needs --out")
        eps = [0.1, 0.2] if args.eps is None else args.eps
        from lslib.experiments import OutputBusyError, exclusive_output, provenance, source_hashes

        try:
            execution = execution_from_args(args)
        except ValueError as exc:
            p.error(str(exc))
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        settings = dataclasses.replace(
            AuditSettings.quick() if args.quick else AuditSettings(),
            autoattack=args.autoattack_ensemble if not args.quick else AUTOATTACK_CHEAP,
            reference_square=args.reference_square)
        device = "cuda" if execution.gpus_per_task else (
            "cpu" if execution.distributed else args.device or here)
        prov = {**provenance(device), "sources": source_hashes()}  # the code that runs
        t0 = time.perf_counter()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            resumed: list[dict] = []
            with exclusive_output(out):
                grid_kw = {} if args.eps_grid is None else {"eps_grid": args.eps_grid}
                rows, signs = audit_setup(
                    args.setup, n=args.limit, eps=eps, quick=args.quick, cache=args.cache,
                    **grid_kw,
                    data_root=args.data_root, device=None if execution.distributed else device,
                    settings=settings, journal_only=args.from_journal,
                    log=print, journal=f"{args.out}.journal.jsonl", execution=execution,
                    resumed=resumed)
                options = {"setup": args.setup, "n": args.limit, "eps": eps,
                           "eps_grid": sorted({float(r["eps"]) for r in rows
                                               if r["attack"] != "clean"}),
                           "quick": args.quick, "device": device,
                           "execution": execution.describe(),
                           "settings": dataclasses.asdict(settings)}
                if resumed:
                    options["from_journal"] = resumed  # computed by earlier runs, read back
                labels = [_defence_label(d, a) for d, a, _ in AUDIT_DEFENCES]
                got = list(dict.fromkeys(r["model"] for r in rows))
                if args.from_journal:
                    options["partial"] = {
                        "models_done": got, "models_missing": [m for m in labels if m not in got],
                        "note": "rows of the models the journal of a run stopped early holds; "
                                "this file was written from it with --from-journal, so "
                                "'started' and 'wall_seconds' are those of the writing",
                        "attack_seconds": sum(float(r.get("seconds", 0.0)) for r in rows)}
                command = _cli.command_line("python -m lslib audit",
                                            sys.argv[1:] if argv is None else argv)
                _write_audit(args.out, rows, signs, command, started, time.perf_counter() - t0,
                             options, prov)
        except (OutputBusyError, RunnerError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"interrupted: the audited models are saved in {args.out}.journal.jsonl; run "
                  "the same command again to resume", file=sys.stderr)
            return 130
        return 0
    if args.model is None or args.checkpoint is None or args.eps is None:
        p.error("--model, --checkpoint and --eps are required (or --setup and --out)")
    if len(args.eps) != 1:
        p.error("--eps takes one budget when auditing a checkpoint")
    if (args.source_model is None) != (args.source_checkpoint is None):
        p.error("--source-model and --source-checkpoint go together")
    device = args.device or here
    model = load_checkpoint(args.model, args.checkpoint, device)
    source = (load_checkpoint(args.source_model, args.source_checkpoint, device)
              if args.source_model else None)
    data = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    report = audit(model, data.x.to(device), data.y.to(device), eps=args.eps[0],
                   source_model=source, square_queries=args.square_queries,
                   use_autoattack=args.autoattack, autoattack_iters=args.autoattack_iters,
                   autoattack_version=args.autoattack_ensemble)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_report_dict(report), f, indent=2)
    return 0


if __name__ == "__main__":
    from lslib._cli import report_user_errors

    raise SystemExit(report_user_errors("python -m lslib.audit", main))
