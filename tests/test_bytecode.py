"""lslib.bytecode against CPython's own marshal writer, and on Python 3.6 files built here by the
layout of that version's ``Python/marshal.c`` (header, then the code object's fields in order)."""

from __future__ import annotations

import marshal
import struct
import subprocess
from datetime import datetime, timezone

import pandas as pd
import pytest

from lslib import authors, bytecode

MTIME = datetime(2019, 10, 8, 12, 6, 23, tzinfo=timezone.utc)


def _code(name: str, consts: tuple, firstlineno: int = 1) -> bytes:
    """A Python 3.6 code object, marshalled: five int fields, then bytecode, consts, names,
    varnames, freevars, cellvars, filename, name, firstlineno and lnotab. Nested code objects
    are given as bytes (this function's output); every other constant is written by CPython's
    marshal at version 2, which has no references."""
    parts = [b"c", struct.pack("<5i", 0, 0, 0, 2, 64), marshal.dumps(b"d\x00S\x00", 2),
             b"(" + struct.pack("<i", len(consts)),
             *(c if isinstance(c, bytes) and c[:1] == b"c" else marshal.dumps(c, 2)
               for c in consts),
             marshal.dumps(("x",), 2), marshal.dumps((), 2), marshal.dumps((), 2),
             marshal.dumps((), 2), marshal.dumps("m.py", 2), marshal.dumps(name, 2),
             struct.pack("<i", firstlineno), marshal.dumps(b"", 2)]
    return b"".join(parts)


def _pyc(module: bytes, source_size: int = 100) -> bytes:
    return struct.pack("<H", bytecode.MAGIC_36) + b"\r\n" + struct.pack(
        "<II", int(MTIME.timestamp()), source_size) + module


@pytest.mark.parametrize("value", [
    (0.5, -1.0, 2 / 255, 7, -3, 2**40, -(2**70), "loss", "é", b"raw", None, True, False,
     1 + 2j, frozenset({0.25}), ((0.75,), [1, 2])),
    tuple(f"name{i}" for i in range(300)),  # a tuple of more than 255 items: '(' not ')'
])
@pytest.mark.parametrize("version", [2, 4])
def test_reader_reads_back_what_cpythons_marshal_writes(value, version):
    """Version 4 writes references (FLAG_REF, 'r'), short strings and small tuples: the reader
    resolves them as CPython does."""
    shared = 0.125
    data = marshal.dumps((value, shared, shared, "loss", "loss"), version)
    assert bytecode._Reader(data, "x").obj() == (value, shared, shared, "loss", "loss")


def test_read_code_reads_the_functions_their_constants_and_the_header():
    closure = _code("closure", (None, 0.75, 0.25), firstlineno=30)
    train = _code("train", ("doc", closure, "train.<locals>.closure", 0.1), firstlineno=20)
    module = _code("<module>", (0.2, train, "train", None))
    data = _pyc(module, source_size=21537)
    header = bytecode.read_header(data)
    assert (header.magic, header.source_mtime, header.source_size) == (3379, MTIME, 21537)
    code = bytecode.read_code(data)
    assert code.name == "<module>" and [c.name for c in code.children] == ["train"]
    inner = code.children[0].children[0]
    assert (inner.name, inner.firstlineno, inner.consts) == ("closure", 30, (None, 0.75, 0.25))
    assert bytecode.float_constants(code) == {"<module>": {0.2}, "train": {0.1},
                                              "train.closure": {0.75, 0.25}}


def test_a_file_that_is_no_python_36_pyc_is_refused_with_its_name():
    with pytest.raises(bytecode.BytecodeError, match=r"f\.pyc: not a Python 3.6 \.pyc"):
        bytecode.read_header(b"\x42\r\r\n" + bytes(8), "f.pyc")  # Python 3.11's magic
    with pytest.raises(bytecode.BytecodeError, match="shorter than a .pyc header"):
        bytecode.read_header(b"3\r", "f.pyc")
    with pytest.raises(bytecode.BytecodeError, match="truncated at byte"):
        bytecode.read_code(_pyc(_code("<module>", (0.5,))[:-9]), "f.pyc")
    with pytest.raises(bytecode.BytecodeError, match="unknown marshal type '\\?'"):
        bytecode.read_code(_pyc(b"?"), "f.pyc")


SOURCE = '''
def train(model, reg=0.75):
    def closure(loss, loss_adv):
        return 0.5 * loss + 0.5 * loss_adv
    half = 1. / 2.
    return closure


def helper(x, lims=-1.):
    return x
'''


def _compiled(weights: tuple[float, float]) -> bytes:
    """SOURCE as Python 3.6 compiles it, with the closure's weights given: 3.6 keeps 1.0 and
    2.0 beside the 0.5 it folds them into, and keeps a default value as a bare constant of the
    module (3.11 folds the defaults into one tuple)."""
    closure = _code("closure", (None, *dict.fromkeys(weights)))
    train = _code("train", (None, closure, "train.<locals>.closure", 1.0, 2.0, 0.5))
    helper = _code("helper", (None,))
    return _code("<module>", (0.75, train, "train", -1.0, helper, "helper", None))


def test_compare_floats_finds_the_changed_setting_and_nothing_else():
    same = bytecode.read_code(_pyc(_compiled((0.5, 0.5))))
    assert bytecode.compare_floats(same, SOURCE) == []
    changed = bytecode.read_code(_pyc(_compiled((0.75, 0.25))))
    assert bytecode.compare_floats(changed, SOURCE) == [
        {"function": "train.closure", "only_compiled": [0.25, 0.75], "only_source": [0.5]}]


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True, timeout=60)


def test_compiled_modules_reads_every_commit_that_holds_a_pyc(tmp_path):
    repo = tmp_path / "repo"
    cache = repo / "pkg" / "__pycache__"
    cache.mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "pkg" / "functional.py").write_text(SOURCE)
    size = len(SOURCE.encode())
    (cache / "functional.cpython-36.pyc").write_bytes(_pyc(_compiled((0.5, 0.5)), size))
    (cache / "gone.cpython-36.pyc").write_bytes(_pyc(_code("<module>", (None,)), 7))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "as it ran")
    (cache / "functional.cpython-36.pyc").write_bytes(_pyc(_compiled((0.75, 0.25)), size + 2))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "ran with other weights, committed the old source")
    got = authors.compiled_modules(repo, log=lambda _: None)
    first, second = (got[got["commit"] == c] for c in got["commit"].unique())
    mine = first.set_index("compiled").loc["pkg/__pycache__/functional.cpython-36.pyc"]
    assert (mine["function"], mine["compiled_size"], mine["committed_size"]) == ("", size, size)
    assert mine["compiled_mtime"] == "2019-10-08 12:06:23"
    assert pd.isna(first.set_index("compiled").loc["pkg/__pycache__/gone.cpython-36.pyc",
                                                   "committed_size"])
    row = second[second["function"] != ""].iloc[0]
    assert (row["function"], row["only_compiled"], row["only_committed"]) == (
        "train.closure", "0.25 0.75", "0.5")
    assert (row["compiled_size"], row["committed_size"]) == (size + 2, size)
