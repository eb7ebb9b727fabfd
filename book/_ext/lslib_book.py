"""A small Sphinx extension for this book (loaded from _config.yml, ``sphinx.local_extensions``).

1. Paired notebooks: every chapter is ``book/NAME.md`` (MyST markdown, for review) paired by
   jupytext with ``book/NAME.ipynb`` (no outputs; built, tested and opened on Colab). The ``.md``
   twin of an ``.ipynb`` is excluded from the Sphinx build: each chapter is built from its notebook.
2. Offline Altair charts: Altair's HTML output loads Vega, Vega-Lite and vega-embed from a CDN
   unless they are already on the page. On every page that holds an Altair chart this extension
   adds the copies vendored in ``book/_static/vendor/vega`` (see ``book/_tools/vendor_js.sh``)
   and tells Altair's loader that they are there, so the charts and their sliders work offline.
3. It checks that the vendored Vega-Lite has the major version of the installed Altair's schema.
4. It removes the duplicated inline scripts of Jupyter Book 1 (a JavaScript error on every page)
   and adds the book's stylesheet (``book/_static/lslib-book.css``).
5. The ``lslib-exec-table`` directive (the page "Execution statistics"): myst-nb's execution
   statistics of every executed page (``nb-exec-table``: method, run time, when, status) with two
   more columns, the mode (quick or full) and the machine, which each chapter glues as
   ``lslib_run`` while it runs (``lslib.book.run_facts``); so a row describes the run that made
   the page, also when the page's outputs come from the execution cache.
"""

from __future__ import annotations

import ast
import json
import posixpath
from datetime import datetime
from pathlib import Path

from docutils import nodes
from myst_nb.ext.execution_tables import METADATA_KEY as EXEC_TABLE_KEY
from myst_nb.sphinx_ import NbMetadataCollector
from myst_nb.sphinx_ext import OUTPUT_FOLDER as NB_OUTPUT_FOLDER
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

VENDOR = Path(__file__).resolve().parents[1] / "_static" / "vendor"
VEGA_SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
# A chart from Altair's "html" renderer calls vegaEmbed; this marks a page that needs the scripts.
CHART_MARKER = "vegaEmbed"


def paired_markdown(srcdir: Path) -> list[str]:
    """The book/**/*.md files that have an .ipynb twin, as paths relative to ``srcdir``."""
    book = srcdir / "book"
    return sorted(
        md.relative_to(srcdir).as_posix()
        for md in book.rglob("*.md")
        if md.with_suffix(".ipynb").is_file() and "_build" not in md.parts
    )


def _exclude_paired_markdown(app: Sphinx, config: Config) -> None:
    config.exclude_patterns.extend(paired_markdown(Path(app.srcdir)))


def _altair_versions() -> dict[str, str]:
    import altair as alt

    return {
        "vega_version": alt.VEGA_VERSION,
        "vegalite_version": alt.VEGALITE_VERSION,
        "vegaembed_version": alt.VEGAEMBED_VERSION,
    }


def _check_vendored_versions(app: Sphinx) -> None:
    missing = [s for s in VEGA_SCRIPTS if not (VENDOR / "vega" / s).is_file()]
    if missing:
        logger.warning("lslib_book: vendored Vega scripts missing: %s; "
                       "run book/_tools/vendor_js.sh", ", ".join(missing))
        return
    vendored = json.loads((VENDOR / "VERSIONS.json").read_text())
    wanted = _altair_versions()
    for lib, key in (("vega", "vega_version"), ("vega-lite", "vegalite_version"),
                     ("vega-embed", "vegaembed_version")):
        if vendored[lib].split(".")[0] != wanted[key].lstrip("v").split(".")[0]:
            logger.warning(
                "lslib_book: vendored %s %s does not match Altair's %s; "
                "run book/_tools/vendor_js.sh with the right majors",
                lib, vendored[lib], wanted[key])


def _add_vega_on_chart_pages(app: Sphinx, pagename: str, templatename: str, context: dict,
                             doctree) -> None:
    if CHART_MARKER not in context.get("body", ""):
        return
    for i, script in enumerate(VEGA_SCRIPTS):
        app.add_js_file(f"vendor/vega/{script}", priority=400 + i)
    # Altair's loader skips a library when VEGA_DEBUG[<lib>_version] equals the version it wants.
    versions = json.dumps(_altair_versions())
    app.add_js_file(None, priority=410, body=f"window.VEGA_DEBUG = {versions};")


def _drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                            doctree) -> None:
    """Jupyter Book 1 renders the inline scripts of sphinx-thebe and sphinx-togglebutton twice;
    the second ``const THEBE_JS_URL = ...`` is a JavaScript error ("already declared") on every
    page. Keep one of each script."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # the two copies differ only in filename None versus "" (an inline script)
        key = (getattr(js, "filename", None) or "",
               repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


# ------------------------------------------------------------------------------------------------
# the "Execution statistics" table
# ------------------------------------------------------------------------------------------------
EXEC_COLUMNS = ("Chapter", "Mode", "Run time (s)", "Executed", "Method", "Machine", "Status")


def glued_run(glue_file: Path) -> dict:
    """The ``lslib_run`` value a chapter glued (mode and machine), from myst-nb's
    ``<docname>.glue.json``; empty when the chapter glued none."""
    try:
        bundle = json.loads(glue_file.read_text())["lslib_run"]["data"]["text/plain"]
        return json.loads(ast.literal_eval(bundle))
    except (OSError, KeyError, ValueError, SyntaxError):
        return {}


def exec_rows(metadata: dict, glue_dir: Path) -> list[tuple[str, ...]]:
    """One row per executed page: (docname, mode, run time, executed at, method, machine,
    status), from myst-nb's per-document ``exec_data`` and the chapters' glued ``lslib_run``."""
    rows = []
    for docname in sorted(metadata):
        data = metadata[docname].get("exec_data")
        if not data:
            continue
        run = glued_run(glue_dir / f"{docname}.glue.json")
        runtime = data.get("runtime")
        mtime = data.get("mtime")
        rows.append((docname, run.get("mode", "not recorded"),
                     "-" if runtime is None else f"{runtime:.1f}",
                     datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M") if mtime else "-",
                     str(data.get("method", "-")), run.get("machine", "not recorded"),
                     "ok" if data.get("succeeded") else "failed"))
    return rows


class LslibExecNode(nodes.General, nodes.Element):
    """Where the table goes (filled in once every page has been executed)."""


class LslibExecTable(SphinxDirective):
    """``lslib-exec-table``: the execution statistics with mode and machine."""

    def run(self):
        # myst-nb re-renders the pages with this key when a notebook is executed again
        NbMetadataCollector.set_doc_data(self.env, self.env.docname, EXEC_TABLE_KEY, True)
        return [LslibExecNode()]


class LslibExecTransform(SphinxPostTransform):
    default_priority = 8  # before the references are resolved, as myst-nb's own table

    def run(self, **kwargs) -> None:
        glue_dir = Path(self.app.outdir).parent / NB_OUTPUT_FOLDER
        for node in list(self.document.findall(LslibExecNode)):
            rows = exec_rows(NbMetadataCollector.get_doc_data(self.env), glue_dir)
            node.replace_self(self._table(rows))

    def _table(self, rows):
        table = nodes.table(classes=["colwidths-auto", "lslib-exec-table"])
        group = nodes.tgroup(cols=len(EXEC_COLUMNS))
        table += group
        group += [nodes.colspec(colwidth=1) for _ in EXEC_COLUMNS]
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body
        head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=c)) for c in EXEC_COLUMNS])
        for docname, *cells in rows:
            link = pending_xref(refdoc=self.env.docname, refdomain="std", reftype="doc",
                                reftarget=posixpath.relpath(
                                    docname, posixpath.dirname(self.env.docname)),
                                refexplicit=True, refwarn=True, classes=["xref", "doc"])
            link += nodes.inline(text=docname)
            body += nodes.row("", nodes.entry("", nodes.paragraph("", "", link)),
                              *[nodes.entry("", nodes.paragraph(text=c)) for c in cells])
        return table


def setup(app: Sphinx) -> dict:
    app.add_node(LslibExecNode)
    app.add_directive("lslib-exec-table", LslibExecTable)
    app.add_post_transform(LslibExecTransform)
    app.add_css_file("lslib-book.css")
    app.connect("config-inited", _exclude_paired_markdown)
    app.connect("builder-inited", _check_vendored_versions)
    app.connect("html-page-context", _add_vega_on_chart_pages)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
