"""What a compiled module committed beside its source says about the code that ran.

Python writes ``__pycache__/<module>.cpython-36.pyc`` when it imports a module, and rewrites it
whenever the source has changed since. A ``.pyc`` committed to a repository is therefore a record
of the module as it was *last imported* on its author's machine, which need not be the source
committed beside it. Its 12-byte header (Python 3.6) holds the size and modification time of the
source it was compiled from (:func:`read_header`); its body is the module's code objects, written
by :mod:`marshal`, with every function's constants (:func:`read_code`).

:func:`compare_floats` sets the floating-point constants of every function of the compiled module
beside those of the committed source compiled here: a number that differs between the two is a
setting that changed between the last run and the commit. The authors' repository commits such
files from f0dae34 (2019-09-30); ``python -m lslib.authors CLONE --compiled`` reads them at every
commit that has them (:func:`lslib.authors.compiled_modules`).

The reader covers the marshal format of Python 3.6 (the version of the authors' files: magic
number 3379), which today's :mod:`marshal` cannot read (its code objects have other fields).
"""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import CodeType
from typing import Any

__all__ = ["Code", "Header", "compare_floats", "float_constants", "read_code", "read_header",
           "source_floats"]

#: The magic number of Python 3.6's ``.pyc`` files (3379), as its first two bytes read.
MAGIC_36 = 3379


class BytecodeError(ValueError):
    """A ``.pyc`` file this reader cannot read: names the file and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Header:
    """The header of a Python 3.6 ``.pyc``: the source it was compiled from."""

    magic: int
    source_mtime: datetime
    source_size: int


@dataclass
class Code:
    """A code object of a compiled module: its name, constants (nested code objects included)
    and first line."""

    name: str
    consts: tuple[Any, ...]
    firstlineno: int
    children: list[Code] = field(default_factory=list)


def read_header(data: bytes, where: str = "<pyc>") -> Header:
    """The header of a Python 3.6 ``.pyc`` (``data``: the file's bytes): magic number, then the
    source's modification time and size (the size modulo 2**32), little-endian."""
    if len(data) < 12:
        raise BytecodeError(where, f"{len(data)} bytes, shorter than a .pyc header (12)")
    magic = struct.unpack("<H", data[:2])[0]
    if data[2:4] != b"\r\n" or magic != MAGIC_36:
        raise BytecodeError(where, f"not a Python 3.6 .pyc (magic {data[:4]!r}; accepted: "
                                   f"{MAGIC_36} followed by \\r\\n)")
    mtime, size = struct.unpack("<II", data[4:12])
    return Header(magic, datetime.fromtimestamp(mtime, timezone.utc), size)


class _Reader:
    """Python 3.6's ``marshal`` format, read back (``Python/marshal.c`` of that version)."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where
        self.refs: list[Any] = []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BytecodeError(self.where, f"truncated at byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def obj(self) -> Any:
        byte = self.take(1)[0]
        kind, flag = chr(byte & 0x7F), byte & 0x80
        slot = None
        if flag:
            slot = len(self.refs)
            self.refs.append(None)
        value = self._value(kind)
        if slot is not None:
            self.refs[slot] = value
        return value

    def _value(self, kind: str) -> Any:
        simple = {"0": None, "N": None, "F": False, "T": True, "S": StopIteration,
                  ".": Ellipsis}
        if kind in simple:
            return simple[kind]
        if kind == "i":
            return self.i32()
        if kind == "g":
            return struct.unpack("<d", self.take(8))[0]
        if kind == "y":
            return complex(*struct.unpack("<dd", self.take(16)))
        if kind == "l":
            n = self.i32()
            digits = struct.unpack(f"<{abs(n)}H", self.take(2 * abs(n)))
            value = sum(d << (15 * k) for k, d in enumerate(digits))
            return -value if n < 0 else value
        if kind == "s":
            return self.take(self.i32())
        if kind in "tuaA":
            return self.take(self.i32()).decode("utf-8", "surrogatepass")
        if kind in "zZ":
            return self.take(self.take(1)[0]).decode("ascii")
        if kind == "r":
            return self.refs[self.i32()]
        if kind in "([<>":
            items = [self.obj() for _ in range(self.i32())]
            return {"(": tuple, "[": list, "<": set, ">": frozenset}[kind](items)
        if kind == ")":
            return tuple(self.obj() for _ in range(self.take(1)[0]))
        if kind == "c":
            return self._code()
        raise BytecodeError(self.where, f"unknown marshal type {kind!r} at byte {self.pos - 1}")

    def _code(self) -> Code:
        for _ in range(5):  # argcount, kwonlyargcount, nlocals, stacksize, flags
            self.i32()
        self.obj()  # bytecode
        consts = self.obj()
        for _ in range(4):  # names, varnames, freevars, cellvars
            self.obj()
        self.obj()  # filename
        name = self.obj()
        firstlineno = self.i32()
        self.obj()  # lnotab
        code = Code(name, tuple(consts), firstlineno)
        code.children = [c for c in consts if isinstance(c, Code)]
        return code


def read_code(data: bytes, where: str = "<pyc>") -> Code:
    """The module code object of a Python 3.6 ``.pyc`` (``data``: the file's bytes)."""
    read_header(data, where)
    reader = _Reader(data[12:], where)
    code = reader.obj()
    if not isinstance(code, Code):
        raise BytecodeError(where, "its body is not a code object")
    return code


def _floats(consts: tuple[Any, ...]) -> set[float]:
    """The float constants among ``consts``, those inside constant tuples included (Python 3.11
    folds a function's default values into one tuple; 3.6 keeps them apart)."""
    out: set[float] = set()
    for c in consts:
        if type(c) is float:
            out.add(c)
        elif isinstance(c, (tuple, frozenset)):
            out |= _floats(tuple(c))
    return out


def _walk(name: str, consts: tuple[Any, ...], kids: list[Any], prefix: str | None,
          parts: Any) -> dict[str, set[float]]:
    """Dotted function path -> its float constants (those of its nested functions under their
    own paths); ``parts(child) -> (name, consts, kids)``."""
    path = name if prefix is None else (name if prefix == "<module>" else f"{prefix}.{name}")
    out = {path: _floats(consts)}
    for child in kids:
        for k, v in _walk(*parts(child), path, parts).items():
            out.setdefault(k, set()).update(v)
    return out


def float_constants(code: Code) -> dict[str, set[float]]:
    """Every function's float constants in a compiled module, by dotted path from the module
    (``train.closure``; methods as ``Class.method``; ``<module>`` for the module's own code)."""
    def parts(c: Code) -> tuple[str, tuple[Any, ...], list[Code]]:
        return c.name, c.consts, c.children

    return _walk(*parts(code), None, parts)


def source_floats(source: str, where: str = "<source>") -> dict[str, set[float]]:
    """The same as :func:`float_constants`, for a source text compiled by this Python."""
    def parts(c: CodeType) -> tuple[str, tuple[Any, ...], list[CodeType]]:
        return c.co_name, c.co_consts, [k for k in c.co_consts if isinstance(k, CodeType)]

    return _walk(*parts(compile(source, where, "exec", dont_inherit=True)), None, parts)


def _literals(source: str) -> dict[str, set[float]]:
    """Dotted function path -> the float literals written in its body, before any folding (a
    default value counts for the enclosing function, where it is evaluated)."""
    out: dict[str, set[float]] = {}

    def visit(node: ast.AST, path: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = node.name if path == "<module>" else f"{path}.{node.name}"
            outside = [*node.decorator_list, *getattr(node, "bases", []),
                       *(getattr(node, "args", None) and [*node.args.defaults,
                         *(d for d in node.args.kw_defaults if d is not None)] or [])]
            for child in outside:
                visit(child, path)
            for child in node.body:
                visit(child, inner)
            return
        if isinstance(node, ast.Constant) and type(node.value) is float:
            out.setdefault(path, set()).add(node.value)
        for child in ast.iter_child_nodes(node):
            visit(child, path)

    visit(ast.parse(source), "<module>")
    return out


def compare_floats(compiled: Code, source: str, where: str = "<source>"
                   ) -> list[dict[str, Any]]:
    """The functions whose float constants differ between a compiled module and a source text:
    one dict per function with ``function``, ``only_compiled`` and ``only_source`` (sorted).

    Python 3.6 folds ``1. / 2.`` into ``0.5`` but keeps ``1.0`` and ``2.0`` among the constants
    as well, where today's Python keeps only ``0.5``; so a constant of the compiled module counts
    as missing from the source only if the source neither compiles to it nor writes it."""
    a, b, written = float_constants(compiled), source_floats(source, where), _literals(source)
    out = []
    for name in sorted(set(a) | set(b)):
        mine, theirs = a.get(name, set()), b.get(name, set())
        only_a = sorted(mine - theirs - written.get(name, set()))
        only_b = sorted(theirs - mine)
        if only_a or only_b:
            out.append({"function": name, "only_compiled": only_a, "only_source": only_b})
    return out
