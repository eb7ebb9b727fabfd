"""Running the chapters: the GPU notice of the chapters that want a GPU (its run time glued from
the committed measurements, never typed), the mode and machine every chapter records, and the
"Execution statistics" page that the book build writes from them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed")

from lslib.book import CHAPTER_TIMES, gpu_notice, machine_summary, run_facts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
# the chapters that train or attack networks on the GPU when torch finds one (logit_squeezing
# trains its small models on the CPU whatever the machine: no notice there)
GPU_CHAPTERS = ["attacks", "robustness", "tables"]
TIMES = ROOT / CHAPTER_TIMES


def _hidden_code(name: str) -> str:
    nb = jupytext.read(BOOK / f"{name}.ipynb")
    return "\n".join(c.source for c in nb.cells
                     if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", []))


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_records_its_mode_and_machine(nb_path: Path):
    assert 'glue("lslib_run", run_facts(QUICK), display=False)' in _hidden_code(nb_path.stem)


@pytest.mark.parametrize("name", GPU_CHAPTERS)
def test_chapters_that_want_a_gpu_open_with_the_notice(name: str):
    text = (BOOK / f"{name}.md").read_text()
    opening = text.split("\n## ", 1)[0]
    assert "```{glue:} gpu_notice" in opening, f"{name}.md: no GPU notice before its first section"
    assert f'gpu_notice("{name}", "../{CHAPTER_TIMES}")' in _hidden_code(name)


def test_the_committed_times_cover_every_gpu_chapter_in_full_mode():
    record = json.loads(TIMES.read_text())
    for run in record["runs"]:
        assert run["command"].startswith("python book/_tools/time_chapters.py")
        assert re.fullmatch(r"[0-9a-f]{40}", run["commit"])
        assert {"cpu", "cores", "gpu"} <= set(run["machine"])
    measured = {e["chapter"] for r in record["runs"] for e in r["chapters"] if e["mode"] == "full"}
    missing = set(GPU_CHAPTERS) - measured
    assert not missing, f"not measured in full mode: {missing}"


def _text(notice) -> str:
    return re.sub(r"<[^>]+>", "", notice.data)


def test_the_notice_gives_the_measured_times(tmp_path):
    """Against a hand-made record: the minutes shown are the record's seconds / 60, the newest
    full-mode entry wins, and an unfinished run is said to be unfinished."""
    run = {"command": "python book/_tools/time_chapters.py --mode full attacks", "commit": "a" * 40,
           "machine": {"cpu": "Some CPU", "cores": 2, "gpu": None}}
    record = {"runs": [
        {**run, "chapters": [{"chapter": "attacks", "mode": "full", "status": "ok",
                              "wall_seconds": 3000.0, "cpu_seconds": 1200.0,
                              "started_utc": "2026-01-01T00:00:00+00:00"}]},
        {**run, "chapters": [{"chapter": "attacks", "mode": "full", "status": "ok",
                              "wall_seconds": 4200.0, "cpu_seconds": 1800.0,
                              "started_utc": "2026-02-01T00:00:00+00:00",
                              "load_average_before": [3.25, 2.0, 1.0]},
                             {"chapter": "attacks", "mode": "quick", "status": "ok",
                              "wall_seconds": 60.0, "cpu_seconds": 6.0,
                              "started_utc": "2026-03-01T00:00:00+00:00"},
                             {"chapter": "tables", "mode": "full", "status": "did not finish",
                              "wall_seconds": 4500.0, "cpu_seconds": 660.0,
                              "started_utc": "2026-02-01T00:00:00+00:00"}]}]}
    path = tmp_path / "times.json"
    path.write_text(json.dumps(record))
    text = _text(gpu_notice("attacks", path))
    assert "30 minutes of CPU time" in text and "70 minutes of wall-clock time" in text
    assert "2026-02-01" in text and "Some CPU" in text
    assert "load average of 3.2 on its 2 cores" in text  # a wall time is read with the load
    text = _text(gpu_notice("tables", path))
    assert "not finished after 11 minutes of CPU time" in text and "load average" not in text
    assert "has not been measured" in _text(gpu_notice("robustness", path))
    assert CHAPTER_TIMES in _text(gpu_notice("attacks", tmp_path / "missing.json"))


def test_the_notice_of_each_chapter_reads_the_committed_file():
    for name in GPU_CHAPTERS:
        text = _text(gpu_notice(name, TIMES))
        assert "minutes of CPU time" in text, (name, text)


def test_run_facts_say_the_mode_and_this_machine():
    assert json.loads(run_facts(True)) == {"mode": "quick", "machine": machine_summary()}
    assert json.loads(run_facts(False))["mode"] == "full"
    import torch

    assert ("no GPU" in machine_summary()) == (not torch.cuda.is_available())


# ------------------------------------------------------------------------------------------------
# the Execution statistics page, built for real (a two-page book with the book's extension)
# ------------------------------------------------------------------------------------------------
def test_the_execution_page_is_in_the_toc_and_uses_the_table():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/execution" in files
    assert "```{lslib-exec-table}" in (BOOK / "execution.md").read_text()


@pytest.mark.slow
def test_the_build_writes_mode_run_time_and_machine_per_chapter(tmp_path):
    (tmp_path / "_config.yml").write_text(textwrap.dedent(f"""\
        title: test
        only_build_toc_files: true
        execute:
          execute_notebooks: cache
          timeout: 300
        sphinx:
          local_extensions:
            lslib_book: {BOOK / "_ext"}
        """))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n"
                                       "  - file: quick_chapter\n  - file: silent_chapter\n"
                                       "  - file: execution\n")
    (tmp_path / "index.md").write_text("# Index\n")
    (tmp_path / "execution.md").write_text((BOOK / "execution.md").read_text())
    header = ("---\njupytext:\n  text_representation:\n    format_name: myst\n"
              "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n")
    (tmp_path / "quick_chapter.md").write_text(
        header + "# A chapter\n\n```{code-cell} ipython3\nfrom myst_nb import glue\n"
        "from lslib.book import run_facts\n\nglue('lslib_run', run_facts(True), display=False)\n"
        "```\n")
    (tmp_path / "silent_chapter.md").write_text(
        header + "# Another\n\n```{code-cell} ipython3\nx = 1\n```\n")
    jb = str(Path(sys.executable).parent / "jupyter-book")
    build = subprocess.run([jb, "build", str(tmp_path), "--path-output", str(tmp_path), "-W", "-n",
                            "--keep-going"],
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    page = (tmp_path / "_build" / "html" / "execution.html").read_text()
    table = page[page.index("lslib-exec-table"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]  # after the header
    cells = [[re.sub(r"<[^>]+>", "", td).strip()
              for td in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]
    assert [c[0] for c in cells] == ["quick_chapter", "silent_chapter"]
    quick, silent = cells
    assert quick[1] == "quick" and quick[5] == machine_summary() and quick[6] == "ok"
    assert float(quick[2]) > 0 and quick[4] == "cache"
    assert silent[1] == "not recorded" and silent[5] == "not recorded"
