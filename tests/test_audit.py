"""lslib.audit against independent truths: the Square attack and the AutoAttack wrapper reach the
closed-form L-inf robust accuracy of a linear model (the margin over the L1 norm of the weight
difference, see lslib.squeeze); our Square is at least as strong as the reference implementation
(pyautoattack's) at the same eps and queries; the checklist passes a normally trained network,
flags the same network behind a zero-gradient input quantisation (masking by construction), and
flags attacks built to be weak where the sign says they are."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lslib.attacks import AttackResult, bim, fgsm
from lslib.audit import (
    AUTOATTACK_CHEAP,
    PROTOCOL_ATTACKS,
    SIGNS,
    AuditSettings,
    audit,
    autoattack,
    autoattack_steps,
    checklist,
    compare_protocols,
    decode_points,
    encode_points,
    square_linf,
    transfer_attack,
)
from lslib.models import LinearModel
from lslib.squeeze import linear_radius

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS_AA = settings(max_examples=25, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.too_slow])


def _linear_problem():
    torch.manual_seed(0)
    m = LinearModel(in_features=64, num_classes=4, mean=0.5, std=0.25).double()
    # inside [0.3, 0.7]: for eps <= 0.3 the [0, 1] box never binds, so the radius is exact
    x = 0.3 + 0.4 * torch.rand(200, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y = m(x).argmax(1)
    y[:20] = (y[:20] + 1) % 4  # some misclassified points (robust accuracy counts them as lost)
    return m, x, y


@pytest.mark.parametrize("eps", [0.005, 0.01, 0.02])
def test_square_reaches_the_closed_form_robust_accuracy_of_a_linear_model(eps):
    m, x, y = _linear_problem()
    exact = float((linear_radius(m, x, y) > eps).double().mean())
    res = square_linf(m, x, y, eps, queries=1000, generator=torch.Generator().manual_seed(1))
    found = float((~res.success).double().mean())
    assert exact <= found + 1e-12  # no attack beats the exact minimum
    assert found <= exact + 0.025


def test_square_stays_in_the_ball_and_the_box_and_reports_success_exactly():
    m, x, y = _linear_problem()
    x = x.clone()
    x[:, :, :2] = 0.0  # pixels on the box edge
    x[:, :, -2:] = 1.0
    x0 = x.clone()
    res = square_linf(m, x, y, 0.05, queries=50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x0)
    assert res.adversarial.shape == x.shape and res.adversarial.dtype == x.dtype
    assert (res.adversarial - x).abs().max() <= 0.05 + 1e-12
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    with torch.no_grad():
        assert torch.equal(res.success, m(res.adversarial).argmax(1) != y)
    assert torch.allclose(res.norms, (res.adversarial - x).flatten(1).abs().amax(1))
    zero = square_linf(m, x, y, 0.0, queries=20)
    assert torch.equal(zero.adversarial, x)
    with torch.no_grad():
        assert torch.equal(zero.success, m(x).argmax(1) != y)


def test_square_rejects_bad_inputs():
    m, x, y = _linear_problem()
    with pytest.raises(ValueError):
        square_linf(m, x.flatten(1), y, 0.1)
    with pytest.raises(ValueError):
        square_linf(m, x, y, -0.1)
    with pytest.raises(ValueError):
        square_linf(m, x + 1.0, y, 0.1)
    with pytest.raises(ValueError):
        square_linf(m, x, y[:-1], 0.1)


# ------------------------------------------------------------------------------------------------
# the checklist on a small network, honest and masked
# ------------------------------------------------------------------------------------------------


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(42))
    y = torch.randint(0, 3, (n,), generator=g)
    x = (protos[y] + 0.25 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return x, y


def _trained_mlp(seed: int, x, y) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


class _Quantised(nn.Module):
    """Rounds the input to multiples of 1/4 first: torch.round's gradient is zero everywhere, so
    every gradient attack sees a flat loss (gradient masking by construction)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 4) / 4)


@pytest.fixture(scope="module")
def nets():
    xt, yt = _data(1000, 0)
    return _trained_mlp(0, xt, yt), _trained_mlp(1, xt, yt), _data(200, 1)


def test_audit_passes_a_normal_network(nets):
    model, source, (x, y) = nets
    rep = audit(model, x, y, eps=0.25, source_model=source, square_queries=500)
    assert [s.name for s in rep.signs] == list(SIGNS)
    assert rep.passed, str(rep)
    assert rep.clean_accuracy > 0.95
    assert rep.curves["white_box"][0] == pytest.approx(rep.clean_accuracy)
    assert rep.curves["white_box"][-1] == 0.0


def test_audit_flags_a_gradient_masked_network(nets):
    model, source, (x, y) = nets
    masked = _Quantised(model)
    rep = audit(masked, x, y, eps=0.25, source_model=source, square_queries=500)
    assert not rep.passed
    failed = {s.name for s in rep.signs if not s.passed}
    assert {"transfer_beats_white_box", "gradient_free_beats_white_box",
            "no_zero_at_large_eps"} <= failed, str(rep)
    assert rep.accuracy["white_box"] > 0.9 > 0.2 > rep.accuracy["square"]
    assert "FAIL" in str(rep) and len(rep.rows()) == len(SIGNS)
    with pytest.raises(KeyError):
        rep.sign("nope")


def _noop(model, x, y, eps):
    with torch.no_grad():
        success = model(x).argmax(1) != y
    return AttackResult(adversarial=x.clone(), success=success, norms=torch.zeros(x.shape[0]))


def _weak_when_large(model, x, y, eps):
    """BIM that gives up above eps = 0.3: accuracy rises again along eps (not monotone)."""
    return bim(model, x, y, eps) if eps <= 0.3 else _noop(model, x, y, eps)


def test_audit_flags_single_step_beating_iterative_and_non_monotone_curves(nets):
    model, _, (x, y) = nets
    rep = audit(model, x, y, eps=0.25, white_box=_noop, single_step=fgsm, square_queries=100)
    assert not rep.sign("single_step_beats_iterative").passed
    assert rep.sign("transfer_beats_white_box").detail.startswith("not run")
    rep = audit(model, x, y, eps=0.25, white_box=_weak_when_large, square_queries=100)
    assert not rep.sign("not_monotone_in_eps").passed
    assert rep.sign("not_monotone_in_eps").values["rise"] > 0.5


def test_transfer_success_is_judged_on_the_target(nets):
    model, source, (x, y) = nets
    attack = functools.partial(bim, eps=0.25, steps=10)
    res = transfer_attack(source, model, x, y, attack)
    crafted = attack(source, x, y)
    assert torch.equal(res.adversarial, crafted.adversarial)
    with torch.no_grad():
        assert torch.equal(res.success, model(res.adversarial).argmax(1) != y)


@pytest.mark.data
def test_the_command_line_audits_a_saved_model(data_root, tmp_path, capsys):
    import json

    from lslib.audit import main

    torch.manual_seed(0)
    model = LinearModel()
    path = tmp_path / "linear.pt"
    torch.save({"state_dict": model.state_dict(), "record": {}}, path)
    torch.save(LinearModel().state_dict(), tmp_path / "source.pt")
    out = tmp_path / "report.json"
    assert main(["--model", "linear", "--checkpoint", str(path), "--limit", "20", "--eps", "0.1",
                 "--square-queries", "20", "--data-root", str(data_root), "--device", "cpu",
                 "--source-model", "linear", "--source-checkpoint", str(tmp_path / "source.pt"),
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["signs"]] == list(SIGNS)
    assert all(s["name"] in printed for s in report["signs"])
    assert report["eps"] == 0.1 and report["curves"]["white_box"][-1] <= 1.0
    with pytest.raises(SystemExit):
        main(["--model", "linear", "--checkpoint", str(path), "--eps", "0.1",
              "--source-model", "linear"])


# ------------------------------------------------------------------------------------------------
# AutoAttack (pyautoattack) and the reference Square
# ------------------------------------------------------------------------------------------------

pyautoattack = pytest.importorskip("pyautoattack")


@pytest.mark.parametrize("eps", [0.005, 0.02])
def test_autoattack_reaches_the_closed_form_robust_accuracy_of_a_linear_model(eps):
    m, x, y = _linear_problem()  # float64, 4 classes: APGD-T's DLR loss needs 4
    exact = float((linear_radius(m, x, y) > eps).double().mean())
    res = autoattack(m, x, y, eps, version="custom", attacks=AUTOATTACK_CHEAP.split("+"),
                     n_iter=50)
    found = float((~res.success).double().mean())
    assert exact <= found + 1e-12
    assert found <= exact + 0.015


def test_autoattack_standard_ensemble_runs_and_never_beats_the_exact_minimum(capfd):
    m, x, y = _linear_problem()
    x, y = x[:40], y[:40]
    eps = 0.02
    exact = float((linear_radius(m, x, y) > eps).double().mean())
    res = autoattack(m, x, y, eps, version="standard", n_iter=10, square_queries=50)
    assert capfd.readouterr() == ("", "")
    found = float((~res.success).double().mean())
    assert exact <= found + 1e-12 and found <= exact + 0.05
    with pytest.raises(ValueError):
        autoattack(m, x, y, eps, version="fast")


def test_autoattack_keeps_the_attack_contract_and_is_silent(capfd):
    m, x, y = _linear_problem()
    m.train()
    x0 = x.clone()
    rng = torch.random.get_rng_state()
    res = autoattack(m, x, y, 0.02, version="custom", attacks=("apgd-ce",), n_iter=20,
                     device="cpu")
    assert capfd.readouterr() == ("", "")
    assert m.training and torch.equal(x, x0)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert res.adversarial.dtype == x.dtype and res.adversarial.shape == x.shape
    assert (res.adversarial - x).abs().max() <= 0.02 + 1e-9
    assert res.adversarial.min() >= 0 and res.adversarial.max() <= 1
    with torch.no_grad():
        assert torch.equal(res.success, m(res.adversarial).argmax(1) != y)
    assert not autoattack(m, x, y, 0.0).success[20:].any()  # eps 0: only the misclassified
    with pytest.raises(ValueError):
        autoattack(m, x, y, 0.02, version="custom", attacks=("pgd",))
    with pytest.raises(ValueError):
        autoattack(m, x, y, -0.1)


def test_autoattack_refuses_the_dlr_losses_below_four_classes(nets):
    model, _, (x, y) = nets
    with pytest.raises(ValueError, match="4 classes"):
        autoattack(model, x, y, 0.1)
    res = autoattack(model, x, y, 0.25, version="custom", attacks=("apgd-ce",), n_iter=20)
    assert float((~res.success).double().mean()) < 0.1


@pytest.mark.parametrize("eps", [0.15, 0.25])
def test_our_square_is_at_least_as_strong_as_the_reference_square(nets, eps):
    """pyautoattack's SquareAttack (Croce & Hein's code of Andriushchenko et al.) at the same eps,
    queries and p_init: our robust accuracy may not be higher than the reference's."""
    from pyautoattack.square import SquareAttack

    model, _, (x, y) = nets
    with torch.random.fork_rng():
        ref = SquareAttack(model, norm="Linf", n_queries=300, eps=eps, p_init=0.8, seed=0,
                           device="cpu", verbose=False).perturb(x, y)
    with torch.no_grad():
        ref_acc = float((model(ref).argmax(1) == y).double().mean())
    ours = square_linf(model, x, y, eps, queries=300, generator=torch.Generator().manual_seed(0))
    our_acc = float((~ours.success).double().mean())
    assert our_acc <= ref_acc + 0.02, (our_acc, ref_acc)


def test_audit_uses_autoattack_where_asked(nets):
    model, _, (x, y) = nets
    rep = audit(model, x, y, eps=0.25, square_queries=50, use_autoattack=True,
                autoattack_iters=20)
    aa = rep.sign("autoattack_beats_white_box")
    assert aa.passed and "apgd-ce" in aa.detail and "autoattack" in rep.accuracy
    masked = audit(_Quantised(model), x, y, eps=0.25, square_queries=50, use_autoattack=True,
                   autoattack_iters=20)
    assert masked.accuracy["autoattack"] > 0.9  # a gradient attack: masked like the others
    off = audit(model, x, y, eps=0.25, square_queries=50, use_autoattack=False)
    assert off.sign("autoattack_beats_white_box").detail.startswith("not run")


def test_compare_protocols_rows(nets):
    model, source, (x, y) = nets
    xs, ys = x[:60], y[:60]
    settings = AuditSettings(pgd_steps=10, pgd_restarts=2, square_queries=50, autoattack_iters=10)
    rows = compare_protocols({"a": model}, xs, ys, eps_grid=[0.0, 0.25], source=source,
                             settings=settings, smoothed_losses={"a": torch.nn.CrossEntropyLoss(
                                 reduction="none")})
    got = {(r["attack"], r["eps"]): r["accuracy"] for r in rows}
    # 3 classes: no DLR loss, AutoAttack is APGD-CE alone (one step row)
    assert {a for a, _ in got} == set(PROTOCOL_ATTACKS) | {"AutoAttack after APGD-CE"}
    assert got[("AutoAttack after APGD-CE", 0.25)] == got[("AutoAttack", 0.25)]
    for r in rows:  # the stored points are the accuracy
        assert decode_points(r["robust_points"], r["n"]).sum() / r["n"] == r["accuracy"]
    with torch.no_grad():
        clean = float((model(xs).argmax(1) == ys).double().mean())
    assert all(got[(a, 0.0)] == pytest.approx(clean) for a in PROTOCOL_ATTACKS)
    strong = [got[(a, 0.25)] for a, p in PROTOCOL_ATTACKS.items() if p == "strong"]
    assert got[("worst case", 0.25)] == min(strong)
    # without pyautoattack's Square on its own, AutoAttack still runs
    lean = compare_protocols({"a": model}, xs, ys, eps_grid=[0.25], source=source,
                             settings=dataclasses.replace(settings, reference_square=False))
    assert {r["attack"] for r in lean} == {a for a, _ in got} - {"Square (pyautoattack)"}
    # cross-entropy as the "smoothed" loss: the paper's rows are the strong FGSM / BIM-10 rows
    assert got[("FGSM, smoothed target", 0.25)] == got[("FGSM", 0.25)]
    assert got[("BIM-10, smoothed target", 0.25)] == got[("BIM-10", 0.25)]


def test_the_command_line_needs_a_model_or_a_setup():
    from lslib.audit import main

    with pytest.raises(SystemExit):
        main(["--setup", "mnist-linear"])  # no --out
    with pytest.raises(SystemExit):
        main(["--eps", "0.1"])


def test_the_setup_audit_writes_its_tables_and_provenance(tmp_path):
    import json

    from lslib.audit import _write_audit, audit_setup
    from lslib.experiments import provenance

    with pytest.raises(ValueError, match="unknown setup"):
        audit_setup("mnist-nope")
    rows = [{"model": "a", "attack": "FGSM", "eps": 0.1, "accuracy": 0.5,
             "robust_points": "0x10"}]
    signs = [{"model": "a", "sign": SIGNS[0], "passed": True, "detail": "", "eps": 0.1}]
    out = tmp_path / "audit.csv"
    _write_audit(str(out), rows, signs, "python -m lslib audit --setup x", "now", 1.5,
                 {"device": "cpu"}, provenance("cpu"))
    assert (tmp_path / "audit-signs.csv").read_text().startswith("model,sign,passed")
    meta = json.loads((tmp_path / "audit.csv.meta.json").read_text())
    assert meta["command"].startswith("python -m lslib audit") and meta["wall_seconds"] == 1.5
    assert {"git_commit", "lslib_version", "device", "source_hash"} <= set(meta)
    from lslib.audit import read_audit

    table, sign_table, meta2 = read_audit(out)  # the points stay text, never a number
    assert table["robust_points"].tolist() == ["0x10"] and meta2 == meta
    assert sign_table["sign"].tolist() == [SIGNS[0]]


def test_the_setup_audit_resumes_from_its_journal_with_the_same_rows(tmp_path, data_root):
    # a run killed after its first model resumes with only the second, and gives the rows of
    # the uninterrupted run (every random choice is seeded per budget, not per position)
    from lslib.audit import AuditSettings, audit_setup

    kw = dict(n=40, eps=(0.2,), eps_grid=(0.1, 0.3), quick=True, seed=0,
              defences=(("natural", None, None), ("ALS", 0.4, None)),
              settings=AuditSettings(pgd_steps=5, pgd_restarts=1, square_queries=20,
                                     autoattack_iters=5, audit_queries=20,
                                     autoattack=AUTOATTACK_CHEAP),
              cache=str(tmp_path / "cache"), data_root=str(data_root), device="cpu")

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    full_journal = tmp_path / "full.jsonl"
    rows, signs = audit_setup(**kw, journal=full_journal)
    assert {r["model"] for r in rows} == {"natural", "ALS 0.4"}
    lines = full_journal.read_text().splitlines()
    assert len(lines) == 2  # one entry per model
    partial = tmp_path / "partial.jsonl"
    partial.write_text(lines[0] + "\n" + '{"key": "torn')  # killed mid-append of the second
    seen: list[str] = []
    # journal_only: the first model's rows, nothing attacked
    rows_j, signs_j = audit_setup(**kw, journal=partial, journal_only=True, log=seen.append)
    assert not any(m.startswith(("natural", "ALS")) for m in seen)  # nothing attacked
    assert strip(rows_j) == strip([r for r in rows if r["model"] == "natural"])
    assert signs_j == [s for s in signs if s["model"] == "natural"]
    seen.clear()
    rows2, signs2 = audit_setup(**kw, journal=partial, log=seen.append)
    assert seen and all(m.startswith("ALS 0.4") for m in seen)  # only the second model ran
    assert strip(rows2) == strip(rows) and signs2 == signs
    seen.clear()
    resumed: list[dict] = []
    rows3, signs3 = audit_setup(**kw, journal=full_journal, log=seen.append, resumed=resumed)
    assert seen == [] and strip(rows3) == strip(rows) and signs3 == signs
    # what was read back says so, with the provenance its entry recorded when it was computed
    assert [r["model"] for r in resumed] == ["natural", "ALS 0.4"]
    from lslib.experiments import provenance

    assert all(r["provenance"]["git_commit"] == provenance()["git_commit"]
               and r["provenance"]["finished"] for r in resumed)
    # other settings do not reuse the journal's entries
    rows4, _ = audit_setup(**{**kw, "n": 30}, journal=full_journal, log=seen.append)
    assert seen and {r["n"] for r in rows4 if "n" in r} == {30}


# ------------------------------------------------------------------------------------------------
# the standard ensemble: the same points as one direct call of pyautoattack, inside the exact box
# ------------------------------------------------------------------------------------------------


def _ten_class_problem(n: int = 60):
    g = torch.Generator().manual_seed(3)
    protos = torch.rand(10, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (400 + n,), generator=g)
    x = (protos[y] + 0.3 * torch.randn(400 + n, 1, 8, 8, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(m(x[:400]), y[:400]).backward()
        opt.step()
    return m.eval(), x[400:], y[400:]


def test_the_standard_ensemble_fools_the_points_one_direct_call_fools(capfd):
    """autoattack_steps runs the four attacks one at a time: it must find every point that one
    direct ``run_standard_evaluation`` call of pyautoattack fools (same seed, batches, budgets;
    the budgets reduced here for time), and say which attack fooled which point."""
    from pyautoattack import AutoAttack

    m, x, y = _ten_class_problem()
    eps, iters, queries = 0.15, 10, 100
    res, steps = autoattack_steps(m, x, y, eps, n_iter=iters, square_queries=queries,
                                  batch_size=25)
    assert capfd.readouterr() == ("", "")
    assert list(steps) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    with torch.random.fork_rng():
        aa = AutoAttack(m, norm="Linf", eps=eps, seed=0, device="cpu", version="standard")
        for apgd in (aa.apgd, aa.apgd_targeted):
            apgd.n_iter = apgd.n_iter_orig = iters
            apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = 2, 1, 1
        aa.fab.n_iter, aa.square.n_queries = iters, queries
        aa.logger.disabled = True
        xa, _ = aa.run_standard_evaluation(x, y, batch_size=25)
    capfd.readouterr()
    with torch.no_grad():
        direct = m(xa).argmax(1) != y
        clean = m(x).argmax(1) == y
    assert int((direct & ~res.success).sum()) == 0
    assert 0 < int(res.success.sum()) < len(y)  # a case where the attacks have work to do
    fooled = torch.stack(list(steps.values()))
    assert bool((fooled.sum(0) <= 1).all())  # each point fooled first by one attack
    assert torch.equal(fooled.any(0), res.success & clean)
    assert float((xa - x).abs().max()) >= eps  # the package's own result may touch the edge


@SETTINGS_AA
@given(eps=st.floats(0.001, 0.5, allow_nan=False), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_every_adversarial_of_the_audit_lies_in_the_exact_ball_and_the_box(eps, seed, dtype):
    """Property: AutoAttack (standard, reduced budgets), both Square attacks and every row of
    compare_protocols hand back points with |adv - x| <= eps computed in x's dtype, in [0, 1]."""
    from lslib._attack_base import linf_box as _linf_box
    from lslib.audit import _reference_square

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5)).to(dtype)
    x = torch.rand(12, 1, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=dtype)  # pixels on the edges of [0, 1]
    y = torch.randint(0, 5, (12,), generator=g)
    e = float(torch.tensor(eps, dtype=dtype))
    for res in (autoattack(m, x, y, eps, n_iter=3, square_queries=10, seed=seed),
                square_linf(m, x, y, eps, queries=10, generator=g),
                _reference_square(m, x, y, eps, 10, seed)):
        adv = res.adversarial
        assert adv.dtype == x.dtype and adv.min() >= 0 and adv.max() <= 1
        assert bool(((adv - x).abs() <= e).all())  # as computed in x's dtype: exact
        lo, hi = _linf_box(x, eps)
        assert bool(((adv >= lo) & (adv <= hi)).all())
        with torch.no_grad():
            assert torch.equal(res.success, m(adv).argmax(1) != y)


def test_points_encode_and_decode():
    g = torch.Generator().manual_seed(0)
    for n in (0, 1, 7, 500):
        mask = torch.rand(n, generator=g) < 0.5
        assert torch.equal(decode_points(encode_points(mask), n), mask)
    assert encode_points(torch.tensor([True, False, False, False, True])) == "0x11"


def test_the_checklist_from_the_rows_flags_masking_and_passes_an_honest_network(nets):
    model, source, (x, y) = nets
    settings = AuditSettings(pgd_steps=10, pgd_restarts=2, square_queries=100,
                             autoattack_iters=10)
    grid = [0.0, 0.25, 1.0]
    rows = compare_protocols({"honest": model, "masked": _Quantised(model)}, x[:80], y[:80],
                             eps_grid=grid, source=source, settings=settings)
    honest = {s.name: s for s in checklist([r for r in rows if r["model"] == "honest"], 0.25)}
    masked = {s.name: s for s in checklist([r for r in rows if r["model"] == "masked"], 0.25)}
    assert set(honest) == set(SIGNS) == set(masked)
    assert all(s.passed for s in honest.values()), honest
    assert not masked["gradient_free_beats_white_box"].passed
    assert not masked["transfer_beats_white_box"].passed
    assert not masked["no_zero_at_large_eps"].passed
    # the numbers are those of the rows
    at = {(r["model"], r["attack"], r["eps"]): r["accuracy"] for r in rows}
    gap = at[("masked", "PGD, many steps + restarts", 0.25)] - at[
        ("masked", "transfer from natural", 0.25)]
    assert masked["transfer_beats_white_box"].values["difference"] == pytest.approx(gap)
    with pytest.raises(ValueError, match="one model"):
        checklist(rows, 0.25)
    with pytest.raises(ValueError, match="no 'PGD"):
        checklist([r for r in rows if r["model"] == "honest"], 0.3)
