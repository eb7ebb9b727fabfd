"""Why an unbounded attack leaves a point: the strong protocol's DeepFool survivors, examined.

An unbounded attack (DeepFool, CW) that converges fools every point, so a point it leaves says
something about the attack, not about the model. For every model of a committed sweep table
(:func:`lslib.experiments.read_results`) whose strong-protocol DeepFool row leaves more than
``threshold``, :func:`survivors_of_table` runs that row's attack again on the same test images
(the same code, so the accuracy must equal the committed one, which is checked) and records, for
each point it leaves, at DeepFool's last iterate (:func:`examine`):

- ``margin``: the largest other logit minus the true class's logit. It is 0 for a tie, which
  ``argmax`` breaks toward the lower class index, so the "robust" point sits on the boundary.
- ``grad_norm``: the L2 norm of the gradient of the sum of the logits. It is 0 in a flat region
  that no gradient step can leave.
- ``active_units``: how many units of the model's last ReLU are on. At 0 the logits are the last
  layer's biases.
- ``units_at_input``: the same at the clean test image. Where it is above 0 and ``active_units``
  is 0, DeepFool's own steps carried the point into the flat region.

and whether the point can be moved at all (:func:`moved_by`):

- ``cw_l2``: the L2 norm of the strong protocol's CW perturbation of the clean image (NaN where
  CW does not move it either);
- ``line_l2``: the L2 norm of the nearest point the model puts in another class found on the
  straight lines from the clean image to the nearest of the row's other test images that the
  model puts in another class (:func:`line_search`, predictions only, no gradient);
- ``df_steps_l2``, ``df_overshoot_l2``: the same for the row's DeepFool run further, with four
  times its iterations and with an overshoot of 1, and ``df_surrogate_l2`` for it with the
  strong protocol's ReLU surrogate (``relu_surrogate`` of :func:`lslib.attacks.deepfool`), the
  fallback that the strong DeepFool has had since it was found to stop in the flat region
  (:func:`deepfool_variants`).

Each row is attacked again with its own settings, read from its ``attack_settings``
(:func:`lslib.experiments.deepfool_settings`), so a table written before the strong DeepFool
gained its fallback is examined with the DeepFool that made it.

The book's tables chapter reads what this writes::

    python -m lslib.survivors results/mnist-lenet.csv --cache .cache/repro \\
        --out results/mnist-lenet-deepfool-survivors.csv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

__all__ = ["deepfool_variants", "examine", "last_relu_units", "line_search", "moved_by",
           "summarise", "survivors_of_table"]


def last_relu_units(model: nn.Module, x: Tensor) -> Tensor:
    """How many units of ``model``'s last :class:`~torch.nn.ReLU` are on, per point of ``x``."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("the model has no nn.ReLU module")
    seen: list[Tensor] = []
    handle = relus[-1].register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return (seen[-1] > 0).flatten(1).sum(1)


def examine(model: nn.Module, x: Tensor, y: Tensor) -> pd.DataFrame:
    """``margin``, ``grad_norm`` and ``active_units`` (see the module docstring) of ``model`` at
    the points ``x`` with true labels ``y``; one row per point."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = model(xg)
        grad = torch.autograd.grad(z.sum(), xg)[0]
    z = z.detach()
    true = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf")).max(1).values
    return pd.DataFrame({"label": y.tolist(), "margin": (others - true).tolist(),
                         "grad_norm": grad.flatten(1).norm(dim=1).tolist(),
                         "active_units": last_relu_units(model, x.detach()).tolist()})


def line_search(model: nn.Module, x: Tensor, y: Tensor, pool: Tensor, *, nearest: int = 20,
                steps: int = 25) -> Tensor:
    """Per point of ``x`` (true labels ``y``), the L2 norm of the nearest point that ``model``
    puts in a class other than ``y`` found on the straight lines from it to the ``nearest``
    images of ``pool`` closest to it (in L2) that the model puts in another class: on each line
    a bisection of ``steps`` halvings keeps a point of another class (the far end is one), so
    every norm returned is that of a point the model misclassifies. It uses the model's
    predictions only: a flat region, where the gradient is zero, does not stop it. ``inf``
    where no image of ``pool`` is in another class."""
    from lslib._attack_base import rows

    if x.shape[1:] != pool.shape[1:]:
        raise ValueError(f"pool images have shape {tuple(pool.shape[1:])}, x "
                         f"{tuple(x.shape[1:])}: give images of the same shape")
    with torch.no_grad():
        pool_pred = model(pool).argmax(1)
        best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
        for i in range(x.shape[0]):
            ends = pool[pool_pred != y[i]]
            if ends.shape[0] == 0:
                continue
            dist = (ends - x[i]).flatten(1).norm(dim=1)
            ends = ends[dist.argsort()[:nearest]]
            lo = torch.zeros(ends.shape[0], dtype=x.dtype, device=x.device)
            hi = torch.ones_like(lo)
            for _ in range(steps):  # invariant: the point at hi is in another class
                mid = (lo + hi) / 2
                other = model(x[i] + rows(mid, x.dim()) * (ends - x[i])).argmax(1) != y[i]
                hi, lo = torch.where(other, mid, hi), torch.where(other, lo, mid)
            found = x[i] + rows(hi, x.dim()) * (ends - x[i])
            best[i] = float((found - x[i]).flatten(1).norm(dim=1).min())
    return best


def moved_by(model: nn.Module, x: Tensor, y: Tensor, pool: Tensor, cw: dict,
             deepfool: dict[str, dict] | None = None) -> pd.DataFrame:
    """Whether the points ``x`` (labels ``y``) can be moved: ``cw_l2``, the L2 norm of the
    perturbation :func:`lslib.attacks.carlini_wagner_l2` with the settings ``cw`` finds (NaN
    where it finds none), ``line_l2`` from :func:`line_search` towards ``pool``, and for each
    ``name: settings`` of ``deepfool``, ``{name}_l2``: the same for :func:`lslib.attacks.deepfool`
    with those settings (e.g. more iterations)."""
    from lslib import attacks

    def l2(res: attacks.AttackResult) -> list[float]:
        return torch.where(res.success, res.norms,
                           torch.full_like(res.norms, float("nan"))).tolist()

    out = {"cw_l2": l2(attacks.carlini_wagner_l2(model, x, y, **cw)),
           "line_l2": line_search(model, x, y, pool).tolist()}
    for name, settings in (deepfool or {}).items():
        out[f"{name}_l2"] = l2(attacks.deepfool(model, x, y, **settings))
    return pd.DataFrame(out)


#: how much further :func:`deepfool_variants` runs DeepFool: this many times the iterations,
#: and this overshoot (1: each step goes twice as far as the linearised boundary)
FURTHER_STEPS, FURTHER_OVERSHOOT = 4, 1.0
#: the columns :func:`deepfool_variants` makes and how :func:`summarise` names their counts
_FURTHER_LABELS = {"df_steps_l2": f"DeepFool x{FURTHER_STEPS} iterations moves",
                   "df_overshoot_l2": f"DeepFool overshoot {FURTHER_OVERSHOOT:g} moves",
                   "df_surrogate_l2": "DeepFool with the ReLU surrogate moves"}


def deepfool_variants(settings: dict, surrogate: Sequence[float] | None = None
                      ) -> dict[str, dict]:
    """A DeepFool (keyword arguments ``settings``) run further, for :func:`moved_by`:
    ``df_steps`` with :data:`FURTHER_STEPS` times the iterations, ``df_overshoot`` with an
    overshoot of :data:`FURTHER_OVERSHOOT` (both without a ReLU surrogate), and
    ``df_surrogate`` with the ReLU surrogate ``surrogate`` (default: the strong protocol's)."""
    from lslib.experiments import PROTOCOLS

    plain = {k: v for k, v in settings.items() if k != "relu_surrogate"}
    if surrogate is None:
        surrogate = PROTOCOLS["strong"].deepfool["relu_surrogate"]
    return {"df_steps": {**plain, "steps": FURTHER_STEPS * int(plain["steps"])},
            "df_overshoot": {**plain, "overshoot": FURTHER_OVERSHOOT},
            "df_surrogate": {**plain, "relu_surrogate": tuple(surrogate)}}


def survivors_of_table(table: str | Path, *, cache: str | Path | None = None,
                       threshold: float = 0.01, data_root: str | None = None,
                       log=print) -> pd.DataFrame:
    """The points the strong protocol's DeepFool leaves on every model of ``table`` whose
    DeepFool row keeps more than ``threshold``, examined at DeepFool's last iterate. The models
    come from the model cache (``cache``; they are never trained here)."""
    from lslib import attacks
    from lslib._files import read_cache_entry
    from lslib.experiments import (
        PROTOCOLS,
        SETUPS,
        cache_dir,
        deepfool_settings,
        read_results,
        sweep_test_split,
    )
    from lslib.models import build_model

    rows = read_results(table)
    rows = rows[(rows["protocol"] == "strong") & (rows["attack"] == "DeepFool")
                & (rows["accuracy"] > threshold)]
    found = []
    for row in rows.itertuples():
        setup = SETUPS[row.setup]
        path = cache_dir(cache) / f"{row.model_key}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"model {row.model_key} ({row.defence} {row.alpha}) is not "
                                    f"in the model cache {path.parent}: run the sweep first")
        model = build_model(setup.model)
        model.load_state_dict(read_cache_entry(path)[0])
        model.eval()
        test = sweep_test_split(row.setup, row.data_source, data_root, int(row.seed), False)
        x, y = test.x[:int(row.n)], test.y[:int(row.n)]  # the row's images, as the runner took them
        settings = deepfool_settings(row.attack_settings)  # the DeepFool that made the row
        res = attacks.deepfool(model, x, y, **settings)
        accuracy = 1.0 - float(res.success.double().mean())
        if abs(accuracy - float(row.accuracy)) > 1e-9:
            raise RuntimeError(f"DeepFool keeps {accuracy:.4f} on {row.defence} {row.alpha} of "
                               f"{row.setup}, the table {float(row.accuracy):.4f}: the model or "
                               f"the attack is not the one that made the table")
        left = (~res.success).nonzero().squeeze(1)
        log(f"{row.setup} {row.defence} {row.alpha}: {left.numel()} point(s) left")
        df = examine(model, res.adversarial[left], y[left])
        df["units_at_input"] = last_relu_units(model, x[left]).tolist()
        df = pd.concat([df, moved_by(model, x[left], y[left], x, PROTOCOLS["strong"].cw,
                                     deepfool_variants(settings))], axis=1)
        found.append(df.assign(setup=row.setup, defence=row.defence, alpha=row.alpha,
                               model_key=row.model_key, index=left.tolist(),
                               n=int(row.n), accuracy=float(row.accuracy)))
    columns = ["setup", "defence", "alpha", "model_key", "n", "accuracy", "index", "label",
               "margin", "grad_norm", "active_units", "units_at_input", "cw_l2", "line_l2",
               "df_steps_l2", "df_overshoot_l2", "df_surrogate_l2"]
    return pd.concat(found)[columns] if found else pd.DataFrame(columns=columns)


def summarise(survivors: pd.DataFrame) -> pd.DataFrame:
    """Per model: the points left, how many sit in a flat region (gradient exactly 0) and how
    many with no unit of the last ReLU on, of those how many had units on at the clean image
    (where the table has ``units_at_input``), the largest distance from a tie (``|margin|``, in
    logits), the labels of the points, and (where the table has the columns) how many the
    longer DeepFools move, how many CW moves and how many a line search moves, with the largest
    L2 norm it needs."""
    def per_model(g: pd.DataFrame) -> pd.Series:
        off = g["active_units"] == 0
        out = {"accuracy": g["accuracy"].iloc[0], "points left": len(g),
               "flat (gradient 0)": int((g["grad_norm"] == 0).sum()),
               "no unit on": int(off.sum())}
        if "units_at_input" in g:
            out["of which on at the input"] = int((off & (g["units_at_input"] > 0)).sum())
        out = {**out, "largest |margin|": float(g["margin"].abs().max()),
               "labels": " ".join(str(v) for v in sorted(set(g["label"])))}
        for col, label in _FURTHER_LABELS.items():
            if col in g:
                out[label] = int(g[col].notna().sum())
        if "cw_l2" in g and "line_l2" in g:
            out["CW moves"] = int(g["cw_l2"].notna().sum())
            out["a line moves"] = int(g["line_l2"].lt(float("inf")).sum())
            out["largest line L2"] = float(g["line_l2"].max())
        return pd.Series(out)

    keys = ["setup", "defence", "alpha"]
    return survivors.groupby(keys, sort=False)[list(survivors.columns)].apply(per_model)


def main(argv: list[str] | None = None) -> int:
    from lslib import _cli

    ap = _cli.OneLineParser(prog="python -m lslib.survivors", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=_cli.existing_file(), help="a sweep's results CSV")
    ap.add_argument("--cache", default=None, help="model cache (default $LSLIB_CACHE)")
    ap.add_argument("--threshold", type=_cli.number(_cli.UNIT), default=0.01,
                    help="examine the models whose DeepFool row keeps more than this")
    ap.add_argument("--out", type=_cli.output_file(), required=True)
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()

    def run() -> int:
        found = survivors_of_table(args.table, cache=args.cache, threshold=args.threshold)
        _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started, t0=t0,
                            threads=args.threads, table=Path(args.table).as_posix(),
                            threshold=args.threshold)
        return 0

    return _cli.report_user_errors(ap.prog, run)

if __name__ == "__main__":
    raise SystemExit(main())
