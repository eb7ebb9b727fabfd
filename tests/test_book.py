"""The book's sources: paired notebooks in sync, no outputs committed, the hidden set-up cells, the
table of contents, the vendored JavaScript, the citations, and no hand-typed numbers in the prose.

The chapters themselves run under nbmake (`make notebooks`); the built HTML is checked in a real
browser by tests/browser_check.py (`make browser-check`).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

jupytext = pytest.importorskip("jupytext", reason="the book extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
PAIRED_MD = sorted(md for md in BOOK.glob("*.md") if md.read_text().startswith("---\njupytext:"))


def _ids(paths):
    return [p.name for p in paths]


def _toc_files() -> list[str]:
    files = [TOC["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in TOC.get("parts", []):
        walk(part.get("chapters"))
    walk(TOC.get("chapters"))
    return files


def _cells(nb) -> list[tuple[str, str, tuple[str, ...], str]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", [])),
             json.dumps(c.metadata.get("mystnb", {}), sort_keys=True)) for c in nb.cells]


# ------------------------------------------------------------------------------------------------
# pairing and outputs
# ------------------------------------------------------------------------------------------------
def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks in book/"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_notebook_has_its_myst_twin_in_sync(nb_path: Path):
    md_path = nb_path.with_suffix(".md")
    assert md_path.is_file(), f"{nb_path.name} has no MyST twin {md_path.name}: run `make sync`"
    nb, md = jupytext.read(nb_path), jupytext.read(md_path)
    assert _cells(nb) == _cells(md), (
        f"{nb_path.name} and {md_path.name} disagree: edit the .md and run `make sync`")


@pytest.mark.parametrize("md_path", PAIRED_MD, ids=_ids(PAIRED_MD))
def test_every_myst_notebook_has_its_ipynb(md_path: Path):
    assert md_path.with_suffix(".ipynb").is_file(), "run `make sync` to create the .ipynb"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebooks_have_no_outputs(nb_path: Path):
    raw = json.loads(nb_path.read_text())
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{nb_path.name}: cell {i} has outputs"
        assert cell.get("execution_count") is None, f"{nb_path.name}: cell {i} was executed"
    assert "widgets" not in raw["metadata"], f"{nb_path.name}: widget state committed"


def test_the_sphinx_extension_excludes_exactly_the_paired_markdown():
    sys.path.insert(0, str(BOOK / "_ext"))
    try:
        import lslib_book
    finally:
        sys.path.pop(0)
    assert lslib_book.paired_markdown(ROOT) == [p.relative_to(ROOT).as_posix() for p in PAIRED_MD]


# ------------------------------------------------------------------------------------------------
# table of contents
# ------------------------------------------------------------------------------------------------
def test_toc_entries_exist_and_every_chapter_is_listed():
    files = _toc_files()
    for f in files:
        stem = ROOT / f
        assert stem.with_suffix(".ipynb").is_file() or stem.with_suffix(".md").is_file(), f
    listed = {(ROOT / f).with_suffix(".ipynb") for f in files}
    for nb in NOTEBOOKS:
        assert nb in listed, f"{nb.name} is not in _toc.yml"


def test_every_chapter_page_is_built_from_its_notebook():
    """Colab opens the page's source, so a chapter with a notebook must be built from it."""
    for f in _toc_files():
        md = (ROOT / f).with_suffix(".md")
        if md in PAIRED_MD:
            assert md.with_suffix(".ipynb").is_file()


# ------------------------------------------------------------------------------------------------
# headless execution: live widgets are never run, every cell is bounded
# ------------------------------------------------------------------------------------------------
# A cell that opens ipywidgets (interact, interact_manual, interactive, a widget displayed)
_WIDGET = re.compile(r"\b(?:interact|interact_manual|interactive)\s*\(|^\s*(?:import|from)\s+"
                     r"ipywidgets\b|\bwidgets\.[A-Z]\w*\(|display\(\s*widgets", re.M)
_INTERACTED = re.compile(r"\b(?:interact|interact_manual|interactive)\s*\(\s*(\w+)")


def opens_widgets(source: str) -> bool:
    return bool(_WIDGET.search(source))


def _code_cells(path: Path):
    return [c for c in jupytext.read(path).cells if c.cell_type == "code"]


def test_the_widget_finder_sees_live_widgets_and_nothing_else():
    assert opens_widgets("import ipywidgets as widgets")
    assert opens_widgets("widgets.interact(explore, d=widgets.IntSlider(value=1));")
    assert opens_widgets("interact_manual(live, eps=(0.0, 0.5))")
    assert opens_widgets("display(widgets.VBox([a, b]))")
    assert opens_widgets("s = widgets.FloatSlider(value=0.1)")
    assert not opens_widgets("def explore(d=10):\n    plt.show()")
    assert not opens_widgets("alt.param(bind=alt.binding_range(min=0, max=1))")
    assert not opens_widgets("# the interactive chart below")
    assert _INTERACTED.findall("widgets.interact_manual(\n    live, a=1)") == ["live"]


@pytest.mark.parametrize("src", [*NOTEBOOKS, *PAIRED_MD], ids=_ids([*NOTEBOOKS, *PAIRED_MD]))
def test_live_widget_cells_are_not_executed_by_headless_builds(src: Path):
    """The cause of the `make book` hang (jupyter/nbclient#312, ipykernel 7): a live ipywidgets
    cell with matplotlib inside can stall the headless notebook client forever. myst-nb and nbmake
    both skip cells tagged skip-execution."""
    for i, cell in enumerate(_code_cells(src)):
        if opens_widgets(cell.source):
            assert "skip-execution" in cell.metadata.get("tags", []), (
                f"{src.name}: code cell {i} opens ipywidgets but is not tagged skip-execution")


@pytest.mark.parametrize("src", PAIRED_MD, ids=_ids(PAIRED_MD))
def test_the_function_of_every_live_widget_runs_in_an_executed_cell(src: Path):
    """A skipped widget cell is not tested by the build: its function is called directly."""
    cells = _code_cells(src)
    executed = [c.source for c in cells if "skip-execution" not in c.metadata.get("tags", [])]
    for cell in cells:
        if "skip-execution" not in cell.metadata.get("tags", []):
            continue
        for name in _INTERACTED.findall(cell.source):
            call = re.compile(rf"(?<!def )\b{name}\(")
            assert any(call.search(s) for s in executed), (
                f"{src.name}: {name}() is only run by a skipped widget cell; call it in a cell "
                "the build executes")


def _makefile_var(name: str) -> str:
    m = re.search(rf"^{name}\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"{name} is not set in the Makefile"
    return m.group(1)


MAX_CELL_SECONDS = 1800


def test_every_cell_is_bounded_in_make_book_and_make_test():
    timeout = CONFIG["execute"]["timeout"]
    assert isinstance(timeout, int) and 0 < timeout <= MAX_CELL_SECONDS, (
        f"_config.yml execute.timeout is {timeout!r}: a cell could run unbounded")
    assert int(_makefile_var("NB_TIMEOUT")) == timeout, "make test and make book disagree"
    makefile = (ROOT / "Makefile").read_text()
    nbmake = [line for line in makefile.splitlines() if "--nbmake" in line]
    assert nbmake and all("--nbmake-timeout=$(NB_TIMEOUT)" in line for line in nbmake)
    assert "--reruns" not in makefile, "a re-run hides a stall instead of curing it"
    for nb_path in NOTEBOOKS:  # nbmake honours a notebook's own execution.timeout
        meta = json.loads(nb_path.read_text())["metadata"]
        own = meta.get("execution", {}).get("timeout")
        assert own is None or 0 < own <= MAX_CELL_SECONDS, (nb_path.name, own)
    for md in PAIRED_MD:  # myst-nb honours a page's own mystnb execution_timeout
        front = yaml.safe_load(md.read_text().split("---\n")[1])
        own = (front.get("mystnb") or {}).get("execution_timeout")
        assert own is None or 0 < own <= MAX_CELL_SECONDS, (md.name, own)


# ------------------------------------------------------------------------------------------------
# the hidden set-up cells
# ------------------------------------------------------------------------------------------------
def _install_url() -> str:
    repo = CONFIG["repository"]
    return f"git+{repo['url'].rstrip('/')}@{repo['branch']}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_code_cell_installs_lslib_from_the_configured_repository(nb_path: Path):
    nb = jupytext.read(nb_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "remove-cell" in first.metadata.get("tags", []), "the install cell must be hidden"
    assert 'importlib.util.find_spec("lslib") is None' in first.source
    urls = re.findall(r"git\+https://[^\"'\s]+", first.source)
    assert urls == [_install_url()], (urls, _install_url())


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_a_hidden_cell_reads_the_quick_mode_switch(nb_path: Path):
    nb = jupytext.read(nb_path)
    hidden = [c for c in nb.cells
              if c.cell_type == "code" and "remove-cell" in c.metadata.get("tags", [])]
    assert any('QUICK = os.environ.get("LSLIB_QUICK", "0") == "1"' in c.source for c in hidden)


def test_repository_settings_for_launch_buttons():
    assert CONFIG["repository"]["branch"] == "main"
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


# ------------------------------------------------------------------------------------------------
# offline assets
# ------------------------------------------------------------------------------------------------
def test_mathjax_and_vega_are_vendored():
    static = ROOT / CONFIG["sphinx"]["config"]["html_static_path"][0]
    assert (static / CONFIG["sphinx"]["config"]["mathjax_path"]).is_file()
    assert list((static / "vendor/mathjax/es5/output/chtml/fonts/woff-v2").glob("*.woff"))
    versions = json.loads((static / "vendor/VERSIONS.json").read_text())
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert (static / "vendor/vega" / f"{lib}.min.js").is_file()
        assert (static / "vendor/vega" / f"LICENSE-{lib}").is_file()
    import altair as alt

    assert versions["vega-lite"].split(".")[0] == alt.VEGALITE_VERSION.split(".")[0]


# ------------------------------------------------------------------------------------------------
# citations and numbers in the prose
# ------------------------------------------------------------------------------------------------
def _bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\{([^,]+),", (BOOK / "references.bib").read_text()))


def _sources() -> list[Path]:
    return PAIRED_MD + [BOOK / "intro.md"]


def test_every_citation_is_in_references_bib():
    keys = _bib_keys()
    for src in _sources():
        for group in re.findall(r"\{cite:\w+\}`([^`]+)`", src.read_text()):
            for key in group.split(","):
                assert key.strip() in keys, f"{src.name} cites {key!r}, not in references.bib"


# References to the paper's numbered parts, which are not results.
_REFERENCE = re.compile(
    r"\b(?:Sections?|Tables?|Figures?|Figs?\.|eqs?\.|Eqs?\.|[Ee]quations?|Lemmas?|Theorems?|"
    r"Corollary|Appendix|Algorithm|Chapter|Section)\s*\(?\d+(?:\.\d+)*\)?[a-z]?"
    r"(?:\s*(?:,|and|-|to|/)\s*\(?\d+(?:\.\d+)*\)?[a-z]?)*")


def _prose_numbers(markdown: str) -> list[str]:
    text = re.sub(r"^```.*?^```\s*$", " ", markdown, flags=re.S | re.M)  # code blocks
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)          # display maths
    text = re.sub(r"\$[^$\n]+\$", " ", text)                        # inline maths
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)                 # roles: glue, cite, doc
    text = re.sub(r"`[^`]*`", " ", text)                            # inline code
    text = re.sub(r"^:::?.*$|^```.*$", " ", text, flags=re.M)       # directive fences
    text = re.sub(r"^:\w+:.*$", " ", text, flags=re.M)              # directive options
    text = re.sub(r"\]\([^)]*\)", "]", text)                        # link targets
    text = re.sub(r"<[^>]+>", " ", text)                            # html tags
    text = _REFERENCE.sub(" ", text)
    text = re.sub(r"\(\d+\)", " ", text)                            # (1): equation numbers
    text = re.sub(r"^\s*\d+\.\s", " ", text, flags=re.M)              # numbered lists
    text = re.sub(r"^(#+)\s*\d+\.\s", r"\1 ", text, flags=re.M)        # numbered headings
    return re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])", text)


@pytest.mark.parametrize("src", [*PAIRED_MD, BOOK / "intro.md", BOOK / "cluster.md"],
                         ids=lambda p: p.name)
def test_no_hand_typed_numbers_in_the_prose(src: Path):
    """Numbers in the prose come from the chapter through myst_nb glue (or are maths)."""
    nb = jupytext.read(src) if src in PAIRED_MD else None
    cells = [c.source for c in nb.cells if c.cell_type == "markdown"] if nb else [src.read_text()]
    found = [n for cell in cells for n in _prose_numbers(cell)]
    assert not found, f"{src.name}: numbers typed in the prose (glue them): {found}"


def test_the_number_finder_sees_typed_numbers_and_spares_references():
    assert _prose_numbers("accuracy 0.93 on 1000 images") == ["0.93", "1000"]
    assert _prose_numbers("Table 1, eq. (6), Sections 2 and 3.1, Figure 2, Lemma 2") == []
    assert _prose_numbers("{glue:text}`acc:.3f` and $\\alpha = 0.1$ and (1)") == []
    assert _prose_numbers("1. first\n```python\nx = 3\n```\n") == []


# ------------------------------------------------------------------------------------------------
# the browser check's own reading of the configuration (the check itself runs in `make
# browser-check`, on the built book)
# ------------------------------------------------------------------------------------------------
def test_browser_check_reads_the_toc_and_the_colab_prefix():
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import browser_check
    finally:
        sys.path.pop(0)
    assert browser_check.toc_docnames(ROOT / "_toc.yml") == _toc_files()
    prefix, path_to_book = browser_check.colab_expectation(ROOT / "_config.yml")
    repo = CONFIG["repository"]
    org_repo = repo["url"].removeprefix("https://github.com/").rstrip("/")
    assert prefix == f"https://colab.research.google.com/github/{org_repo}/blob/{repo['branch']}/"
    assert path_to_book == ""
    for docname in ("book/framework", "book/fading_gaussian"):
        assert docname in browser_check.toc_docnames(ROOT / "_toc.yml")


# ------------------------------------------------------------------------------------------------
# provenance: every experiment chapter opens with the box (the browser check sees it rendered)
# ------------------------------------------------------------------------------------------------
EXPERIMENT_CHAPTERS = ["attacks", "logit_squeezing", "tables", "robustness"]


@pytest.mark.parametrize("name", EXPERIMENT_CHAPTERS)
def test_experiment_chapters_open_with_a_provenance_box(name: str):
    text = (BOOK / f"{name}.md").read_text()
    opening = text.split("\n## ", 1)[0]  # everything before the first section
    assert "```{glue:} provenance" in opening or "provenance_box(" in opening, (
        f"{name}.md: no provenance box before its first section")
    assert "provenance_box(" in text, f"{name}.md never builds its provenance box"


# ------------------------------------------------------------------------------------------------
# no reduced number outside a demo box: a value computed at reduced size (it depends on QUICK)
# reaches the page only inside an "lslib-demo" box (the browser check adds the rendered side)
# ------------------------------------------------------------------------------------------------


def demo_glue_keys(markdown_cells: list[str]) -> tuple[set[str], set[str]]:
    """(keys referenced inside lslib-demo admonitions, keys referenced elsewhere)."""
    inside, outside = set(), set()
    ref = re.compile(r"\{glue:(?:text|any|math|md)?\}`([\w-]+)"
                     r"|^```\{glue:(?:figure|any|math|md)?\}\s*([\w-]+)", re.M)
    for text in markdown_cells:
        depth = []  # stack of (fence, is_demo)
        lines = text.split("\n")
        for i, line in enumerate(lines):
            m = re.match(r"^(:{3,})\{(\w[\w-]*)\}", line)
            if m:
                opts = "\n".join(lines[i + 1:i + 4])
                depth.append((m.group(1), "lslib-demo" in opts))
                continue
            m = re.match(r"^(:{3,})\s*$", line)
            if m and depth and depth[-1][0] == m.group(1):
                depth.pop()
                continue
            demo = any(d for _, d in depth)
            for a, b in ref.findall(line):
                (inside if demo else outside).add(a or b)
    return inside, outside


_READS_COMMITTED = re.compile(r"\b(find_results|read_results)\(")


def _code(source: str) -> ast.Module | None:
    lines = [ln for ln in source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _reads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _writes(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                while isinstance(t, (ast.Subscript, ast.Attribute)):
                    t = t.value
                if isinstance(t, ast.Name):
                    out.add(t.id)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            base = n.func.value  # obj.append(x), obj.update(...): the object changes
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                out.add(base.id)
    return out


def _glue_keys(node: ast.AST) -> list[str]:
    """Keys glued by ``glue("key", value)`` calls whose value is not a box (regex for f-strings)."""
    keys = []
    for n in ast.walk(node):
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "glue"
                and n.args):
            continue
        if len(n.args) > 1 and isinstance(n.args[1], ast.Call) and getattr(
                n.args[1].func, "id", "") in ("demo_box", "provenance_box"):
            continue
        k = n.args[0]
        if isinstance(k, ast.Constant) and isinstance(k.value, str):
            keys.append(re.escape(k.value))
        elif isinstance(k, ast.JoinedStr):
            keys.append("".join(re.escape(v.value) if isinstance(v, ast.Constant) else r"[\w-]+"
                                for v in k.values))
    return keys


def reduced_leaks(cells: list[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    """Where a value that depends on ``QUICK`` could reach the page outside a demo box.

    ``cells``: (cell_type, source, tags). A name is tainted when a statement that reads ``QUICK``
    or a tainted name writes it (assignment, definition, a method call on it). A cell that reads
    the committed results (``find_results``/``read_results``) taints nothing: its reduced branch
    runs only when they are missing (the browser check sees which box the page opens with). A
    tainted value leaks when a cell that reads it glues it under a key shown outside an
    ``lslib-demo`` admonition, or displays it (a visible output without ``demo_box``).
    """
    inside, outside = demo_glue_keys([s for t, s, _ in cells if t == "markdown"])
    modules = set()  # torch.allclose(x, y) reads x and y but changes no module
    for kind, source, _ in cells:
        tree = _code(source) if kind == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
    tainted = {"QUICK"}
    leaks = []
    in_solution = False  # an exercise's solution computes at the sizes it states, in a dropdown
    for n, (kind, source, tags) in enumerate(cells):
        if kind == "markdown":
            marks = re.findall(r"\{solution-(start|end)\}", source)
            in_solution = marks[-1] == "start" if marks else in_solution
            continue
        if kind != "code" or re.search(r"^QUICK\s*=", source, re.M):
            continue
        tree = _code(source)
        if tree is None:
            continue
        committed = bool(_READS_COMMITTED.search(source))
        hit = False
        for stmt in tree.body:
            if _reads(stmt) & tainted:
                hit = True
                if not committed:
                    tainted |= _writes(stmt) - modules
                for key in [] if in_solution else _glue_keys(stmt):
                    shown = sorted(k for k in outside if re.fullmatch(key, k))
                    if shown:
                        leaks.append(f"cell {n}: glues {', '.join(shown)} (depends on QUICK) "
                                     "outside a demo box")
        if not hit or committed or in_solution or "demo_box(" in source:
            continue
        if {"remove-cell", "remove-output", "skip-execution"} & set(tags):
            continue
        if _shows_tainted(tree, source, tainted):
            leaks.append(f"cell {n}: shows an output that depends on QUICK outside a demo box")
    return leaks


def _shows_tainted(tree: ast.Module, source: str, tainted: set[str]) -> bool:
    """Whether a cell displays a tainted value: its last expression (unless a semicolon ends
    it), or a top-level (not in a function) call of display, print or plt.show with a tainted
    argument."""
    body = [s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))]
    last = tree.body[-1] if tree.body else None
    if (isinstance(last, ast.Expr) and not source.rstrip().endswith(";") and _reads(last) & tainted
            and not (isinstance(last.value, ast.Call) and _name(last.value.func) in _SILENT)):
        return True
    for stmt in body:
        for n in ast.walk(stmt):
            if (isinstance(n, ast.Call) and _name(n.func) in _SHOWS
                    and (_reads(n) & tainted or _name(n.func) == "plt.show")):
                return True
    return False


_SHOWS = {"display", "print", "plt.show"}
_SILENT = {"glue", "plt.close"}


def _name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def _chapter_cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("src", PAIRED_MD, ids=lambda p: p.name)
def test_no_reduced_number_outside_a_demo_box(src: Path):
    leaks = reduced_leaks(_chapter_cells(jupytext.read(src)))
    assert not leaks, f"{src.name}: {leaks}"


_SETUP = ("code", "QUICK = os.environ.get('LSLIB_QUICK', '0') == '1'", ())
_RUN = ("code", "N = 10 if QUICK else 1000\nacc = float(run(N))", ())
_GLUE = ("code", "glue('acc', acc, display=False)\nglue(f'n_{1}', N, display=False)",
         ("remove-cell",))


def test_the_reduced_number_guard_sees_leaks_and_spares_demo_boxes():
    shown = ("markdown", "Accuracy {glue:text}`acc:.3f` on {glue:text}`n_1:d` images.", ())
    leaks = reduced_leaks([_SETUP, _RUN, _GLUE, shown])
    assert len(leaks) == 2 and "acc" in leaks[0] and "n_1" in leaks[1]
    boxed = ("markdown", "::::{admonition} Live demo at reduced size\n:class: caution lslib-demo\n"
             "Accuracy {glue:text}`acc:.3f` on {glue:text}`n_1:d` images.\n::::", ())
    assert reduced_leaks([_SETUP, _RUN, _GLUE, boxed]) == []
    # displayed directly (the cell's last expression, or display()) leaks; in a demo box it does not
    assert reduced_leaks([_SETUP, _RUN, ("code", "acc", ())])
    assert reduced_leaks([_SETUP, _RUN, ("code", "display(pd.Series([acc]))", ())])
    assert reduced_leaks([_SETUP, _RUN, ("code", "display(demo_box(acc, what='x'))", ())]) == []
    # a value that does not depend on QUICK, or a cell reading the committed results, is fine
    assert reduced_leaks([_SETUP, ("code", "acc = float(run(1000))", ()), _GLUE, shown]) == []
    committed = ("code", "found = find_results('x.csv')\nacc = read(found) if found else "
                 "run(10 if QUICK else 100)", ())
    assert reduced_leaks([_SETUP, committed, _GLUE, shown]) == []
    # a module's function called with a tainted argument taints the result, not the module
    via_module = [("code", "import numpy as np", ()), _SETUP,
                  ("code", "small = np.ones(3 if QUICK else 9)\nacc = float(np.mean([1.0]))", ()),
                  _GLUE, shown]
    assert reduced_leaks(via_module) == []
    # an exercise's solution (a dropdown) may compute at its own size; the body may not
    solution = [_SETUP, ("markdown", "```{solution-start} ex\n```", ()), _RUN,
                ("code", "acc", ()), ("markdown", "```{solution-end}\n```", ())]
    assert reduced_leaks(solution) == []
    assert reduced_leaks([*solution, ("code", "acc", ())])
    # taint flows through later cells, mutations and function definitions
    flow = [_SETUP, ("code", "rows = []\nrows.append(run(10 if QUICK else 100));", ()),
            ("code", "def best():\n    return max(rows)\nacc = best()", ()), _GLUE, shown]
    assert reduced_leaks(flow) == ["cell 3: glues acc (depends on QUICK) outside a demo box"]
    # without its semicolon the last line would display what it returns
    flow[1] = ("code", flow[1][1].rstrip(";"), ())
    assert reduced_leaks(flow)[0].startswith("cell 1: shows an output")


# exercises (sphinx-exercise): at the end of every chapter, solutions in dropdowns, every solution
# cell executed by the build and by nbmake (so no solution rots)
# ------------------------------------------------------------------------------------------------
MIN_EXERCISES = 3
_EXERCISE = re.compile(r"^```\{exercise\}[^\n]*\n:label:\s*(\S+)", re.M)
_SOLUTION = re.compile(r"^```\{(solution|solution-start)\}\s*(\S+)\n((?::\w+:[^\n]*\n)*)", re.M)


def _exercise_cells(md: Path):
    """(exercise labels, [(target, options, kind)], code cells inside gated solutions)."""
    exercises, solutions, solution_code = [], [], []
    inside = False
    for cell in jupytext.read(md).cells:
        if cell.cell_type == "markdown":
            exercises += _EXERCISE.findall(cell.source)
            events = [(m.start(), m.groups()) for m in _SOLUTION.finditer(cell.source)]
            events += [(m.start(), None) for m in re.finditer(r"^```\{solution-end\}",
                                                             cell.source, re.M)]
            for _, groups in sorted(events, key=lambda e: e[0]):
                if groups is None:
                    assert inside, f"{md.name}: a solution-end without its solution-start"
                    inside = False
                    continue
                kind, target, options = groups
                assert not inside, f"{md.name}: a solution starts inside another"
                solutions.append((target, options, kind))
                inside = kind == "solution-start"
        elif inside:
            solution_code.append(cell)
    assert not inside, f"{md.name}: a solution-start without its solution-end"
    return exercises, solutions, solution_code


@pytest.mark.parametrize("md", PAIRED_MD, ids=_ids(PAIRED_MD))
def test_every_chapter_ends_with_exercises_and_dropdown_solutions(md: Path):
    text = md.read_text()
    headings = re.findall(r"^## (.+)$", re.sub(r"^```.*?^```\s*$", "", text, flags=re.S | re.M),
                          re.M)
    assert headings and headings[-1].strip() == "Exercises", (
        f"{md.name}: the last section must be 'Exercises' (found {headings[-1:]})")
    exercises, solutions, code = _exercise_cells(md)
    assert len(exercises) >= MIN_EXERCISES, f"{md.name}: {len(exercises)} exercises"
    assert len(set(exercises)) == len(exercises)
    targets = [t for t, _, _ in solutions]
    assert sorted(targets) == sorted(exercises), (
        f"{md.name}: every exercise needs exactly one solution ({exercises} vs {targets})")
    for target, options, _ in solutions:
        assert ":class: dropdown" in options, f"{md.name}: solution of {target}: not a dropdown"
    assert code, f"{md.name}: no solution runs code"
    for cell in code:
        tags = cell.metadata.get("tags", [])
        assert "skip-execution" not in tags and "raises-exception" not in tags, (
            f"{md.name}: a solution cell is not executed as it stands: {cell.source[:60]!r}")


def test_the_exercise_finder_sees_gated_and_plain_solutions(tmp_path: Path):
    md = tmp_path / "x.md"
    md.write_text("---\njupytext:\n  text_representation:\n    extension: .md\n"
                  "    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
                  "  language: python\n  name: python3\n---\n# T\n\n"
                  "```{exercise}\n:label: a\n\nDo it.\n```\n\n"
                  "```{solution-start} a\n:label: sa\n:class: dropdown\n```\n\n"
                  "```{code-cell} ipython3\nx = 1\n```\n\n```{solution-end}\n```\n\n"
                  "```{exercise}\n:label: b\n\nAgain.\n```\n\n"
                  "```{solution} b\n:class: dropdown\n\nTwo.\n```\n")
    exercises, solutions, code = _exercise_cells(md)
    assert exercises == ["a", "b"]
    assert [(t, k) for t, _, k in solutions] == [("a", "solution-start"), ("b", "solution")]
    assert [c.source for c in code] == ["x = 1"]


def test_the_graded_exercise_page_hands_out_an_empty_attack_and_grades_it():
    text = (BOOK / "break_defence.md").read_text()
    assert "def my_attack(" in text and "return x.clone()" in text
    assert "grade(ch, my_attack(" in text
    assert "book/break_defence" in _toc_files()
