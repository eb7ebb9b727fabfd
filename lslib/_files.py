"""Reading the files lslib writes and reads back (results CSVs, model checkpoints), checked.

A damaged file raises :class:`lslib._checks.BadFileError` (a ValueError) whose message names the
file, what is wrong and what to do; nothing is read half-way without a word.
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lslib._checks import BadFileError

__all__ = ["CheckpointError", "ResultsFileError", "read_cache_entry", "read_checkpoint",
           "read_results_checked"]

#: The columns a results CSV must have for ``compare`` (the key of a row and its accuracy).
RESULTS_REQUIRED = ("setup", "defence", "alpha", "T", "protocol", "attack", "eps", "accuracy",
                    "n")


class ResultsFileError(BadFileError):
    """A results CSV is truncated, damaged or not one ``lslib reproduce`` wrote."""


class CheckpointError(BadFileError):
    """A model checkpoint is damaged or does not hold the weights asked for."""


def _results_remedy(path: Path) -> str:
    journal = path.with_name(path.name + ".journal.jsonl")
    if journal.exists():
        return (f"rebuild it by running again the `lslib reproduce` command that wrote it (its "
                f"rows are kept in {journal.name}, none is recomputed)")
    return "rebuild it by running again the `lslib reproduce` command that wrote it"


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsFileError(path, f"not a text file ({exc.reason} at byte {exc.start})",
                               _results_remedy(path)) from None
    if not text.strip():
        raise ResultsFileError(path, "the file is empty", _results_remedy(path))
    if not text.endswith("\n"):
        raise ResultsFileError(path, "the last line is cut short (the file does not end with a "
                               "newline): it is truncated", _results_remedy(path))
    try:
        records = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise ResultsFileError(path, f"not a CSV file ({exc})", _results_remedy(path)) from None
    return records[0], records[1:]


def _check_row(path: Path, header: list[str], line: int, row: list[str]) -> None:
    from lslib.experiments import ATTACK_NAMES, DEFENCE_NAMES

    if len(row) != len(header):
        raise ResultsFileError(path, f"line {line} has {len(row)} fields, the header has "
                               f"{len(header)}: the file is truncated or damaged",
                               _results_remedy(path))
    rec = dict(zip(header, row, strict=True))
    if rec["defence"] not in DEFENCE_NAMES or rec["attack"] not in ATTACK_NAMES:
        raise ResultsFileError(path, f"line {line} has defence {rec['defence']!r} and attack "
                               f"{rec['attack']!r}, not one of lslib's", _results_remedy(path))
    if not rec["setup"] or not rec["protocol"]:
        raise ResultsFileError(path, f"line {line} has no set-up or protocol",
                               _results_remedy(path))
    try:
        acc = float(rec["accuracy"]) if rec["accuracy"] else math.nan
    except ValueError:
        acc = -1.0
    if not (math.isnan(acc) or 0.0 <= acc <= 1.0):
        raise ResultsFileError(path, f"line {line} has accuracy {rec['accuracy']!r}, a number "
                               f"in [0, 1] expected", _results_remedy(path))


def read_results_checked(path: str | os.PathLike) -> pd.DataFrame:
    """A results CSV of :func:`lslib.experiments.run_sweep`, checked line by line first: the file
    ends with a newline, every line has the header's number of fields, the key columns are there
    and each row names a defence, an attack and an accuracy in [0, 1] (or none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such results file: {path}")
    header, rows = _rows(path)
    missing = [c for c in RESULTS_REQUIRED if c not in header]
    if missing:
        raise ResultsFileError(path, f"the header lacks the column(s) {', '.join(missing)}: not "
                               f"a results CSV of `lslib reproduce`", _results_remedy(path))
    for i, row in enumerate(rows, start=2):
        _check_row(path, header, i, row)
    return pd.read_csv(path, keep_default_na=True)


_CHECKPOINT_REMEDY = ("delete it and train or save the model again (a model of the experiment "
                      "cache is retrained by the next `lslib reproduce`)")


def _load_checkpoint(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile,
            pickle.UnpicklingError, struct.error) as exc:  # struct: a short legacy-format file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{first})", _CHECKPOINT_REMEDY) from None


def _checked_state(path: Path, state: Any) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a state_dict (names to "
                              f"tensors)", _CHECKPOINT_REMEDY)
    return state


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in ``path``: a bare state_dict or the experiment cache's
    ``{"state_dict": ..., "record": ...}``, loaded on the CPU with ``weights_only=True``."""
    path = Path(path)
    blob = _load_checkpoint(path)
    state = blob["state_dict"] if isinstance(blob, dict) and "state_dict" in blob else blob
    return _checked_state(path, state)


def read_cache_entry(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``(state_dict, record)`` of a model-cache file (``<cache>/<key>.pt``, written by the
    experiment runner); :class:`CheckpointError` when it is damaged or holds something else."""
    path = Path(path)
    blob = _load_checkpoint(path)
    if not (isinstance(blob, dict) and "state_dict" in blob
            and isinstance(blob.get("record"), dict)):
        raise CheckpointError(path, "not a model-cache file (a dict with 'state_dict' and "
                              "'record')", _CHECKPOINT_REMEDY)
    return _checked_state(path, blob["state_dict"]), blob["record"]


def write_table_with_meta(out: str | os.PathLike, frame: pd.DataFrame,
                          meta: dict[str, Any]) -> None:
    """``frame`` as the CSV ``out`` and ``meta`` as ``<out>.meta.json`` beside it, each written
    atomically (what the analysis commands, ``lslib.survivors`` and ``lslib.bugs``, leave)."""
    import json

    from lslib.experiments import atomic_write

    out = Path(out)
    atomic_write(out, lambda p: frame.to_csv(p, index=False))
    atomic_write(out.with_name(out.name + ".meta.json"),
                 lambda p: p.write_text(json.dumps(meta, indent=1, default=str) + "\n"))
