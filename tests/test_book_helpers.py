"""lslib.book: the provenance and demo boxes the chapters display, and the legend check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lslib import book

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"

mpl = pytest.importorskip("matplotlib", reason="the book extra is not installed")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------------
# legends
# ------------------------------------------------------------------------------------------------
def _diagonal(layout=None):
    fig, ax = plt.subplots(figsize=(4, 3), layout=layout)
    ax.plot([0, 1], [0, 1], label="y = x")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    return fig, ax


def test_a_legend_on_the_line_overlaps_it():
    fig, ax = _diagonal()
    ax.legend(loc="center")  # the diagonal passes through the centre
    assert book.legend_overlaps(fig)


def test_a_legend_in_an_empty_corner_does_not():
    fig, ax = _diagonal()
    ax.legend(loc="upper left")  # above the diagonal: nothing plotted there
    assert book.legend_overlaps(fig) == []


def test_a_segment_crossing_the_legend_counts_without_a_vertex_inside():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0.5, 0.5], label="flat")  # two vertices, both far from the centre
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="center")
    assert book.legend_overlaps(fig)


def test_scatter_points_and_bars_count():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter([0.5], [0.5], label="a point")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="center")
    assert book.legend_overlaps(fig)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1, 2], [1, 1, 1], label="bars")
    ax.legend(loc="center")
    assert book.legend_overlaps(fig)


def test_legend_below_puts_one_legend_under_the_axes():
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for ax in axes:
        ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2, label="square")
        ax.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50), label="identity")
        ax.legend(loc="center")
    legend = book.legend_below(fig, ncol=2)
    assert all(ax.get_legend() is None for ax in axes)
    assert fig.legends == [legend]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert box.y1 <= min(ax.get_window_extent().y0 for ax in axes) + 1
    assert book.legend_overlaps(fig) == []


def test_legend_below_needs_labelled_data():
    fig, ax = plt.subplots(layout="constrained")
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="labelled"):
        book.legend_below(fig)


# ------------------------------------------------------------------------------------------------
# provenance
# ------------------------------------------------------------------------------------------------
def test_sweep_provenance_reads_the_committed_meta_files():
    names = ("mnist-linear", "mnist-lenet")
    table = pd.concat([pd.read_csv(RESULTS / f"{n}.csv").assign(setup=n) for n in names])
    fields = book.sweep_provenance({n: RESULTS / f"{n}.csv.meta.json" for n in names}, table)
    sessions = [s for n in names
                for s in json.loads((RESULTS / f"{n}.csv.meta.json").read_text())["sessions"]]
    for s in sessions:
        assert s["git_commit"][:7] in fields["commit"]
        assert s["device"] in fields["device"]
    assert fields["size"] == ("full" if not any(s["sweep"]["quick"] for s in sessions)
                              else "reduced (quick mode)")
    assert set(book.PROVENANCE_FIELDS) <= set(fields)
    assert f"{int(table['n'].max()):,}" in fields["data"]


def test_sweep_provenance_labels_a_quick_sweep_reduced(tmp_path):
    meta = json.loads((RESULTS / "mnist-linear.csv.meta.json").read_text())
    meta["sessions"][0]["sweep"]["quick"] = True
    (tmp_path / "m.json").write_text(json.dumps(meta))
    table = pd.read_csv(RESULTS / "mnist-linear.csv").assign(setup="mnist-linear")
    fields = book.sweep_provenance({"mnist-linear": tmp_path / "m.json"}, table)
    assert fields["size"] == "reduced (quick mode)"
    assert "Live demo at reduced size" in book.provenance_box(fields, source="x").data


def test_sweep_provenance_counts_a_session_killed_before_its_first_row(tmp_path):
    # such a session is in the committed MLP original run: the runner writes wall_seconds None
    # when a session starts, and a kill -9 before the first row leaves it so
    meta = json.loads((RESULTS / "mnist-linear.csv.meta.json").read_text())
    first = meta["sessions"][0]
    killed = {**first, "wall_seconds": None, "finished": None, "rows_computed": 0}
    meta["sessions"] = [first, killed]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    table = pd.read_csv(RESULTS / "mnist-linear.csv").assign(setup="mnist-linear")
    fields = book.sweep_provenance({"mnist-linear": tmp_path / "m.json"}, table)
    alone = dict(meta, sessions=[first])
    (tmp_path / "one.json").write_text(json.dumps(alone))
    one = book.sweep_provenance({"mnist-linear": tmp_path / "one.json"}, table)
    assert fields["wall time"] == one["wall time"] + (
        " (and 1 killed session whose time was not recorded)")


def test_audit_provenance():
    meta = json.loads((RESULTS / "mnist-linear-audit.csv.meta.json").read_text())
    fields = book.audit_provenance(meta)
    assert fields["commit"].startswith(meta["git_commit"][:7])
    assert f"{meta['options']['n']:,}" in fields["data"]
    assert fields["size"] == ("reduced (quick mode)" if meta["options"]["quick"] else "full")
    # two set-ups, one of them partial: both named, the missing models listed
    part = json.loads(json.dumps(meta))
    part["options"].update(setup="mnist-lenet", partial={
        "models_done": ["natural"], "models_missing": ["ALS 0.4", "PGD-AT"],
        "attack_seconds": 600.0})
    both = book.audit_provenance(meta, part)
    assert "MNIST Linear" in both["data"] and "MNIST LeNet" in both["data"]
    assert "PARTIAL: 1 of 3 models (missing: ALS 0.4, PGD-AT)" in both["data"]
    assert "10 min of attacks" in both["wall time"]
    # a complete run that read some models back from its journal says so
    resumed = json.loads(json.dumps(meta))
    resumed["options"]["from_journal"] = [{"model": "natural", "provenance": "not recorded"}]
    assert "plus 1 models read back from the journal" in book.audit_provenance(resumed)[
        "wall time"]
    with pytest.raises(ValueError):
        book.audit_provenance()


def test_interval_table_gives_each_accuracy_its_wilson_interval():
    rows = pd.DataFrame([{"model": "a", "attack": "PGD", "eps": 0.1, "accuracy": 0.5, "n": 100},
                         {"model": "b", "attack": "PGD", "eps": 0.1, "accuracy": 0.0, "n": 500}])
    got = book.interval_table(rows, ["a", "b"], ["PGD", "AutoAttack"], 0.1)
    assert got.loc["a", "PGD"] == "0.500 [0.404, 0.596]"
    assert got.loc["b", "PGD"] == "0.000 [0.000, 0.008]"
    assert got.loc["a", "AutoAttack"] == "not run"


def test_survey_provenance_reads_the_attack_survey_meta():
    meta = json.loads((RESULTS / "mnist-attacks.csv.meta.json").read_text())
    fields = book.survey_provenance(meta)
    assert set(book.PROVENANCE_FIELDS) <= set(fields) and fields["size"] == "full"
    assert fields["commit"] == meta["git_commit"][:7] and meta["git_dirty"] is False
    assert f"{meta['n']:,}" in fields["data"] and fields["device"] == meta["device"]
    table = pd.read_csv(RESULTS / "mnist-attacks.csv")
    assert list(table["attack"]) == ["FGSM", "BIM", "DeepFool", "CW"]
    assert (table["n"] == meta["n"]).all()


def test_the_boxes_are_labelled_and_give_every_field():
    live = book.live_provenance(data="10 images", epochs=2, device="cpu", seconds=12.0,
                                quick=True)
    box = book.provenance_box(live, source="this page").data
    assert "lslib-provenance" in box and "lslib-demo" in box
    assert "Live demo at reduced size" in box
    for field in book.PROVENANCE_FIELDS:
        assert f"<strong>{field}</strong>" in box
    full = book.provenance_box({**live, "size": "full"}, source="results/x.csv").data
    assert "full-size" in full and "lslib-demo" not in full
    demo = book.demo_box(pd.DataFrame({"a": [0.5]}), what="a toy").data
    assert "Live demo at reduced size" in demo and "<table" in demo


def test_repository_commit_is_this_checkout():
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, timeout=10,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert book.repository_commit().rstrip("+") == head
