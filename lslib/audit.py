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
   weaker for a working attack).

:func:`square_linf` is the L-inf Square attack of Andriushchenko et al. (2020): random search over
vertices of the eps-ball, updating square windows whose size shrinks on the authors' schedule,
keeping an update only when it lowers the margin loss ``z_y - max_{j != y} z_j``. It uses no
gradient, so gradient masking cannot stop it. :func:`transfer_attack` crafts adversarials on a
source model and evaluates them on the target. ``python -m lslib.audit`` audits a saved model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lslib._checks import check_int_at_least, check_nonnegative, check_unit_interval
from lslib.attacks import AttackResult, bim, fgsm

__all__ = [
    "square_linf",
    "transfer_attack",
    "Sign",
    "AuditReport",
    "audit",
    "SIGNS",
    "load_checkpoint",
    "main",
]

SIGNS = (
    "single_step_beats_iterative",
    "transfer_beats_white_box",
    "gradient_free_beats_white_box",
    "no_zero_at_large_eps",
    "not_monotone_in_eps",
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
                p_init: float = 0.05, generator: torch.Generator | None = None) -> AttackResult:
    """The L-inf Square attack (Andriushchenko et al. 2020), untargeted, margin loss.

    Starts from vertical stripes of ``+-eps``; each of ``queries - 1`` iterations redraws, for every
    sample not yet fooled, one square window (side ``round(sqrt(p * H * W))`` with ``p`` from the
    authors' schedule, at a random position per sample) with one random ``+-eps`` per channel, and
    keeps it when the margin ``z_y - max_{j != y} z_j`` drops. Uses forward passes only (no
    gradient). ``generator`` (a CPU generator) makes it reproducible. Returns an
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
        lo, hi = (xc - eps).clamp(0, 1), (xc + eps).clamp(0, 1)

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
            cand = torch.where(window, xc[active] + sign((m, c, 1, 1)), best[active])
            cand = torch.clamp(cand, lo[active], hi[active])
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
          generator: torch.Generator | None = None) -> AuditReport:
    """Run the checklist on ``model`` at budget ``eps`` (L-inf, pixels in [0, 1]).

    ``white_box(model, x, y) -> AttackResult`` defaults to BIM with 10 steps plus 5 random-start
    restarts (PGD); ``single_step`` to FGSM; both are also run over ``eps_grid`` (whose largest
    value should be 1). ``source_model`` (e.g. a naturally trained model of the same
    architecture) enables the transfer sign: its PGD adversarials are evaluated on ``model``;
    without it that sign is reported as passed with "not run". A sign fails when the
    difference it measures exceeds ``tolerance`` (a fraction of the points), and
    ``no_zero_at_large_eps`` fails when the best accuracy at the largest eps exceeds
    ``zero_tolerance``.
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
    return AuditReport(eps=eps, eps_grid=grid, clean_accuracy=accuracy["clean"],
                       accuracy=accuracy, curves=curves, signs=signs)


# --------------------------------------------------------------------------------------------
# command line: python -m lslib.audit --model mlp --checkpoint model.pt --eps 0.1
# --------------------------------------------------------------------------------------------


def load_checkpoint(name: str, path: str, device: str | torch.device = "cpu") -> nn.Module:
    """A :func:`lslib.models.build_model` model with the weights of ``path``: either a bare
    ``state_dict`` or the experiment cache's ``{"state_dict": ..., "record": ...}``."""
    from lslib.models import build_model

    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    model = build_model(name)
    model.load_state_dict(state)
    return model.to(device).eval()


def _report_dict(report: AuditReport) -> dict[str, object]:
    return {"eps": report.eps, "eps_grid": report.eps_grid, "passed": report.passed,
            "clean_accuracy": report.clean_accuracy, "accuracy": report.accuracy,
            "curves": report.curves,
            "signs": [{"name": s.name, "passed": s.passed, "detail": s.detail,
                       "values": s.values} for s in report.signs]}


def main(argv: Sequence[str] | None = None) -> int:
    """Audit a saved model from the command line; prints the checklist (exit status 0), and
    writes it as JSON with ``--json``."""
    import argparse
    import json

    from lslib.data import load_dataset

    p = argparse.ArgumentParser(prog="python -m lslib.audit",
                                description="Gradient-masking checklist for a saved model.")
    p.add_argument("--model", required=True, help="architecture (lslib.models.build_model name)")
    p.add_argument("--checkpoint", required=True, help="state_dict or experiment-cache .pt file")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit", type=int, default=1000, help="test images to attack")
    p.add_argument("--eps", type=float, required=True, help="L-inf budget (pixels in [0, 1])")
    p.add_argument("--source-model", default=None, help="architecture of the transfer source")
    p.add_argument("--source-checkpoint", default=None, help="weights of the transfer source")
    p.add_argument("--square-queries", type=int, default=1000)
    p.add_argument("--data-root", default=None, help="data folder (default: $LSLIB_DATA)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = p.parse_args(argv)
    if (args.source_model is None) != (args.source_checkpoint is None):
        p.error("--source-model and --source-checkpoint go together")
    model = load_checkpoint(args.model, args.checkpoint, args.device)
    source = (load_checkpoint(args.source_model, args.source_checkpoint, args.device)
              if args.source_model else None)
    data = load_dataset(args.dataset, "test", args.data_root, limit=args.limit)
    report = audit(model, data.x.to(args.device), data.y.to(args.device), eps=args.eps,
                   source_model=source, square_queries=args.square_queries)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_report_dict(report), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
