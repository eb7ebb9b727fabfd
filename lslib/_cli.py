"""What the command lines share: argparse types that check each value as it is parsed, and a
parser whose errors are one line on stderr (exit status 2), never a traceback.

Each type is a factory (``type=float_list(UNIT)``); argparse puts the flag before its message, so
the error names the flag and what it accepts, e.g. ``argument --alphas: 1.5 is not accepted:
each value must be finite and in [0, 1]``. Paths are checked at parse time too, before any work
starts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "NONNEGATIVE",
    "POSITIVE",
    "UNIT",
    "OneLineParser",
    "command_line",
    "data_dir",
    "device_type",
    "existing_file",
    "float_list",
    "int_at_least",
    "name_list",
    "number",
    "output_dir",
    "output_file",
    "report_user_errors",
]


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose error is one line on stderr, exit status 2
    (``--help`` still prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


Check = Callable[[float], str | None]


def _in_range(lo: float | None, hi: float | None, *, lo_open: bool = False) -> Check:
    """A check of one number: finite and in [lo, hi] (``lo_open``: (lo, hi]); its message says
    the accepted range."""
    if lo is not None and hi is not None:
        accepted = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo is not None:
        accepted = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        accepted = f"<= {hi:g}"

    def check(v: float) -> str | None:
        ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (
            hi is None or v <= hi)
        return None if ok else f"is not accepted: each value must be finite and {accepted}"
    return check


UNIT = _in_range(0.0, 1.0)
POSITIVE = _in_range(0.0, None, lo_open=True)
NONNEGATIVE = _in_range(0.0, None)


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def number(check: Check) -> Callable[[str], float]:
    """One real number that passes ``check`` (e.g. :data:`POSITIVE`)."""
    def parse(text: str) -> float:
        v = _parse_float(text)
        problem = check(v)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return v
    return parse


def float_list(check: Check) -> Callable[[str], tuple[float, ...]]:
    """Comma-separated numbers, at least one, each passing ``check``."""
    def parse(text: str) -> tuple[float, ...]:
        parts = [p.strip() for p in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError("empty list: give at least one number")
        if not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty entry")
        values = tuple(_parse_float(p) for p in parts)
        for p, v in zip(parts, values, strict=True):
            problem = check(v)
            if problem:
                raise argparse.ArgumentTypeError(f"{p} {problem}")
        return values
    return parse


def name_list(allowed: Iterable[str], *, none_ok: bool = False
              ) -> Callable[[str], tuple[str, ...]]:
    """Comma-separated names from ``allowed``, at least one (``none_ok``: the word ``none`` is
    the empty list)."""
    allowed = tuple(allowed)

    def parse(text: str) -> tuple[str, ...]:
        if none_ok and text.strip() == "none":
            return ()
        names = tuple(v.strip() for v in text.split(","))
        if not any(names):
            extra = " (or 'none')" if none_ok else ""
            raise argparse.ArgumentTypeError(f"empty list: give at least one of "
                                             f"{','.join(allowed)}{extra}")
        bad = [v for v in names if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {','.join(map(repr, bad))}: "
                                             f"choose from {','.join(allowed)}")
        return names
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} must be an integer >= {minimum}")
        return v
    return parse


def device_type() -> Callable[[str], str]:
    """A torch device that exists here: cpu, cuda or cuda:N (N < the number of GPUs), mps."""
    def parse(text: str) -> str:
        import torch

        try:
            dev = torch.device(text)
        except (RuntimeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda, "
                                             f"cuda:N or mps") from None
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise argparse.ArgumentTypeError(f"{text}: no CUDA device on this "
                                                 f"machine (use cpu)")
            if dev.index is not None and dev.index >= count:
                raise argparse.ArgumentTypeError(f"{text}: this machine has {count} "
                                                 f"CUDA device(s), cuda:0 to cuda:{count - 1}")
        elif dev.type == "mps":
            if not torch.backends.mps.is_available():
                raise argparse.ArgumentTypeError(f"{text}: MPS is not available here")
        elif dev.type != "cpu":
            raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda, cuda:N or mps")
        return text
    return parse


def _writable_ancestor(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a writable folder (``path`` and the
    folders missing on the way are created later)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {parent} is not a folder")
    if not _can_create_in(parent):
        raise argparse.ArgumentTypeError(f"{path}: folder {parent} is not writable")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried: permissions alone do not tell for
    root or a read-only mount; the probe file is gone when this returns)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def output_file() -> Callable[[str], str]:
    """A file to write: not an existing folder, an existing file writable, its folder writable
    (or creatable)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("empty path")
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder: give a file name "
                                             f"inside it, e.g. {path / 'results.csv'}")
        if path.exists() and not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text} exists and is not writable")
        _writable_ancestor(path)
        return text
    return parse


def output_dir() -> Callable[[str], str]:
    """A folder to write into: an existing folder writable, else creatable."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("empty path")
        path = Path(text).expanduser()
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
        if path.is_dir():
            if not _can_create_in(path):
                raise argparse.ArgumentTypeError(f"folder {text} is not writable")
        else:
            _writable_ancestor(path)
        return text
    return parse


def data_dir() -> Callable[[str], str]:
    """A data root: not a file (a missing one is reported by the loader, which says what to put
    where, or created by a download)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("empty path")
        path = Path(text).expanduser()
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
        return text
    return parse


def existing_file() -> Callable[[str], str]:
    """A file to read: it exists, is a file and is readable."""
    def parse(text: str) -> str:
        path = Path(text).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"no such file: {text}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
        if not os.access(path, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text} is not readable")
        return text
    return parse


def report_user_errors(prog: str, run: Callable[[], int]) -> int:
    """``run()``; a damaged or missing input file (:class:`lslib._checks.BadFileError`,
    :class:`FileNotFoundError`) becomes one line on stderr and exit status 2."""
    from lslib._checks import BadFileError

    try:
        return run()
    except (BadFileError, FileNotFoundError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


REPO = Path(__file__).resolve().parents[1]


def _portable(arg: str) -> str:
    """``arg`` with an absolute path (alone or after ``--flag=``) made relative to the
    repository, so that provenance never records one machine's folders."""
    flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    return flag + eq + os.path.relpath(value, REPO)


def command_line(prog: str, argv: Iterable[str]) -> str:
    """The command line a run records in its provenance: ``prog`` and the arguments, quoted for
    a shell, absolute paths rewritten relative to the repository root (``/work/shared/data``
    becomes ``../shared/data`` for a checkout at ``/work/main``)."""
    import shlex

    return " ".join([prog, *(shlex.quote(_portable(a)) for a in argv)])



def write_analysis(out: str, frame: Any, *, prog: str, argv: list[str] | None,
                   started: Any, t0: float, threads: int, **fields: Any) -> None:
    """An analysis command's table ``frame`` as ``out`` and its meta file beside it: the
    command line (``prog`` with ``argv``, or this process's arguments), ``fields``, the threads,
    the start, the wall time since ``t0`` (``time.perf_counter``) and the code's provenance
    (:func:`lslib.experiments.provenance`). What ``lslib.bugs``, ``lslib.survivors`` and
    ``lslib.authors`` leave."""
    import time

    from lslib._files import write_table_with_meta
    from lslib.experiments import provenance

    meta = {"command": command_line(prog, sys.argv[1:] if argv is None else argv), **fields,
            "threads": threads, "started": started.isoformat(),
            "wall_seconds": time.perf_counter() - t0, **provenance("cpu")}
    write_table_with_meta(out, frame, meta)
