"""Display helpers for the book's chapters: provenance boxes, reduced-size demo boxes, and figure
styling (legends outside the data, checked). Nothing here computes a result.

The chapters import this module, so it needs matplotlib and IPython (the ``book`` extra) only when
a function that draws or displays is called.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PROVENANCE_FIELDS",
    "accuracy_chart",
    "audit_provenance",
    "cpu_model",
    "demo_box",
    "gpu_notice",
    "interval_table",
    "legend_below",
    "legend_overlaps",
    "live_provenance",
    "machine_summary",
    "provenance_box",
    "repository_commit",
    "run_facts",
    "survey_provenance",
    "sweep_provenance",
]

# What every provenance box gives, in this order (tests/browser_check.py looks for these words).
PROVENANCE_FIELDS = ("data", "epochs", "device", "wall time", "commit")


# ------------------------------------------------------------------------------------------------
# provenance
# ------------------------------------------------------------------------------------------------
def repository_commit() -> str:
    """The short commit of lslib's checkout (``+`` when lslib has uncommitted changes), or
    ``"unknown"`` outside a git checkout (:func:`lslib.experiments.provenance`'s reading)."""
    from lslib.experiments import _git_state

    commit, dirty = _git_state()
    return "unknown" if commit == "unknown" else commit[:7] + ("+" if dirty else "")


def _minutes(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "not recorded"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds:.0f} s"


def _commits(values: Iterable[str]) -> str:
    return ", ".join(sorted({str(v)[:7] for v in values}))


def sweep_provenance(meta_files: Mapping[str, str | Path], results: Any) -> dict[str, str]:
    """The provenance of ``python -m lslib reproduce`` tables: ``meta_files`` maps a set-up name
    to its ``.csv.meta.json``, ``results`` is the concatenated table (a DataFrame with the
    runner's columns ``setup``, ``protocol``, ``n``, ``model_key``, ``train_seconds``)."""
    from lslib.experiments import SETUPS

    sessions = {name: json.loads(Path(path).read_text())["sessions"]
                for name, path in meta_files.items()}
    quick = any(s["sweep"].get("quick") for ss in sessions.values() for s in ss)
    data, epochs, wall = [], [], []
    for name, ss in sessions.items():
        rows = results[results["setup"] == name]
        n_test = sorted({int(v) for v in rows["n"].dropna()})
        setup = SETUPS[name]
        limit = {s["sweep"].get("n_test") for s in ss}
        data.append(f"{setup.table_name}: the full {setup.dataset.upper()} training set"
                    f"{' (quick slice)' if quick else ''}; the first "
                    f"{' / '.join(f'{n:,}' for n in n_test)} test images"
                    + ("" if limit == {None} else f" (limit {limit})"))
        epochs.append(f"{setup.table_name}: {1 if quick else setup.epochs}")
        # a session killed before it recorded anything has no wall time (None): say so
        unknown = sum(s.get("wall_seconds") is None for s in ss)
        attack_s = sum(float(s["wall_seconds"]) for s in ss if s.get("wall_seconds") is not None)
        train_s = float(rows.drop_duplicates("model_key")["train_seconds"].sum())
        wall.append(f"{setup.table_name}: {_minutes(train_s)} training "
                    f"({rows['model_key'].nunique()} models), {_minutes(attack_s)} attacks"
                    + (f" (and {unknown} killed session{'s' if unknown > 1 else ''} whose "
                       "time was not recorded)" if unknown else ""))
    devices = sorted({s["device"] for ss in sessions.values() for s in ss})
    commit = _commits(s["git_commit"] for ss in sessions.values() for s in ss)
    dirty = any(s.get("git_dirty") for ss in sessions.values() for s in ss)
    return {"data": "; ".join(data), "epochs": "; ".join(epochs), "device": ", ".join(devices),
            "wall time": "; ".join(wall),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "size": "reduced (quick mode)" if quick else "full"}


def audit_provenance(*metas: Mapping[str, Any]) -> dict[str, str]:
    """The provenance of one or more ``python -m lslib audit --setup`` runs (their
    ``.csv.meta.json``), one set-up each; a run written from its journal (``--from-journal``)
    is said to be partial, with the models it lacks."""
    from lslib.experiments import SETUPS

    if not metas:
        raise ValueError("audit_provenance needs at least one meta")
    data, epochs, wall, devices, commits = [], [], [], [], []
    quick = False
    for meta in metas:
        options = meta["options"]
        setup = SETUPS[options["setup"]]
        quick = quick or bool(options.get("quick"))
        partial = options.get("partial")
        data.append(f"{setup.table_name}: models trained on the full {setup.dataset.upper()} "
                    f"training set; the first {int(options['n']):,} test images"
                    + (f"; PARTIAL: {len(partial['models_done'])} of "
                       f"{len(partial['models_done']) + len(partial['models_missing'])} models "
                       f"(missing: {', '.join(partial['models_missing'])})" if partial else ""))
        epochs.append(f"{setup.table_name}: {1 if options.get('quick') else setup.epochs}")
        seconds = float(partial["attack_seconds"] if partial else meta["wall_seconds"])
        resumed = options.get("from_journal") or []
        wall.append(f"{setup.table_name}: " + _minutes(seconds)
                    + (" of attacks (the finished models)" if partial
                       else " (the audit, and training the models the cache lacked)")
                    + (f", plus {len(resumed)} models read back from the journal of earlier "
                       f"runs of the same command" if resumed and not partial else ""))
        devices.append(str(meta["device"]))
        commits.append(str(meta["git_commit"])[:7]
                       + (" (with uncommitted changes)" if meta.get("git_dirty") else ""))
    return {"data": "; ".join(data), "epochs": "; ".join(epochs),
            "device": ", ".join(dict.fromkeys(devices)), "wall time": "; ".join(wall),
            "commit": ", ".join(dict.fromkeys(commits)),
            "size": "reduced (quick mode)" if quick else "full"}


def survey_provenance(meta: Mapping[str, Any]) -> dict[str, str]:
    """The provenance of ``python -m lslib.attack_survey`` (its ``.csv.meta.json``)."""
    train = float(meta.get("train_seconds", math.nan))
    return {"data": (f"the natural {meta['setup']} model trained on the full MNIST training set; "
                     f"the first {int(meta['n']):,} test images attacked"),
            "epochs": str(meta["epochs"]),
            "device": str(meta["device"]),
            "wall time": (_minutes(float(meta["wall_seconds"])) + " (this run"
                          + (f"; the model's training took {_minutes(train)})"
                             if math.isfinite(train) else ")")),
            "commit": str(meta["git_commit"])[:7]
            + (" (with uncommitted changes)" if meta.get("git_dirty") else ""),
            "size": "full"}


def interval_table(table: Any, models: Iterable[str], attacks: Iterable[str], eps: float,
                   *, digits: int = 3) -> Any:
    """One row per model, one column per attack: the accuracy at ``eps`` with its 95 % Wilson
    interval (:func:`lslib.stats.format_interval`) as text, from the rows of an audit table
    (columns ``model``, ``attack``, ``eps``, ``accuracy``, ``n``); "not run" where missing."""
    import pandas as pd

    from lslib.stats import format_interval

    def cell(model: str, attack: str) -> str:
        row = table[(table["model"] == model) & (table["attack"] == attack)
                    & ((table["eps"] - eps).abs() < 1e-9)]
        if not len(row):
            return "not run"
        return format_interval(float(row["accuracy"].iloc[0]), int(row["n"].iloc[0]), digits)

    models, attacks = list(models), list(attacks)
    return pd.DataFrame({a: [cell(m, a) for m in models] for a in attacks}, index=models)


def accuracy_chart(table: Any, attacks: Mapping[str, str], *, models: Iterable[str],
                   eps: Iterable[float], title: str = "", width: int = 250):
    """Dots with 95 % Wilson intervals (whiskers): the accuracy of each model (rows) under each
    attack of ``attacks`` (a mapping from the table's attack name to its label in the legend),
    one panel per budget of ``eps``. ``table`` holds audit rows (``model``, ``attack``, ``eps``,
    ``accuracy``, ``n``). The legend sits below the panels; tooltips give the numbers."""
    import altair as alt
    import pandas as pd

    from lslib.stats import wilson_interval

    models, eps = list(models), [float(e) for e in eps]
    rows = []
    for r in table.itertuples():
        if r.attack in attacks and r.model in models and any(abs(r.eps - e) < 1e-9 for e in eps):
            lo, hi = wilson_interval(round(r.accuracy * int(r.n)), int(r.n))
            rows.append({"model": r.model, "attack": attacks[r.attack],
                         "eps": f"eps = {r.eps:g}", "accuracy": r.accuracy, "low": lo,
                         "high": hi, "n": int(r.n)})
    df = pd.DataFrame(rows)
    order = list(attacks.values())
    base = alt.Chart(df).encode(
        y=alt.Y("model:N", sort=models, title=None),
        yOffset=alt.YOffset("attack:N", sort=order),
        color=alt.Color("attack:N", sort=order, title=None,
                        legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["model", "attack", "eps", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f", title="95 % low"),
                 alt.Tooltip("high:Q", format=".3f", title="95 % high"), "n"])
    whiskers = base.mark_rule().encode(x=alt.X("low:Q", title="accuracy (95 % Wilson interval)",
                                               scale=alt.Scale(domain=[0, 1])), x2="high:Q")
    dots = base.mark_point(filled=True, size=28).encode(x="accuracy:Q")
    return (whiskers + dots).properties(width=width, height=alt.Step(7)).facet(
        column=alt.Column("eps:N", title=None, sort=[f"eps = {e:g}" for e in eps]),
        title=title)


def live_provenance(*, data: str, epochs: int | str, device: str, seconds: float,
                    quick: bool) -> dict[str, str]:
    """The provenance of what a chapter computes while it is built (or run in Jupyter)."""
    return {"data": data, "epochs": str(epochs), "device": device,
            "wall time": _minutes(seconds) + " (this page's run)",
            "commit": repository_commit(),
            "size": "reduced (quick mode)" if quick else "full"}


def _box_html(kind: str, title: str, body: str) -> str:
    return (f'<div class="admonition {kind}"><p class="admonition-title">{html.escape(title)}'
            f"</p>{body}</div>")


def provenance_box(fields: Mapping[str, str], *, source: str, note: str = ""):
    """A box that opens an experiment chapter: where its numbers come from.

    A full-size run is a plain note; a reduced one is labelled a live demo at reduced size.
    """
    from IPython.display import HTML

    full = fields.get("size") == "full"
    title = ("Provenance: a committed full-size run" if full else
             "Provenance: Live demo at reduced size")
    items = "".join(f"<li><strong>{html.escape(k)}</strong>: {html.escape(str(fields[k]))}</li>"
                    for k in PROVENANCE_FIELDS)
    body = f"<p>The numbers on this page come from {html.escape(source)}.</p><ul>{items}</ul>"
    if note:
        body += f"<p>{html.escape(note)}</p>"
    kind = "note lslib-provenance" if full else "caution lslib-provenance lslib-demo"
    return HTML(_box_html(kind, title, body))


def demo_box(*objects: Any, what: str):
    """Display ``objects`` (DataFrames, Stylers, matplotlib figures, strings) inside a box labelled
    "Live demo at reduced size", so that no reduced number is read as a result."""
    import base64
    import io

    from IPython.display import HTML

    parts = [f"<p>{html.escape(what)}</p>"]
    for obj in objects:
        if hasattr(obj, "savefig"):
            buf = io.BytesIO()
            obj.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            data = base64.b64encode(buf.getvalue()).decode()
            parts.append(f'<img alt="{html.escape(what)}" style="max-width: 100%" '
                         f'src="data:image/png;base64,{data}">')
        elif hasattr(obj, "to_html"):
            parts.append(obj.to_html())
        else:
            parts.append(f"<pre>{html.escape(str(obj))}</pre>")
    return HTML(_box_html("caution lslib-demo", "Live demo at reduced size", "".join(parts)))


# ------------------------------------------------------------------------------------------------
# running the chapters: the GPU notice, and what the "Execution statistics" page shows
# ------------------------------------------------------------------------------------------------
# where the committed full-mode run times of the chapters are (book/_tools/time_chapters.py)
CHAPTER_TIMES = "results/timing/chapters-full-cpu.json"


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary() -> str:
    """This machine in a few words: ``AMD EPYC, 2 cores, no GPU`` or ``..., GPU NVIDIA H200``."""
    import os

    import torch

    gpu = (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU")
    return f"{cpu_model()}, {os.cpu_count()} cores, {gpu}"


def run_facts(quick: bool) -> str:
    """What a chapter glues as ``lslib_run`` when it runs: its mode (quick or full) and the
    machine, as JSON. The book's "Execution statistics" page reads it from every chapter's
    executed outputs (so a chapter's row describes the run that produced its page, cached or not).
    """
    return json.dumps({"mode": "quick" if quick else "full", "machine": machine_summary()})


def _latest_times(record: Mapping[str, Any], chapter: str) -> tuple[dict, dict] | None:
    """The newest full-mode entry for ``chapter`` in a time_chapters.py record, with its run."""
    found = None
    for run in record.get("runs", []):
        for entry in run.get("chapters", []):
            if entry.get("chapter") == chapter and entry.get("mode") == "full":
                if found is None or entry["started_utc"] >= found[0]["started_utc"]:
                    found = (entry, run)
    return found


def _min(seconds: float) -> str:
    return f"{seconds / 60:.0f}" if seconds >= 90 else f"{seconds / 60:.1f}"


def _load(entry: dict, machine: dict) -> str:
    """How busy the machine was when a chapter's timing started (its load average, if recorded):
    a wall time means little without it."""
    load = entry.get("load_average_before")
    if not load:
        return ""
    return (f", with a one-minute load average of {load[0]:.1f} on its "
            f"{machine.get('cores', '?')} cores at the start")


def gpu_notice(chapter: str, times: str | Path | None = None):
    """The admonition at the top of a chapter that wants a GPU (the QuantEcon lectures' "GPU"
    box): how to get one on Colab, and the chapter's full-mode run time on this project's CPU,
    read from the committed measurements (``results/timing/chapters-full-cpu.json``, written by
    ``book/_tools/time_chapters.py``). ``times`` is that file; when it is missing (a chapter
    opened alone on Colab) the notice says so instead of giving a time."""
    from IPython.display import HTML

    body = ("<p>This chapter trains and attacks neural networks, which is much faster on a GPU. "
            "On Colab choose <em>Runtime &gt; Change runtime type &gt; GPU</em> before running "
            "it; lslib uses the GPU whenever torch finds one, and the chapter still runs "
            "without one, more slowly.</p>")
    path = Path(times) if times is not None else None
    found = (_latest_times(json.loads(path.read_text()), chapter)
             if path is not None and path.is_file() else None)
    if path is None or not path.is_file():
        body += (f"<p>Its run time in full mode on this project's CPU is in the repository's "
                 f"<code>{CHAPTER_TIMES}</code>.</p>")
    elif found is None:
        body += ("<p>Its run time in full mode has not been measured on this project's "
                 "machines.</p>")
    else:
        entry, run = found
        m = run["machine"]
        where = (f"one thread of this project's CPU ({html.escape(str(m['cpu']))}, "
                 f"{m['cores']} cores, no GPU)" if not m.get("gpu")
                 else f"{html.escape(str(m['gpu']))}")
        when = (f"measured on {entry['started_utc'][:10]} at commit {str(run['commit'])[:7]} "
                f"by <code>book/_tools/time_chapters.py</code>, recorded in "
                f"<code>{CHAPTER_TIMES}</code>")
        if entry["status"] == "ok":
            body += (f"<p>Run in full (<code>LSLIB_QUICK=0</code>, as a reader runs it) on "
                     f"{where}, it needed <strong>{_min(entry['cpu_seconds'])} minutes of CPU "
                     f"time</strong> and {_min(entry['wall_seconds'])} minutes of wall-clock "
                     f"time{_load(entry, m)} ({when}).</p>")
        else:
            body += (f"<p>Run in full (<code>LSLIB_QUICK=0</code>) on {where}, it had "
                     f"<strong>not finished after {_min(entry['cpu_seconds'])} minutes of CPU "
                     f"time</strong> ({_min(entry['wall_seconds'])} minutes of wall-clock "
                     f"time{_load(entry, m)}), when the measurement stopped it ({when}).</p>")
    body += ("<p>The book itself is built in quick mode on a CPU: its page "
             "<em>Execution statistics</em> gives each chapter's mode and run time.</p>")
    return HTML(_box_html("warning lslib-gpu", "GPU", body))


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def legend_below(fig, ax=None, *, ncol: int = 3, fontsize: float = 8):
    """One legend for the whole figure, centred below the axes (never over the data).

    The figure must use the constrained layout (``plt.subplots(..., layout="constrained")``),
    which makes room for it. ``ax`` (default: the first axes with labelled artists) gives the
    entries. Returns the legend; raises ``ValueError`` if it overlaps plotted data anyway.
    """
    axes = [ax] if ax is not None else [a for a in fig.axes
                                          if a.get_legend_handles_labels()[0]][:1]
    if not axes:
        raise ValueError("no axes with labelled artists")
    handles, labels = axes[0].get_legend_handles_labels()
    for a in fig.axes:
        if a.get_legend() is not None:
            a.get_legend().remove()
    legend = fig.legend(handles, labels, loc="outside lower center", ncol=ncol,
                        frameon=False, fontsize=fontsize)
    overlaps = legend_overlaps(fig)
    if overlaps:
        raise ValueError("; ".join(overlaps))
    return legend


def _display_points(artist) -> np.ndarray:
    """Display coordinates of what an artist plots: line vertices (with points in between, so that
    a segment crossing a legend counts), scatter offsets, bar corners."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    if isinstance(artist, Line2D):
        xy = np.column_stack([np.asarray(artist.get_xdata(), float),
                              np.asarray(artist.get_ydata(), float)])
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy) > 1:
            t = np.linspace(0.0, 1.0, 9)[:-1, None, None]
            xy = np.concatenate([(xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2), xy[-1:]])
        return artist.get_transform().transform(xy) if len(xy) else np.empty((0, 2))
    if isinstance(artist, Collection):
        offsets = np.asarray(artist.get_offsets(), float)
        if offsets.size == 0 or artist.get_offset_transform() is None:
            return np.empty((0, 2))
        return artist.get_offset_transform().transform(offsets)
    if isinstance(artist, Rectangle):
        ext = artist.get_window_extent()
        return np.array([[ext.x0, ext.y0], [ext.x1, ext.y1], [ext.x0, ext.y1], [ext.x1, ext.y0],
                         [(ext.x0 + ext.x1) / 2, (ext.y0 + ext.y1) / 2]])
    return np.empty((0, 2))


def legend_overlaps(fig) -> list[str]:
    """Which legends of ``fig`` are drawn over plotted data (lines, markers, bars) of any axes.

    Draws the figure first. A point counts when it lies inside both a legend's box and the axes
    that plot it (data clipped away by the axes is not drawn).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [(f"legend of axes {i}", a.get_legend()) for i, a in enumerate(fig.axes)
               if a.get_legend() is not None]
    legends += [(f"figure legend {i}", lg) for i, lg in enumerate(fig.legends)]
    found = []
    for name, legend in legends:
        box = legend.get_window_extent(renderer)
        for i, ax in enumerate(fig.axes):
            frame = ax.get_window_extent(renderer)
            for artist in [*ax.lines, *ax.collections, *ax.patches]:
                if not artist.get_visible():
                    continue
                pts = _display_points(artist)
                inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0)
                          & (pts[:, 1] < box.y1) & (pts[:, 0] >= frame.x0)
                          & (pts[:, 0] <= frame.x1) & (pts[:, 1] >= frame.y0)
                          & (pts[:, 1] <= frame.y1))
                if inside.any():
                    found.append(f"{name} covers data of axes {i} "
                                 f"({artist.get_label() or type(artist).__name__})")
                    break
    return found
