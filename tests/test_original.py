"""lslib.original: the authors' code path, checked against hand-derived cases of each bug, the
paper's Table 1 and brute force (never against itself)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lslib import original as orig
from lslib.original import Switches

torch.set_default_dtype(torch.float32)


def _q(p, y, alpha, method, t=0.1):
    probs = torch.tensor([p], dtype=torch.float64)
    return orig.smooth_label(torch.tensor([y]), alpha, probs, method, t)[0].tolist()


# --- Table 1 of the paper, as the original computes it (probability scale, value ties) -------


def test_sls_spreads_alpha_over_the_wrong_classes():
    assert _q([0.5, 0.3, 0.2], 0, 0.3, "standard") == pytest.approx([0.7, 0.15, 0.15])


def test_als_puts_alpha_on_the_least_probable_class_true_class_included():
    assert _q([0.5, 0.3, 0.2], 0, 0.3, "adversarial") == pytest.approx([0.7, 0.0, 0.3])
    # the true class is the least probable: it gets the mass back (1 - alpha + alpha)
    assert _q([0.1, 0.6, 0.3], 0, 0.3, "adversarial") == pytest.approx([1.0, 0.0, 0.0])
    # ties split
    assert _q([0.6, 0.2, 0.2], 0, 0.4, "adversarial") == pytest.approx([0.6, 0.2, 0.2])


def test_sbls_puts_alpha_on_the_most_probable_wrong_class():
    assert _q([0.5, 0.3, 0.2], 0, 0.3, "second_best") == pytest.approx([0.7, 0.3, 0.0])
    # a misclassified point: the predicted (wrong) class
    assert _q([0.2, 0.3, 0.5], 0, 0.3, "second_best") == pytest.approx([0.7, 0.0, 0.3])


def test_bls_boltzmann_weights_on_the_probability_scale():
    p, t, a = [0.5, 0.3, 0.2], 0.1, 0.4
    w = [math.exp(-0.3 / t), math.exp(-0.2 / t)]
    hand = [1 - a, a * w[0] / sum(w), a * w[1] / sum(w)]
    assert _q(p, 0, a, "boltzmann", t) == pytest.approx(hand)


def test_bls_quirk_an_exactly_zero_probability_gets_no_mass():
    # (p != p_y) * p is 0 for the true class AND for a class of probability exactly 0: both
    # become +inf and get weight 0, though the least probable class should get the most
    assert _q([0.7, 0.3, 0.0], 0, 0.4, "boltzmann", 0.1) == pytest.approx([0.6, 0.4, 0.0])


def test_alpha_zero_is_one_hot_and_the_loss_is_cross_entropy():
    z = torch.randn(5, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (5,))
    p = torch.softmax(z, 1)
    q = orig.smooth_label(y, 0.0, p, "boltzmann")
    assert torch.equal(q, nn.functional.one_hot(y, 10).double())
    assert float(orig.smooth_cross_entropy(p, q)) == pytest.approx(
        float(nn.functional.cross_entropy(z, y)), rel=1e-12)


# --- FGSM/BIM on the model's own smoothed target ---------------------------------------------


class Linear(nn.Module):
    """A softmax over fixed logits z = x W^T + b (float64)."""

    def __init__(self, w, b):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64), requires_grad=False)
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64), requires_grad=False)

    def forward(self, x):
        return torch.softmax(x.flatten(1) @ self.w.T + self.b, dim=1)


def test_fgsm_on_the_smoothed_target_moves_toward_the_true_class():
    # d loss / d z = p - q: where the model is more confident than the target (p_y = 0.95 >
    # q_y = 0.6 for SLS alpha 0.4), ascending the loss RAISES the true logit
    model = Linear([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [math.log(0.95 / 0.025), 0.0, 0.0])
    x = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.tensor([0])
    p0 = float(model(x)[0, 0])
    assert p0 == pytest.approx(0.95)
    leak = orig.fgsm(model, x, y, 0.1, alpha=0.4, method="standard")
    true = orig.fgsm(model, x, y, 0.1, alpha=0.4, method="standard",
                     switches=dataclasses.replace(Switches(), smoothed_attack_target=False))
    # hand: grad of the loss w.r.t. x is W^T (p - q) = (p0 - q0, p1 - q1)
    assert leak.tolist() == [[0.1, -0.1]]  # p0 - 0.6 > 0, p1 - 0.2 < 0
    assert true.tolist() == [[-0.1, 0.1]]
    assert float(model(leak)[0, 0]) > p0 > float(model(true)[0, 0])


def test_fgsm_differentiates_through_the_bls_target_unless_detached():
    torch.manual_seed(0)
    model = Linear(torch.randn(3, 4).tolist(), [0.0, 0.0, 0.0])
    x = torch.rand(1, 4, dtype=torch.float64) * 0.2
    y = torch.tensor([0])
    t = 0.05

    def loss(xx, through):
        p = model(xx)
        q = orig.smooth_label(y, 0.4, p if through else p.detach(), "boltzmann", t)
        return float(orig.smooth_cross_entropy(p, q))

    # brute force: central differences of the loss with the target as a function of x
    h = 1e-6
    for through in (True, False):
        fd = [(loss(x + h * e, through) - loss(x - h * e, through)) / (2 * h)
              for e in torch.eye(4, dtype=torch.float64)[:, None, :]]
        sw = dataclasses.replace(Switches(), bls_target_gradient=through)
        adv = orig.fgsm(model, x, y, 0.01, alpha=0.4, method="boltzmann", temperature=t,
                        switches=sw)
        want = [math.copysign(0.01, g) for g in fd]
        assert (adv - x)[0].tolist() == pytest.approx(want)


class Bump(nn.Module):
    """Two classes on a 1-D input; the loss of class 0 grows as x moves toward 0.52."""

    def forward(self, x):
        d = 50 * (x[:, 0] - 0.52) ** 2
        return torch.softmax(torch.stack([d, torch.zeros_like(d)], 1), 1)


def test_bim_clips_only_at_the_end():
    # eps 0.3, 3 steps of 0.1 from 0.36: the unclipped iterates go 0.46, 0.56 (past the pixel
    # range, where the gradient turns), 0.46; clipping each step stays at 0.5
    x, y = torch.tensor([[0.36]], dtype=torch.float64), torch.tensor([0])
    bug = orig.bim(Bump(), x, y, 0.3, steps=3)
    fixed = orig.bim(Bump(), x, y, 0.3, steps=3,
                     switches=dataclasses.replace(Switches(), bim_clip_at_end=False))
    assert float(bug) == pytest.approx(0.46)
    assert float(fixed) == pytest.approx(0.5)


# --- DeepFool: the re-added cumulative perturbation ------------------------------------------


def test_deepfool_re_adds_the_cumulative_perturbation():
    # logits (0, x1 + x2 - 0.25): from 0 the boundary is r1 = (0.125, 0.125) away (exact in
    # binary). Step 1 lands on it (a tie, up to rounding); step 2 has r2 = 0, and the
    # original moves by r_tot = r1 again: x = 2 r1, past the boundary. Correct code stays at r1.
    model = Linear([[0.0, 0.0], [1.0, 1.0]], [0.0, -0.25])
    x = torch.zeros(1, 2, dtype=torch.float64)
    sw = dataclasses.replace(Switches(), deepfool_on_softmax=False)
    bug = orig.deepfool(model, x, steps=2, switches=sw)
    fixed = orig.deepfool(model, x, steps=2,
                          switches=dataclasses.replace(sw, deepfool_readd=False))
    assert bug[0].tolist() == pytest.approx([0.25, 0.25], abs=1e-12)
    assert fixed[0].tolist() == pytest.approx([0.125, 0.125], abs=1e-12)
    assert int(model(bug).argmax()) == 1


def test_deepfool_first_step_is_the_exact_distance_on_a_linear_model():
    # on a linear model in logit space a step's r_i is the exact distance to the boundary
    model = Linear([[0.0, 0.0], [2.0, 0.0]], [0.0, -0.5])  # boundary at x1 = 0.25
    x = torch.tensor([[-0.5, 0.0]], dtype=torch.float64)
    sw = dataclasses.replace(Switches(), deepfool_on_softmax=False)
    out = orig.deepfool(model, x, steps=1, switches=sw, lims=(-10, 10))
    assert out[0].tolist() == pytest.approx([0.25, 0.0])  # one step: r1 = 0.75 to the boundary


def test_deepfool_clips_only_at_the_end_which_can_undo_its_success():
    # logits (0, x1 - x2 - 0.875) from (0, -0.5), a point on the lower pixel bound: the cheapest
    # way across the boundary pushes pixel 2 below the range. The original stops at the first
    # misclassified iterate and then clips pixel 2 back to -0.5, where the model is right again
    # (x1 - x2 - 0.875 < 0 for x1 < 0.375). Clipping each iterate instead keeps stepping along
    # pixel 1, the only way across inside the range, and stops at a point it returns.
    model = Linear([[0.0, 0.0], [1.0, -1.0]], [0.0, -0.875])
    x, y = torch.tensor([[0.0, -0.5]], dtype=torch.float64), torch.tensor([0])
    unclipped = orig.deepfool(model, x, lims=(-9.0, 9.0))
    assert float(unclipped[0, 1]) < -0.5 and int(model(unclipped).argmax()) == 1
    bug = orig.deepfool(model, x)
    assert bug[0].tolist() == pytest.approx([float(unclipped[0, 0]), -0.5])
    assert int(model(bug).argmax()) == 0
    fixed = orig.deepfool(model, x,
                          switches=dataclasses.replace(Switches(), deepfool_clip_at_end=False))
    assert float(fixed.min()) >= -0.5 and float(fixed.max()) <= 0.5
    assert float(fixed[0, 0]) > 0.375 and int(model(fixed).argmax()) == 1
    # so the original counts the point as robust, and without this one bug it does not
    assert orig.attack_accuracy(model, x, y, "DeepFool").accuracy == 1.0
    one_off = dataclasses.replace(Switches(), deepfool_clip_at_end=False)
    assert orig.attack_accuracy(model, x, y, "DeepFool", switches=one_off).accuracy == 0.0
    assert Switches.without("deepfool_clip_at_end") == one_off  # the ladder's rung for it


def test_the_settings_of_committed_original_rows_still_read_as_the_code_that_made_them():
    # a switch added later is named in a row's settings only when it is off, so the rows the
    # original protocol wrote before it existed (with the bug) are not re-run on resume
    from lslib.experiments import PROTOCOLS, read_results

    root = Path(__file__).resolve().parents[1] / "results"
    for name in ("mnist-linear-original.csv", "mnist-linear-original-epochs-10.csv"):
        rows = read_results(root / name)
        rows = rows[rows["protocol"] == "original"]
        for attack in ("FGSM", "BIM", "DeepFool", "CW"):
            written = set(rows.loc[rows["attack"] == attack, "attack_settings"])
            assert written == {PROTOCOLS["original"].describe(attack)}, (name, attack)
    assert "deepfool_clip_at_end" not in Switches().describe()
    assert "deepfool_clip_at_end=False" in Switches.fixed().describe()


def _saturated():
    # logit 1000 on the class of the pixel that is lit, 0 elsewhere: exp(-1000) underflows, so
    # the softmax is exactly one-hot and every gradient of it is exactly zero
    model = Linear([[2000.0, 0, 0], [0, 2000.0, 0], [0, 0, 2000.0]], [0.0, 0.0, 0.0])
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x = torch.zeros(6, 3, dtype=torch.float64)
    x[torch.arange(6), y] = 0.5
    return model, x, y


def test_deepfool_on_a_saturated_softmax_returns_not_a_number_as_the_original():
    # the original: pert_k = |f_k| / ||w_k|| = 1 / 0 = inf for every k, 'inf < inf' never
    # takes a candidate, so w keeps its zeros and r_i = inf * (0 / 0): NaN
    model, x, y = _saturated()
    assert (model(x) == torch.nn.functional.one_hot(y, 3).double()).all()
    assert torch.isnan(orig.deepfool(model, x, steps=3)).all()


def test_a_nan_image_counts_as_the_original_counts_it_and_has_no_norm():
    import numpy as np

    model, x, y = _saturated()
    res = orig.attack_accuracy(model, x, y, "DeepFool", steps={"deepfool": 3})
    adv = orig.deepfool(model, x, steps=3)
    # the original's count: numpy's argmax of the model's (NaN) output against the label
    pred = np.argmax(model(adv).detach().numpy(), axis=1)
    assert res.accuracy == pytest.approx(float(np.mean(pred == y.numpy())))
    assert res.accuracy == pytest.approx(2 / 6)  # numpy's argmax of NaNs is 0: label 0 stays
    assert res.norms == [] and res.nonfinite == 4


# --- CW: the tanh-space constants ------------------------------------------------------------


def test_cw_constants_move_the_background_pixels_off_the_image():
    to_attack, to_model = orig.tanh_space_maps((0.999, 0.999999999999999))
    x = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    rec = to_model(to_attack(x))
    # hand: u = -0.999999999999999, w = atanh(u) = 0.5 ln((1 + u) / (1 - u));
    # back: (1 - exp(-2 * 0.999 w)) / (1 + exp(-2 * 0.999999999999999 w)) / 2
    u = -0.999999999999999
    w = 0.5 * math.log((1 + u) / (1 - u))
    hand = (1 - math.exp(-2 * 0.999 * w)) / (1 + math.exp(-2 * 0.999999999999999 * w)) / 2
    assert float(rec[0]) == pytest.approx(hand, rel=1e-9)
    assert 0.015 < float(rec[0]) + 0.5 < 0.02  # a black pixel starts ~0.017 above black
    assert float(rec[1]) == 0.0 and float(rec[2]) == pytest.approx(0.5, abs=1e-12)
    _, tanh = orig.tanh_space_maps((1.0, 1.0))
    assert float(tanh(to_attack(x))[0]) == pytest.approx(-0.5, abs=1e-12)


def test_cw_without_the_misclassification_gradient_never_moves():
    # the March 2019 version: only the distance term has a gradient, and it is 0 at the start
    model = Linear([[1.0, 0.0], [0.0, 1.0]], [0.1, 0.0])
    x = torch.tensor([[0.2, 0.1]], dtype=torch.float64)
    y = torch.tensor([0])
    still = orig.carlini_wagner(model, x, y, switches=orig.VERSIONS["cw-2019-03"])
    assert torch.equal(still, x)
    moved = orig.carlini_wagner(model, x, y)
    assert int(model(moved).argmax()) == 1  # the tables' version fools this easy point


def test_cw_returns_the_last_success_not_the_smallest():
    model = Linear([[1.0, 0.0], [0.0, 1.0]], [0.1, 0.0])
    x = torch.tensor([[0.2, 0.1]], dtype=torch.float64)
    y = torch.tensor([0])
    last = orig.carlini_wagner(model, x, y, switches=Switches(cw_constants=(1.0, 1.0)))
    small = orig.carlini_wagner(model, x, y, switches=Switches(cw_constants=(1.0, 1.0),
                                                               cw_last_success=False))
    assert int(model(small).argmax()) == 1
    assert float((small - x).norm()) <= float((last - x).norm()) + 1e-12


# --- one point at a time = batched; the original's counting ---------------------------------


@pytest.mark.parametrize("attack", ["FGSM", "BIM", "DeepFool", "CW"])
def test_batched_equals_one_point_at_a_time(attack):
    torch.manual_seed(1)
    model = orig.OriginalMLP().double().eval()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64) - 0.5
    y = torch.randint(0, 10, (6,))
    kw = dict(eps=0.1, alpha=0.4, method="boltzmann", steps={"cw": 3, "cw_bss": 2})
    one = orig.attack_accuracy(model, x, y, attack, batch_size=1, **kw)
    all_ = orig.attack_accuracy(model, x, y, attack, batch_size=6, **kw)
    assert one.accuracy == all_.accuracy and one.clean_accuracy == all_.clean_accuracy
    assert one.norms == pytest.approx(all_.norms)


def test_a_misclassified_clean_point_counts_as_a_failure():
    model = Linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    x = torch.tensor([[0.3, 0.0], [0.0, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 0])  # the second point is misclassified
    res = orig.attack_accuracy(model, x, y, "FGSM", eps=0.0)
    assert res.accuracy == 0.5 and res.clean_accuracy == 0.5


def test_models_end_in_a_softmax_in_float64():
    for cls in (orig.OriginalMLP, orig.OriginalLeNet):
        m = cls().double().eval()
        p = m(torch.rand(3, 1, 28, 28, dtype=torch.float64) - 0.5)
        assert p.dtype == torch.float64
        assert p.sum(1).tolist() == pytest.approx([1.0] * 3)


def test_original_protocol_covers_the_mnist_setups_only():
    from lslib.experiments import Sweep

    with pytest.raises(ValueError, match="original"):
        Sweep(setups=("cifar-lenet",), protocols=("original",))


def test_lenet_starts_from_a_natural_checkpoint_and_keys_differ():
    from lslib.experiments import SETUPS, Defence

    lenet = orig.train_config(SETUPS["mnist-lenet"], Defence("SLS", 0.1))
    mlp = orig.train_config(SETUPS["mnist-linear"], Defence("SLS", 0.1))
    assert lenet.start_from is not None and lenet.start_from.method is None
    assert mlp.start_from is None
    # train_model_smooth's own default (0a3826d): the runner's --learning_rate was not passed on
    assert (lenet.epochs, lenet.batch_size, lenet.lr) == (50, 100, 0.1)
    assert (lenet.patience, lenet.factor, lenet.early_stop, lenet.val_start_epoch) == (
        3, 0.5, True, 0)
    assert lenet.key() != mlp.key() and lenet.key().startswith("orig-")


def test_pgd_at_trains_as_dc3c764():
    from lslib.experiments import SETUPS, Defence

    at = orig.train_config(SETUPS["mnist-linear"], Defence("PGD-AT"))
    assert at.adversarial and (at.patience, at.factor, at.early_stop) == (4, 0.1, False)
    assert at.val_start_epoch == at.pgd_start_epoch == 20
    quick = orig.train_config(SETUPS["mnist-linear"], Defence("PGD-AT"), quick=True)
    assert quick.val_start_epoch == quick.pgd_start_epoch == 0


def test_early_stopping_rule_by_hand():
    # relative changes |1 - 2| / 2 = 0.5 and |1.5 - 1| / 1 = 0.5 (divided by the earlier loss)
    assert not orig.has_converged([2.0, 1.0, 1.5], threshold=0.49)
    assert orig.has_converged([2.0, 1.0, 1.5], threshold=0.5)
    assert not orig.has_converged([1.0, 2.0, 1.5], threshold=0.6)  # 1 and 0.25: mean 0.625
    # only the last five losses count: a large early change is forgotten
    flat = [1.0, 1.00001, 1.00002, 1.00002, 1.00003]
    assert orig.has_converged([9.0, *flat])
    assert not orig.has_converged([9.0, *flat[:-1]])
    assert not orig.has_converged([1.0])  # one loss: no change to measure (NaN in the original)
    assert orig.has_converged([1.0, 1.0])


def test_training_stops_early_when_the_validation_loss_is_flat(tmp_path):
    # lr 0: the weights never move, the validation loss is the same every epoch, and the second
    # epoch's change (0) stops the training
    config = orig.OriginalConfig(model="mlp", epochs=6, lr=0.0, train_limit=64, val_n=16,
                                 data_source="synthetic")
    _, rec = orig.train_original(config, cache=tmp_path)
    assert rec["epochs_run"] == 2 and len(rec["losses"]) == 2
    _, rec = orig.train_original(dataclasses.replace(config, early_stop=False), cache=tmp_path)
    assert rec["epochs_run"] == 6


def test_reproduce_original_quick_synthetic(tmp_path):
    from lslib.experiments import Sweep, read_results, run_sweep

    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), baselines=(), attacks=("clean", "FGSM", "DeepFool"),
                  eps=(0.2,), quick=True, data_source="synthetic")
    out = tmp_path / "o.csv"
    run_sweep(sweep, out, cache=tmp_path / "cache", progress=False, device="cpu")
    table = read_results(out)
    assert set(table["protocol"]) == {"original"}
    assert len(table) == 3 and table["accuracy"].between(0, 1).all()
    attacked = table[table["attack"] != "clean"]
    assert attacked["attack_settings"].str.contains("deepfool_readd=True").all()


def test_bug_ladder_turns_one_switch_off_at_a_time():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    model = orig.AsOriginal(net).eval()
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64) - 0.5
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct: the accuracies come from the attacks
    ladder = orig.bug_ladder(model, x, y, eps=0.05, alpha=0.4, method="standard",
                             steps={"cw": 3, "cw_bss": 2, "deepfool": 3})
    assert set(ladder["switch"]) == {*orig.SWITCH_ATTACKS, "all"}
    # the BIM clip switch acts on BIM only and the smoothed target on FGSM and BIM
    assert set(ladder.loc[ladder["switch"] == "bim_clip_at_end", "attack"]) == {"BIM"}
    one = ladder[(ladder["switch"] == "smoothed_attack_target") & (ladder["attack"] == "FGSM")]
    direct = orig.attack_accuracy(model, x, y, "FGSM", eps=0.05, alpha=0.4, method="standard",
                                  switches=Switches(smoothed_attack_target=False)).accuracy
    assert float(one["without"].iloc[0]) == direct
    assert (ladder["change"] == ladder["without"] - ladder["with_bug"]).all()


def test_training_resumes_after_an_interruption_with_the_same_result(tmp_path):
    config = orig.OriginalConfig(model="lenet-mnist", method="boltzmann", alpha=0.4, epochs=3,
                                 train_limit=200, val_n=32, data_source="synthetic")
    whole, _ = orig.train_original(config, cache=tmp_path / "a")
    _, rec = orig.train_original(config, cache=tmp_path / "b", stop_after_epochs=1)
    assert rec == {"partial": True}
    assert (tmp_path / "b" / f"{config.key()}.partial.pt").is_file()
    torch.manual_seed(123)  # a resumed process starts with other RNG states
    resumed, record = orig.train_original(config, cache=tmp_path / "b")
    assert len(record["losses"]) == 3
    assert not (tmp_path / "b" / f"{config.key()}.partial.pt").exists()
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _lenet_sweep():
    from lslib.experiments import Sweep

    return Sweep(setups=("mnist-lenet",), protocols=("original",), methods=("SLS", "ALS"),
                 alphas=(0.4,), baselines=("natural",), attacks=("clean",), quick=True,
                 data_source="synthetic")


def test_the_runner_trains_lenets_start_checkpoint_once_into_the_given_cache(
        tmp_path, monkeypatch):
    """The LeNet's natural checkpoint is a model of its own: trained once, before the three
    models that start from it, saved in ``--cache`` (not in $LSLIB_CACHE); the models trained
    from it are those of a direct ``train_original`` (which trains the checkpoint itself)."""
    from lslib._files import read_cache_entry
    from lslib.experiments import SETUPS, read_results, run_sweep

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("LSLIB_CACHE", str(elsewhere))
    sweep, cache = _lenet_sweep(), tmp_path / "cache"
    trained = []
    run_sweep(sweep, tmp_path / "o.csv", cache=cache, progress=False, device="cpu",
              log=trained.append)
    assert len(read_results(tmp_path / "o.csv")) == 3
    configs = [orig.train_config(SETUPS["mnist-lenet"], d, quick=True, data_source="synthetic")
               for d in sweep.defences()]
    start = configs[0].start_from
    assert all(c.start_from == start for c in configs)
    assert {p.name for p in cache.iterdir()} == {f"{c.key()}.pt" for c in [start, *configs]}
    assert not elsewhere.exists()  # no checkpoint, no partial state outside the given cache
    for config in configs:
        direct, _ = orig.train_original(config, cache=tmp_path / "direct")
        state, _ = read_cache_entry(cache / f"{config.key()}.pt")
        for name, value in direct.state_dict().items():
            assert torch.equal(state[name], value), (config.method, name)


@pytest.mark.parametrize("weight", [0.5, 0.75])
def test_pgd_training_gradient_is_the_originals_with_the_leaked_last_step(weight):
    """The original's closure: zero_grad, clean loss, a PGD whose every step does
    model.zero_grad() then backward() (eval mode), then backward of w clean + (1 - w)
    adversarial (0.5 in the committed source of dc3c764, 0.75 in the module compiled beside it)
    on top of what the last PGD step left in .grad. Emulated here with .backward(); lslib's
    training loss (with pgd_grad_leak) must have the same parameter gradient, and without the
    leak it must not."""
    torch.manual_seed(0)
    config = dataclasses.replace(orig.OriginalConfig(model="mlp", adversarial=True),
                                 **orig._pgd_at_training(0, weight))
    assert config.pgd_step == 0.1 and config.pgd_grad_leak
    model = config.build()
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64) - 0.5
    y = torch.randint(0, 10, (8,))
    q = orig.smooth_label(y, 0.0, None)

    # the original, step by step
    model.zero_grad()
    clean = orig.smooth_cross_entropy(model(x), q)
    model.eval()
    images = x.clone()
    for _ in range(config.pgd_steps):
        images.requires_grad_(True)
        model.zero_grad()
        orig.smooth_cross_entropy(model(images), q).backward()
        eta = torch.clamp(images + config.pgd_step * images.grad.sign() - x,
                          -config.pgd_eps, config.pgd_eps)
        images = torch.clamp(x + eta, *config.pgd_clip).detach()
    model.train()
    (weight * clean + (1 - weight) * orig.smooth_cross_entropy(model(images), q)).backward()
    want = [p.grad.clone() for p in model.parameters()]

    def ours(leak: bool) -> list[torch.Tensor]:
        model.zero_grad()
        c = dataclasses.replace(config, pgd_grad_leak=leak)
        orig._batch_loss(model, x, y, orig._smoother(c), c, adversarial=True).backward()
        return [p.grad.clone() for p in model.parameters()]

    same = [torch.allclose(a, b, rtol=1e-10, atol=1e-12)
            for a, b in zip(ours(True), want, strict=True)]
    assert all(same)
    assert not all(torch.allclose(a, b, rtol=1e-6)
                   for a, b in zip(ours(False), want, strict=True))
    with pytest.raises(ValueError, match=r"pgd_clean_weight must be in \[0, 1\], got 1.5"):
        dataclasses.replace(config, pgd_clean_weight=1.5)


def test_cache_keys_of_models_cached_before_a_field_was_added_stay_the_same():
    config = orig.OriginalConfig(model="mlp", method="standard", alpha=0.4)
    old = dict(dataclasses.asdict(config))
    del old["pgd_grad_leak"], old["pgd_clean_weight"]  # as hashed before the fields existed
    payload = json.dumps({"original": 1, **old}, sort_keys=True, default=str)
    assert config.key() == "orig-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert dataclasses.replace(config, pgd_grad_leak=False).key() != config.key()
    assert dataclasses.replace(config, pgd_clean_weight=0.75).key() != config.key()


# --------------------------------------------------------------------------------------------
# the authors' pretrained LeNet as the start checkpoint (--lenet-start)
# --------------------------------------------------------------------------------------------


def _start_weights(path, seed: int = 3, model: str = "lenet-mnist") -> dict[str, torch.Tensor]:
    """A float32 state dict saved at ``path``, as the tutorial's checkpoint is stored."""
    torch.manual_seed(seed)
    state = orig.MODELS[model]().state_dict()
    torch.save(state, path)
    return state


def test_a_start_file_is_keyed_by_its_contents_not_its_path(tmp_path):
    from lslib.experiments import SETUPS, Defence

    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    _start_weights(a)
    b.write_bytes(a.read_bytes())
    config = orig.train_config(SETUPS["mnist-lenet"], Defence("SLS", 0.1), lenet_start=a)
    start = config.start_from
    assert isinstance(start, orig.StartFile)
    assert start.sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    moved = orig.train_config(SETUPS["mnist-lenet"], Defence("SLS", 0.1), lenet_start=b)
    assert moved.key() == config.key()  # the same weights elsewhere: the same models
    assert config.key() != orig.train_config(SETUPS["mnist-lenet"], Defence("SLS", 0.1)).key()
    _start_weights(b, seed=4)
    orig._start_file.cache_clear()
    other = orig.train_config(SETUPS["mnist-lenet"], Defence("SLS", 0.1), lenet_start=b)
    assert other.key() != config.key()  # other weights: other models
    assert start.source.startswith("a weights file (sha256 ")
    assert orig.StartFile("lenet-mnist", orig.AUTHORS_LENET_SHA256, "x").source == (
        "the authors' lenet_mnist_model.pth")


def test_training_starts_from_the_start_files_weights_in_float64(tmp_path):
    path = tmp_path / "lenet.pth"
    saved = _start_weights(path)
    start = orig.StartFile.of(path)
    # no epoch: the trained model is the start file's weights, cast to float64
    config = orig.OriginalConfig(model="lenet-mnist", epochs=0, val_n=8,
                                 data_source="synthetic", start_from=start)
    model, _ = orig.train_original(config, cache=tmp_path / "cache")
    for name, value in model.state_dict().items():
        assert value.dtype == torch.float64
        assert torch.equal(value, saved[name].to(torch.float64)), name
    loaded, record = start.train_fresh(device=torch.device("cpu"))
    assert record["epochs_run"] == 0 and json.loads(record["config"])["sha256"] == start.sha256
    assert all(torch.equal(v, saved[k].double()) for k, v in loaded.state_dict().items())


def test_a_start_file_that_changed_or_is_another_model_is_refused(tmp_path):
    from lslib._files import CheckpointError

    path = tmp_path / "lenet.pth"
    _start_weights(path)
    start = orig.StartFile.of(path)
    _start_weights(path, seed=5)
    with pytest.raises(CheckpointError, match="SHA-256") as err:
        orig.read_start_file(start)
    assert str(path) in str(err.value)
    _start_weights(path, model="mlp")
    with pytest.raises(CheckpointError, match="'lenet-mnist' model"):
        orig.read_start_file(orig.StartFile.of(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="571e03a"):
        orig.read_start_file(orig.StartFile.of(path))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        orig.StartFile.of(tmp_path / "missing.pth")


def test_the_runner_starts_every_lenet_from_the_start_file(tmp_path):
    from lslib._files import read_cache_entry
    from lslib.experiments import SETUPS, Sweep, read_results, run_sweep

    path = tmp_path / "lenet.pth"
    _start_weights(path)
    sweep = dataclasses.replace(_lenet_sweep(), lenet_start=str(path))
    cache = tmp_path / "cache"
    run_sweep(sweep, tmp_path / "o.csv", cache=cache, progress=False, device="cpu")
    assert len(read_results(tmp_path / "o.csv")) == 3
    configs = [orig.train_config(SETUPS["mnist-lenet"], d, quick=True, data_source="synthetic",
                                 lenet_start=path) for d in sweep.defences()]
    start = orig.StartFile.of(path)
    assert all(c.start_from == start for c in configs)
    assert {p.name for p in cache.iterdir()} == {f"{c.key()}.pt" for c in [start, *configs]}
    for config in configs:  # the runner's models are those of a direct training
        direct, _ = orig.train_original(config, cache=tmp_path / "direct")
        state, _ = read_cache_entry(cache / f"{config.key()}.pt")
        assert all(torch.equal(state[k], v) for k, v in direct.state_dict().items())
    with pytest.raises(ValueError, match="mnist-lenet"):
        Sweep(setups=("mnist-linear",), protocols=("original",), lenet_start=str(path))
    with pytest.raises(ValueError, match="original"):
        Sweep(setups=("mnist-lenet",), protocols=("paper",), lenet_start=str(path))


def test_lenet_start_cli_errors_are_one_line(tmp_path, capsys):
    from lslib.__main__ import main

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    args = ["reproduce", "mnist-lenet", "--protocol", "original", "--out",
            str(tmp_path / "o.csv"), "--lenet-start"]
    with pytest.raises(SystemExit) as ex:  # argparse: a missing file
        main([*args, str(tmp_path / "none.pth")])
    err = capsys.readouterr().err.strip().splitlines()
    assert ex.value.code == 2 and "--lenet-start: no such file" in err[-1]
    assert main([*args, str(bad)]) == 2  # a damaged file: refused before any training
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pth" in err and "571e03a" in err
    assert not (tmp_path / "o.csv").exists()


def test_pgd_clean_weight_reaches_pgd_at_only_and_is_checked(tmp_path, capsys):
    from lslib.__main__ import main
    from lslib.experiments import SETUPS, Defence, Row, Sweep, _plan

    protocols = orig.train_config(SETUPS["mnist-linear"], Defence("PGD-AT"))
    assert protocols.pgd_clean_weight == orig.PGD_CLEAN_WEIGHT == 0.75
    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), pgd_clean_weight=0.5)  # the committed source's
    configs = {d.name: _plan(Row("mnist-linear", d, "original", "clean", 0.0), sweep)[1]
               for d in sweep.defences(SETUPS["mnist-linear"], "original")}
    assert configs["PGD-AT"] == dataclasses.replace(protocols, pgd_clean_weight=0.5)
    assert configs["natural"] == orig.train_config(SETUPS["mnist-linear"], Defence("natural"))
    assert configs["PGD-AT"].key() != protocols.key()
    for bad, match in (({"pgd_clean_weight": 1.5}, "pgd_clean_weight"),
                       ({"pgd_clean_weight": 0.75, "baselines": ("natural",)}, "baseline PGD-AT"),
                       ({"pgd_clean_weight": 0.75, "protocols": ("paper",)}, "protocol 'orig")):
        with pytest.raises(ValueError, match=match):
            Sweep(**{"setups": ("mnist-linear",), "protocols": ("original",), **bad})
    out = str(tmp_path / "o.csv")
    with pytest.raises(SystemExit) as ex:
        main(["reproduce", "mnist-linear", "--protocol", "original", "--pgd-clean-weight", "2",
              "--out", out])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and len(err.splitlines()) == 1 and "--pgd-clean-weight" in err
    assert main(["reproduce", "mnist-linear", "--protocol", "paper", "--pgd-clean-weight",
                 "0.75", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs protocol 'original'" in err


def test_pgd_at_epochs_are_those_the_authors_checkpoints_saved_and_reach_pgd_at_only(
        tmp_path, capsys):
    import pandas as pd

    from lslib.__main__ import main
    from lslib.experiments import SETUPS, Defence, Row, Sweep, _plan

    # the authors' PGD-trained checkpoints behind the tables (dc3c764) saved one validation loss
    # per epoch after the 20 natural ones: 20 + n epochs
    hist = pd.read_csv(Path(__file__).parents[1] / "results" / "mnist-authors-histories.csv")
    pgd = hist[(hist["commit"] == "dc3c764")
               & hist["key"].fillna("").str.endswith("PGD_adv_training")]
    saved = pgd.groupby("file")["entry"].count()
    assert 20 + saved["model_dict/MNIST_Linear.pt"] == orig.PGD_AT_EPOCHS["mlp"] == 69
    assert 20 + saved["model_dict/MNIST_LeNet.pt"] == orig.PGD_AT_EPOCHS["lenet-mnist"] == 39
    for setup, epochs in (("mnist-linear", 69), ("mnist-lenet", 39)):
        assert orig.train_config(SETUPS[setup], Defence("PGD-AT")).epochs == epochs
        assert orig.train_config(SETUPS[setup], Defence("SLS", 0.1),
                                 pgd_epochs=50).epochs == orig.TRAINING_EPOCHS[
                                     SETUPS[setup].model]
        assert orig.train_config(SETUPS[setup], Defence("PGD-AT"), quick=True,
                                 pgd_epochs=69).epochs == 1
    # the runner's default gives back the key of the MLP trained before (results/ rows hold it)
    assert orig.train_config(SETUPS["mnist-linear"], Defence("PGD-AT"),
                             pgd_epochs=50).key() == "orig-733c38df0461df80"
    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), pgd_epochs=50)
    configs = {d.name: _plan(Row("mnist-linear", d, "original", "clean", 0.0), sweep)[1]
               for d in sweep.defences(SETUPS["mnist-linear"], "original")}
    assert configs["PGD-AT"].epochs == 50 and configs["SLS"].epochs == 10
    for bad, error, match in (
            ({"pgd_epochs": 0}, ValueError, "pgd_epochs must be an integer >= 1, got 0"),
            ({"pgd_epochs": 2.5}, TypeError, "pgd_epochs must be"),
            ({"pgd_epochs": True}, TypeError, "pgd_epochs must be"),
            ({"pgd_epochs": 50, "baselines": ("natural",)}, ValueError, "pgd_epochs is the"),
            ({"pgd_epochs": 50, "protocols": ("paper",)}, ValueError, "protocol 'original'")):
        with pytest.raises(error, match=match):
            Sweep(**{"setups": ("mnist-linear",), "protocols": ("original",), **bad})
    out = str(tmp_path / "o.csv")
    with pytest.raises(SystemExit) as ex:
        main(["reproduce", "mnist-linear", "--protocol", "original", "--pgd-epochs", "0",
              "--out", out])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and len(err.splitlines()) == 1 and "--pgd-epochs" in err


def test_epochs_shorten_the_smoothing_and_natural_models_only(tmp_path, capsys):
    """--epochs N: the smoothing and natural models train for at most N epochs, and a model so
    trained is the first N epochs of the 50-epoch run (the scheduler and the early stop see
    only the past), so a shorter run is a snapshot of the longer one. PGD-AT and the LeNet's
    natural start keep their own epochs. The default is the set-up's length, 10 on the MLP and
    50 on the LeNet, and gives the keys of the files that ran at those lengths; --epochs 50
    gives back the MLPs first trained for the runner's default."""
    import pandas as pd

    from lslib.__main__ import _epochs_suffix, main
    from lslib.experiments import SETUPS, Defence, Row, Sweep, _plan

    results = Path(__file__).parents[1] / "results"

    def sls_key(file: str) -> str:
        rows = pd.read_csv(results / file)
        return rows[(rows["defence"] == "SLS") & (rows["alpha"] == 0.4)]["model_key"].iloc[0]

    linear, lenet = SETUPS["mnist-linear"], SETUPS["mnist-lenet"]
    assert orig.TRAINING_EPOCHS == {"mlp": 10, "lenet-mnist": 50} and orig.RUNNER_EPOCHS == 50
    assert orig.train_config(linear, Defence("SLS", 0.4)).key() == sls_key(
        "mnist-linear-original-epochs-10.csv")
    assert orig.train_config(linear, Defence("SLS", 0.4), epochs=50).key() == sls_key(
        "mnist-linear-original.csv")
    start = orig.StartFile("lenet-mnist", orig.AUTHORS_LENET_SHA256, "lenet_mnist_model.pth")
    assert orig.train_config(lenet, Defence("SLS", 0.4)).epochs == 50
    assert dataclasses.replace(orig.train_config(lenet, Defence("SLS", 0.4)),
                               start_from=start).key() == sls_key(
        "mnist-lenet-original-authors-start.csv")
    # the default output names the length where it is not the runner's
    assert _epochs_suffix(["mnist-linear"]) == "-epochs-10"
    assert _epochs_suffix(["mnist-lenet"]) == _epochs_suffix(["mnist-linear"], 50) == ""
    assert _epochs_suffix(["mnist-lenet"], 7) == "-epochs-7"
    assert _epochs_suffix(["mnist-linear", "mnist-lenet"]) == "-epochs-10-50"
    assert orig.train_config(linear, Defence("SLS", 0.4), epochs=10).epochs == 10
    assert orig.train_config(linear, Defence("natural"), epochs=10).epochs == 10
    assert orig.train_config(linear, Defence("PGD-AT"), epochs=10).epochs == 69
    assert orig.train_config(linear, Defence("SLS", 0.4), quick=True, epochs=10).epochs == 1
    lenet_sls = orig.train_config(lenet, Defence("SLS", 0.4), epochs=10)
    assert lenet_sls.epochs == 10 and lenet_sls.start_from.epochs == 50
    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), epochs=10)
    configs = {d.name: _plan(Row("mnist-linear", d, "original", "clean", 0.0), sweep)[1]
               for d in sweep.defences(linear, "original")}
    assert configs["SLS"].epochs == configs["natural"].epochs == 10
    assert configs["PGD-AT"].epochs == 69
    # a 3-epoch run is the first 3 epochs of a 5-epoch one (synthetic data, no early stop)
    short = dataclasses.replace(orig.train_config(linear, Defence("SLS", 0.4),
                                                  data_source="synthetic", epochs=3),
                                early_stop=False)
    model3, rec3 = orig.train_original(short, cache=tmp_path)
    model5, rec5 = orig.train_original(dataclasses.replace(short, epochs=5), cache=tmp_path)
    assert rec3["epochs_run"] == 3 and rec5["epochs_run"] == 5
    assert rec3["losses"] == rec5["losses"][:3]
    assert any(not torch.equal(a, b) for a, b in zip(model3.state_dict().values(),
                                                     model5.state_dict().values(), strict=True))
    for bad, error, match in (
            ({"epochs": 0}, ValueError, "epochs must be an integer >= 1, got 0"),
            ({"epochs": 2.5}, TypeError, "epochs must be"),
            ({"epochs": 10, "protocols": ("paper",)}, ValueError, "protocol 'original'")):
        with pytest.raises(error, match=match):
            Sweep(**{"setups": ("mnist-linear",), "protocols": ("original",), **bad})
    out = str(tmp_path / "o.csv")
    with pytest.raises(SystemExit) as ex:
        main(["reproduce", "mnist-linear", "--protocol", "original", "--epochs", "0",
              "--out", out])
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and len(err.splitlines()) == 1 and "--epochs" in err
    assert main(["reproduce", "mnist-linear", "--protocol", "paper", "--epochs", "10",
                 "--out", out]) == 2
    assert "epochs is the original protocol's" in capsys.readouterr().err


def test_a_pgd_at_run_of_n_epochs_saves_n_minus_20_validation_losses(tmp_path):
    """The inference PGD_AT_EPOCHS rests on, made by our training: validation once per epoch
    after the 20 natural ones, no early stop."""
    from lslib.experiments import SETUPS, Defence

    config = orig.train_config(SETUPS["mnist-linear"], Defence("PGD-AT"),
                               data_source="synthetic", pgd_epochs=23)
    _, record = orig.train_original(config, cache=tmp_path)
    assert config.epochs == record["epochs_run"] == 23 and len(record["losses"]) == 3


def test_test_images_names_the_slices_the_rows_attacked():
    import pandas as pd

    def rows(**n_of):
        return pd.DataFrame({"attack": list(n_of), "n": list(n_of.values())})

    assert orig.test_images(rows(clean=9000, FGSM=9000, CW=1000)) == \
        "1,000-9,999 (CW: 1,000-1,999)"
    assert orig.test_images(rows(clean=1000, FGSM=1000, CW=1000)) == "1,000-1,999"
    assert orig.test_images(rows(FGSM=9000)) == "1,000-9,999"
    with pytest.raises(ValueError, match="different slices"):
        orig.test_images(rows(clean=9000, FGSM=1000))
    mixed = pd.DataFrame({"attack": ["FGSM", "FGSM"], "n": [1000, 9000]})
    with pytest.raises(ValueError, match="within an attack"):
        orig.test_images(mixed)
