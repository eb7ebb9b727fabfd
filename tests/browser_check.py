"""Open every page of the built book in a real browser and fail on what a reader would see broken.

Usage (after ``make book``)::

    python tests/browser_check.py --html _build/html --screenshots _build/screenshots

Headless Debian Chromium (``/usr/bin/chromium``), driven by Playwright's Python package (no browser
download), with a fresh profile and the flags that keep it from stalling on a machine without
internet. The built HTML is served from 127.0.0.1. For every page it checks:

- no error output in a cell (tracebacks, error outputs, stderr that reports an error), and no error
  drawn by a chart;
- no JavaScript error, no failed or 4xx/5xx request, and no request that leaves 127.0.0.1 (the book
  must render offline: MathJax and Vega are served by the book itself);
- every image loaded (``naturalWidth > 0``);
- every link to the book itself resolves to a file, and its ``#fragment`` to an element id;
- the maths was rendered by MathJax (each ``.math`` element holds an ``mjx-container``, no MathJax
  error, no raw ``$$``, ``\\(`` or ``\\[`` left in the text);
- the navigation sidebar lists every page of ``_toc.yml``, and every built page is in the toc;
- on chapters built from a notebook, the Colab button opens that notebook from the repository and
  branch of ``_config.yml``, and the notebook exists;
- every Altair chart rendered, and moving each of its sliders (and dropdowns) changes the figure;
  the pages named by ``--slider-pages`` must have at least one such slider;
- readability: nothing runs off the right edge of the text column (no horizontal overflow of the
  page, and no table, image, chart or output wider than the column, scrolled or not); no chart
  legend drawn over plotted marks (Altair charts, whose marks the browser can see; matplotlib
  legends are checked when the figure is drawn, by ``lslib.book``); every figure (an image or a
  chart in a cell's output) sits in a numbered figure with a caption;
- exercises (sphinx-exercise): every solution is a dropdown, closed when the page opens; a click
  on its title opens it and shows the solution, code cells included; each exercise has a solution
  and each page named by ``--exercise-pages`` has at least ``MIN_EXERCISES`` exercises (a
  screenshot of the exercises with their solutions open goes to ``PAGE__exercises.png``);
- the pages named by ``--experiment-pages`` open with a provenance box (``.lslib-provenance``,
  before the first section) that gives the data size, epochs, device, wall time and commit of the
  run whose numbers the page shows; when that run is a reduced one (the box is a demo box), no
  computed number (a glued value, a cell output, a figure) appears outside a demo box.

A full-page screenshot of each page goes to ``--screenshots`` (taken before the sliders move).
Prints one line per page and a closing ``N passed, M failed``; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import http.server
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# pages Sphinx writes besides the chapters; opened and checked, but not expected in the toc
AUXILIARY_PAGES = {"genindex.html", "search.html", "index.html"}
SKIP_DIRS = {"_static", "_sources", "_images", "reports", "_sphinx_design_static"}
PAGE_TIMEOUT_MS = 60_000
MIN_EXERCISES = 3  # per page named by --exercise-pages
EXERCISE_PAGES = ["book/framework", "book/als_game", "book/fading_gaussian", "book/attacks",
                  "book/logit_squeezing", "book/tables", "book/robustness", "book/errata",
                  "book/break_defence"]
WATCHDOG_S = 900  # the whole check; past it the process exits non-zero with a traceback


@dataclass
class PageReport:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


# ------------------------------------------------------------------------------------------------
# the book on disk
# ------------------------------------------------------------------------------------------------
def toc_docnames(toc_path: Path) -> list[str]:
    """Every document of a jb-book _toc.yml, root first."""
    toc = yaml.safe_load(toc_path.read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(re.sub(r"\.(md|ipynb|rst)$", "", entry["file"]))
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return names


def built_pages(html: Path) -> list[str]:
    pages = []
    for path in sorted(html.rglob("*.html")):
        rel = path.relative_to(html)
        if rel.parts[0] in SKIP_DIRS:
            continue
        pages.append(rel.as_posix())
    return pages


def colab_expectation(config_path: Path) -> tuple[str, str]:
    config = yaml.safe_load(config_path.read_text())
    url = config["repository"]["url"].rstrip("/")
    org_repo = urlsplit(url).path.strip("/")
    branch = config["repository"].get("branch", "master")
    path_to_book = (config["repository"].get("path_to_book") or "").strip("/")
    prefix = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/"
    if path_to_book:
        prefix += path_to_book + "/"
    return prefix, path_to_book


@functools.cache
def ids_in(file: Path) -> frozenset[str]:
    text = file.read_text(errors="replace")
    return frozenset(re.findall(r'\bid="([^"]+)"', text))


# ------------------------------------------------------------------------------------------------
# serving
# ------------------------------------------------------------------------------------------------
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def serve(html: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ------------------------------------------------------------------------------------------------
# in-page JavaScript
# ------------------------------------------------------------------------------------------------
JS_SETTLE = """
async () => {
  const limit = (promise, ms) => Promise.race([promise, new Promise(r => setTimeout(r, ms))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await limit(MathJax.startup.promise, 20000);
  }
  for (const img of document.images) {
    img.loading = "eager";
  }
  await limit(Promise.all(Array.from(document.images).map(
      img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; }))), 20000);
  return true;
}
"""

JS_CHARTS_READY = """
() => Array.from(document.querySelectorAll('[id^="altair-viz-"]')).every(
    el => el.querySelector('svg.marks, canvas') || el.querySelector('.error'))
"""

JS_INSPECT = r"""
() => {
  const out = {};
  const sel = (s) => Array.from(document.querySelectorAll(s));
  out.errorOutputs = sel(
      '.cell_output .traceback, .cell_output .output.error, .output.traceback, ' +
      '.cell_output .stderr, div.output.stderr')
    .map(e => e.innerText.slice(0, 300));
  out.chartErrors = sel('[id^="altair-viz-"] .error').map(e => e.innerText.slice(0, 300));
  out.bodyHasTraceback = document.body.innerText.includes('Traceback (most recent call last)');
  out.brokenImages = Array.from(document.images)
    .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src);
  out.links = sel('a[href]').map(a => ({href: a.href, raw: a.getAttribute('href')}));
  const maths = sel('.math');
  out.mathCount = maths.length;
  out.mathUnrendered = maths.filter(m => !m.querySelector('mjx-container'))
    .map(m => m.textContent.slice(0, 120));
  out.mathErrors = sel('mjx-merror, [data-mjx-error]').map(e =>
      (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 200));
  // an undefined macro is drawn in red (MathJax's noundefined extension), not as an error
  sel('mjx-assistive-mml mtext[mathcolor="red"]').forEach(e =>
      out.mathErrors.push('undefined TeX macro ' + e.textContent.slice(0, 80)));
  out.mathJaxLoaded = !!(window.MathJax && MathJax.startup);
  const clone = document.querySelector('main') ? document.querySelector('main').cloneNode(true)
                                                : document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, .highlight, mjx-container, textarea')
       .forEach(e => e.remove());
  const text = clone.textContent;
  out.rawMath = [];
  for (const pat of ['$$', '\\(', '\\)', '\\[', '\\]', '\\begin{', '\\frac']) {
    const i = text.indexOf(pat);
    if (i >= 0) out.rawMath.push(text.slice(Math.max(0, i - 40), i + 40).replace(/\s+/g, ' '));
  }
  const single = text.match(/\$[^$\s][^$\n]{0,80}\$/);
  if (single) out.rawMath.push(single[0]);
  out.navLinks = sel('nav.bd-docs-nav a[href]').map(a => a.href);
  out.colabLinks = sel('a[href*="colab.research.google.com"]').map(a => a.getAttribute('href'));
  out.charts = sel('[id^="altair-viz-"]').length;
  out.chartsDrawn = sel('[id^="altair-viz-"] svg.marks, [id^="altair-viz-"] canvas').length;
  return out;
}
"""

JS_LAYOUT = r"""
() => {
  const out = {overflow: [], legends: [], uncaptioned: [], provenance: null};
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    out.overflow.push(`the page scrolls sideways (${root.scrollWidth} px in ${root.clientWidth})`);
  }
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  if (!article) return out;
  const style = getComputedStyle(article);
  const box = article.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft);
  const right = box.right - parseFloat(style.paddingRight);
  const describe = (el) => {
    const fig = el.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    const where = cap ? cap.innerText.slice(0, 50) :
      (el.closest('section[id]') ? '#' + el.closest('section[id]').id : '');
    return `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} (${where})`;
  };
  // what a reader must see whole: tables, images, charts, outputs, maths
  const wide = 'table, img, svg.marks, canvas, .cell_output, .output, figure, ' +
               '[id^="altair-viz-"], mjx-container[display="true"], .admonition';
  for (const el of article.querySelectorAll(wide)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.right > right + 1 || r.left < left - 1) {
      out.overflow.push(`${describe(el)} is ${Math.round(r.width)} px wide, ` +
                        `the text column ${Math.round(right - left)} px`);
    }
  }
  // content hidden behind a sideways scroll bar (a table in a scrolling wrapper, a wide output)
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('.cell_input, div.highlight, pre, mjx-container, nav')) continue;
    const ox = getComputedStyle(el).overflowX;
    if ((ox === 'auto' || ox === 'scroll') && el.scrollWidth > el.clientWidth + 1) {
      out.overflow.push(`${describe(el)} scrolls sideways (${el.scrollWidth} px in ` +
                        `${el.clientWidth})`);
    }
  }
  // Altair legends over plotted marks
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 &&
                            Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
  document.querySelectorAll('[id^="altair-viz-"] svg.marks').forEach((svg, c) => {
    const legends = Array.from(svg.querySelectorAll('g.role-legend')).map(
        g => g.getBoundingClientRect()).filter(r => r.width > 0);
    const marks = Array.from(svg.querySelectorAll('g.role-mark > *'))
      .filter(g => !g.closest('g.role-legend, g.role-axis, g.role-title'))
      .map(g => g.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0);
    for (const lg of legends) {
      if (marks.some(m => overlap(lg, m))) {
        out.legends.push(`chart ${c}: a legend is drawn over the plotted marks`);
        break;
      }
    }
  });
  // figures: every image or chart of a cell output in a numbered, captioned figure
  const figs = article.querySelectorAll(
      '.cell_output img, .cell_output [id^="altair-viz-"], figure img, figure [id^="altair-viz-"]');
  for (const el of figs) {
    if (el.parentElement.closest('[id^="altair-viz-"]')) continue;
    const fig = el.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    const number = cap && cap.querySelector('.caption-number');
    // textContent, not innerText: a figure in a closed solution dropdown is hidden
    if (!cap || !number || cap.textContent.replace(number.textContent, '').trim().length < 10) {
      const sec = el.closest('section[id]');
      out.uncaptioned.push(`${el.tagName.toLowerCase()} in ${sec ? '#' + sec.id : 'the page'}`);
    }
  }
  // the provenance box: before the first section of the chapter
  const prov = article.querySelector('.lslib-provenance');
  if (prov) {
    const firstSection = article.querySelector('section section');
    out.provenance = {
      text: prov.innerText,
      first: !firstSection ||
             !!(prov.compareDocumentPosition(firstSection) & Node.DOCUMENT_POSITION_FOLLOWING),
      reduced: prov.classList.contains('lslib-demo'),
      // on a page computed at reduced size, a computed number outside a demo box
      leaks: Array.from(article.querySelectorAll(
          '.pasted-text, .pasted-inline, .cell_output, figure'))
        .filter(el => !el.closest('.lslib-demo, .lslib-provenance') && /\d/.test(el.innerText))
        .map(el => `${el.tagName.toLowerCase()} "${el.innerText.trim().slice(0, 40)}"` +
                   (el.closest('section[id]') ? ` in #${el.closest('section[id]').id}` : '')),
    };
  }
  return out;
}
"""

PROVENANCE_FIELDS = ("data", "epochs", "device", "wall time", "commit")

JS_CONTROLS = """
() => Array.from(document.querySelectorAll('[id^="altair-viz-"]')).map((chart, c) =>
  Array.from(chart.querySelectorAll('.vega-bind input[type=range], .vega-bind select')).map(
    (el, i) => ({chart: c, index: i, kind: el.tagName.toLowerCase(),
                 name: (el.closest('.vega-bind') || el).innerText.trim().split('\\n')[0]}))).flat()
"""

JS_FIGURE = """
([c]) => {
  const chart = document.querySelectorAll('[id^="altair-viz-"]')[c];
  const svg = chart.querySelector('svg.marks');
  if (svg) return svg.outerHTML;
  const canvas = chart.querySelector('canvas');
  return canvas ? canvas.toDataURL() : '';
}
"""

JS_MOVE = """
([c, i]) => {
  const chart = document.querySelectorAll('[id^="altair-viz-"]')[c];
  const el = chart.querySelectorAll('.vega-bind input[type=range], .vega-bind select')[i];
  let before, after;
  if (el.tagName === 'SELECT') {
    before = el.value;
    el.selectedIndex = (el.selectedIndex + 1) % el.options.length;
    after = el.value;
  } else {
    before = el.value;
    const min = parseFloat(el.min), max = parseFloat(el.max), v = parseFloat(el.value);
    el.value = (Math.abs(max - v) > Math.abs(v - min)) ? max : min;
    after = el.value;
  }
  el.dispatchEvent(new Event('input', {bubbles: true}));
  el.dispatchEvent(new Event('change', {bubbles: true}));
  return [before, after];
}
"""

JS_EXERCISES = """
() => {
  const shown = (el) => {
    const s = getComputedStyle(el), r = el.getBoundingClientRect();
    return s.visibility === 'visible' && s.display !== 'none' && parseFloat(s.opacity) > 0.9 &&
           r.height > 0;
  };
  return {
    exercises: Array.from(document.querySelectorAll('div.exercise.admonition')).map(e => e.id),
    solutions: Array.from(document.querySelectorAll('div.solution.admonition')).map(s => {
      const body = Array.from(s.children).filter(c => !c.classList.contains('admonition-title'));
      const link = s.querySelector('.admonition-title a[href]');
      const code = Array.from(s.querySelectorAll('.cell_input'));
      return {id: s.id,
              dropdown: s.classList.contains('dropdown') && s.classList.contains('toggle'),
              target: link ? link.getAttribute('href').split('#').pop() : null,
              shown: body.length > 0 && body.every(shown),
              text: body.map(b => b.innerText).join(' ').trim().length,
              code: code.length, codeShown: code.filter(shown).length};
    })};
}
"""

# ------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------
def check_links(report: PageReport, links: list[dict], base: str, html: Path) -> int:
    checked = 0
    for link in links:
        href, raw = link["href"], link["raw"] or ""
        if raw.startswith(("javascript:", "mailto:")) or not href.startswith(base):
            continue
        parts = urlsplit(href)
        rel = unquote(parts.path).lstrip("/")
        target = html / rel
        if rel == "" or target.is_dir():
            target = target / "index.html"
        checked += 1
        if not target.is_file():
            report.fail(f"broken link {raw!r}: {target.relative_to(html)} does not exist")
            continue
        if parts.fragment and target.suffix == ".html":
            frag = unquote(parts.fragment)
            if frag not in ids_in(target):
                report.fail(f"broken link {raw!r}: no id {frag!r} in {target.relative_to(html)}")
    return checked


def check_exercises(page, report: PageReport, rel: str, shots: Path, required: bool) -> str:
    """Open every solution dropdown with a click on its title; check that it was closed and that
    the solution (text and code) shows once open. Returns a note for the page's line."""
    before = page.evaluate(JS_EXERCISES)
    exercises, solutions = before["exercises"], before["solutions"]
    if required and len(exercises) < MIN_EXERCISES:
        report.fail(f"{len(exercises)} exercises on an exercise page, at least {MIN_EXERCISES} "
                    "wanted")
    solved = {s["target"] for s in solutions}
    for ex in exercises:
        if ex not in solved:
            report.fail(f"exercise #{ex} has no solution")
    opened = 0
    for sol in solutions:
        name = f"solution #{sol['id']}"
        if not sol["dropdown"]:
            report.fail(f"{name} is not a dropdown (:class: dropdown)")
            continue
        if sol["shown"]:
            report.fail(f"{name} is open before a click: the reader sees the answer")
        page.locator(f'[id="{sol["id"]}"] > .admonition-title').click()
        page.wait_for_timeout(500)  # the dropdown's transition
        after = next(s for s in page.evaluate(JS_EXERCISES)["solutions"] if s["id"] == sol["id"])
        if not after["shown"] or after["text"] == 0:
            report.fail(f"{name} does not show its solution after a click on its title")
        elif after["codeShown"] != after["code"]:
            report.fail(f"{name}: {after['code'] - after['codeShown']} of its {after['code']} "
                        "code cells stay hidden after the click")
        else:
            opened += 1
    if exercises:  # the section as a reader scrolls through it (no sticky header drawn over it)
        page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
        page.wait_for_timeout(300)
        box = page.evaluate("""() => {
          const r = document.querySelector('div.exercise.admonition').closest('section')
                            .getBoundingClientRect();
          return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
        }""")
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / (rel.replace("/", "__")[: -len(".html")]
                                          + "__exercises.png")), full_page=True, clip=box)
    return f"{len(exercises)} exercises, {opened}/{len(solutions)} solutions open on a click"


def check_page(page, url: str, rel: str, html: Path, base: str, toc_pages: set[str],
               colab_prefix: str, path_to_book: str, shots: Path, slider_required: bool,
               network: list[str], experiment: bool = False,
               exercise_page: bool = False) -> PageReport:
    report = PageReport(rel)
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(f"JavaScript error: {exc}"))
    page.on("console", lambda msg: js_errors.append(f"console error: {msg.text}")
            if msg.type == "error" else None)
    network.clear()

    page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
    page.evaluate(JS_SETTLE)
    try:
        page.wait_for_function(JS_CHARTS_READY, timeout=20_000)
    except Exception:  # reported below as charts not drawn
        pass
    info = page.evaluate(JS_INSPECT)

    for text in info["errorOutputs"]:
        report.fail(f"error output in a cell: {text!r}")
    if info["bodyHasTraceback"] and not info["errorOutputs"]:
        report.fail("the page shows a Python traceback")
    for text in info["chartErrors"]:
        report.fail(f"chart error: {text!r}")
    if info["charts"] != info["chartsDrawn"]:
        report.fail(f"{info['charts'] - info['chartsDrawn']} of {info['charts']} charts not drawn")
    for src in info["brokenImages"]:
        report.fail(f"broken image: {src}")
    n_links = check_links(report, info["links"], base, html)
    if info["mathCount"] and not info["mathJaxLoaded"]:
        report.fail("the page has maths but MathJax did not load")
    for text in info["mathUnrendered"]:
        report.fail(f"maths not rendered: {text!r}")
    for text in info["mathErrors"]:
        report.fail(f"MathJax error: {text!r}")
    for text in info["rawMath"]:
        report.fail(f"raw TeX left in the text: {text!r}")

    # navigation
    nav = set()
    for href in info["navLinks"]:
        path = urlsplit(href).path.lstrip("/")
        nav.add(path if path else "index.html")
    if rel not in AUXILIARY_PAGES:
        missing = sorted(p for p in toc_pages if p not in nav and p != rel)
        if missing:
            report.fail(f"missing from the navigation: {', '.join(missing)}")

    # Colab launch button on pages built from a notebook
    docname = rel[: -len(".html")]
    source_nb = html / "_sources" / f"{docname}.ipynb"
    if source_nb.is_file():
        want = colab_prefix + f"{docname}.ipynb"
        if want not in info["colabLinks"]:
            report.fail(f"no Colab button to {want} (found {info['colabLinks']})")
        repo_file = ROOT / path_to_book / f"{docname}.ipynb"
        if not repo_file.is_file():
            report.fail(f"the Colab button opens {docname}.ipynb, which is not in the repository")

    layout = page.evaluate(JS_LAYOUT)
    for text in layout["overflow"]:
        report.fail(f"wider than the text column: {text}")
    for text in layout["legends"]:
        report.fail(text)
    for text in layout["uncaptioned"]:
        report.fail(f"a figure without a number and a caption: {text}")
    if experiment:
        prov = layout["provenance"]
        if prov is None:
            report.fail("no provenance box (.lslib-provenance) on an experiment chapter")
        else:
            if not prov["first"]:
                report.fail("the provenance box does not open the chapter")
            missing = [f for f in PROVENANCE_FIELDS if f not in prov["text"].lower()]
            if missing:
                report.fail(f"the provenance box does not give: {', '.join(missing)}")
            if prov["reduced"]:
                for text in prov["leaks"][:5]:
                    report.fail(f"a number from the reduced run outside a demo box: {text}")

    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / (rel.replace("/", "__")[: -len(".html")] + ".png")),
                    full_page=True)

    # sliders and dropdowns of the Altair charts
    controls = page.evaluate(JS_CONTROLS)
    moved = 0
    for ctl in controls:
        before = page.evaluate(JS_FIGURE, [ctl["chart"]])
        values = page.evaluate(JS_MOVE, [ctl["chart"], ctl["index"]])
        deadline = time.monotonic() + 10
        after = before
        while time.monotonic() < deadline:
            page.wait_for_timeout(100)
            after = page.evaluate(JS_FIGURE, [ctl["chart"]])
            if after != before:
                break
        label = (f"{ctl['kind']} {ctl['name']!r} of chart {ctl['chart']} "
                 f"({values[0]} -> {values[1]})")
        if after == before:
            report.fail(f"moving the {label} did not change the figure")
        else:
            moved += 1
    if slider_required and not any(c["kind"] == "input" for c in controls):
        report.fail("this page must have a working slider and has none")

    exercise_note = check_exercises(page, report, rel, shots, exercise_page)

    report.problems[:0] = js_errors
    for url_ in network:
        report.fail(url_)
    report.notes.append(f"{info['mathCount']} maths, {n_links} internal links, "
                        f"{info['charts']} charts, {moved}/{len(controls)} controls change it, "
                        + exercise_note)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots")
    ap.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    ap.add_argument("--config", type=Path, default=ROOT / "_config.yml")
    ap.add_argument("--slider-pages", nargs="*", default=["book/framework", "book/fading_gaussian",
                                                          "book/logit_squeezing", "book/attacks",
                                                          "book/tables"],
                    help="docnames that must have at least one working slider")
    ap.add_argument("--experiment-pages", nargs="*",
                    default=["book/attacks", "book/logit_squeezing", "book/tables",
                             "book/robustness"],
                    help="docnames that must open with a provenance box")
    ap.add_argument("--exercise-pages", nargs="*", default=EXERCISE_PAGES,
                    help=f"docnames that must have at least {MIN_EXERCISES} exercises")
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)

    if not Path(args.chromium).is_file():
        print(f"FAILED: {args.chromium} is missing: install Debian's chromium "
              "(`make chromium`, needs root)", file=sys.stderr)
        return 1
    html = args.html.resolve()
    if not (html / "index.html").is_file():
        print(f"FAILED: {html}/index.html is missing: run `make book` first", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    docnames = toc_docnames(args.toc)
    toc_pages = {f"{d}.html" for d in docnames}
    pages = built_pages(html)
    colab_prefix, path_to_book = colab_expectation(args.config)
    reports: list[PageReport] = []

    general = PageReport("(book)")
    for page_html in sorted(toc_pages):
        if not (html / page_html).is_file():
            general.fail(f"{page_html} is in _toc.yml but was not built")
    for page_html in pages:
        if page_html not in toc_pages and page_html not in AUXILIARY_PAGES:
            general.fail(f"{page_html} was built but is not in _toc.yml (not in the navigation)")
    for docname in [*args.slider_pages, *args.experiment_pages, *args.exercise_pages]:
        if f"{docname}.html" not in toc_pages:
            general.fail(f"--slider-pages/--experiment-pages/--exercise-pages name {docname}, "
                         "not in _toc.yml")

    server, base = serve(html)
    start = time.monotonic()
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            network: list[str] = []

            def on_request(request):
                if not request.url.startswith((base, "data:", "blob:", "about:")):
                    network.append(f"request leaves the book (offline it fails): {request.url}")

            def on_failed(request):
                if request.url.startswith(base):
                    network.append(f"request failed: {request.url} ({request.failure})")

            def on_response(response):
                if response.url.startswith(base) and response.status >= 400:
                    network.append(f"HTTP {response.status}: {response.url}")

            context.on("request", on_request)
            context.on("requestfailed", on_failed)
            context.on("response", on_response)
            for rel in pages:
                redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"',
                                     (html / rel).read_text(errors="replace"))
                if redirect:  # index.html: a redirect to the root page, checked on its own
                    report = PageReport(rel, notes=[f"redirects to {redirect.group(1)}"])
                    target = (html / rel).parent / redirect.group(1)
                    if not target.is_file():
                        report.fail(f"redirects to {redirect.group(1)}, which does not exist")
                    reports.append(report)
                    continue
                page = context.new_page()
                try:
                    report = check_page(
                        page, f"{base}/{rel}", rel, html, base, toc_pages, colab_prefix,
                        path_to_book, args.screenshots, rel[:-5] in args.slider_pages, network,
                        experiment=rel[:-5] in args.experiment_pages,
                        exercise_page=rel[:-5] in args.exercise_pages)
                except Exception as exc:  # a page that cannot even be checked fails
                    report = PageReport(rel, [f"could not check the page: {exc!r}"])
                finally:
                    page.close()
                reports.append(report)
            context.close()
    finally:
        server.shutdown()

    reports.append(general)
    failed = 0
    for report in reports:
        status = "FAIL" if report.problems else "ok  "
        failed += bool(report.problems)
        print(f"{status} {report.path}  {'; '.join(report.notes)}")
        for problem in report.problems:
            print(f"       - {problem}")
    print(f"screenshots in {args.screenshots} ({time.monotonic() - start:.1f} s)")
    print(f"{len(reports) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
