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
