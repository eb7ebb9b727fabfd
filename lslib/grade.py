"""The graded exercise "break this defence": a label-smoothing model, a budget, a target, a grader.

The reader gets a model trained with adversarial label smoothing (ALS, eq. 3 of the paper, at the
paper's largest ``alpha = 0.4``) on MNIST, built deterministically from a seed (no weights are
committed: the model is trained on first use, once per process), the first ``n`` MNIST test
images, an L-inf budget ``eps`` and a target accuracy. The task: write an attack that brings the
model's accuracy on those images to the target or below with perturbations inside the eps-ball.
:func:`grade` checks a submission honestly and says plainly what passed and what failed:

- the submission is a float32 tensor of the test images' shape, with finite values;
- every pixel lies in [0, 1];
- every image lies in the exact L-inf ball of radius ``eps`` around its clean image, as
  computed in float32 (the box of :func:`lslib.attacks.fgsm` and :func:`lslib.attacks.bim`);
- the model the reader attacked, when given, is the defence, weight for weight (a SHA-256 of its
  parameters and buffers);
- the accuracy of the UNMODIFIED defence on the submission (the grader's own copy, re-loaded
  from the weights it trained and checked against their hash at every call, never the reader's
  copy) is at most the target; the report gives it with its 95% Wilson interval.

Sizes (:func:`challenge`): the full challenge trains the "MNIST Linear" network of the paper's
tables (784-500-256-10, :class:`lslib.models.MLP`) on all 60000 training images for 3 epochs
(a few minutes on one CPU core); ``quick=True`` (the book's quick mode, CI) trains it on the first
10000 images for 2 epochs (under a minute). Both grade the first 500 test images at
``eps = 0.2`` against a target accuracy of 0.2.

The grader runs in the reader's own Python process: it guards against mistakes (an attack that
leaves the ball, clips wrongly, or was tuned on a modified model), not against a reader who
rewrites lslib itself.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lslib._checks import check_int_at_least, check_nonnegative, check_unit_interval
from lslib.data import TensorData, load_dataset
from lslib.models import build_model
from lslib.train import TrainConfig, seed_everything, train_model

__all__ = ["Challenge", "Check", "GradeReport", "challenge", "defence", "test_points", "grade",
           "weights_hash", "wilson_interval"]

FULL_SIZE = {"train_limit": None, "epochs": 3}
QUICK_SIZE = {"train_limit": 10_000, "epochs": 2}


@dataclass(frozen=True)
class Challenge:
    """Everything that determines the exercise: the defence's training, the budget and the target.

    Build it with :func:`challenge`; the fields are public so that a reader sees what is graded.
    """

    seed: int = 0
    eps: float = 0.2
    target_accuracy: float = 0.2
    n: int = 500
    method: str = "adversarial"
    alpha: float = 0.4
    epochs: int = FULL_SIZE["epochs"]
    train_limit: int | None = FULL_SIZE["train_limit"]

    def __post_init__(self) -> None:
        check_int_at_least("Challenge seed", self.seed, 0)
        check_nonnegative("Challenge eps", self.eps)
        check_unit_interval("Challenge target_accuracy", self.target_accuracy)
        check_int_at_least("Challenge n", self.n, 1)
        self.config  # checks method, alpha, epochs and train_limit  # noqa: B018

    @property
    def config(self) -> TrainConfig:
        """The defence's training settings (the MNIST Linear set-up with ALS)."""
        return TrainConfig(model="mlp", dataset="mnist", method=self.method, alpha=self.alpha,
                           epochs=self.epochs, batch_size=128, lr=1e-3, seed=self.seed,
                           train_limit=self.train_limit)

    @property
    def quick(self) -> bool:
        """Whether the defence is trained at the reduced (quick-mode) size."""
        return self.train_limit is not None or self.epochs != FULL_SIZE["epochs"]


def challenge(seed: int = 0, *, quick: bool = False) -> Challenge:
    """The exercise for ``seed``: full size, or the reduced size of the book's quick mode."""
    return Challenge(seed=seed, **(QUICK_SIZE if quick else FULL_SIZE))


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# The grader's own copy of each trained defence: the serialized weights (immutable bytes) and
# their hash, by training settings. A reader's copy is a fresh model loaded from these bytes.
_TRAINED: dict[str, tuple[bytes, str]] = {}


def _train(ch: Challenge, root, download: bool) -> tuple[bytes, str]:
    config = ch.config
    data = load_dataset("mnist", "train", root, limit=config.train_limit, download=download)
    seed_everything(config.seed)
    model = build_model(config.model)
    train_model(model, data, config, device="cpu", progress=False)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue(), weights_hash(model)


def _load(weights: bytes) -> nn.Module:
    model = build_model("mlp")
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    return model.eval()


def _reference(ch: Challenge, root=None, download: bool = False) -> tuple[nn.Module, str, str]:
    """The unmodified defence (a fresh copy), its hash, and how it was obtained."""
    key = ch.config.key()
    how = "re-loaded from the weights trained in this process"
    if key not in _TRAINED:
        _TRAINED[key] = _train(ch, root, download)
        how = "trained from the seed in this process"
    weights, digest = _TRAINED[key]
    model = _load(weights)
    if weights_hash(model) != digest:  # the stored weights were replaced: train them again
        _TRAINED[key] = _train(ch, root, download)
        weights, digest = _TRAINED[key]
        model = _load(weights)
        how = "re-trained from the seed (the stored weights did not match their hash)"
    return model, digest, how


def defence(ch: Challenge, *, root=None, download: bool = False) -> nn.Module:
    """The model to break: a fresh copy in eval mode (trained from the seed on first use, once per
    process). Changing it changes nothing for the grader, which keeps its own copy."""
    if not isinstance(ch, Challenge):
        raise TypeError(f"ch must be a Challenge (from lslib.grade.challenge), "
                        f"got {type(ch).__name__}")
    return _reference(ch, root, download)[0]


def test_points(ch: Challenge, *, root=None, download: bool = False) -> TensorData:
    """The images to attack: the first ``ch.n`` MNIST test images and their labels."""
    if not isinstance(ch, Challenge):
        raise TypeError(f"ch must be a Challenge (from lslib.grade.challenge), "
                        f"got {type(ch).__name__}")
    return load_dataset("mnist", "test", root, limit=ch.n, download=download)


test_points.__test__ = False  # not a pytest test, despite its name


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, and the evidence."""

    name: str
    passed: bool | None  # None: not checked (an earlier check failed)
    detail: str


@dataclass(frozen=True)
class GradeReport:
    """What :func:`grade` found. ``passed`` is True only when every check passed."""

    challenge: Challenge
    checks: list[Check] = field(default_factory=list)
    accuracy: float | None = None
    interval: tuple[float, float] | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[str]:
        """The names of the checks that failed or could not be made."""
        return [c.name for c in self.checks if not c.passed]

    def __str__(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "----"}
        ch = self.challenge
        lines = [f"break this defence: {ch.method} smoothing alpha={ch.alpha:g}, MLP on MNIST, "
                 f"seed {ch.seed}"
                 f"{' (quick size)' if ch.quick else ''}; eps={ch.eps:g}, target accuracy "
                 f"<= {ch.target_accuracy:g} on {ch.n} test images"]
        lines += [f"  [{mark[c.passed]}] {c.name}: {c.detail}" for c in self.checks]
        lines.append("PASSED: every check passed." if self.passed
                     else f"NOT PASSED: {', '.join(self.failed())}.")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython shows the plain report
        p.text(str(self))


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def grade(ch: Challenge, adversarial: object, *, model: nn.Module | None = None,
          root=None, download: bool = False) -> GradeReport:
    """Grade a submission: ``adversarial`` holds one perturbed image per test point, in order.

    ``model``: the model the reader attacked, if they want it checked against the defence (the
    accuracy is always measured on the grader's own, unmodified copy). Returns a
    :class:`GradeReport`; print it for the plain report. Nothing raises for a bad submission:
    each problem is a failed check, with what was expected.
    """
    if not isinstance(ch, Challenge):
        raise TypeError(f"ch must be a Challenge (from lslib.grade.challenge), "
                        f"got {type(ch).__name__}")
    points = test_points(ch, root=root, download=download)
    x, y = points.x, points.y
    checks: list[Check] = []

    def add(name: str, passed: bool | None, detail: str) -> None:
        checks.append(Check(name, passed, detail))

    skipped = "not checked: the submission is not a float32 tensor of the right shape"
    ok = isinstance(adversarial, Tensor)
    add("a tensor", ok, "a torch.Tensor" if ok else f"got {type(adversarial).__name__}, "
        "expected a torch.Tensor")
    if ok:
        adv = adversarial.detach().cpu()
        ok_shape = tuple(adv.shape) == tuple(x.shape)
        add("shape", ok_shape, f"{tuple(adv.shape)}" + ("" if ok_shape else
                                                         f", expected {tuple(x.shape)}"))
        ok_dtype = adv.dtype == x.dtype
        add("dtype", ok_dtype, f"{adv.dtype}" + ("" if ok_dtype else f", expected {x.dtype}"))
        ok = ok_shape and ok_dtype
    else:
        add("shape", None, f"not checked: expected a tensor of shape {tuple(x.shape)}")
        add("dtype", None, f"not checked: expected {x.dtype}")
    if ok:
        finite = torch.isfinite(adv)
        ok = bool(finite.all())
        add("finite", ok, "every value is finite" if ok
            else f"{int((~finite).sum())} values are NaN or infinite")
    else:
        add("finite", None, skipped)
    if ok:
        outside = (adv < 0) | (adv > 1)
        in_range = not bool(outside.any())
        add("inside [0, 1]", in_range, f"min {float(adv.min()):.4g}, max {float(adv.max()):.4g}"
            + ("" if in_range else f": {int(outside.sum())} pixels in "
               f"{int(outside.flatten(1).any(1).sum())} images outside [0, 1]"))
        # |x_adv - x| <= eps as computed in float32, eps as float32 holds it: the test that
        # lslib's attacks guarantee (lslib.attacks._linf_box)
        e = float(torch.tensor(ch.eps, dtype=x.dtype))
        out_ball = torch.sub(adv, x).abs_() > e
        in_ball = not bool(out_ball.any())
        dist = float((adv - x).abs().amax()) if adv.numel() else 0.0
        add("inside the eps-ball", in_ball, f"largest |x_adv - x| = {dist:.6g} (eps = {ch.eps:g})"
            + ("" if in_ball else f": {int(out_ball.flatten(1).any(1).sum())} images leave "
               "the ball"))
        ok = in_range and in_ball
    else:
        add("inside [0, 1]", None, skipped)
        add("inside the eps-ball", None, skipped)

    reference, digest, how = _reference(ch, root, download)
    if model is None:
        add("the unmodified model", True, f"graded on the grader's own copy ({how})")
    elif not isinstance(model, nn.Module):
        add("the unmodified model", False, f"model= got {type(model).__name__}, expected the "
            "nn.Module you attacked (or nothing)")
    else:
        same = weights_hash(model) == digest
        add("the unmodified model", same,
            f"the model you attacked is the defence (SHA-256 {digest[:12]})" if same else
            f"the model you attacked differs from the defence (SHA-256 "
            f"{weights_hash(model)[:12]}, expected {digest[:12]}): attack the model of "
            "lslib.grade.defence() unchanged")

    accuracy = interval = None
    if ok:
        with torch.no_grad():
            pred = torch.cat([reference(a).argmax(1) for a in adv.split(1000)])
        correct = int((pred == y).sum())
        accuracy, interval = correct / len(y), wilson_interval(correct, len(y))
        add("accuracy at most the target", accuracy <= ch.target_accuracy,
            f"{accuracy:.3f} (95% interval {interval[0]:.3f} to {interval[1]:.3f}; {correct} of "
            f"{len(y)} images still classified correctly by the unmodified defence), target "
            f"<= {ch.target_accuracy:g}")
    else:
        add("accuracy at most the target", None,
            "not measured: the submission is not a valid set of images in the ball")
    return GradeReport(ch, checks, accuracy, interval)

