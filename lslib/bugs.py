"""Which bug carries which cell: the original protocol's models, one bug turned off at a time.

For every model of a committed original-protocol table (``python -m lslib reproduce SETUP
--protocol original``), :func:`bugs_of_table` attacks the model again on the row's test images
with :func:`lslib.original.bug_ladder`: with every deviation of the original code
(:class:`lslib.original.Switches`), with each one turned off alone, and with all of them off
(the same protocol run by correct code). The attack with every bug must give the table's
accuracy, which is checked, so the ladder explains the committed cells and not look-alikes.
FGSM and BIM are run at the table's budgets (or ``eps``, the paper's units); DeepFool and CW
have none.

With ``--iterations 10,20,30,50`` it writes instead DeepFool's and CW's accuracy on every model
with each of those iteration counts (:func:`iterations_of_table`): the original's command line
sets that count (``--num_iter_attack``, DeepFool's iterations and CW's Adam steps per
binary-search step) and does not record it.

With ``--slices authors`` (or ``--slices 1000-9999,1001-2000``) it writes every clean, FGSM,
BIM and DeepFool cell of the table on each of those slices of the test set instead
(:func:`slices_of_table`): which test images the authors attacked is recorded only in their
result files, and for most cells no file is in their repository.

The book's tables chapter reads what this writes::

    python -m lslib.bugs results/mnist-linear-original.csv --cache .cache/orig \\
        --out results/mnist-linear-original-bugs.csv
    python -m lslib.bugs results/mnist-linear-original.csv --cache .cache/orig \\
        --iterations 10,20,30,50 --out results/mnist-linear-original-iterations.csv
    python -m lslib.bugs results/mnist-linear-original.csv --cache .cache/orig \\
        --slices authors --out results/mnist-linear-original-slices.csv
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

__all__ = ["AUTHORS_SLICES", "bugs_of_table", "iterations_of_table", "slices_of_table"]

ATTACKS = ("FGSM", "BIM", "DeepFool", "CW")
COLUMNS = ["setup", "defence", "alpha", "T", "model_key", "n", "eps", "switch", "attack",
           "with_bug", "without", "change"]


def _cell(rows: pd.DataFrame, attack: str, eps: float | None) -> float | None:
    """The table's accuracy for ``attack`` (at ``eps`` for FGSM and BIM), None if not run."""
    hit = rows[rows["attack"] == attack]
    if eps is not None:
        hit = hit[(hit["eps"] - eps).abs() < 1e-9]
    return None if hit.empty else float(hit["accuracy"].iloc[0])


def _check_cell(row: pd.Series, attack: str, got: float, want: float) -> None:
    """A re-run cell must be the table's: else the model or the attack has changed."""
    if abs(got - want) > 1e-9:
        raise RuntimeError(f"{attack} keeps {got:.4f} on {row['defence']} {row['alpha']} of "
                           f"{row['setup']}, the table {want:.4f}: the model or the attack is "
                           "not the one that made the table")


def _original_rows(table: str | Path) -> pd.DataFrame:
    from lslib._checks import BadFileError
    from lslib.experiments import read_results

    rows = read_results(table)
    rows = rows[rows["protocol"] == "original"]
    if rows.empty:
        raise BadFileError(table, "no row of the original protocol",
                           "give a table written by `python -m lslib reproduce SETUP "
                           "--protocol original`")
    return rows


def _models(rows: pd.DataFrame, cache: str | Path | None, data_root: str | None
            ) -> Iterator[tuple[str, pd.DataFrame, torch.nn.Module, dict[str, Any], Any, Any]]:
    """Per model of ``rows``: its key, its rows, the model (eval mode, from the cache), its
    training config, the test split its rows attacked and the original protocol as they ran it
    (quick or not)."""
    from lslib import original
    from lslib._files import read_cache_entry
    from lslib.experiments import PROTOCOLS, cache_dir, sweep_test_split

    for key, model_rows in rows.groupby("model_key", sort=False):
        first = model_rows.iloc[0]
        path = cache_dir(cache) / f"{key}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"model {key} ({first['defence']} {first['alpha']}) is not "
                                    f"in the model cache {path.parent}: run the sweep first")
        state, record = read_cache_entry(path)
        config = json.loads(record["config"])
        model = original.MODELS[config["model"]]().double()
        model.load_state_dict(state)
        model.eval()
        test = sweep_test_split(first["setup"], first["data_source"], data_root,
                                int(first["seed"]))
        protocol = PROTOCOLS["original"]
        yield (key, model_rows, model, config, test,
               protocol.quick() if str(first["quick"]) == "True" else protocol)


def iterations_of_table(table: str | Path, iterations: Sequence[int], *,
                        cache: str | Path | None = None, data_root: str | None = None,
                        log: Callable[[str], Any] = print) -> pd.DataFrame:
    """DeepFool's and CW's accuracy on every model of ``table`` with each count of
    ``iterations``: the original's ``--num_iter_attack``, which sets DeepFool's iterations and
    CW's Adam steps per binary-search step in the same call and which its command lines do not
    record. On the rows' test images; the count the table used must give the table's cell,
    which is checked. One row per model, attack and count."""
    from lslib import original

    rows = _original_rows(table)
    out = []
    for key, model_rows, model, _, test, protocol in _models(rows, cache, data_root):
        for attack, knob in (("DeepFool", "deepfool"), ("CW", "cw")):
            cells = model_rows[model_rows["attack"] == attack]
            if cells.empty:
                continue
            first, n = cells.iloc[0], int(cells["n"].iloc[0])
            steps = original.protocol_steps(protocol)
            used = steps[knob]
            x, y = original.test_slice(test, n)
            for count in iterations:
                acc = original.attack_accuracy(model, x, y, attack,
                                               steps={**steps, knob: int(count)}
                                               ).accuracy
                if count == used:
                    _check_cell(first, attack, acc, float(first["accuracy"]))
                out.append({"setup": first["setup"], "defence": first["defence"],
                            "alpha": first["alpha"], "T": first["T"], "model_key": key,
                            "n": n, "attack": attack, "iterations": int(count),
                            "binary_search_steps": (protocol.cw["binary_search_steps"]
                                                    if attack == "CW" else None),
                            "accuracy": acc, "in_table": count == used})
        log(f"{model_rows['setup'].iloc[0]} {model_rows['defence'].iloc[0]} "
            f"{model_rows['alpha'].iloc[0]}: done")
    return pd.DataFrame(out)


def bugs_of_table(table: str | Path, *, cache: str | Path | None = None,
                  eps: Sequence[float] | None = None, data_root: str | None = None,
                  attacks: Sequence[str] = ATTACKS,
                  log: Callable[[str], Any] = print) -> pd.DataFrame:
    """The bug ladder of every model of the original-protocol rows of ``table`` (models from
    the model cache ``cache``; never trained here), at each FGSM/BIM budget of ``eps`` (default:
    the table's own), for the attacks in ``attacks``. One row per model, budget, switch and
    attack (DeepFool and CW once per model, with ``eps`` NaN)."""
    from lslib import original
    from lslib.experiments import SETUPS

    rows = _original_rows(table)
    if eps is None:
        eps = sorted(set(rows.loc[rows["attack"].isin(("FGSM", "BIM")), "eps"]))
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad:
        raise ValueError(f"eps must be budgets in [0, 1], got {list(eps)}")
    out = []
    for key, model_rows, model, config, test, protocol in _models(rows, cache, data_root):
        first = model_rows.iloc[0]
        setup = SETUPS[first["setup"]]
        steps = original.protocol_steps(protocol)
        kw = dict(alpha=config["alpha"], method=config["method"],
                  temperature=config["temperature"], steps=steps)
        for attack in (a for a in ATTACKS if a in attacks):
            cells = model_rows[model_rows["attack"] == attack]
            if cells.empty:
                continue
            n = int(cells["n"].iloc[0])  # the row's images: the same slice as the table's
            x, y = original.test_slice(test, n)
            for e in eps if attack in ("FGSM", "BIM") else (math.nan,):
                torch.manual_seed(0)
                ladder = original.bug_ladder(model, x, y, eps=e * setup.eps_scale,
                                             attacks=(attack,), **kw)
                want = _cell(cells, attack, None if math.isnan(e) else e)
                got = float(ladder["with_bug"].iloc[0])
                if want is not None:
                    _check_cell(first, attack, got, want)
                out.append(ladder.assign(setup=first["setup"], defence=first["defence"],
                                         alpha=first["alpha"], T=first["T"], model_key=key,
                                         n=n, eps=e))
        log(f"{first['setup']} {first['defence']} {first['alpha']}: done")
    return pd.concat(out)[COLUMNS].reset_index(drop=True)


#: the slices of the MNIST test set that the authors' runner attacked, by commit (first and last
#: image, inclusive; lslib.authors --slices and --runner-slices, results/README "Which test
#: images"): 8789498 to f0dae34, 19722ec (and the files of smoothed MLPs at 919c8a0), dc3c764,
#: 1bb8c1c to HEAD (committed after the paper's submission, kept as a control)
AUTHORS_SLICES = ((1000, 9999), (1001, 2000), (1000, 1999), (1000, 2999))
SLICE_ATTACKS = ("clean", "FGSM", "BIM", "DeepFool")


def slices_of_table(table: str | Path, slices: Sequence[tuple[int, int]] = AUTHORS_SLICES, *,
                    cache: str | Path | None = None, data_root: str | None = None,
                    log: Callable[[str], Any] = print) -> pd.DataFrame:
    """Every clean, FGSM, BIM and DeepFool cell of the original-protocol ``table`` on other
    slices of the test set: each model attacked once on every image from the first of
    ``slices`` (and of the table's own slice) to the last, then each slice's accuracy read off
    :func:`lslib.original.robust_points` (each point is attacked on its own). The table's own
    slice must give the table's cell, which is checked. CW is left out (its slice is not in
    question, and it is the slow one). One row per model, attack, budget and slice, with
    ``first_image``, ``last_image`` (inclusive), ``n`` and ``in_table`` (the table's slice)."""
    from lslib import original
    from lslib.experiments import SETUPS

    spans = [(int(a), int(b)) for a, b in slices]
    bad = [f"{a}-{b}" for a, b in spans if not 0 <= a <= b]
    if not spans or bad:
        raise ValueError(f"slices must be first-last image ranges with 0 <= first <= last, "
                         f"got {bad or 'none'}")
    rows = _original_rows(table)
    out = []
    for key, model_rows, model, config, test, protocol in _models(rows, cache, data_root):
        first = model_rows.iloc[0]
        setup = SETUPS[first["setup"]]
        kw = dict(alpha=config["alpha"], method=config["method"],
                  temperature=config["temperature"], steps=original.protocol_steps(protocol))
        for attack in SLICE_ATTACKS:
            cells = model_rows[model_rows["attack"] == attack]
            if cells.empty:
                continue
            own = original.slice_bounds(len(test.y), int(cells["n"].iloc[0]))
            lo = min([own[0], *(a for a, _ in spans)])
            hi = max([own[1], *(b + 1 for _, b in spans)])
            if hi > len(test.y):
                raise ValueError(f"slices reach image {hi - 1}, the test set has "
                                 f"{len(test.y)} images")
            x, y = original.from_pixels(test.x[lo:hi]), test.y[lo:hi]
            for cell in cells.itertuples():
                e = float(cell.eps) if attack in ("FGSM", "BIM") else 0.0
                torch.manual_seed(0)
                robust = original.robust_points(model, x, y, attack, eps=e * setup.eps_scale,
                                                **kw).double()
                _check_cell(first, attack, float(robust[own[0] - lo:own[1] - lo].mean()),
                            float(cell.accuracy))
                for a, b in sorted({*spans, (own[0], own[1] - 1)}):
                    out.append({"setup": first["setup"], "defence": first["defence"],
                                "alpha": first["alpha"], "T": first["T"], "model_key": key,
                                "attack": attack, "eps": cell.eps, "first_image": a,
                                "last_image": b, "n": b - a + 1,
                                "accuracy": float(robust[a - lo:b + 1 - lo].mean()),
                                "in_table": (a, b + 1) == own})
        log(f"{first['setup']} {first['defence']} {first['alpha']}: done")
    return pd.DataFrame(out)


def _spans(text: str) -> tuple[tuple[int, int], ...]:
    """Comma-separated FIRST-LAST image ranges, 0 <= FIRST <= LAST, or "authors" for
    :data:`AUTHORS_SLICES` (argparse type)."""
    if text.strip() == "authors":
        return AUTHORS_SLICES
    spans = []
    for part in (p.strip() for p in text.split(",")):
        a, sep, b = part.partition("-")
        if not (sep and a.isdigit() and b.isdigit() and int(a) <= int(b)):
            raise argparse.ArgumentTypeError(
                f"{text!r}: give FIRST-LAST image ranges with FIRST <= LAST, comma-separated "
                "(e.g. 1000-9999,1000-1999)")
        spans.append((int(a), int(b)))
    return tuple(spans)


def _counts(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers >= 1 (argparse type)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers >= 1, comma-separated")
    return tuple(int(p) for p in parts)


def main(argv: list[str] | None = None) -> int:
    from lslib import _cli

    ap = _cli.OneLineParser(prog="python -m lslib.bugs", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=_cli.existing_file(),
                    help="an original-protocol results CSV")
    ap.add_argument("--cache", default=None, help="model cache (default $LSLIB_CACHE)")
    ap.add_argument("--eps", type=_cli.float_list(_cli.UNIT), default=None,
                    help="FGSM/BIM budgets in the paper's units, each in [0, 1] "
                         "(default: the table's)")
    ap.add_argument("--attacks", type=_cli.name_list(ATTACKS), default=ATTACKS,
                    help="the ladder's attacks, comma-separated (default all four)")
    ap.add_argument("--iterations", type=_counts, default=None, metavar="COUNTS",
                    help="instead of the ladder: DeepFool's and CW's accuracy with each of "
                         "these iteration counts (e.g. 10,20,30,50)")
    ap.add_argument("--slices", type=_spans, default=None, metavar="RANGES",
                    help="instead of the ladder: every clean, FGSM, BIM and DeepFool cell on "
                         "each of these test-image ranges, e.g. 1000-9999,1001-2000 ('authors': "
                         "the slices the authors' runner used)")
    ap.add_argument("--out", type=_cli.output_file(), required=True)
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=1)
    args = ap.parse_args(argv)
    if args.iterations is not None and args.slices is not None:
        ap.error("give --iterations or --slices, not both")
    torch.set_num_threads(args.threads)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()

    def run() -> int:
        if args.iterations is not None:
            found = iterations_of_table(args.table, args.iterations, cache=args.cache)
        elif args.slices is not None:
            try:
                found = slices_of_table(args.table, args.slices, cache=args.cache)
            except ValueError as exc:  # slices beyond the test set
                ap.error(f"--slices: {exc}")
        else:
            found = bugs_of_table(args.table, cache=args.cache, eps=args.eps,
                                  attacks=args.attacks)
        _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started, t0=t0,
                            threads=args.threads, table=Path(args.table).as_posix(),
                            eps=args.eps, iterations=args.iterations,
                            slices=None if args.slices is None else [
                                f"{a}-{b}" for a, b in args.slices],
                            attacks=list(SLICE_ATTACKS if args.slices is not None
                                         else args.attacks))
        return 0

    return _cli.report_user_errors(ap.prog, run)


if __name__ == "__main__":
    raise SystemExit(main())
