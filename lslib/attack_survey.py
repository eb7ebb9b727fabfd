"""The attacks chapter's full-size run: the four attacks on the natural MNIST network.

The network is the natural model of the "MNIST Linear" set-up (the MLP 784-500-256-10 trained
on the full training set, :data:`lslib.experiments.SETUPS`), taken from the model cache or
trained as the reproduction trains it. It is attacked on the first ``n`` test images by FGSM and
BIM at one budget, by DeepFool and by Carlini-Wagner, and by FGSM and BIM over a grid of
budgets; one test image fooled by all four is kept with its adversarials. The book reads what
this writes::

    python -m lslib.attack_survey --out results/mnist-attacks.csv     # a few minutes on a CPU

- ``<out>``: one row per attack (accuracy, success rate, median L-inf and L2 of the
  perturbations that fooled, seconds);
- ``<out stem>-curve.csv``: accuracy under FGSM and BIM at each budget of the grid;
- ``<out stem>-images.npz``: the example image, its adversarials and the predictions;
- ``<out>.meta.json``: command, settings, model key and training record, start, wall time and
  :func:`lslib.experiments.provenance` (commit, device, versions).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["CW_SETTINGS", "EPS", "EPS_GRID", "run_survey"]

EPS = 0.2
EPS_GRID = tuple(round(float(e), 4) for e in np.linspace(0.0, 0.3, 13))
CW_SETTINGS = dict(binary_search_steps=4, steps=100, lr=0.1, initial_const=1.0, kappa=0.0,
                   abort_early=True, start="deepfool")
"""The strong protocol's CW (:data:`lslib.experiments.PROTOCOLS`), sized for a CPU."""


def _attacks() -> dict[str, Any]:
    from lslib.attacks import bim, carlini_wagner_l2, deepfool, fgsm

    return {"FGSM": functools.partial(fgsm, eps=EPS),
            "BIM": functools.partial(bim, eps=EPS, steps=10),
            "DeepFool": functools.partial(deepfool, steps=50),
            "CW": functools.partial(carlini_wagner_l2, **CW_SETTINGS)}


def run_survey(out: Path, *, n: int = 1000, cache: str | None = None, data_root=None,
               log=print) -> None:
    """Attack the natural MNIST MLP and write the chapter's files next to ``out``."""
    from lslib.attacks import bim, fgsm, robust_accuracy
    from lslib.experiments import (
        SETUPS,
        Defence,
        _test_split,
        atomic_write,
        cache_dir,
        provenance,
        train_or_load,
    )

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    setup = SETUPS["mnist-linear"]
    config = Defence("natural").train_config(setup)
    model, record = train_or_load(setup, config, cache=cache_dir(cache),
                                  device=torch.device("cpu"), data_root=data_root,
                                  progress=False, log=log)
    test = _test_split(setup.name, "real", data_root, 0, False)
    x, y = test.x[:n], test.y[:n]
    with torch.no_grad():
        pred = model(x).argmax(1)
    correct = pred == y
    rows, results = [], {}
    for name, attack in _attacks().items():
        start = time.perf_counter()
        res = results[name] = attack(model, x, y)
        seconds = time.perf_counter() - start
        delta = (res.adversarial - x).flatten(1)
        fooled = res.success & correct
        rows.append({"attack": name,
                     "budget": f"Linf {EPS:g}" if name in ("FGSM", "BIM") else "minimal L2",
                     "accuracy": float((correct & ~res.success).double().mean()),
                     "success_rate": float(fooled.sum()) / max(int(correct.sum()), 1),
                     "median_linf": float(delta[fooled].abs().amax(1).median()),
                     "median_l2": float(delta[fooled].norm(dim=1).median()),
                     "seconds": seconds, "n": n,
                     "clean_accuracy": float(correct.double().mean())})
        log(f"{name}: accuracy {rows[-1]['accuracy']:.3f} ({seconds:.0f} s)")
    everyone = correct.clone()
    for res in results.values():
        everyone &= res.success
    idx = int(everyone.nonzero()[0]) if bool(everyone.any()) else 0
    curve, budget_images, budget_preds = [], [], []
    for e in EPS_GRID:
        for name, fn in (("FGSM", functools.partial(fgsm, eps=e)),
                         ("BIM", functools.partial(bim, eps=e, steps=10))):
            rep = robust_accuracy(model, x, y, fn, progress=False)
            curve.append({"attack": name, "eps": e, "accuracy": rep.robust_accuracy})
            adv = fn(model, x[idx : idx + 1], y[idx : idx + 1]).adversarial
            with torch.no_grad():
                budget_preds.append(int(model(adv).argmax(1)))
            budget_images.append(adv[0, 0].numpy())
    images = {
        "index": np.array(idx), "clean": x[idx, 0].numpy(), "clean_pred": np.array(int(pred[idx])),
        "attacks": np.array(list(results)),
        "adversarial": np.stack([r.adversarial[idx, 0].numpy() for r in results.values()]),
        "adversarial_pred": np.array([_predict(model, r.adversarial[idx])
                                      for r in results.values()]),
        "budget_attack": np.array([c["attack"] for c in curve]),
        "budget_eps": np.array([c["eps"] for c in curve]),
        "budget_images": np.stack(budget_images).astype(np.float32),
        "budget_pred": np.array(budget_preds),
    }
    out = Path(out)
    stem = out.with_suffix("")
    atomic_write(out, lambda p: pd.DataFrame(rows).to_csv(p, index=False))
    atomic_write(stem.with_name(stem.name + "-curve.csv"),
                 lambda p: pd.DataFrame(curve).to_csv(p, index=False))
    npz = stem.with_name(stem.name + "-images.npz")

    def write_npz(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez_compressed(f, **images)

    atomic_write(npz, write_npz)
    from lslib._cli import command_line

    meta = {"command": command_line("python -m lslib.attack_survey", sys.argv[1:]),
            "setup": setup.name, "defence": "natural", "model_key": config.key(), "n": n,
            "eps": EPS, "eps_grid": list(EPS_GRID), "cw": CW_SETTINGS, "bim_steps": 10,
            "deepfool_steps": 50, "train_limit": config.train_limit, "epochs": setup.epochs,
            "train_seconds": float(record.get("seconds", float("nan"))),
            "threads": torch.get_num_threads(), "started": started.isoformat(),
            "wall_seconds": time.perf_counter() - t0, **provenance("cpu")}
    atomic_write(out.with_name(out.name + ".meta.json"),
                 lambda p: p.write_text(json.dumps(meta, indent=1, default=str) + "\n"))


def _predict(model: torch.nn.Module, image: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(image[None]).argmax(1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lslib.attack_survey", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("results/mnist-attacks.csv"))
    ap.add_argument("--n", type=int, default=1000, help="test images attacked")
    ap.add_argument("--cache", default=None, help="model cache (default $LSLIB_CACHE)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from lslib.allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    run_survey(args.out, n=args.n, cache=args.cache)


if __name__ == "__main__":
    main()
