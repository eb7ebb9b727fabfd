"""lslib.paper_tables: the transcription of Tables 2-6 and the side-by-side comparison."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from lslib.paper_tables import (
    ALPHAS,
    EPS,
    SETUP_NAMES,
    format_side_by_side,
    paper_table,
    side_by_side,
)

PAPER = (Path(__file__).resolve().parents[2] / "shared" / "paper"
         / "goibert-dohmatob-2020-label-smoothing.md")
_ATTACK = {"FGSM": "FGSM", "BIM": "BIM", "DeepFool": "DeepFool", "CW": "CW", "Std": "clean"}
_DEFENCE = {"Normal classifier": "natural", "Adv. training": "PGD-AT"}


def _parse_paper_markdown(text: str) -> dict[tuple, str]:
    """Every cell of Tables 2-6 straight from the paper's text: {(attack, defence, table_name,
    position in the printed row): cell text}. Independent of the module's own parsing."""
    cells: dict[tuple, str] = {}
    attack = defence = None
    for line in text[text.index("Table 2: FGSM"):].splitlines():
        m = re.match(r"Table \d: (\w+)", line)
        if m:
            attack = _ATTACK[m.group(1)]
            continue
        parts = line.split("\t")
        if len(parts) < 3 or parts[1] not in SETUP_NAMES:
            continue
        defence = _DEFENCE.get(parts[0], parts[0]) if parts[0] else defence
        values = [p.strip() for p in parts[2:] if p.strip()]
        for i, v in enumerate(values):
            cells[(attack, defence, parts[1], i)] = v
    return cells


def _module_cells() -> dict[tuple, tuple[float, bool]]:
    """The module's cells, keyed the same way (position in the printed row)."""
    out = {}
    for (attack, defence, name), g in paper_table().groupby(["attack", "defence", "table_name"],
                                                            sort=False):
        for i, (_, r) in enumerate(g.iterrows()):  # rows are in printed order
            out[(attack, defence, name, i)] = (r["accuracy"], bool(r["best"]))
    return out


def test_every_cell_matches_the_papers_text():
    if not PAPER.exists():
        pytest.skip(f"the paper's text is not at {PAPER}")
    paper = _parse_paper_markdown(PAPER.read_text(encoding="utf-8"))
    ours = _module_cells()
    assert len(paper) == 630 and set(paper) == set(ours)
    for key, text in paper.items():
        value, best = ours[key]
        if text == "/":
            assert math.isnan(value), key
            continue
        bold = text.startswith("<b>")
        assert float(re.sub(r"</?b>", "", text)) == value, key
        assert bold == best, key


def test_shape_and_known_cells():
    t = paper_table()
    assert len(t) == 630 and set(t["table"]) == {2, 3, 4, 5, 6}
    assert t["accuracy"].isna().sum() == 61  # the '/' cells
    assert set(t["setup"]) == set(SETUP_NAMES.values())

    def cell(setup, defence, attack, eps, alpha=None):
        sel = t[(t.setup == setup) & (t.defence == defence) & (t.attack == attack)]
        sel = sel[sel.alpha.isna()] if alpha is None else sel[sel.alpha == alpha]
        sel = sel[sel.eps.isna()] if eps is None else sel[sel.eps == eps]
        assert len(sel) == 1
        return sel.iloc[0]

    # the example the paper's text gives: FGSM eps 0.2, BLS alpha 0.005, MNIST LeNet = 0.838
    assert cell("mnist-lenet", "BLS", "FGSM", 0.2, 0.005).accuracy == 0.838
    # "the best accuracy against FGSM of strength 0.05 in the CIFAR LeNet set-up is 0.160"
    assert cell("cifar-lenet", "ALS", "FGSM", 0.05, 0.1).accuracy == 0.160
    assert cell("mnist-linear", "PGD-AT", "FGSM", 0.05).best
    assert cell("mnist-linear", "SLS", "DeepFool", None, 0.4).accuracy == 0.683
    assert cell("mnist-lenet", "SBLS", "CW", None, 0.4).accuracy == 0.474
    assert cell("mnist-lenet", "natural", "clean", 0.0).accuracy == 0.990
    assert math.isnan(cell("cifar-resnet", "PGD-AT", "CW", None).accuracy)
    assert math.isnan(cell("svhn-lenet", "ALS", "BIM", 0.4, 0.1).accuracy)
    assert set(t.loc[t.attack.isin(["FGSM", "BIM"]), "eps"]) == set(EPS)
    assert set(t.alpha.dropna()) == set(ALPHAS)


def _ours() -> pd.DataFrame:
    rows = [
        dict(setup="mnist-lenet", protocol="paper", defence="BLS", alpha=0.005, T=0.001,
             attack="FGSM", eps=0.2, accuracy=0.80, n=2000),
        dict(setup="mnist-lenet", protocol="paper", defence="BLS", alpha=0.005, T=0.01,
             attack="FGSM", eps=0.2, accuracy=0.10, n=2000),
        dict(setup="mnist-lenet", protocol="paper", defence="natural", alpha=math.nan,
             T=math.nan, attack="DeepFool", eps=math.nan, accuracy=0.06, n=2000),
        dict(setup="mnist-lenet", protocol="strong", defence="natural", alpha=math.nan,
             T=math.nan, attack="clean", eps=0.0, accuracy=0.99, n=10000),
    ]
    return pd.DataFrame(rows)


def test_side_by_side_matches_cells_and_computes_the_difference():
    s = side_by_side(_ours())
    assert set(s["setup"]) == {"mnist-lenet"} and set(s["protocol"]) == {"paper", "strong"}
    per_protocol = len(paper_table().query("setup == 'mnist-lenet'"))
    assert len(s) == 2 * per_protocol  # every paper cell once per protocol
    bls = s[(s.protocol == "paper") & (s.defence == "BLS") & (s.alpha == 0.005)
            & (s.attack == "FGSM") & (s.eps == 0.2)]
    assert len(bls) == 1 and bls.iloc[0]["ours"] == 0.80  # T=0.001 chosen, T=0.01 left out
    assert bls.iloc[0]["diff"] == pytest.approx(0.80 - 0.838)
    df = s[(s.protocol == "paper") & (s.defence == "natural") & (s.attack == "DeepFool")]
    assert df.iloc[0]["paper"] == 0.050 and df.iloc[0]["ours"] == 0.06
    clean = s[(s.protocol == "strong") & (s.defence == "natural") & (s.attack == "clean")]
    assert clean.iloc[0]["diff"] == pytest.approx(0.0)
    assert s["ours"].notna().sum() == 3
    only_paper = side_by_side(_ours(), protocol="paper")
    assert set(only_paper["protocol"]) == {"paper"}


def test_format_side_by_side_prints_paper_ours_and_difference():
    text = format_side_by_side(side_by_side(_ours(), protocol="paper"))
    assert "mnist-lenet | protocol paper | FGSM (Table 2)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("BLS") and "0.005" in ln
                and "0.838" in ln)
    assert "0.800" in line and "-0.038" in line
    assert "DeepFool (Table 4)" in text and "+0.010" in text
