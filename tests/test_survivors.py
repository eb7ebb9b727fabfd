"""lslib.survivors: the points an unbounded attack leaves, examined on hand-built nets."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from lslib import survivors


def relu_net(first_bias: float, last_bias: list[float]) -> nn.Module:
    """2 inputs -> 2 ReLU units (weights I, biases ``first_bias``) -> 3 logits."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.fill_(first_bias)
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        net[2].bias.copy_(torch.tensor(last_bias))
    return net.eval()


def test_a_point_where_every_unit_is_off_is_flat_and_sits_on_the_biases():
    # on [0, 1]^2 the units' inputs are x - 5 < 0: the logits are the last biases, a tie
    net = relu_net(-5.0, [0.3, 0.3, 0.1])
    x = torch.tensor([[0.2, 0.7], [0.9, 0.1]], dtype=torch.float64)
    got = survivors.examine(net, x, torch.tensor([0, 2]))
    assert got["active_units"].tolist() == [0, 0] and got["grad_norm"].tolist() == [0.0, 0.0]
    assert got["margin"].tolist() == pytest.approx([0.0, 0.2])  # tie; 0.3 - 0.1


def test_a_point_with_units_on_has_the_gradient_of_the_linear_piece():
    net = relu_net(0.0, [0.0, 0.0, 0.0])
    x = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    got = survivors.examine(net, x, torch.tensor([1]))
    # logits (0.5, 0.5, 0.75): the sum's gradient is the columns' sums (2, 3)
    assert got["active_units"].tolist() == [2]
    assert got["grad_norm"].iloc[0] == pytest.approx(13 ** 0.5)
    assert got["margin"].iloc[0] == pytest.approx(0.25)


def test_no_relu_is_refused():
    with pytest.raises(ValueError, match="ReLU"):
        survivors.last_relu_units(nn.Linear(2, 2), torch.zeros(1, 2))


def test_survivors_of_a_sweep_table_rerun_its_deepfool_exactly(tmp_path):
    from lslib.experiments import Sweep, run_sweep

    sweep = Sweep(setups=("mnist-linear",), protocols=("strong",), methods=("ALS",),
                  alphas=(0.4,), baselines=(), attacks=("DeepFool",), quick=True,
                  data_source="synthetic")
    out = tmp_path / "t.csv"
    run_sweep(sweep, out, cache=tmp_path / "cache", progress=False, device="cpu")
    table = pd.read_csv(out)
    # threshold -1: every DeepFool row is examined, so the accuracy check runs
    got = survivors.survivors_of_table(out, cache=tmp_path / "cache", threshold=-1.0,
                                       log=lambda msg: None)
    n, acc = int(table["n"].iloc[0]), float(table["accuracy"].iloc[0])
    assert len(got) == round(acc * n)
    assert (got["units_at_input"] >= 0).all()
    summary = survivors.summarise(got) if len(got) else None
    assert summary is None or int(summary["points left"].iloc[0]) == len(got)
    # a table whose accuracy the attack does not reproduce is refused
    table["accuracy"] = table["accuracy"].astype(float) + 0.5
    table.to_csv(out, index=False)
    with pytest.raises(RuntimeError, match="not the one"):
        survivors.survivors_of_table(out, cache=tmp_path / "cache", threshold=-1.0,
                                     log=lambda msg: None)


def test_the_summary_counts_the_points_deepfool_carried_into_the_flat_region():
    left = pd.DataFrame({"setup": "s", "defence": "ALS", "alpha": 0.4, "accuracy": 0.004,
                         "label": [0, 0, 1, 5], "margin": [-1e-6, 0.0, -2e-3, -1e-5],
                         "grad_norm": [0.0, 0.0, 0.0, 0.3], "active_units": [0, 0, 0, 1],
                         "units_at_input": [5, 0, 3, 4]})
    got = survivors.summarise(left).iloc[0]
    assert (got["points left"], got["flat (gradient 0)"], got["no unit on"]) == (4, 3, 3)
    assert got["of which on at the input"] == 2 and got["labels"] == "0 1 5"
    # a table written before the column existed is summarised without it
    assert "of which on at the input" not in survivors.summarise(
        left.drop(columns="units_at_input")).columns
    # what moves them: CW (NaN where it does not) and a line search (inf where nothing is found)
    moved = survivors.summarise(left.assign(cw_l2=[1.5, float("nan"), 2.0, float("nan")],
                                            line_l2=[3.0, 4.5, float("inf"), 2.5])).iloc[0]
    assert (moved["CW moves"], moved["a line moves"]) == (2, 3)
    assert moved["largest line L2"] == float("inf")
    assert "CW moves" not in survivors.summarise(left).columns


def test_line_search_finds_the_boundary_of_a_linear_classifier_on_its_lines():
    # logits (x0, x1): class 0 where x0 > x1. From (0.8, 0.2) the line to (0.2, 0.8) meets the
    # diagonal at (0.5, 0.5), at the distance of the boundary itself, 0.6 / sqrt(2); the line
    # to (0.3, 0.9) meets it at (0.55, 0.55), further. Bisection keeps the far side, so the
    # norm is never below the true one.
    net = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    x = torch.tensor([[0.8, 0.2]], dtype=torch.float64)
    pool = torch.tensor([[0.3, 0.9], [0.2, 0.8], [0.9, 0.0]], dtype=torch.float64)
    got = survivors.line_search(net, x, torch.tensor([0]), pool)
    assert 0.6 / 2 ** 0.5 <= float(got[0]) <= 0.6 / 2 ** 0.5 + 1e-6
    # nearest=1: the line to the nearest image alone, (0.2, 0.8) at 0.85 (against 0.86)
    one = survivors.line_search(net, x, torch.tensor([0]), pool, nearest=1)
    assert float(one[0]) == pytest.approx(float(got[0]), abs=1e-6)
    far = survivors.line_search(net, x, torch.tensor([0]), pool[[0]])
    assert float(far[0]) == pytest.approx(0.5 * 0.74 ** 0.5, abs=1e-6)
    # no image of the pool in another class: nothing found
    assert survivors.line_search(net, x, torch.tensor([0]), pool[[2]])[0] == float("inf")
    with pytest.raises(ValueError, match="same shape"):
        survivors.line_search(net, x, torch.tensor([0]), torch.zeros(2, 3))


def test_a_flat_point_deepfool_and_cw_cannot_move_is_moved_on_a_line():
    from lslib import attacks

    # units on only where x_i > 0.5; at (0.2, 0.2) the logits are the biases, class 0 by a tie
    net = relu_net(-0.5, [0.3, 0.3, 0.1])
    x, y = torch.tensor([[0.2, 0.2]], dtype=torch.float64), torch.tensor([0])
    assert not bool(attacks.deepfool(net, x, y).success[0])  # its gradient is zero
    pool = torch.tensor([[0.2, 0.9]], dtype=torch.float64)  # unit 2 on: class 1
    got = survivors.moved_by(net, x, y, pool, dict(binary_search_steps=2, steps=20, lr=0.1,
                                                   initial_const=1.0, start="deepfool"))
    assert got["cw_l2"].isna().all()  # no gradient for CW either
    assert 0.3 <= got["line_l2"].iloc[0] <= 0.3 + 1e-6  # the unit's edge, x1 = 0.5


def test_the_longer_deepfools_are_the_strong_one_run_further_point_by_point():
    from lslib import attacks
    from lslib.experiments import PROTOCOLS

    strong = dict(steps=50, overshoot=0.02, candidates=10)
    variants = survivors.deepfool_variants(strong, surrogate=[2.0])
    assert variants == {"df_steps": dict(steps=200, overshoot=0.02, candidates=10),
                        "df_overshoot": dict(steps=50, overshoot=1.0, candidates=10),
                        "df_surrogate": dict(steps=50, overshoot=0.02, candidates=10,
                                             relu_surrogate=(2.0,))}
    # the runs further are plain DeepFools, whatever the row's; the surrogate is the strong one's
    assert survivors.deepfool_variants(PROTOCOLS["strong"].deepfool) == {
        "df_steps": dict(steps=200, overshoot=0.02, candidates=10),
        "df_overshoot": dict(steps=50, overshoot=1.0, candidates=10),
        "df_surrogate": PROTOCOLS["strong"].deepfool}
    # a flat point (every unit off) and one with both units on, logits (0.6, 1.1, 0.8)
    net = relu_net(-0.5, [0.3, 0.3, 0.1])
    x = torch.tensor([[0.2, 0.2], [0.8, 0.9]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    got = survivors.moved_by(net, x, y, x, dict(binary_search_steps=1, steps=5, lr=0.1,
                                                initial_const=1.0), variants)
    for name, settings in variants.items():
        col = got[f"{name}_l2"]
        res = attacks.deepfool(net, x, y, **settings)
        assert bool(res.success[1]) and col.iloc[1] == pytest.approx(float(res.norms[1]))
        # the flat point is a tie at its clean image: the distance DeepFool linearises is 0
        # whatever the gradient, so even the surrogate's steps are the 1e-4 push alone (a
        # point DeepFool carried into the flat region is another matter: tests/test_attacks.py)
        assert pd.isna(col.iloc[0]) and not bool(res.success[0])
    # the bigger overshoot goes further than the boundary: a longer perturbation
    assert got["df_overshoot_l2"].iloc[1] > got["df_steps_l2"].iloc[1]
    summary = survivors.summarise(got.assign(
        setup="s", defence="d", alpha=0.4, accuracy=0.002, label=y.tolist(),
        margin=[0.0, -0.3], grad_norm=[0.0, 1.0], active_units=[0, 2])).iloc[0]
    assert summary["DeepFool x4 iterations moves"] == 1
    assert summary["DeepFool overshoot 1 moves"] == 1
    assert summary["DeepFool with the ReLU surrogate moves"] == 1
