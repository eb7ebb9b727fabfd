"""lslib.paper_tables: the transcription of Tables 2-6 and the side-by-side comparison."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch

from lslib.data import TensorData
from lslib.paper_tables import (
    ALPHAS,
    EPS,
    PAPER_SUBMITTED,
    SETUP_NAMES,
    at_temperature,
    bls_by_temperature,
    format_side_by_side,
    paper_table,
    paper_wide,
    read_provenance,
    share_within,
    side_by_side,
    slice_fit,
    smoothing_beats_natural,
    summarise_differences,
    train_and_attack,
    versus_alpha,
    wide_table,
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


def test_side_by_side_leaves_out_a_median_taken_over_norms_that_held_a_nan():
    # statistics.median over norms that hold a NaN depends on the order: not a median. Rows
    # written so have a NaN mean beside it (statistics.fmean), which is what gives them away.
    import statistics

    one, other = [math.nan, 3.0, 1.0], [3.0, 1.0, math.nan]
    assert (statistics.median(one), statistics.median(other)) == (1.0, 3.0)
    assert math.isnan(statistics.fmean(one))
    rows = _ours().iloc[[2, 2]].assign(setup=["mnist-lenet", "mnist-linear"],
                                       l2_median=statistics.median(one),
                                       l2_mean=[statistics.fmean(one), 2.0])
    s = side_by_side(rows).query("defence == 'natural' and attack == 'DeepFool'")
    got = s.set_index("setup")["l2_median"]
    assert math.isnan(got["mnist-lenet"]) and got["mnist-linear"] == 1.0
    blocks = {b.split(" |")[0]: b for b in format_side_by_side(s).split("== ")[1:]}
    assert "not known" in blocks["mnist-lenet"] and "not known" not in blocks["mnist-linear"]


def test_side_by_side_takes_bls_at_each_protocols_temperature():
    # the same BLS cell at two temperatures under the paper and the original protocol: the
    # paper's rung compares T = 0.001, the original's T = 0.01 (the authors' file of the
    # tables' BLS cells), unless one temperature is asked for, or every one (None)
    rows = [dict(setup="mnist-linear", protocol=p, defence="BLS", alpha=0.1, T=t,
                 attack="CW", eps=math.nan, accuracy=acc, n=1000)
            for p in ("paper", "original") for t, acc in ((0.001, 0.3), (0.01, 0.6))]
    ours = pd.DataFrame(rows)

    def cell(frame, protocol):
        got = frame[(frame.protocol == protocol) & (frame.defence == "BLS")
                    & (frame.alpha == 0.1) & (frame.attack == "CW")]
        return sorted(got["ours"])

    s = side_by_side(ours)
    assert cell(s, "paper") == [0.3] and cell(s, "original") == [0.6]
    s = side_by_side(ours, bls_temperature=0.01)
    assert cell(s, "paper") == [0.6] and cell(s, "original") == [0.6]
    s = side_by_side(ours, bls_temperature=None)
    assert cell(s, "paper") == [0.3, 0.6]
    with pytest.raises(ValueError, match="a number or 'protocol'"):
        side_by_side(ours, bls_temperature="hot")


def test_bls_by_temperature_counts_each_temperatures_cells_within():
    # BLS MLPs at alpha 0.1 and 0.4, at two temperatures: at 0.01 every cell is 0.01 above the
    # paper's; at 0.001 the FGSM cell at eps 0.2 is 0.1 above it (out), the others equal
    paper = paper_table().query("setup == 'mnist-linear' and defence == 'BLS' "
                                "and alpha in [0.1, 0.4] and attack in ['FGSM', 'CW']")
    rows = [dict(setup="mnist-linear", protocol="original", defence="BLS", alpha=c.alpha, T=t,
                 attack=c.attack, eps=c.eps,
                 accuracy=c.accuracy + (0.01 if t == 0.01 else 0.1 if c.eps == 0.2 else 0.0),
                 n=1000)
            for c in paper.itertuples() for t in (0.001, 0.01)]
    rows.append(dict(rows[0], defence="natural", alpha=math.nan, T=math.nan))  # not BLS
    got = bls_by_temperature(pd.DataFrame(rows)).set_index("T")
    assert list(got.index) == [0.001, 0.01] and (got["models"] == 2).all()
    assert got.loc[0.01, ["FGSM", "FGSM_cells", "CW", "CW_cells", "BIM_cells"]].tolist() == [
        6, 6, 2, 2, 0]
    assert got.loc[0.001, ["FGSM", "within", "cells"]].tolist() == [4, 6, 8]
    assert got.loc[0.01, ["within", "cells"]].tolist() == [8, 8]
    assert got.loc[0.01, "fgsm_bim_diff"] == pytest.approx(0.01)
    assert got.loc[0.001, "fgsm_bim_diff"] == pytest.approx(0.1 / 3)
    # a wider tolerance takes the cells 0.1 off too
    assert bls_by_temperature(pd.DataFrame(rows), tol=0.1).set_index("T").loc[
        0.001, "within"] == 8


def test_format_side_by_side_prints_paper_ours_and_difference():
    text = format_side_by_side(side_by_side(_ours(), protocol="paper"))
    assert "mnist-lenet | protocol paper | FGSM (Table 2)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("BLS") and "0.005" in ln
                and "0.838" in ln)
    assert "0.800" in line and "-0.038" in line
    assert "DeepFool (Table 4)" in text and "+0.010" in text


# ------------------------------------------------------------------------------------------------
# the chapter's helpers: summaries, long and wide forms, provenance, the miniature run
# ------------------------------------------------------------------------------------------------
def _frame(cells) -> pd.DataFrame:
    """A hand-made side_by_side frame: (protocol, defence, alpha, attack, eps, paper, ours)."""
    rows = [dict(setup="mnist-linear", protocol=p, defence=d, alpha=a, T=math.nan, attack=at,
                 eps=e, paper=pa, ours=o, diff=o - pa, n=100, l2_median=math.nan,
                 paper_best=False) for p, d, a, at, e, pa, o in cells]
    return pd.DataFrame(rows)


NAN = math.nan
CELLS = [
    ("paper", "ALS", 0.1, "FGSM", 0.2, 0.50, 0.40),     # diff -0.10
    ("paper", "SLS", 0.1, "FGSM", 0.2, 0.30, 0.33),     # diff +0.03
    ("paper", "natural", NAN, "FGSM", 0.2, 0.35, 0.20),  # diff -0.15
    ("paper", "ALS", 0.1, "CW", NAN, 0.05, NAN),        # ours missing: not counted
    ("paper", "natural", NAN, "CW", NAN, 0.01, 0.50),
    ("strong", "ALS", 0.1, "FGSM", 0.2, 0.50, 0.10),
    ("strong", "SLS", 0.1, "FGSM", 0.2, 0.30, 0.25),
    ("strong", "natural", NAN, "FGSM", 0.2, 0.35, 0.15),
]


def test_summarise_differences_by_hand():
    s = summarise_differences(_frame(CELLS), tol=0.05).set_index(["protocol", "attack"])
    fgsm = s.loc[("paper", "FGSM")]
    assert fgsm["cells"] == 3 and fgsm["table"] == 2
    assert fgsm["mean_diff"] == pytest.approx((-0.10 + 0.03 - 0.15) / 3)
    assert fgsm["mean_abs_diff"] == pytest.approx((0.10 + 0.03 + 0.15) / 3)
    assert fgsm["max_abs_diff"] == pytest.approx(0.15)
    assert fgsm["within"] == pytest.approx(1 / 3)
    assert s.loc[("paper", "CW"), "cells"] == 1  # the cell without ours is left out
    assert s.loc[("strong", "FGSM"), "within"] == pytest.approx(1 / 3)  # SLS: -0.05 counts
    with pytest.raises(ValueError, match="tol"):
        summarise_differences(_frame(CELLS), tol=-1)
    with pytest.raises(ValueError, match="side_by_side"):
        summarise_differences(pd.DataFrame({"x": [1]}))


def test_smoothing_beats_natural_by_hand():
    s = smoothing_beats_natural(_frame(CELLS)).set_index(["protocol", "attack"])
    # paper protocol FGSM: paper ALS 0.50 > 0.35 yes, SLS 0.30 no; ours 0.40 > 0.20, 0.33 > 0.20
    assert s.loc[("paper", "FGSM"), "cells"] == 2
    assert s.loc[("paper", "FGSM"), "paper"] == pytest.approx(0.5)
    assert s.loc[("paper", "FGSM"), "ours"] == pytest.approx(1.0)
    assert s.loc[("paper", "FGSM"), "paper_gain"] == pytest.approx((0.15 - 0.05) / 2)
    assert s.loc[("paper", "FGSM"), "ours_gain"] == pytest.approx((0.20 + 0.13) / 2)
    # strong: ours ALS 0.10 < 0.15, SLS 0.25 > 0.15
    assert s.loc[("strong", "FGSM"), "ours"] == pytest.approx(0.5)
    assert ("paper", "CW") not in s.index  # the only smoothing CW cell has no number of ours


def test_versus_alpha_puts_the_natural_model_at_alpha_zero_of_every_method():
    v = versus_alpha(_frame(CELLS))
    assert set(v["source"]) == {"paper", "ours (paper protocol)", "ours (strong protocol)"}
    nat = v[(v["alpha"] == 0) & (v["attack"] == "FGSM")]
    assert set(nat["method"]) == {"ALS", "SLS", "BLS", "SBLS"}
    assert set(nat[nat["source"] == "paper"]["accuracy"]) == {0.35}
    assert set(nat[nat["source"] == "ours (strong protocol)"]["accuracy"]) == {0.15}
    # the paper's cells once, not once per protocol
    assert len(v[(v["source"] == "paper") & (v["method"] == "ALS") & (v["alpha"] == 0.1)
                 & (v["attack"] == "FGSM")]) == 1


def test_wide_table_lays_out_paper_ours_and_difference():
    w = wide_table(_frame(CELLS), "FGSM")
    assert list(w.columns.get_level_values(1))[:5] == ["paper", "ours paper", "diff paper",
                                                       "ours strong", "diff strong"]
    row = w.loc[("mnist-linear", "ALS", "0.1")]
    assert row[("eps 0.2", "paper")] == 0.50 and row[("eps 0.2", "ours strong")] == 0.10
    assert row[("eps 0.2", "diff paper")] == pytest.approx(-0.10)
    assert w.loc[("mnist-linear", "natural", ""), ("eps 0.2", "ours paper")] == 0.20
    assert "unbounded" in wide_table(_frame(CELLS), "CW").columns.get_level_values(0)
    with pytest.raises(ValueError, match="no BIM cells"):
        wide_table(_frame(CELLS), "BIM")
    with pytest.raises(ValueError, match="attack"):
        wide_table(_frame(CELLS), "PGD")


def test_wide_table_of_real_side_by_side_agrees_cell_for_cell():
    ours = pd.DataFrame(_ours())
    s = side_by_side(ours, protocol="paper")
    w = wide_table(s, "FGSM")
    assert w.loc[("mnist-lenet", "BLS", "0.005"), ("eps 0.2", "paper")] == 0.838
    assert w.loc[("mnist-lenet", "BLS", "0.005"), ("eps 0.2", "ours paper")] == 0.80
    assert len(w) == len(s[(s.attack == "FGSM") & (s.eps == 0.2)])


def test_read_provenance(tmp_path):
    csv = tmp_path / "r.csv"
    with pytest.raises(FileNotFoundError, match="meta.json"):
        read_provenance(csv)
    meta = {"sessions": [{"command": "python -m lslib reproduce x", "wall_seconds": 12.5,
                          "git_commit": "abc", "device": "cpu (1 threads)", "complete": True}],
            "output": "r.csv"}
    (tmp_path / "r.csv.meta.json").write_text(json.dumps(meta))
    p = read_provenance(csv)
    assert len(p) == 1 and p.loc[0, "wall_seconds"] == 12.5 and p.loc[0, "git_commit"] == "abc"
    assert p.loc[0, "complete"] and p["rows_computed"].isna().all()


def _random_data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,),
                                                                           generator=g))


@pytest.mark.usefixtures("one_thread")
def test_train_and_attack_on_random_data():
    train, test = _random_data(256, 0), _random_data(64, 1)
    nat = train_and_attack(None, 0.0, 0.001, [0.0, 0.1], train=train, test=test, epochs=1,
                           pgd_steps=2, device="cpu")
    assert len(nat) == 2 * 2 * 2 and set(nat["method"]) == {"natural"}
    # eps 0: nothing moves, robust accuracy is the clean accuracy
    zero = nat[nat["eps"] == 0]
    assert (zero["accuracy"] == zero["clean_accuracy"]).all()
    # the natural model's own target is the one-hot label: both losses are the same attack
    by_loss = nat.set_index(["loss", "attack", "eps"])["accuracy"]
    assert (by_loss["smoothed target"] == by_loss["true label"]).all()
    assert (nat["accuracy"] <= nat["clean_accuracy"] + 1e-12).all()
    bls = train_and_attack("BLS", 0.2, 0.01, [0.1], train=train, test=test, epochs=1,
                           pgd_steps=2, device="cpu")
    assert set(bls["T"]) == {0.01} and set(bls["alpha"]) == {0.2}
    assert train_and_attack("ALS", 0.0, 1.0, [0.1], train=train, test=test, epochs=1,
                            pgd_steps=1, device="cpu")["method"].eq("natural").all()
    with pytest.raises(ValueError, match="method"):
        train_and_attack("LS", 0.1, 1.0, [0.1], train=train, test=test)
    with pytest.raises(ValueError, match="alpha"):
        train_and_attack("ALS", 1.5, 1.0, [0.1], train=train, test=test)
    with pytest.raises(ValueError, match="eps"):
        train_and_attack("ALS", 0.1, 1.0, [-0.1], train=train, test=test)


def test_paper_wide_holds_every_cell_of_a_set_up_once():
    w = paper_wide("cifar-resnet")
    t = paper_table().query("setup == 'cifar-resnet'")
    assert w.size == len(t) and w.isna().sum().sum() == t["accuracy"].isna().sum()
    assert list(w.columns) == ["FGSM eps 0.05", "FGSM eps 0.2", "FGSM eps 0.4", "BIM eps 0.05",
                               "BIM eps 0.2", "BIM eps 0.4", "DeepFool", "CW", "clean"]
    assert w.loc[("BLS", "0.4"), "FGSM eps 0.05"] == 0.450
    assert w.loc[("natural", ""), "clean"] == 0.886
    assert list(w.index)[:3] == [("ALS", "0.005"), ("ALS", "0.1"), ("ALS", "0.4")]
    with pytest.raises(ValueError, match="setup"):
        paper_wide("CIFAR ResNet")


def test_find_results_takes_the_first_folder_holding_every_file(tmp_path, monkeypatch):
    from lslib.paper_tables import find_results

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.csv").write_text("1")
    (b / "x.csv").write_text("1")
    (b / "x.csv.meta.json").write_text("{}")
    assert find_results("x.csv", search=(a, b)) == a
    assert find_results("x.csv", "x.csv.meta.json", search=(a, b)) == b  # a lacks the meta
    assert find_results("y.csv", search=(a, b)) is None
    # download: fetched from the URL into ./results (a file:// URL stands in for the network)
    monkeypatch.chdir(tmp_path)
    got = find_results("x.csv.meta.json", search=(a,), download=True, url=b.as_uri() + "/")
    assert got == Path("results") and (tmp_path / "results" / "x.csv.meta.json").read_text() == "{}"
    with pytest.raises(ValueError, match="at least one"):
        find_results()


def _cells_frame(rows):
    import pandas as pd

    cols = ["setup", "protocol", "defence", "alpha", "attack", "eps", "paper", "ours"]
    return pd.DataFrame(rows, columns=cols)


def test_gains_by_method_per_method_against_natural_by_hand():
    from lslib.paper_tables import gains_by_method

    f = _cells_frame([
        ("mnist-linear", "strong", "natural", None, "FGSM", 0.2, 0.00, 0.10),
        ("mnist-linear", "strong", "ALS", 0.1, "FGSM", 0.2, 0.50, 0.20),   # +0.10
        ("mnist-linear", "strong", "ALS", 0.4, "FGSM", 0.2, 0.40, 0.12),   # +0.02
        ("mnist-linear", "strong", "SBLS", 0.4, "FGSM", 0.2, 0.30, 0.00),  # -0.10
    ])
    g = gains_by_method(f, margin=0.05).set_index("method")
    assert g.loc["ALS", "above"] == 1 and g.loc["ALS", "below"] == 0
    assert g.loc["ALS", "max_gain"] == pytest.approx(0.10)
    assert g.loc["ALS", "max_alpha"] == 0.1 and g.loc["ALS", "mean_gain"] == pytest.approx(0.06)
    assert g.loc["ALS", "paper_above"] == 2
    assert g.loc["SBLS", "below"] == 1 and g.loc["SBLS", "above"] == 0


def test_share_within_counts_cells_not_run_as_missed():
    from lslib.paper_tables import share_within

    f = _cells_frame([
        ("mnist-linear", "original", "ALS", 0.1, "CW", None, 0.10, 0.12),   # within
        ("mnist-linear", "original", "SLS", 0.1, "CW", None, 0.10, 0.30),   # not within
        ("mnist-linear", "original", "BLS", 0.1, "CW", None, 0.10, None),   # not run
        ("mnist-linear", "original", "BLS", 0.1, "clean", 0.0, 0.98, 0.98),
    ])
    s = share_within(f, tol=0.05).set_index("table")
    assert s.loc["5", "cells"] == 3 and s.loc["5", "run"] == 2 and s.loc["5", "within"] == 1
    assert s.loc["5", "share"] == pytest.approx(1 / 3) and s.loc["5", "share_run"] == 0.5
    assert s.loc["2-5", "cells"] == 3 and s.loc["6", "share"] == 1.0


def test_across_seeds_sets_each_seed_beside_the_paper():
    from lslib.experiments import read_results
    from lslib.paper_tables import across_seeds, paper_table

    first = read_results(Path(__file__).resolve().parents[1] / "results"
                         / "mnist-linear-original.csv")
    first = first[at_temperature(first)]
    rerun = first[(first["defence"] == "natural") & first["attack"].isin(["clean", "FGSM"])]
    rerun = rerun.assign(seed=1, accuracy=(rerun["accuracy"] + 0.01).clip(upper=1.0),
                         train_seconds=7.0)
    wide, train = across_seeds(first, rerun)
    assert list(wide["attack"]) == ["clean", "FGSM", "FGSM", "FGSM"]  # only the attacks re-run
    assert set(wide["defence"]) == {"natural"}
    assert (wide["seed 1"] - wide["seed 0"]).round(9).eq(0.01).all()
    assert wide["range"].round(9).eq(0.01).all()
    paper = paper_table().query("setup == 'mnist-linear' and defence == 'natural'")
    fgsm = wide[wide["attack"] == "FGSM"].set_index("eps")["paper"]
    want = paper[paper["attack"] == "FGSM"].set_index("eps")["accuracy"]
    assert fgsm.round(3).to_dict() == want.round(3).to_dict()
    assert list(train.xs(1, level="seed")) == [7.0]


def test_two_runs_sets_both_tables_beside_the_paper_cell_by_cell():
    from lslib.experiments import read_results
    from lslib.paper_tables import paper_table, two_runs

    table = read_results(Path(__file__).resolve().parents[1] / "results"
                         / "mnist-linear-original.csv")
    # the table holds BLS at two temperatures (two models each): the helper refuses to pair
    # them by method and alpha, and takes the rung's once filtered
    with pytest.raises(ValueError, match="more than one temperature"):
        two_runs(table, table)
    first = table[at_temperature(table)]
    second = first[first["attack"].isin(["clean", "FGSM", "DeepFool"])]
    second = second.assign(accuracy=second["accuracy"] - 0.02 * (second["attack"] == "FGSM"))
    both = two_runs(first, second)
    # only the cells both ran: 14 models x (clean + 3 FGSM budgets + DeepFool)
    assert first["model_key"].nunique() == 14
    assert len(both) == 14 * 5 and set(both["attack"]) == {"clean", "FGSM", "DeepFool"}
    assert set(both.loc[both["defence"] == "BLS", "T"]) == {0.01}
    fgsm = both["attack"] == "FGSM"
    assert both.loc[fgsm, "shift"].round(9).eq(-0.02).all()
    assert both.loc[~fgsm, "shift"].eq(0).all()
    assert ((both["diff_second"] - both["diff_first"]) - both["shift"]).abs().max() < 1e-12
    paper = paper_table().query("setup == 'mnist-linear' and defence == 'natural' "
                                "and attack == 'FGSM'").set_index("eps")["accuracy"]
    got = both[fgsm & (both["defence"] == "natural")].set_index("eps")
    assert got["paper"].round(3).to_dict() == paper.round(3).to_dict()
    assert (got["first"] - got["diff_first"]).round(9).to_dict() == paper.round(9).to_dict()


@pytest.mark.parametrize("stem", ["mnist-linear-original", "mnist-linear-original-epochs-10",
                                  "mnist-lenet-original-authors-start"])
def test_slice_fit_on_the_rungs_own_slice_is_the_rungs_share(stem):
    """The committed slice rows on the protocol's slice give the cells within 0.05 that
    share_within counts on the rung itself, per table and over Tables 2-5 (CW included); the
    MLPs trained for 50 epochs and for 10 each against their own table."""
    results = Path(__file__).resolve().parents[1] / "results"
    rung = pd.read_csv(results / f"{stem}.csv")
    files = [f for f in sorted(results.glob(f"{stem}*-slices.csv"))
             if not f.name[len(stem):].startswith("-epochs-")]  # not another length's
    slices = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    # BLS at the rung's temperature only (the tables also hold the BLS models at 0.001), and the
    # rung's PGD-AT model only (the analyses also hold the one trained at the committed source's
    # PGD-AT loss, before the protocol changed it)
    rung = rung[at_temperature(rung)]
    slices = slices[at_temperature(slices.assign(protocol="original"))]
    pgd = set(rung.loc[rung["defence"].eq("PGD-AT"), "model_key"])
    slices = slices[~slices["defence"].eq("PGD-AT") | slices["model_key"].isin(pgd)]
    fit = slice_fit(slices, rung)
    assert fit["protocol"].sum() == 1 and (fit["cells"] == 112).all()
    own = fit[fit["protocol"]].iloc[0]
    share = share_within(side_by_side(rung)).set_index("attack")
    for attack in ("FGSM", "BIM", "DeepFool", "clean"):
        assert own[attack] == share.loc[attack, "within"]
        assert own[f"{attack}_cells"] == share.loc[attack, "cells"]
    assert own["within"] == share[share["table"] == "2-5"]["within"].iloc[0]
    # every slice counts the same cells, and a wider tolerance never matches fewer
    loose = slice_fit(slices, rung, tol=0.1)
    assert (loose["within"] >= fit["within"]).all()
    with pytest.raises(ValueError, match="tol"):
        slice_fit(slices, rung, tol=-1)


def test_the_submission_date_is_the_one_on_the_papers_front_page():
    if not PAPER.exists():
        pytest.skip(f"the paper's text is not at {PAPER}")
    m = re.search(r"Preprint submitted on (\d{1,2} \w{3} \d{4})", PAPER.read_text(encoding="utf-8"))
    assert m is not None
    assert datetime.strptime(m.group(1), "%d %b %Y").date().isoformat() == PAPER_SUBMITTED
