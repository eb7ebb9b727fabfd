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

With ``--versions tables,cw-2019-03`` it writes each attack's accuracy under each named version
of the original code (:data:`lslib.original.VERSIONS`) instead, with the clean accuracy of the
same points (:func:`versions_of_table`): the version ``tables`` must give the table's cell,
which is checked; the others are the code of other commits (``cw-2019-03``: the March 2019 CW).

Each model and attack is one job of :mod:`lslib.runner`: ``--workers N`` runs N at a time on a
local Ray, ``--address`` on a Ray cluster (the weights travel with the jobs: the workers need
the data, not the model cache). Every job's rows are appended to ``<out>.journal.jsonl`` as it
finishes; a killed run, started again with the same command, reads them back and runs only the
others. The journal is removed once ``--out`` holds every row.

With ``--histories`` it writes every model's validation losses, epoch by epoch, from the
training record in the model cache (:func:`histories_of_table`): set beside the histories the
authors saved in their checkpoints (``python -m lslib.authors --histories``).

The book's tables chapter reads what this writes::

    python -m lslib.bugs results/mnist-linear-original-epochs-10.csv \\
        --out results/mnist-linear-original-epochs-10-bugs.csv
    python -m lslib.bugs results/mnist-linear-original-epochs-10.csv \\
        --iterations 10,20,30,50 --out results/mnist-linear-original-epochs-10-iterations.csv
    python -m lslib.bugs results/mnist-linear-original-epochs-10.csv \\
        --slices authors --out results/mnist-linear-original-epochs-10-slices.csv
    python -m lslib.bugs results/mnist-lenet-original-authors-start-slice1000.csv \\
        --cache .cache/orig --workers 2 --out results/mnist-lenet-original-authors-start-bugs.csv
    python -m lslib.bugs results/mnist-lenet-original-authors-start-slice1000.csv \\
        --cache .cache/orig --attacks CW --versions tables,cw-2019-03 --workers 2 \\
        --out results/mnist-lenet-original-authors-start-versions.csv
    python -m lslib.bugs results/mnist-linear-original-epochs-10.csv --attacks CW \\
        --versions cw-2019-03 --out results/mnist-linear-original-epochs-10-versions.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

__all__ = ["AUTHORS_SLICES", "bugs_of_table", "iterations_of_table", "ladder_moves",
           "slices_of_table", "versions_of_table"]

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


def _original_rows(table: str | Path, models: Sequence[str] | None = None) -> pd.DataFrame:
    """The original-protocol rows of ``table``; of the models ``models`` (their model keys)
    only, where given."""
    from lslib._checks import BadFileError
    from lslib.experiments import read_results

    rows = read_results(table)
    rows = rows[rows["protocol"] == "original"]
    if rows.empty:
        raise BadFileError(table, "no row of the original protocol",
                           "give a table written by `python -m lslib reproduce SETUP "
                           "--protocol original`")
    if models is not None:
        missing = [m for m in models if m not in set(rows["model_key"])]
        if missing:
            raise BadFileError(table, f"no model {', '.join(missing)} of the original protocol",
                               "give model keys from its model_key column")
        rows = rows[rows["model_key"].isin(list(models))]
    return rows


def _model_entries(rows: pd.DataFrame, cache: str | Path | None
                   ) -> Iterator[tuple[str, pd.DataFrame, dict[str, torch.Tensor], dict[str, Any]]]:
    """Per model of ``rows``, in the table's order: its key, its rows, its weights and its
    training config, from the model cache (a missing model is an error: nothing is trained
    here)."""
    from lslib._files import read_cache_entry
    from lslib.experiments import cache_dir

    for key, model_rows in rows.groupby("model_key", sort=False):
        first = model_rows.iloc[0]
        path = cache_dir(cache) / f"{key}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"model {key} ({first['defence']} {first['alpha']}) is not "
                                    f"in the model cache {path.parent}: run the sweep first")
        state, record = read_cache_entry(path)
        yield key, model_rows, state, json.loads(record["config"])


def _built(state: dict[str, torch.Tensor], config: dict[str, Any],
           device: torch.device | str = "cpu") -> torch.nn.Module:
    """The original's float64 model of ``config`` with the weights ``state``, in eval mode."""
    from lslib import original

    model = original.MODELS[config["model"]]().double()
    model.load_state_dict(state)
    return model.to(device).eval()


def _split_and_protocol(first: pd.Series, data_root: str | None) -> tuple[Any, Any]:
    """The test split a row attacked and the original protocol as it ran (quick or not)."""
    from lslib.experiments import PROTOCOLS, sweep_test_split

    test = sweep_test_split(first["setup"], first["data_source"], data_root, int(first["seed"]))
    protocol = PROTOCOLS["original"]
    return test, protocol.quick() if str(first["quick"]) == "True" else protocol


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    """A digest of the weights themselves: a model trained again under the same key is another
    model."""
    return hashlib.sha256(b"".join(t.detach().cpu().contiguous().numpy().tobytes()
                                   for t in state.values())).hexdigest()[:16]


def _on_model(model: torch.nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` on the model's device (a job's model is on the device its task runs on)."""
    device = next(model.parameters()).device
    return tuple(t.to(device) for t in tensors)


def _attack_kw(config: dict[str, Any], protocol: Any) -> dict[str, Any]:
    """What :func:`lslib.original.attack_accuracy` needs besides the attack: the model's
    smoothing (its smoothed target for FGSM and BIM) and the protocol's iteration counts."""
    from lslib import original

    return dict(alpha=config["alpha"], method=config["method"],
                temperature=config["temperature"], steps=original.protocol_steps(protocol))


def _ident(first: pd.Series, key: str) -> dict[str, Any]:
    return {"setup": first["setup"], "defence": first["defence"], "alpha": first["alpha"],
            "T": first["T"], "model_key": key}


def _ladder_rows(model: torch.nn.Module, config: dict[str, Any], test: Any, protocol: Any,
                 cells: pd.DataFrame, key: str, attack: str, *, eps: Sequence[float]
                 ) -> list[dict[str, Any]]:
    """The bug ladder of one model and attack (at each budget of ``eps`` for FGSM and BIM),
    checked against the table's ``cells``."""
    from lslib import original
    from lslib.experiments import SETUPS

    first = cells.iloc[0]
    n = int(cells["n"].iloc[0])  # the row's images: the same slice as the table's
    x, y = _on_model(model, *original.test_slice(test, n))
    kw = _attack_kw(config, protocol)
    out = []
    for e in eps if attack in ("FGSM", "BIM") else (math.nan,):
        torch.manual_seed(0)
        ladder = original.bug_ladder(model, x, y, eps=e * SETUPS[first["setup"]].eps_scale,
                                     attacks=(attack,), **kw)
        want = _cell(cells, attack, None if math.isnan(e) else e)
        if want is not None:
            _check_cell(first, attack, float(ladder["with_bug"].iloc[0]), want)
        out += ladder.assign(**_ident(first, key), n=n, eps=e)[COLUMNS].to_dict("records")
    return out


def _iteration_rows(model: torch.nn.Module, config: dict[str, Any], test: Any, protocol: Any,
                    cells: pd.DataFrame, key: str, attack: str, *, iterations: Sequence[int]
                    ) -> list[dict[str, Any]]:
    """DeepFool's or CW's accuracy on one model with each count of ``iterations``; the count
    the table used must give its cell."""
    from lslib import original

    knob = {"DeepFool": "deepfool", "CW": "cw"}[attack]
    first, n = cells.iloc[0], int(cells["n"].iloc[0])
    steps = original.protocol_steps(protocol)
    used = steps[knob]
    x, y = _on_model(model, *original.test_slice(test, n))
    out = []
    for count in iterations:
        acc = original.attack_accuracy(model, x, y, attack,
                                       steps={**steps, knob: int(count)}).accuracy
        if count == used:
            _check_cell(first, attack, acc, float(first["accuracy"]))
        out.append({**_ident(first, key), "n": n, "attack": attack, "iterations": int(count),
                    "binary_search_steps": (protocol.cw["binary_search_steps"]
                                            if attack == "CW" else None),
                    "accuracy": acc, "in_table": count == used})
    return out


def _slice_rows(model: torch.nn.Module, config: dict[str, Any], test: Any, protocol: Any,
                cells: pd.DataFrame, key: str, attack: str, *,
                slices: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Every cell of one model and attack on each of ``slices`` (and on the table's own)."""
    from lslib import original
    from lslib.experiments import SETUPS

    first = cells.iloc[0]
    spans = [(int(a), int(b)) for a, b in slices]
    kw = _attack_kw(config, protocol)
    own = original.slice_bounds(len(test.y), int(cells["n"].iloc[0]))
    lo = min([own[0], *(a for a, _ in spans)])
    hi = max([own[1], *(b + 1 for _, b in spans)])
    x, y = _on_model(model, original.from_pixels(test.x[lo:hi]), test.y[lo:hi])
    out = []
    for cell in cells.itertuples():
        e = float(cell.eps) if attack in ("FGSM", "BIM") else 0.0
        torch.manual_seed(0)
        robust = original.robust_points(model, x, y, attack,
                                        eps=e * SETUPS[first["setup"]].eps_scale,
                                        **kw).double()
        _check_cell(first, attack, float(robust[own[0] - lo:own[1] - lo].mean()),
                    float(cell.accuracy))
        for a, b in sorted({*spans, (own[0], own[1] - 1)}):
            out.append({**_ident(first, key), "attack": attack, "eps": cell.eps,
                        "first_image": a, "last_image": b, "n": b - a + 1,
                        "accuracy": float(robust[a - lo:b + 1 - lo].mean()),
                        "in_table": (a, b + 1) == own})
    return out


def _version_rows(model: torch.nn.Module, config: dict[str, Any], test: Any, protocol: Any,
                  cells: pd.DataFrame, key: str, attack: str, *, versions: Sequence[str]
                  ) -> list[dict[str, Any]]:
    """One model and attack (at each of the table's budgets for FGSM and BIM) under each named
    version of :data:`lslib.original.VERSIONS`, with the clean accuracy of the same points; the
    version ``tables`` must give the table's cell."""
    from lslib import original
    from lslib.experiments import SETUPS

    first = cells.iloc[0]
    n = int(cells["n"].iloc[0])
    x, y = _on_model(model, *original.test_slice(test, n))
    kw = _attack_kw(config, protocol)
    weights = _weights_digest(model.state_dict())
    out = []
    for cell in cells.itertuples():
        e = float(cell.eps) if attack in ("FGSM", "BIM") else math.nan
        for version in versions:
            torch.manual_seed(0)
            got = original.attack_accuracy(model, x, y, attack, switches=original.VERSIONS[version],
                                           eps=0.0 if math.isnan(e) else
                                           e * SETUPS[first["setup"]].eps_scale, **kw)
            if version == "tables":
                _check_cell(first, attack, got.accuracy, float(cell.accuracy))
            out.append({**_ident(first, key), "weights": weights, "n": n, "eps": e,
                        "attack": attack, "version": version, "accuracy": got.accuracy,
                        "clean": got.clean_accuracy})
    return out


_KINDS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "ladder": _ladder_rows, "iterations": _iteration_rows, "slices": _slice_rows,
    "versions": _version_rows}

#: Bump when a change here changes what a job computes (journal entries of other versions are
#: computed again).
_JOB_VERSION = 1


def _bugs_job(models: list, device: torch.device, *, kind: str, key: str, attack: str,
              state: dict[str, torch.Tensor], config: dict[str, Any],
              cells: list[dict[str, Any]], data_root: str | None,
              params: dict[str, Any]) -> list[dict[str, Any]]:
    """One job of :mod:`lslib.runner`: one model (its weights travel with the job, so a Ray
    worker needs the data but not the model cache) and one attack of ``kind``."""
    frame = pd.DataFrame(cells)
    test, protocol = _split_and_protocol(frame.iloc[0], data_root)
    return _KINDS[kind](_built(state, config, device), config, test, protocol, frame, key,
                        attack, **params)


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return "not an object with a string 'key'"
    rows = entry.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return "'rows' missing or not a list of objects"
    return None


def _run_kind(rows: pd.DataFrame, kind: str, attacks: Sequence[str], params: dict[str, Any], *,
              cache: str | Path | None, data_root: str | None, log: Callable[[str], Any],
              execution: Any = None, journal: str | Path | None = None,
              resumed: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every model and attack of ``attacks`` of the original-protocol ``rows``, one
    :mod:`lslib.runner` job each (embedded, on a local Ray or on a Ray cluster, as
    ``execution`` says), computed by ``_KINDS[kind]`` with ``params``; the rows in the table's
    order of models and in the order of ``attacks``, whatever order the jobs finish in.

    ``journal``: a JSON-lines file to which each job's rows are appended (flushed and fsync'ed)
    as soon as it is done; a later call with the same journal, table and settings reads those
    jobs back instead of running them again, so a killed run loses at most the jobs in flight.
    ``resumed``: a list to which each job read back appends its entry's provenance."""
    from lslib.experiments import append_journal, cache_dir, provenance, recover_journal
    from lslib.runner import Job, run_jobs

    done: dict[str, dict] = {}
    if journal is not None:
        done = {e["key"]: e for e in recover_journal(Path(journal), _entry_problem, log)}
    plan, jobs = [], []
    for key, model_rows, state, config in _model_entries(rows, cache):
        weights = _weights_digest(state)
        for attack in attacks:
            cells = model_rows[model_rows["attack"] == attack]
            if cells.empty:
                continue
            job_key = hashlib.sha256(json.dumps(
                {"kind": kind, "model": key, "weights": weights, "attack": attack,
                 "params": params,
                 "cells": cells[["attack", "eps", "n", "accuracy"]].to_json(orient="records"),
                 "version": _JOB_VERSION},
                sort_keys=True, default=str).encode()).hexdigest()[:16]
            plan.append(job_key)
            if job_key in done:
                if resumed is not None:
                    resumed.append(done[job_key].get("provenance", {}))
                continue
            jobs.append(Job(job_key, (), _bugs_job, dict(
                kind=kind, key=key, attack=attack, state=state, config=config,
                cells=cells.to_dict("records"), data_root=data_root, params=params)))
    results = {k: done[k]["rows"] for k in plan if k in done}

    def on_result(job: Any, result: list[dict[str, Any]], records: dict, ran_on: str) -> None:
        first = result[0] if result else {}
        alpha = first.get("alpha")
        log(f"{first.get('setup')} {first.get('defence')}"
            + ("" if alpha is None or alpha != alpha else f" {alpha:g}")  # NaN: no alpha
            + f" {job.kwargs['attack']}: done")
        if journal is not None:
            append_journal(Path(journal), {
                "key": job.key, "rows": result,
                "provenance": {**provenance("cpu"), "ran_on": ran_on,
                               "finished": datetime.now(timezone.utc)
                               .isoformat(timespec="seconds")}})
        results[job.key] = result

    run_jobs(jobs, on_result, execution=execution, cache=cache_dir(cache), data_root=data_root,
             log=log)
    return [r for k in plan for r in results[k]]


def iterations_of_table(table: str | Path, iterations: Sequence[int], *,
                        cache: str | Path | None = None, data_root: str | None = None,
                        log: Callable[[str], Any] = print, execution: Any = None,
                        journal: str | Path | None = None,
                        resumed: list[dict[str, Any]] | None = None,
                        models: Sequence[str] | None = None) -> pd.DataFrame:
    """DeepFool's and CW's accuracy on every model of ``table`` with each count of
    ``iterations``: the original's ``--num_iter_attack``, which sets DeepFool's iterations and
    CW's Adam steps per binary-search step in the same call and which its command lines do not
    record. On the rows' test images; the count the table used must give the table's cell,
    which is checked. One row per model, attack and count. One job per model and attack
    (``execution``, ``journal``, ``resumed``: as for :func:`bugs_of_table`)."""
    return pd.DataFrame(_run_kind(_original_rows(table, models), "iterations", ("DeepFool", "CW"),
                                  {"iterations": [int(c) for c in iterations]}, cache=cache,
                                  data_root=data_root, log=log, execution=execution,
                                  journal=journal, resumed=resumed))


def bugs_of_table(table: str | Path, *, cache: str | Path | None = None,
                  eps: Sequence[float] | None = None, data_root: str | None = None,
                  attacks: Sequence[str] = ATTACKS,
                  log: Callable[[str], Any] = print, execution: Any = None,
                  journal: str | Path | None = None,
                  resumed: list[dict[str, Any]] | None = None,
                  models: Sequence[str] | None = None) -> pd.DataFrame:
    """The bug ladder of every model of the original-protocol rows of ``table`` (models from
    the model cache ``cache``; never trained here), at each FGSM/BIM budget of ``eps`` (default:
    the table's own), for the attacks in ``attacks``. One row per model, budget, switch and
    attack (DeepFool and CW once per model, with ``eps`` NaN).

    Each model and attack is one job of :mod:`lslib.runner`: ``execution`` (an
    :class:`lslib.runner.Execution`) runs them on a local Ray or a Ray cluster, embedded by
    default; the model's weights travel with its job. ``journal``: each job's rows are appended
    to this JSON-lines file as soon as it is done, and a later call with the same journal reads
    them back instead of attacking again (``resumed`` collects their provenance). Every attack
    is seeded per job, so the rows do not depend on the execution or on resuming."""
    rows = _original_rows(table, models)
    if eps is None:
        eps = sorted(set(rows.loc[rows["attack"].isin(("FGSM", "BIM")), "eps"]))
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad:
        raise ValueError(f"eps must be budgets in [0, 1], got {list(eps)}")
    found = _run_kind(rows, "ladder", [a for a in ATTACKS if a in attacks],
                      {"eps": [float(e) for e in eps]}, cache=cache, data_root=data_root,
                      log=log, execution=execution, journal=journal, resumed=resumed)
    return pd.DataFrame(found, columns=COLUMNS)


def ladder_moves(first: pd.DataFrame, again: pd.DataFrame) -> pd.DataFrame:
    """How far a second ladder of the same models (``again``, rows of :func:`bugs_of_table`,
    e.g. after the models were trained again) moves from ``first``: per model of ``again``,
    its entries matched to ``first``'s on model key, budget, switch and attack (``entries``;
    one each, or ValueError), whether its cells with every bug differ (``differ``: the model
    came out different), the largest move of those cells (``with_bug``) and of the entries,
    without the bug minus with it (``change``)."""
    pair = again.merge(first[["model_key", "eps", "switch", "attack", "with_bug", "change"]],
                       on=["model_key", "eps", "switch", "attack"], suffixes=("", "_first"),
                       validate="1:1")
    pair = pair.assign(cell=(pair["with_bug"] - pair["with_bug_first"]).abs(),
                       moved=(pair["change"] - pair["change_first"]).abs())
    return (pair.groupby(["setup", "defence", "alpha", "model_key"], sort=False, dropna=False)
            .agg(entries=("moved", "size"), differ=("cell", lambda v: bool(v.gt(1e-12).any())),
                 with_bug=("cell", "max"), change=("moved", "max"))
            .reset_index())


#: the slices of the MNIST test set that the authors' runner attacked, by commit (first and last
#: image, inclusive; lslib.authors --slices and --runner-slices, results/README "Which test
#: images"): 8789498 to f0dae34, 19722ec (and the files of smoothed MLPs at 919c8a0), dc3c764,
#: 1bb8c1c to HEAD (committed after the paper's submission, kept as a control)
AUTHORS_SLICES = ((1000, 9999), (1001, 2000), (1000, 1999), (1000, 2999))
SLICE_ATTACKS = ("clean", "FGSM", "BIM", "DeepFool")


def slices_of_table(table: str | Path, slices: Sequence[tuple[int, int]] = AUTHORS_SLICES, *,
                    cache: str | Path | None = None, data_root: str | None = None,
                    log: Callable[[str], Any] = print, execution: Any = None,
                    journal: str | Path | None = None,
                    resumed: list[dict[str, Any]] | None = None,
                    models: Sequence[str] | None = None) -> pd.DataFrame:
    """Every clean, FGSM, BIM and DeepFool cell of the original-protocol ``table`` on other
    slices of the test set: each model attacked once on every image from the first of
    ``slices`` (and of the table's own slice) to the last, then each slice's accuracy read off
    :func:`lslib.original.robust_points` (each point is attacked on its own). The table's own
    slice must give the table's cell, which is checked. CW is left out (its slice is not in
    question, and it is the slow one). One row per model, attack, budget and slice, with
    ``first_image``, ``last_image`` (inclusive), ``n`` and ``in_table`` (the table's slice).
    One job per model and attack (``execution``, ``journal``, ``resumed``: as for
    :func:`bugs_of_table`)."""
    spans = [(int(a), int(b)) for a, b in slices]
    bad = [f"{a}-{b}" for a, b in spans if not 0 <= a <= b]
    if not spans or bad:
        raise ValueError(f"slices must be first-last image ranges with 0 <= first <= last, "
                         f"got {bad or 'none'}")
    rows = _original_rows(table, models)
    last = max(b for _, b in spans)
    for _, first in rows.drop_duplicates(["setup", "data_source", "seed"]).iterrows():
        test, _ = _split_and_protocol(first, data_root)
        if last >= len(test.y):
            raise ValueError(f"slices reach image {last}, the test set has "
                             f"{len(test.y)} images")
    return pd.DataFrame(_run_kind(rows, "slices", SLICE_ATTACKS,
                                  {"slices": [list(s) for s in spans]}, cache=cache,
                                  data_root=data_root, log=log, execution=execution,
                                  journal=journal, resumed=resumed))


def versions_of_table(table: str | Path, versions: Sequence[str], *,
                      attacks: Sequence[str] = ("CW",), cache: str | Path | None = None,
                      data_root: str | None = None, log: Callable[[str], Any] = print,
                      execution: Any = None, journal: str | Path | None = None,
                      resumed: list[dict[str, Any]] | None = None,
                      models: Sequence[str] | None = None) -> pd.DataFrame:
    """Each attack of ``attacks`` on every model of the original-protocol ``table``, on the
    rows' test images and at the table's budgets, under each version of ``versions`` (names of
    :data:`lslib.original.VERSIONS`: the code of another commit of the authors' repository), with
    ``clean``, the clean accuracy of the same points (the original counts a point robust only if
    it is right before the attack, so an attack that never moves a point keeps exactly this).
    The version ``tables`` must give the table's cell, which is checked. ``weights`` is a digest
    of the weights attacked. One row per model, attack, budget and version. One job per model
    and attack (``execution``, ``journal``, ``resumed``: as for :func:`bugs_of_table`)."""
    from lslib import original

    names = list(dict.fromkeys(versions))
    bad = [v for v in names if v not in original.VERSIONS]
    if not names or bad:
        raise ValueError(f"versions must be names of lslib.original.VERSIONS "
                         f"({', '.join(original.VERSIONS)}), got {list(versions)}")
    return pd.DataFrame(_run_kind(_original_rows(table, models), "versions",
                                  [a for a in ATTACKS if a in attacks], {"versions": names},
                                  cache=cache, data_root=data_root, log=log,
                                  execution=execution, journal=journal, resumed=resumed))


def histories_of_table(table: str | Path | Sequence[str | Path], *,
                       cache: str | Path | None = None,
                       models: Sequence[str] | None = None) -> pd.DataFrame:
    """The training record of every model of ``table`` (its original-protocol rows; several
    tables: the models of all of them; of ``models`` only, where given), read from the model
    cache: one row per validation loss, with the epoch after which it was taken (1 is the
    first), the learning rate the scheduler set for the next epoch, the model's clean weight
    under PGD-AT and the epochs it was set to train. Nothing is trained or attacked."""
    from lslib._checks import BadFileError
    from lslib._files import read_cache_entry
    from lslib.experiments import cache_dir
    from lslib.original import OriginalConfig

    defaults = OriginalConfig(model="mlp")  # for records written before a field existed
    tables = [table] if isinstance(table, (str, Path)) else list(table)
    rows = pd.concat([_original_rows(t) for t in tables]).drop_duplicates(
        ["model_key", "attack", "eps"])
    if models is not None:
        missing = [m for m in models if m not in set(rows["model_key"])]
        if missing:
            raise BadFileError(tables[0], f"no model {', '.join(missing)} of the original "
                               "protocol in the tables given",
                               "give model keys from their model_key column")
        rows = rows[rows["model_key"].isin(list(models))]
    out = []
    for key, model_rows, _, config in _model_entries(rows, cache):
        _, record = read_cache_entry(cache_dir(cache) / f"{key}.pt")
        start = int(config.get("val_start_epoch", 0))
        lrs = record.get("learning_rates", [])
        for i, loss in enumerate(record.get("losses", [])):
            out.append({**_ident(model_rows.iloc[0], key), "epoch": start + i + 1,
                        "val_loss": loss,
                        "lr_next": lrs[start + i] if start + i < len(lrs) else math.nan,
                        "pgd_clean_weight": config.get("pgd_clean_weight",
                                                       defaults.pgd_clean_weight)
                        if config.get("adversarial") else math.nan,
                        "epochs": int(config.get("epochs", defaults.epochs))})
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


def _model_keys(text: str) -> tuple[str, ...]:
    """--models: comma-separated model keys, none empty."""
    keys = tuple(k.strip() for k in text.split(","))
    if not all(keys):
        raise argparse.ArgumentTypeError(f"an empty model key in {text!r}: give model_key values "
                                         "of the table, comma-separated")
    return keys


def main(argv: list[str] | None = None) -> int:
    from lslib import _cli, original
    from lslib.experiments import OutputBusyError, exclusive_output
    from lslib.runner import RunnerError, add_execution_arguments, execution_from_args

    ap = _cli.OneLineParser(prog="python -m lslib.bugs", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=_cli.existing_file(), nargs="+",
                    help="an original-protocol results CSV (--histories: one or more)")
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
    ap.add_argument("--versions", type=_cli.name_list(original.VERSIONS), default=None,
                    metavar="NAMES",
                    help="instead of the ladder: the attacks of --attacks under each of these "
                         "versions of the original code, comma-separated (of: "
                         f"{', '.join(original.VERSIONS)})")
    ap.add_argument("--histories", action="store_true",
                    help="instead of the ladder: every model's validation loss after each "
                         "epoch of its training, from the model cache (nothing is attacked)")
    ap.add_argument("--models", type=_model_keys, default=None, metavar="KEYS",
                    help="only these models of the table: their model_key, comma-separated "
                         "(default: every model)")
    ap.add_argument("--out", type=_cli.output_file(), required=True)
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=1,
                    help="torch threads per job (default 1)")
    add_execution_arguments(ap)
    args = ap.parse_args(argv)
    if sum(v is not None for v in (args.iterations, args.slices, args.versions)) \
            + args.histories > 1:
        ap.error("give at most one of --iterations, --slices, --versions and --histories")
    if len(args.table) > 1 and not args.histories:
        ap.error("argument table: one table, but for --histories")
    tables, args.table = args.table, args.table[0]
    try:
        execution = execution_from_args(args)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(args.threads)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    out = Path(args.out)
    journal = out.with_name(out.name + ".journal.jsonl")

    def run() -> int:
        resumed: list[dict[str, Any]] = []
        kw = dict(cache=args.cache, execution=execution, journal=journal, resumed=resumed,
                  models=args.models)
        if args.histories:
            found = histories_of_table(tables, cache=args.cache, models=args.models)
        elif args.iterations is not None:
            found = iterations_of_table(args.table, args.iterations, **kw)
        elif args.versions is not None:
            found = versions_of_table(args.table, args.versions, attacks=args.attacks, **kw)
        elif args.slices is not None:
            try:
                found = slices_of_table(args.table, args.slices, **kw)
            except ValueError as exc:  # slices beyond the test set
                ap.error(f"--slices: {exc}")
        else:
            found = bugs_of_table(args.table, eps=args.eps, attacks=args.attacks, **kw)
        extra = {"resumed_jobs": len(resumed),
                 "resumed_from": sorted({str(p.get("git_commit", "not recorded"))
                                         for p in resumed})} if resumed else {}
        _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started, t0=t0,
                            threads=args.threads, table=Path(args.table).as_posix(),
                            tables=[Path(t).as_posix() for t in tables] if args.histories
                            else None,
                            eps=args.eps, iterations=args.iterations,
                            versions=None if args.versions is None else list(args.versions),
                            slices=None if args.slices is None else [
                                f"{a}-{b}" for a, b in args.slices],
                            attacks=[] if args.histories else list(
                                SLICE_ATTACKS if args.slices is not None else args.attacks),
                            models=None if args.models is None else list(args.models),
                            execution=execution.describe(), **extra)
        journal.unlink(missing_ok=True)  # the table holds every row now
        return 0

    def locked() -> int:
        try:
            with exclusive_output(out):
                return run()
        except (OutputBusyError, RunnerError) as exc:
            print(f"{ap.prog}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"interrupted: the jobs done are saved in {journal}; run the same command "
                  "again to resume", file=sys.stderr)
            return 130

    return _cli.report_user_errors(ap.prog, locked)


if __name__ == "__main__":
    raise SystemExit(main())
