"""The graded exercise (lslib.grade): the paper's FGSM on the smoothed target does not pass and a
true-label attack does, on the quick-size defence; the grader refuses what is outside the rules
and measures the accuracy on its own, unmodified copy of the defence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lslib import grade as G
from lslib.attacks import bim, fgsm
from lslib.losses import SmoothCrossEntropyLoss

pytestmark = [pytest.mark.data, pytest.mark.usefixtures("one_thread")]

ACCURACY = "accuracy at most the target"


@pytest.fixture(scope="module")
def quick(data_root):
    """The quick-size challenge (the book's quick mode), its defence and its test points."""
    ch = G.challenge(seed=0, quick=True)
    points = G.test_points(ch, root=data_root)
    return ch, G.defence(ch, root=data_root), points.x, points.y, data_root


def _independent_accuracy(model, adv, y) -> float:
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


@pytest.mark.slow
def test_the_paper_fgsm_does_not_pass_and_a_true_label_attack_does(quick):
    ch, model, x, y, root = quick
    smoothed = SmoothCrossEntropyLoss(ch.method, ch.alpha, reduction="none")
    paper = G.grade(ch, fgsm(model, x, y, ch.eps, loss=smoothed).adversarial, model=model,
                    root=root)
    assert not paper.passed
    assert paper.failed() == [ACCURACY], str(paper)  # every rule kept, the accuracy too high
    assert paper.accuracy > ch.target_accuracy
    assert paper.interval[0] > ch.target_accuracy  # not a near miss
    for adv in (fgsm(model, x, y, ch.eps).adversarial, bim(model, x, y, ch.eps).adversarial):
        report = G.grade(ch, adv, model=model, root=root)
        assert report.passed, str(report)
        assert report.accuracy == pytest.approx(_independent_accuracy(model, adv, y))
        assert "PASSED" in str(report)
    assert paper.accuracy == pytest.approx(_independent_accuracy(
        model, fgsm(model, x, y, ch.eps, loss=smoothed).adversarial, y))
    assert "NOT PASSED: " + ACCURACY in str(paper)


@pytest.mark.slow
def test_the_grader_refuses_what_breaks_the_rules(quick):
    ch, model, x, y, root = quick
    adv = fgsm(model, x, y, ch.eps).adversarial  # a passing submission
    assert G.grade(ch, adv, root=root).passed
    direction = torch.sign(adv - x)

    def failed(submission, **kw):
        report = G.grade(ch, submission, root=root, **kw)
        assert not report.passed
        return report

    # outside the ball: one ulp past eps on a single pixel is enough
    far = adv.clone()
    i = int((direction.flatten(1).abs().sum(1) > 0).nonzero()[0])
    j = int(direction[i].flatten().nonzero()[0])
    flat = far[i].view(-1)
    flat[j] = torch.nextafter(flat[j], flat[j] + direction[i].view(-1)[j])
    report = failed(far)
    assert "inside the eps-ball" in report.failed() and report.accuracy is None
    # outside [0, 1] but inside the ball
    below = x - ch.eps / 2  # (half the budget: no rounding can take it out of the ball)
    report = failed(below)
    assert report.failed() == ["inside [0, 1]", ACCURACY] and report.accuracy is None
    # shapes, dtypes, values, types
    assert "shape" in failed(adv[:-1]).failed()
    assert "shape" in failed(adv.flatten(1)).failed()
    assert "dtype" in failed(adv.double()).failed()
    nan = adv.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert "finite" in failed(nan).failed()
    assert "a tensor" in failed(adv.numpy()).failed()
    assert "a tensor" in failed(np.asarray(adv)).failed()


@pytest.mark.slow
def test_the_grader_uses_its_own_unmodified_model(quick):
    ch, model, x, y, root = quick
    broken = G.defence(ch, root=root)
    assert broken is not model and G.weights_hash(broken) == G.weights_hash(model)
    with torch.no_grad():
        broken.net[-1].bias.copy_(torch.arange(10.0) * 100)  # always predicts class 9
    assert G.weights_hash(broken) != G.weights_hash(model)
    # attacking the modified copy "works" there, but the grader measures its own copy
    adv = x.clone()  # no perturbation at all: class 9 everywhere on the broken model
    assert _independent_accuracy(broken, adv, y) < ch.target_accuracy
    report = G.grade(ch, adv, model=broken, root=root)
    assert "the unmodified model" in report.failed()
    assert ACCURACY in report.failed()
    assert report.accuracy == pytest.approx(_independent_accuracy(model, x, y))
    assert report.accuracy > 0.5  # the clean accuracy of the real defence
    # the reader's copy of the defence is theirs: the next one is fresh again
    assert G.weights_hash(G.defence(ch, root=root)) == G.weights_hash(model)
    # model= must be a module
    assert "the unmodified model" in G.grade(ch, adv, model="mine", root=root).failed()


def test_a_tiny_defence_is_rebuilt_identically_and_the_grader_notices_tampering(data_root):
    ch = dataclasses.replace(G.challenge(seed=3, quick=True), train_limit=256, epochs=1, n=16)
    key = ch.config.key()
    G._TRAINED.pop(key, None)
    first = G.weights_hash(G.defence(ch, root=data_root))
    G._TRAINED.pop(key)
    assert G.weights_hash(G.defence(ch, root=data_root)) == first  # same seed, same weights
    other = dataclasses.replace(ch, seed=4)
    assert G.weights_hash(G.defence(other, root=data_root)) != first
    # the stored weights replaced behind the grader's back: it trains them again
    G._TRAINED[key] = (G._TRAINED[other.config.key()][0], G._TRAINED[key][1])
    x = G.test_points(ch, root=data_root).x
    report = G.grade(ch, x, root=data_root)
    model_check = next(c for c in report.checks if c.name == "the unmodified model")
    assert "re-trained" in model_check.detail
    assert G.weights_hash(G.defence(ch, root=data_root)) == first


def test_challenge_sizes_and_bad_arguments():
    full, quick = G.challenge(), G.challenge(quick=True)
    assert (full.train_limit, full.epochs, full.quick) == (None, 3, False)
    assert (quick.train_limit, quick.epochs, quick.quick) == (10_000, 2, True)
    assert full.config.model == "mlp" and full.config.method == "adversarial"
    assert full.config.key() != quick.config.key()
    with pytest.raises(ValueError, match="eps"):
        G.Challenge(eps=-0.1)
    with pytest.raises(ValueError, match="target_accuracy"):
        G.Challenge(target_accuracy=1.5)
    with pytest.raises(ValueError, match="method"):
        G.Challenge(method="nope")
    with pytest.raises(TypeError, match="Challenge"):
        G.grade("challenge", torch.zeros(1))
    with pytest.raises(TypeError, match="Challenge"):
        G.defence(None)


def test_wilson_interval_against_a_closed_form():
    lo, hi = G.wilson_interval(0, 10)
    z = 1.959963984540054
    assert lo == 0.0 and hi == pytest.approx(z * z / (10 + z * z))  # k = 0: upper end closed
    lo, hi = G.wilson_interval(50, 100)
    assert lo + hi == pytest.approx(1.0) and 0.39 < lo < 0.41
