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
