"""lslib.attacks against foolbox 3.3.x as the reference, on a small model trained here.

The model is an MLP trained in a few seconds on synthetic 10-class "images" (class prototypes
plus noise, clipped to [0, 1], so that about a third of the pixels are exactly 0), so the
comparison needs no data set and always runs. The same model, inputs and settings go to both
libraries; foolbox gets a frozen copy (its backward would otherwise accumulate parameter
gradients into the model).

Medians of L2 norms are taken over the clean-correct points with +inf where an attack failed,
so that more successes can only lower them. foolbox's CW returns an all-zero image where it
failed; such points are counted as failures, whatever the model says about the zero image.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lslib import attacks as A

fb = pytest.importorskip("foolbox", minversion="3.3", reason="foolbox is a test dependency")

K, SIDE, N_TEST = 10, 10, 200


@pytest.fixture(scope="module")
def problem():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread, immune to a busy CPU
    try:
        g = torch.Generator().manual_seed(0)
        protos = (torch.rand(K, 1, SIDE, SIDE, generator=g) < 0.35).float()
        protos = protos * (0.5 + 0.5 * torch.rand(K, 1, SIDE, SIDE, generator=g))

        def sample(n):
            y = torch.randint(0, K, (n,), generator=g)
            x = (protos[y] + 1.0 * torch.randn(n, 1, SIDE, SIDE, generator=g)).clamp(0, 1)
            return x, y

        xtr, ytr = sample(3000)
        x, y = sample(N_TEST)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 64), nn.ReLU(),
                              nn.Linear(64, K))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(150):
            loss = nn.functional.cross_entropy(model(xtr), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        assert 0.8 < float(clean.double().mean()) < 1.0  # a real but imperfect classifier
        frozen = copy.deepcopy(model).requires_grad_(False)
        fmodel = fb.PyTorchModel(frozen, bounds=(0, 1), device="cpu")
        yield model, fmodel, x, y, clean
    finally:
        torch.set_num_threads(before)


def median_with_failures(norms, success, clean):
    v = torch.where(success, norms.double(), torch.full_like(norms.double(), float("inf")))
    return float(v[clean].median())


@pytest.mark.parametrize("eps", [0.02, 0.05, 0.1])
def test_fgsm_identical_to_foolbox(problem, eps):
    model, fmodel, x, y, _ = problem
    ours = A.fgsm(model, x, y, eps)
    _, theirs, success = fb.attacks.LinfFastGradientAttack(random_start=False)(
        fmodel, x, y, epsilons=eps)
    assert torch.equal(ours.success, success)
    diff = (ours.adversarial - theirs).abs()
    # identical, except where foolbox's float32 rounding put the pixel one ulp OUTSIDE the
    # eps-ball: lslib keeps every pixel exactly inside it
    assert float(diff.max()) <= torch.finfo(torch.float32).eps / 2
    differ = diff > 0
    assert bool(((theirs - x).abs()[differ] > eps).all())
    assert bool(((ours.adversarial - x).abs() <= eps).all())


@pytest.mark.parametrize("eps", [0.03, 0.06, 0.1])
def test_bim_same_success_rate_as_foolbox(problem, eps):
    model, fmodel, x, y, _ = problem
    ours = A.bim(model, x, y, eps, step_size=0.2 * eps, steps=10)
    _, _, success = fb.attacks.LinfBasicIterativeAttack(
        abs_stepsize=0.2 * eps, steps=10, random_start=False)(fmodel, x, y, epsilons=eps)
    assert abs(float(ours.success.double().mean()) - float(success.double().mean())) <= 0.01


def test_deepfool_at_least_as_strong_as_foolbox(problem):
    model, fmodel, x, y, clean = problem
    ours = A.deepfool(model, x, y, steps=50, overshoot=0.02, candidates=10)
    _, theirs, success = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)(
        fmodel, x, y, epsilons=None)
    norms = (theirs - x).flatten(1).norm(dim=1)
    assert int(ours.success.sum()) >= int(success.sum())
    ours_med = median_with_failures(ours.norms, ours.success, clean)
    theirs_med = median_with_failures(norms, success, clean)
    assert ours_med <= 1.05 * theirs_med


@pytest.mark.parametrize("steps, bss", [(100, 5), (200, 6)])
def test_cw_at_least_as_strong_as_foolbox(problem, steps, bss):
    model, fmodel, x, y, clean = problem
    ours = A.carlini_wagner_l2(model, x, y, binary_search_steps=bss, steps=steps, lr=0.01,
                               initial_const=1e-3, kappa=0.0, abort_early=True)
    attack = fb.attacks.L2CarliniWagnerAttack(binary_search_steps=bss, steps=steps,
                                              stepsize=0.01, confidence=0.0,
                                              initial_const=1e-3, abort_early=True)
    _, theirs, success = attack(fmodel, x, y, epsilons=None)
    found = success & (theirs != 0).flatten(1).any(1)  # foolbox's failures are zero images
    found |= ~clean  # its zero-image placeholder hides its (trivial) clean-error "successes"
    norms = torch.where(clean, (theirs - x).flatten(1).norm(dim=1), torch.zeros(len(x)))
    assert int(ours.success.sum()) >= int(found.sum())
    ours_med = median_with_failures(ours.norms, ours.success, clean)
    theirs_med = median_with_failures(norms, found, clean)
    assert ours_med <= 1.05 * theirs_med
