"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_trains_one_step():
    blocks = _python_blocks()
    assert blocks, "README.md has no python example"
    ns: dict = {}
    exec(compile(blocks[0], str(README), "exec"), ns)  # noqa: S102
    loss = ns["loss"]
    assert loss.ndim == 0 and bool(loss.isfinite())
    assert len(blocks[0].strip().splitlines()) <= 8


def test_the_readmes_reproduce_commands_parse(tmp_path, monkeypatch):
    """Every `python -m lslib reproduce ...` line of the README is a valid command today (a
    file it reads, as `--lenet-start`'s, made by the README's line before it)."""
    import shlex

    from lslib.__main__ import build_parser

    lines = [ln.split("#")[0].strip() for ln in README.read_text().splitlines()
             if ln.startswith("python -m lslib reproduce")]
    assert len(lines) >= 5
    monkeypatch.chdir(tmp_path)
    for line in lines:
        words = shlex.split(line)
        if "--lenet-start" in words:
            (tmp_path / words[words.index("--lenet-start") + 1]).write_bytes(b"")
        args = build_parser().parse_args(words[3:])
        assert args.command == "reproduce", line
