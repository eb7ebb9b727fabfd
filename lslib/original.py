"""The authors' code path, reproduced faithfully, bugs included (the ``original`` protocol).

This module re-implements, in our own code, what the public repository of the paper
(MGoibert/Label_smoothing; facts in ``../shared/notes/original-code.md``) computes, so that the
book can show where the published Tables 2-6 come from and then turn the deviations off one at a
time. Nothing here is copied from that repository; every behaviour is re-derived and tested
against hand-computed cases (``tests/test_original.py``).

What the original does, and we do here
--------------------------------------
- Models end in a softmax and run in float64 (:class:`OriginalMLP`, :class:`OriginalLeNet`);
  MNIST is scaled to [-0.5, 0.5] (:data:`LIMS`), so an eps is in [0, 1]-pixel units.
- Smoothed targets (:func:`smooth_label`) are computed from the model's probabilities (SLS: alpha
  spread over the K-1 wrong classes; ALS: alpha on the least probable class, true class not
  excluded, ties split; BLS: Boltzmann weights ``exp(-p_j / T)`` over the classes whose
  probability differs from the true class's and is not exactly 0; SBLS: alpha on the most
  probable wrong class). The loss is ``-mean(q . log p)`` (:func:`smooth_cross_entropy`).
- Training (:func:`train_original`): plain SGD, lr 0.1, batch 100, at most 10 epochs (MLP) or
  50 (LeNet; "How long the models trained" below),
  reduce-on-plateau (patience 3, factor 0.5) on the smoothed loss of a validation slice (the first
  1000 test images), early stopping when the mean relative change of the last five validation
  losses is at most 1e-4 (:func:`has_converged`), float64; the MNIST LeNet starts from a naturally
  trained checkpoint (:attr:`OriginalConfig.start_from`), the MLP from a random initialisation, as
  in the original. PGD-AT (as at dc3c764): 20 natural epochs, then ``0.75 * clean + 0.25 * PGD``
  loss (:data:`PGD_CLEAN_WEIGHT`, see "The PGD-AT loss" below) up to epoch 69 on the MLP and 39
  on the LeNet (:data:`PGD_AT_EPOCHS`, "The PGD-AT epochs" below), PGD with eps 0.25, step 0.1
  (the paper's alpha_PGD), 3 steps, no random start, projected onto [-1, 1], with the gradient
  its last step leaves on the parameters added to the training gradient
  (``OriginalConfig.pgd_grad_leak``); the validation loss and the scheduler (patience 4, factor
  0.1) start at epoch 20; no early stop.
- Evaluation (:func:`evaluate`): the test slices are test images 1000-9999 for FGSM, BIM,
  DeepFool and the clean accuracy and 1000-1999 for CW (see "Which test images"); a point counts
  when the model classifies it correctly and the attack fails (a misclassified clean point is a
  failure, as with batch size 1). FGSM and BIM ascend the loss against the model's OWN smoothed
  target; BIM takes 10 steps of eps/10 projected on the eps-ball and clips to the pixel range
  only at the end; DeepFool linearises the softmax outputs (10 candidates, at most 10 steps, no
  overshoot) and re-adds the cumulative perturbation at every step, stops at the first
  misclassified iterate and clips it to the pixel range only then, so that the clip can undo
  the success (see "DeepFool's final clip" below); CW (L2, untargeted) uses
  log-softmax as logits, kappa 0, Adam lr 0.1, c from 1 (x10 until a success, then bisection), 4
  binary-search steps of 50 Adam steps (see "How many CW iterations" below), maps tanh space
  back with different constants in the numerator and the denominator, and returns the last
  success rather than the smallest.

The deviations from correct code are named switches (:class:`Switches`); ``Switches()`` is the
version that reproduces the published tables, ``Switches.fixed()`` turns every one off, and
``dataclasses.replace(Switches(), deepfool_readd=False)`` turns off one.

Which version
-------------
The repository's CW changed twice. In commit 8789498 (2019-03-27) both constants of the
tanh-space map are 0.999 and the misclassification term is computed in numpy (no gradient reaches
the perturbation, so CW only minimises the distance and never moves: :data:`VERSIONS`
``"cw-2019-03"``). From bd41704 (2019-04-09) to HEAD the term is a torch ``max`` (the gradient
flows) and the map's numerator uses 0.999 while its denominator uses 0.999999999999999. The
paper's Table 5 MNIST Linear BLS and SBLS cells (0.014, 0.035, 0.059; 0.017, 0.071, 0.007) are,
digit for digit, the file ``res_dataframes/MNIST_Linear_smoothing=boltzmann+second_best_attacks=
CW.csv`` committed in 919c8a0 (2019-07-02), and its PGD-AT cells (CW 0.108 and 0.442, DeepFool
0.07) are files committed in dc3c764 (2019-10-09): both were produced by the bd41704+ CW, so that
is the default. The other settings follow the code of those commits (training: patience 3, factor
0.5 until 2019-09; PGD-AT as in dc3c764).

Which test images. The original's runner keeps the first 1000 MNIST test images for validation
and attacks the others: all of them (test images 1000-9999) at every commit from 8789498
(2019-03-27) to f0dae34 (2019-09-30) but one, 19722ec (2019-05-15, undone by the next commit the
same day), which attacks 1001-2000; 1000-1999 at dc3c764 (2019-10-09); 1000-2999 from 1bb8c1c
(2020-02-05) to HEAD, after the paper's submission (:data:`lslib.paper_tables.PAPER_SUBMITTED`,
2020-01-13), so that slice cannot have made the published tables (``python -m lslib.authors
--runner-slices`` reads the slice of every commit from the runner's code). Which ones a
committed result file used can be read from the file itself: every per-label accuracy is a whole
count of that label's points only for the right slice (:func:`lslib.authors.find_slices`;
``python -m lslib.authors --slices`` writes it for every file of the history). Every file that
holds a grid of FGSM and BIM budgets, and every DeepFool file, used 1000-9999. The CW files used
1000 points: 1000-1999 at dc3c764 (PGD-AT), and 1001-2000, the slice of 19722ec, for the file of
the tables' BLS and SBLS cells (919c8a0). The smoothing models' FGSM, BIM and DeepFool files are
not in the repository; the code of the months they were saved attacked 1000-9999. The clean
accuracies of Table 6 (budget 0 of those files, as the PGD-AT files show) sit above every one of
our LeNets' on 1000-1999 and close to them on 1000-9999; the MLPs' lie between our two slices.
And the authors' own runs on 1001-2000 that reach budget 0 (the natural MLP's FGSM file, a
scratch file's SLS 0.1) give clean accuracies that are not Table 6's, so those runs did not make
the tables (the tables chapter, "Which slice fits", computes both). So we use 1000-9999 for
FGSM, BIM, DeepFool and the clean accuracy, and 1000-1999 for CW
(:data:`lslib.experiments.PROTOCOLS` ``"original"``). It matters: test images 1000-1999 are
harder than the rest (the tables chapter measures it on the same models).

The learning rate. ``--learning_rate`` (default 1e-4) is parsed by the original's runner at
every commit, but until f0dae34 (2019-09-30) it is never passed on: the training function
``train_model_smooth`` uses its own default, ``learning_rate=0.1`` (at 0a3826d, 2019-07-02, the
commit after the one that saved the tables' result files; the same default, with early stopping
on, from 2019-03-25). The tables' smoothing models were therefore trained at 0.1, which is our
default. With 1e-4, plain SGD from a random initialisation leaves the MLP near chance (measured:
validation loss 2.2617 after 11 epochs, ln 10 = 2.303), so 1e-4 cannot have made them. The PGD-AT
cells come from dc3c764, where the rate is passed on and its value is whatever the command line
gave, which the repository does not record; its checkpoint (``model_dict/MNIST_Linear.pt``)
reaches validation accuracy 0.979, which 1e-4 cannot. We train PGD-AT at 0.1 too, the function's
default: a choice, and said so wherever its rows are shown (at 0.1, with the PGD-AT loss below,
our PGD-trained MLP's validation losses follow those its checkpoint saved).

The PGD-AT loss. The source committed at dc3c764 trains PGD-AT on ``0.5 * clean + 0.5 * PGD``.
The compiled module committed beside it (``label_smoothing/__pycache__/functional.cpython-36.pyc``,
which Python writes again whenever the source has changed, so it holds the module as it last ran)
was compiled from a source two bytes longer, last changed 2019-10-08 12:06:23 UTC, whose training
closure holds the constants 0.75 and 0.25 where the committed source holds 0.5 (``python -m
lslib.authors --compiled``, :mod:`lslib.bytecode`; every other compiled module of f0dae34 and
dc3c764 was compiled from the source committed beside it). Which weights trained the tables'
PGD-AT models is told by their checkpoints, which saved their validation-loss histories
(``python -m lslib.authors --histories``): our PGD-trained MLP, trained with each weight and nothing
else changed, follows the authors' history at 0.75 and lies above it at 0.5 (the tables chapter
computes it). So the original protocol trains PGD-AT at :data:`PGD_CLEAN_WEIGHT` = 0.75;
``OriginalConfig.pgd_clean_weight`` (``--pgd-clean-weight 0.5``) gives the committed source.

The PGD-AT epochs. The same histories tell how long those models trained. At dc3c764, in the
source and in the compiled module alike, the training function validates once per epoch after
the 20 natural ones (from the first PGD epoch on) and never stops early
(``enable_early_stopping`` defaults to False and the runner does not pass it), so a saved
history of n losses is a run of 20 + n epochs. The PGD-trained MLP's holds 49 losses and the
LeNet's 19: 69 and 39 epochs, where the runner's default is 50, so the command lines set them.
The original protocol trains PGD-AT for :data:`PGD_AT_EPOCHS` epochs;
``--pgd-epochs 50`` gives the runner's default (and the keys of the PGD-AT models trained before
this was found).

DeepFool's final clip. The original's DeepFool (``attacks.py``, from 8789498 to HEAD) steps
without regard to the pixel range, stops as soon as the model misclassifies the unclipped
iterate, and clips only the point it returns. Its published cells count the points whose
success that clip undoes: with :attr:`Switches.deepfool_clip_at_end` off (each iterate clipped
before the stopping test, as :func:`lslib.attacks.deepfool` does), the same attack leaves little
of the cells of our smoothing models, and on the authors' own PGD-trained models it takes their
DeepFool cells down too (``python -m lslib.bugs`` and ``python -m lslib.authors
--switches-off deepfool_clip_at_end``; the tables chapter, "One bug at a time"). The switch was
added after the original protocol's tables were written; :meth:`Switches.describe` names it only
when it is off, so their rows still read as the code that made them.

Which temperature. The runner sweeps BLS over T in {1e-4, 1e-3, 1e-2, 0.1} (``np.logspace(-4,
-1, 4)``, hard-coded at 919c8a0), and the paper names none for its tables ("T = 0.001 for example
is a good default value"). The one file of the tables' BLS cells, the CW file of 919c8a0 above,
holds BLS at a single temperature, 0.01: its three BLS rows are the published Table 5 cells of
MNIST Linear. It is the only evidence of the tables' temperature, and one runner made both
set-ups' tables, so the original protocol trains and attacks BLS at T = 0.01 on both
(:attr:`lslib.experiments.Protocol.bls_temperature`); the other protocols keep 0.001. The BLS
models trained at 0.001 before this was found stay in the original tables as rows of their own
(their key holds T); ``lslib compare`` and the book take each protocol's temperature. That
file was also computed on test images 1001-2000, like every file of a smoothed model in the
history, the runner's scratch files (``res_dataframes/tmp/pid=N.csv``) included; two of those
hold the Table 5 cells of ALS 0.4 and SBLS 0.4 on MNIST Linear (``python -m lslib.authors
--slices``).

How many CW iterations. The runner builds CW through its ``CW`` class, whose default is 4
binary-search steps (the function ``CW_attack`` behind it defaults to 5, which the class
overrides), and passes the command line's ``--num_iter_attack`` (default 10) both as DeepFool's
iterations and as CW's Adam steps per binary-search step. The value behind the tables is not
recorded, and the paper's footnote says it was not the same on every set-up ("the number of
iteration for C&W attack is sub-optimal" on CIFAR10 ResNet and SVHN LeNet). At the default 10
the original CW leaves far more accuracy on our MLPs than the published CW cells; at 50 (the
default ``num_iter`` of ``CW_attack`` itself in the months the tables were saved) it matches
them (on the MLPs of 10 epochs 12 of 14 within 0.05, and 13 at 30 steps; on the LeNets 10 of 14,
which ran at 10 and 50 only), and DeepFool is the same at 10 and at 50 iterations
(``results/mnist-linear-original-epochs-10-iterations.csv`` and
``results/mnist-lenet-original-authors-start-iterations.csv``, written by ``python -m lslib.bugs
--iterations``; the tables chapter shows them). So we run CW at 4 x 50 and DeepFool at 10: a
choice that reproduces the cells, not a recorded fact.

The LeNet's starting checkpoint. Every LeNet of the tables started from
``lenet_mnist_model.pth``, the PyTorch adversarial-example tutorial's checkpoint (trained
elsewhere, with another recipe), loaded before every training. The authors' repository holds that
file (git blob 571e03a, added in bd852ed and again in f0dae34; SHA-256
:data:`AUTHORS_LENET_SHA256`), and ``--lenet-start FILE`` (:class:`StartFile`) starts every LeNet
from it. Without that file (a clone of the authors' repository is not a dependency), the
checkpoint is made the same way as every model here: the original training with alpha = 0 from a
seeded random initialisation (so that natural LeNet has 100 epochs). What cannot be known: the
seeds (none was set).

How long the models trained. The runner's ``--num_epochs`` defaulted to 7 until e6e7536
(2019-03-28) and to 50 from then on; the tables' command lines are not recorded, and the
PGD-trained checkpoints show that they did not always keep the default (69 and 39 epochs above).
``--epochs N`` (:func:`train_config`'s ``epochs``) trains the smoothing and natural models for
at most N, nothing else changed, and a run of N epochs is the first N epochs of a longer one.
Shorter trainings lower the smoothing models' FGSM and BIM cells, which rest on the smoothed
attack target, and their clean accuracy. The rung was first trained for the runner's default
50 on both set-ups, then again for 7, 10 and 20 (the tables chapter, "How long the models
trained"): the MLP's published attack cells are matched best at 10 epochs (90 of its 112 within
0.05, against 77 at 50), the LeNet's at 50 (96 against 90 at 10). So the protocol trains the MLP
for 10 and the LeNet for 50 (:data:`TRAINING_EPOCHS`): a length fitted to the published cells,
as the CW iterations are, not one read from a file; ``--epochs 50`` gives the runner's default
and the keys of the MLPs trained for it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LIMS",
    "AUTHORS_LENET_SHA256",
    "SWITCH_ATTACKS",
    "AsOriginal",
    "MODELS",
    "VERSIONS",
    "OriginalConfig",
    "OriginalLeNet",
    "OriginalMLP",
    "PGD_CLEAN_WEIGHT",
    "StartFile",
    "Switches",
    "attack_accuracy",
    "bim",
    "bug_ladder",
    "carlini_wagner",
    "deepfool",
    "evaluate",
    "fgsm",
    "from_pixels",
    "has_converged",
    "smooth_cross_entropy",
    "protocol_steps",
    "read_start_file",
    "smooth_label",
    "tanh_space_maps",
    "robust_points",
    "slice_bounds",
    "test_images",
    "test_slice",
    "train_config",
    "train_original",
]

#: The original's MNIST pixel range: ToTensor then Normalize(0.5, 1.0).
LIMS = (-0.5, 0.5)
METHODS = ("standard", "adversarial", "boltzmann", "second_best")
_METHOD_OF = {"ALS": "adversarial", "SLS": "standard", "BLS": "boltzmann", "SBLS": "second_best"}
#: test images 0-999 are the validation slice, the attacks use those from here on
TEST_OFFSET = 1000


# --------------------------------------------------------------------------------------------
# the switches: every deviation from correct code, by name
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Switches:
    """The original code's deviations from correct code; ``True`` reproduces the bug.

    - ``smoothed_attack_target``: FGSM and BIM ascend the loss against the model's own smoothed
      target (False: the true label's cross-entropy).
    - ``bls_target_gradient``: FGSM differentiates through the BLS target, which is a function
      of the model's output (False: the target is detached).
    - ``bim_clip_at_end``: BIM clips to the pixel range only after its last step (False: every
      step, as BIM is defined).
    - ``deepfool_on_softmax``: DeepFool linearises the softmax outputs (False: the logits,
      ``log p`` here, which equal the logits up to a constant per point).
    - ``deepfool_readd``: DeepFool adds the cumulative perturbation to the current point at
      every step, so step k moves by r_1 + ... + r_k again (False: x_k = x_0 + r_1 + ... + r_k).
    - ``deepfool_clip_at_end``: DeepFool ignores the pixel range while it steps, stops at the
      first iterate the model misclassifies, and only then clips it to the pixel range, so the
      point it returns need not be misclassified at all (False: every iterate is clipped before
      the test, so it stops only at a point it returns, as :func:`lslib.attacks.deepfool` and
      foolbox do).
    - ``cw_constants``: the constants (numerator, denominator) of CW's map from tanh space back
      to pixels, ``(1 - exp(-2 a w)) / (1 + exp(-2 b w))``; unequal constants move the
      starting point off the image (correct: ``(1.0, 1.0)``, i.e. ``tanh(w)``).
    - ``cw_misclass_gradient``: whether the gradient reaches CW's misclassification term
      (False reproduces the March 2019 version, computed in numpy).
    - ``cw_last_success``: CW returns the last successful iterate of the binary search, not the
      one with the smallest L2 distance (False: the smallest).
    """

    smoothed_attack_target: bool = True
    bls_target_gradient: bool = True
    bim_clip_at_end: bool = True
    deepfool_on_softmax: bool = True
    deepfool_readd: bool = True
    cw_constants: tuple[float, float] = (0.999, 0.999999999999999)
    cw_misclass_gradient: bool = True
    cw_last_success: bool = True
    deepfool_clip_at_end: bool = True

    @classmethod
    def fixed(cls) -> Switches:
        """Every deviation turned off: the same protocol, run by correct code."""
        return cls(smoothed_attack_target=False, bls_target_gradient=False,
                   bim_clip_at_end=False, deepfool_on_softmax=False, deepfool_readd=False,
                   cw_constants=(1.0, 1.0), cw_misclass_gradient=True, cw_last_success=False,
                   deepfool_clip_at_end=False)

    @classmethod
    def without(cls, name: str) -> Switches:
        """Every bug of the original but the one switch ``name``, set to its correct value (as
        in :meth:`fixed`): one rung of :func:`bug_ladder`."""
        return dataclasses.replace(cls(), **{name: getattr(cls.fixed(), name)})

    def describe(self) -> str:
        """The switches as a row's ``attack_settings`` hold them. A switch added after rows were
        written (:data:`_LATER_SWITCHES`) is named only when it is off, so the settings of those
        rows, which ran with the bug, still read as the code that made them."""
        d = dataclasses.asdict(self)
        return " ".join(f"{k}={v}" for k, v in d.items()
                        if not (k in _LATER_SWITCHES and v == _LATER_SWITCHES[k]))


#: The switches added after the original protocol's tables were written, with the value
#: (the bug's) that those tables ran with.
_LATER_SWITCHES: dict[str, Any] = {"deepfool_clip_at_end": True}


#: Named versions: ``tables`` reproduces the published tables (the default), ``cw-2019-03`` is
#: the March 2019 CW (both constants 0.999, no gradient through the misclassification term),
#: ``fixed`` is correct code.
VERSIONS: dict[str, Switches] = {
    "tables": Switches(),
    "cw-2019-03": Switches(cw_constants=(0.999, 0.999), cw_misclass_gradient=False),
    "fixed": Switches.fixed(),
}


# --------------------------------------------------------------------------------------------
# models (float64, ending in a softmax)
# --------------------------------------------------------------------------------------------


class OriginalMLP(nn.Module):
    """The tables' "MNIST Linear": 784-500-256-10 with ReLU, softmax output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 500)
        self.fc2 = nn.Linear(500, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.fc1(x.reshape(-1, 784)))
        return F.softmax(self.fc3(F.relu(self.fc2(h))), dim=1)


class OriginalLeNet(nn.Module):
    """The MNIST LeNet: conv 1->10 k5, max-pool, ReLU; conv 10->20 k5, Dropout2d(0.5),
    max-pool, ReLU; FC 320->50, ReLU, dropout 0.5; FC 50->10; softmax output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(F.max_pool2d(self.conv1(x), 2))
        h = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(h)), 2))
        h = F.dropout(F.relu(self.fc1(h.reshape(-1, 320))), p=0.5, training=self.training)
        return F.softmax(self.fc2(h), dim=1)


MODELS: dict[str, type[nn.Module]] = {"mlp": OriginalMLP, "lenet-mnist": OriginalLeNet}


def from_pixels(x: Tensor) -> Tensor:
    """Our [0, 1] pixels as the original's float64 inputs in [-0.5, 0.5]."""
    return x.to(torch.float64) - 0.5


# --------------------------------------------------------------------------------------------
# smoothed targets and the loss
# --------------------------------------------------------------------------------------------


def smooth_label(y: Tensor, alpha: float, probs: Tensor | None = None,
                 method: str = "standard", temperature: float = 0.1) -> Tensor:
    """The original's smoothed target for labels ``y`` given the model's probabilities ``probs``
    (paper Table 1; value comparisons and ties exactly as the original treats them). The true
    class keeps ``1 - alpha`` plus whatever the method puts on it (ALS may put mass there)."""
    k = 10 if probs is None else probs.shape[1]
    dtype = torch.float64 if probs is None else probs.dtype
    onehot = F.one_hot(y, k).to(dtype)
    if alpha == 0:
        return onehot
    if method == "standard":
        salt = (1.0 - onehot) / (k - 1)
    elif method == "adversarial":
        low = probs.min(dim=1, keepdim=True).values
        salt = (probs == low).to(dtype)
        salt = salt / salt.sum(1, keepdim=True)
    elif method == "boltzmann":
        p_true = probs.gather(1, y[:, None])
        b = (probs != p_true).to(dtype) * probs
        b = torch.where(b == 0, torch.full_like(b, math.inf), b)
        salt = torch.softmax(-b / temperature, dim=1)
    elif method == "second_best":
        top, arg = probs.max(dim=1)
        below_top = (probs * (probs != top[:, None]).to(dtype)).max(dim=1).values
        bad = torch.where(arg != y, top, below_top)
        salt = (probs == bad[:, None]).to(dtype)
        salt = salt / salt.sum(1, keepdim=True)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return (1 - alpha) * onehot + alpha * salt


def smooth_cross_entropy(probs: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """``-(q . log p)`` per point (the original takes the log of the softmax output)."""
    per = -(target * torch.log(probs)).sum(1)
    return per.mean() if reduction == "mean" else per


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


#: The epochs of the authors' runner's ``--num_epochs`` from 2019-03-28 (e6e7536) on: 50.
RUNNER_EPOCHS = 50


def length_suffix(epochs: int) -> str:
    """How a results file names a training length: ``-epochs-N``, nothing for the runner's
    :data:`RUNNER_EPOCHS` (``results/mnist-linear-original-epochs-10.csv``)."""
    return "" if epochs == RUNNER_EPOCHS else f"-epochs-{epochs}"


@dataclass(frozen=True)
class OriginalConfig:
    """Everything that determines a model trained as the original trained it (the cache key is
    a hash of it). ``method`` None is natural training; ``adversarial`` is the PGD-AT baseline;
    ``start_from`` the natural checkpoint training starts from (None: a random init; a
    :class:`StartFile`: weights read from a file, the authors' pretrained LeNet)."""

    model: str
    method: str | None = None
    alpha: float = 0.0
    temperature: float = 0.001
    adversarial: bool = False
    epochs: int = RUNNER_EPOCHS
    batch_size: int = 100
    lr: float = 0.1
    patience: int = 3
    factor: float = 0.5
    early_stop: bool = True
    val_start_epoch: int = 0
    pgd_eps: float = 0.25
    pgd_step: float = 0.5
    pgd_steps: int = 3
    pgd_start_epoch: int = 20
    pgd_clip: tuple[float, float] = (-1.0, 1.0)
    pgd_grad_leak: bool = True
    pgd_clean_weight: float = 0.5
    val_n: int = 1000
    seed: int = 0
    train_limit: int | None = None
    data_source: str = "real"
    start_from: OriginalConfig | StartFile | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {self.model!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be None or one of {METHODS}, got {self.method!r}")
        if not 0.0 <= self.pgd_clean_weight <= 1.0:
            raise ValueError(f"pgd_clean_weight must be in [0, 1], got {self.pgd_clean_weight}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _hashed(self) -> dict[str, Any]:
        """The fields the cache key hashes: all, less those added after models were cached
        (:data:`_ADDED_LATER`) while they keep their default, so that those keys stay valid."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, default in _ADDED_LATER.items():
            if d[name] == default:
                del d[name]
        if self.start_from is not None:
            d["start_from"] = self.start_from._hashed()
        return d

    def key(self) -> str:
        return _cache_key("orig-", {"original": 1, **self._hashed()})

    def build(self) -> nn.Module:
        """A fresh float64 model of this config's architecture (runner seam)."""
        return MODELS[self.model]().double()

    def train_fresh(self, *, device: torch.device, data_root: str | None = None,
                    download: bool = False, progress: bool = False,
                    cache: Path | None = None, start_state: dict[str, Tensor] | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
        """Train from the seed (runner seam). ``start_state``: the weights of ``start_from``
        (the runner trains that model first, as a model of its own, and hands it here); without
        it they are read from (or trained into) the model cache ``cache`` (default
        ``$LSLIB_CACHE``, else ``~/.cache/lslib/models``), where the per-epoch state of an
        interrupted training is kept too."""
        return train_original(self, device=device, data_root=data_root, download=download,
                              cache=cache, progress=progress, start_state=start_state)


#: SHA-256 of the authors' pretrained MNIST LeNet, ``lenet_mnist_model.pth`` (git blob 571e03a of
#: MGoibert/Label_smoothing, added in bd852ed on 2019-02-18 and again in f0dae34): the checkpoint
#: every LeNet of the tables started from.
AUTHORS_LENET_SHA256 = "a3f7b2aa9f6800fdbf6cdbf952aee04ade4095dcb31071ee8eb609338dd227bb"


@dataclass(frozen=True)
class StartFile:
    """A start checkpoint read from a weights file instead of trained (runner seam, as
    :class:`OriginalConfig`): the authors' pretrained LeNet, ``lenet_mnist_model.pth``. The
    cache key hashes the file's SHA-256 and the model, not ``path`` (where this machine keeps
    it); reading a file with another SHA-256 is an error."""

    model: str
    sha256: str
    path: str

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, got {self.model!r}")

    @classmethod
    def of(cls, path: str | Path, model: str = "lenet-mnist") -> StartFile:
        """The start file at ``path`` (its SHA-256 read now); FileNotFoundError names it."""
        return cls(model, _sha256_of(Path(path)), str(path))

    @property
    def source(self) -> str:
        """What the file is, for a reader: the authors' checkpoint or another file."""
        if self.sha256 == AUTHORS_LENET_SHA256:
            return "the authors' lenet_mnist_model.pth"
        return f"a weights file (sha256 {self.sha256[:12]})"

    def _hashed(self) -> dict[str, Any]:
        return {"model": self.model, "sha256": self.sha256}

    def key(self) -> str:
        return _cache_key("orig-start-", {"original-start-file": 1, **self._hashed()})

    build = OriginalConfig.build  # the same float64 model of ``self.model``

    def train_fresh(self, *, device: torch.device, data_root: str | None = None,
                    download: bool = False, progress: bool = False,
                    cache: Path | None = None, start_state: dict[str, Tensor] | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
        """The model with the file's weights, in float64 (runner seam: nothing is trained)."""
        from lslib.experiments import provenance

        model = self.build()
        model.load_state_dict(read_start_file(self))
        record = {"config": json.dumps(self._hashed(), sort_keys=True), "source": self.source,
                  "seconds": 0.0, "epoch_seconds": [], "batches": 0, "batch_seconds": 0.0,
                  "batch_cpu_seconds": 0.0, "losses": [], "learning_rates": [],
                  "epochs_run": 0, **{k: str(v) for k, v in provenance(device).items()}}
        return model.to(device).eval(), record


def _sha256_of(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"no such start checkpoint file: {path} (the authors' LeNet: "
                                f"git -C <clone of MGoibert/Label_smoothing> show "
                                f"571e03a > {path})")
    return hashlib.sha256(path.read_bytes()).hexdigest()


_START_REMEDY = ("give the authors' lenet_mnist_model.pth: git -C <clone of "
                 "MGoibert/Label_smoothing> show 571e03a > lenet_mnist_model.pth")


def read_start_file(start: StartFile) -> dict[str, Tensor]:
    """The float64 state dict of ``start``'s file, checked: the SHA-256 the config names (so a
    cache key never stands for other weights) and the parameter names and shapes of the model.
    Raises :class:`lslib._files.CheckpointError` naming the file and what is wrong."""
    from lslib._files import CheckpointError, read_checkpoint

    path = Path(start.path)
    if _sha256_of(path) != start.sha256:
        raise CheckpointError(path, f"its SHA-256 is not {start.sha256} (the file changed since "
                              f"the run was planned)", "restore the file or plan the run again")
    try:
        state = read_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(path, exc.problem, _START_REMEDY) from None
    want = {k: v.shape for k, v in start.build().state_dict().items()}
    have = {k: v.shape for k, v in state.items()}
    if have != want:
        raise CheckpointError(path, f"does not hold the weights of a {start.model!r} model "
                              f"(names and shapes differ)", _START_REMEDY)
    return {k: v.to(torch.float64) for k, v in state.items()}


def _cache_key(prefix: str, payload: dict[str, Any]) -> str:
    """``prefix`` and 16 hex digits of the SHA-256 of ``payload`` as sorted JSON."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:16]


#: Fields of :class:`OriginalConfig` added after models were cached, with their defaults.
_ADDED_LATER: dict[str, Any] = {"pgd_grad_leak": True, "pgd_clean_weight": 0.5}


def train_config(setup: Any, defence: Any, *, seed: int = 0, quick: bool = False,
                 data_source: str = "real", lenet_start: str | Path | None = None,
                 pgd_clean_weight: float | None = None,
                 pgd_epochs: int | None = None, epochs: int | None = None) -> OriginalConfig:
    """The :class:`OriginalConfig` of a defence (:class:`lslib.experiments.Defence`) on an MNIST
    set-up (:class:`lslib.experiments.SetUp`); ``quick``: 1 epoch on 1024 images.
    ``lenet_start``: the LeNet starts from the weights in this file (:class:`StartFile`, the
    authors' ``lenet_mnist_model.pth``) instead of from a checkpoint trained here.
    ``pgd_clean_weight``: PGD-AT's clean weight (None: :data:`PGD_CLEAN_WEIGHT`, 0.75; 0.5 is the
    committed source's); ``pgd_epochs``: PGD-AT's epochs, the natural ones included (None:
    :data:`PGD_AT_EPOCHS`, the set-up's); both act on PGD-AT only (and ``quick`` overrides
    ``pgd_epochs``). ``epochs``: the smoothing and natural models train for at most this many
    epochs (None: :data:`TRAINING_EPOCHS`, the set-up's; "How long the models trained" above);
    it acts on those models only, not on PGD-AT nor on the LeNet's natural start, and
    ``quick`` overrides it."""
    if setup.model not in MODELS:
        raise ValueError(f"the original protocol covers mnist-linear and mnist-lenet, not "
                         f"{setup.name!r}")
    small = dict(epochs=1, train_limit=1024, val_n=128, pgd_start_epoch=0) if quick else {}
    if data_source == "synthetic":
        small.update(train_limit=64 if quick else 256, val_n=32)
    base = dict(model=setup.model, seed=seed, data_source=data_source, **small)
    start: OriginalConfig | StartFile | None = None
    if setup.model == "lenet-mnist":
        start = (OriginalConfig(**base) if lenet_start is None
                 else _start_file(str(lenet_start), setup.model))
    settings = dict(base, method=_METHOD_OF.get(defence.name),
                    alpha=0.0 if defence.alpha is None else float(defence.alpha),
                    temperature=(0.001 if defence.temperature is None
                                 else float(defence.temperature)),
                    adversarial=defence.name == "PGD-AT", start_from=start)
    if defence.name == "PGD-AT":
        settings.update(_pgd_at_training(small.get("pgd_start_epoch", 20), pgd_clean_weight))
        if not quick:
            settings["epochs"] = PGD_AT_EPOCHS[setup.model] if pgd_epochs is None else pgd_epochs
    elif not quick:
        settings["epochs"] = training_epochs(setup.model, epochs)
    return OriginalConfig(**settings)


@functools.lru_cache(maxsize=8)
def _start_file(path: str, model: str) -> StartFile:
    return StartFile.of(path, model)  # read once per sweep, not once per row


#: The clean loss's weight in the original protocol's PGD-AT loss, ``w * clean + (1 - w) * PGD``:
#: that of the module compiled beside dc3c764's source, which the authors' saved training history
#: follows (the committed source's is 0.5; see "The PGD-AT loss" above).
PGD_CLEAN_WEIGHT = 0.75

#: The epochs of the original protocol's PGD-AT, per model (natural epochs included): those of the
#: authors' PGD-trained checkpoints behind the tables (dc3c764), read from the validation-loss
#: histories they saved. The code as it last ran validates once per epoch after the 20 natural
#: epochs, without early stopping, so a history of n losses is 20 + n epochs: 49 losses for the
#: MLP, 19 for the LeNet (``results/mnist-authors-histories.csv``; "The PGD-AT epochs" above).
PGD_AT_EPOCHS: dict[str, int] = {"mlp": 69, "lenet-mnist": 39}


#: The epochs of the original protocol's smoothing and natural models, per model: the length
#: whose models match the published attack cells best, of the runner's defaults (7 and 50) and
#: 10 and 20 ("How long the models trained" above; the tables chapter's section of that name
#: compares them cell by cell). A fit, stated as one: no file of the authors records it.
TRAINING_EPOCHS: dict[str, int] = {"mlp": 10, "lenet-mnist": RUNNER_EPOCHS}


def training_epochs(model: str, epochs: int | None = None) -> int:
    """How many epochs the original protocol's smoothing and natural models of ``model`` (a key
    of :data:`MODELS`) train for at most: ``epochs``, else :data:`TRAINING_EPOCHS`."""
    return TRAINING_EPOCHS[model] if epochs is None else epochs


def _pgd_at_training(pgd_start_epoch: int, clean_weight: float | None = None
                     ) -> dict[str, Any]:
    """PGD-AT as dc3c764 trained it: the validation loss and the scheduler start with the first
    PGD epoch; patience 4, factor 0.1; no early stopping; PGD steps of 0.1, the paper's stated
    alpha_PGD for MNIST (the code's 0.5 is a command-line default, and the paper's per-data-set
    steps, 0.1 and 0.02, can only have come from the command line); the clean loss weighs
    ``clean_weight`` (None: :data:`PGD_CLEAN_WEIGHT`)."""
    return dict(patience=4, factor=0.1, early_stop=False, val_start_epoch=pgd_start_epoch,
                pgd_step=0.1, pgd_clean_weight=(PGD_CLEAN_WEIGHT if clean_weight is None
                                                else clean_weight))


def has_converged(history: list[float], threshold: float = 1e-4, window: int = 5) -> bool:
    """The original's early-stopping rule: the mean of ``|l_t - l_{t-1}| / |l_{t-1}|`` over the
    last ``window`` validation losses (fewer while fewer exist) is at most ``threshold``; never
    with fewer than two losses (the original's mean of an empty array is NaN, which fails the
    test)."""
    last = history[-window:]
    if len(last) < 2:
        return False
    changes = [abs(b - a) / abs(a) for a, b in zip(last[:-1], last[1:], strict=True)]
    return sum(changes) / len(changes) <= threshold


def _data(config: OriginalConfig, split: str, data_root: str | None, download: bool):
    from lslib.data import load_dataset

    if config.data_source == "synthetic":
        g = torch.Generator().manual_seed(config.seed + (0 if split == "train" else 1))
        n = config.train_limit or 256 if split == "train" else 2 * TEST_OFFSET
        x = torch.rand((n, 1, 28, 28), generator=g)
        return x, torch.randint(0, 10, (n,), generator=g)
    d = load_dataset("mnist", split, data_root,
                     limit=config.train_limit if split == "train" else None, download=download)
    return d.x, d.y


def _pgd_train(model: nn.Module, x: Tensor, target: Tensor, c: OriginalConfig
               ) -> tuple[Tensor, Tensor]:
    """The original's PGD for adversarial training (eval mode during the attack). Returns the
    adversarial batch and the input of its last gradient step (see ``pgd_grad_leak``)."""
    was = model.training
    model.eval()
    adv = last = x.detach()
    for _ in range(c.pgd_steps):
        last = adv
        adv = adv.clone().requires_grad_(True)
        loss = smooth_cross_entropy(model(adv), target)
        (g,) = torch.autograd.grad(loss, adv)
        eta = torch.clamp(adv + c.pgd_step * g.sign() - x, -c.pgd_eps, c.pgd_eps)
        adv = torch.clamp(x + eta, *c.pgd_clip).detach()
    model.train(was)
    return adv, last


def _leaked_loss(model: nn.Module, last: Tensor, target: Tensor) -> Tensor:
    """The loss whose parameter gradient the original's PGD leaves behind: its attack calls
    ``model.zero_grad()`` then ``backward()`` at every step, so the parameters' ``.grad`` still
    holds the last step's gradient (eval mode, at ``last``) when the training loss is
    back-propagated on top of it, and the SGD step follows their sum."""
    was = model.training
    model.eval()
    loss = smooth_cross_entropy(model(last), target)
    model.train(was)
    return loss


def _batch_loss(model: nn.Module, x: Tensor, y: Tensor,
                smooth: Callable[[Tensor, Tensor], Tensor], config: OriginalConfig,
                adversarial: bool) -> Tensor:
    """One batch's training loss: the smoothed cross-entropy; with ``adversarial`` (PGD-AT from
    ``pgd_start_epoch``), ``w * clean + (1 - w) * PGD`` with ``w = config.pgd_clean_weight``,
    plus the loss whose gradient the original's PGD leaves on the parameters
    (``pgd_grad_leak``)."""
    probs = model(x)
    target = smooth(y, probs)
    loss = smooth_cross_entropy(probs, target)
    if adversarial:
        adv, last = _pgd_train(model, x, target.detach(), config)
        w = config.pgd_clean_weight
        loss = w * loss + (1 - w) * smooth_cross_entropy(model(adv), target)
        if config.pgd_grad_leak:
            loss = loss + _leaked_loss(model, last, target.detach())
    return loss


def train_original(config: OriginalConfig, *, device: torch.device | str = "cpu",
                   data_root: str | None = None, download: bool = False,
                   cache: Path | None = None, progress: bool = False,
                   log: Callable[[str], None] | None = None,
                   max_batches: int | None = None,
                   stop_after_epochs: int | None = None,
                   start_state: dict[str, Tensor] | None = None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """Train as the original trained (see the module docstring). Returns the model (eval mode)
    and a record (seconds, per-epoch seconds, validation losses, learning rates).

    Resumable: after every epoch the whole state (weights, optimiser, scheduler, random number
    generators, history) is written atomically to ``<cache>/<key>.partial.pt``; a run killed
    (``kill -9`` included) resumes from the last finished epoch, with the same result as an
    uninterrupted run. The file is removed when training ends. ``max_batches`` stops after that
    many batches (timing only, nothing saved); ``stop_after_epochs`` returns after that many
    epochs of this call, leaving the partial file (tests). ``start_state``: the weights of
    ``config.start_from`` (else read from, or trained into, the model cache)."""
    from lslib.experiments import atomic_write, cache_dir, provenance

    device = torch.device(device)
    torch.manual_seed(config.seed)
    model = config.build()
    if config.start_from is not None:
        model.load_state_dict(start_state if start_state is not None else
                              _checkpoint(config.start_from, device, data_root, download, cache,
                                          log))
        torch.manual_seed(config.seed)  # dropout's draws: the same whether the checkpoint was
        # handed in, read from the cache or trained just now
    model.to(device)
    x_train, y_train = _data(config, "train", data_root, download)
    x_test, y_test = _data(config, "test", data_root, download)
    x_val = from_pixels(x_test[:config.val_n]).to(device)
    y_val = y_test[:config.val_n].to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=config.patience,
                                                       factor=config.factor)
    gen = torch.Generator().manual_seed(config.seed)
    smooth = _smoother(config)
    start = time.perf_counter()
    val_losses, lrs, epoch_seconds = [], [], []
    batches, batch_wall, batch_cpu = 0, 0.0, 0.0
    partial = cache_dir(cache) / f"{config.key()}.partial.pt"
    first = 0
    if max_batches is None and partial.is_file():
        st = torch.load(partial, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        val_losses, lrs, epoch_seconds = st["val_losses"], st["lrs"], st["epoch_seconds"]
        batches, batch_wall, batch_cpu = st["batches"], st["batch_wall"], st["batch_cpu"]
        first = st["epoch"] + 1
        start -= st["seconds"]
        if log is not None:
            log(f"{config.key()}: resuming after epoch {first} of {config.epochs}")
    for epoch in range(first, config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            w0, c0 = time.perf_counter(), time.process_time()
            xb, yb = from_pixels(x_train[idx]).to(device), y_train[idx].to(device)
            opt.zero_grad()
            loss = _batch_loss(model, xb, yb, smooth, config,
                               config.adversarial and epoch >= config.pgd_start_epoch)
            loss.backward()
            opt.step()
            batches += 1
            batch_wall += time.perf_counter() - w0
            batch_cpu += time.process_time() - c0
            if max_batches is not None and batches >= max_batches:
                break
        if epoch >= config.val_start_epoch:
            model.eval()
            with torch.no_grad():
                probs = model(x_val)
                val_loss = float(smooth_cross_entropy(probs, smooth(y_val, probs)))
            sched.step(val_loss)
            val_losses.append(val_loss)
            if log is not None:
                log(f"{config.key()} epoch {epoch + 1}/{config.epochs} val loss {val_loss:.4f}")
        lrs.append(opt.param_groups[0]["lr"])
        epoch_seconds.append(time.perf_counter() - t0)
        if max_batches is not None and batches >= max_batches:
            break
        if config.early_stop and has_converged(val_losses):
            break
        if max_batches is None and epoch + 1 < config.epochs:
            st = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                  "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(),
                  "rng": torch.get_rng_state(), "val_losses": val_losses, "lrs": lrs,
                  "epoch_seconds": epoch_seconds, "batches": batches, "batch_wall": batch_wall,
                  "batch_cpu": batch_cpu, "epoch": epoch,
                  "seconds": time.perf_counter() - start}
            partial.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(partial, lambda p, st=st: torch.save(st, p))
            if stop_after_epochs is not None and epoch + 1 - first >= stop_after_epochs:
                return model.eval(), {"partial": True}
    partial.unlink(missing_ok=True)
    record = {"config": json.dumps(config.to_dict(), sort_keys=True, default=str),
              "seconds": time.perf_counter() - start, "epoch_seconds": epoch_seconds,
              "batches": batches, "batch_seconds": batch_wall, "batch_cpu_seconds": batch_cpu,
              "losses": val_losses, "learning_rates": lrs, "epochs_run": len(epoch_seconds),
              **{k: str(v) for k, v in provenance(device).items()}}
    return model.eval(), record


def _smoother(config: OriginalConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """``(y, probs) -> q``: the config's smoothed target (one-hot for natural/PGD-AT)."""
    if config.method is None or config.alpha == 0:
        return lambda y, probs: smooth_label(y, 0.0, probs)
    return lambda y, probs: smooth_label(y, config.alpha, probs, config.method,
                                         config.temperature)


def _checkpoint(config: OriginalConfig | StartFile, device: torch.device,
                data_root: str | None, download: bool, cache: Path | None,
                log: Callable[[str], None] | None) -> dict[str, Tensor]:
    """The weights of ``config`` from the model cache, trained and saved there if missing (a
    :class:`StartFile`: read from its file)."""
    from lslib._files import read_cache_entry
    from lslib.experiments import atomic_write, cache_dir

    if isinstance(config, StartFile):
        return read_start_file(config)
    path = cache_dir(cache) / f"{config.key()}.pt"
    if path.exists():
        return read_cache_entry(path)[0]
    model, record = train_original(config, device=device, data_root=data_root,
                                   download=download, cache=cache, log=log)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: torch.save({"state_dict": state, "record": record}, p))
    return state


# --------------------------------------------------------------------------------------------
# attacks (inputs in [-0.5, 0.5], float64; batched, which equals one point at a time: the
# models run in eval mode, every loss is a per-point sum and Adam is elementwise)
# --------------------------------------------------------------------------------------------


def _attack_target(model: nn.Module, x: Tensor, y: Tensor, alpha: float, method: str | None,
                   temperature: float, switches: Switches) -> tuple[Tensor, Tensor]:
    probs = model(x)
    if not switches.smoothed_attack_target or method is None:
        return probs, smooth_label(y, 0.0, probs)
    q = smooth_label(y, alpha, probs, method, temperature)
    return probs, (q if switches.bls_target_gradient else q.detach())


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, alpha: float = 0.0,
         method: str | None = None, temperature: float = 0.001,
         switches: Switches = Switches(), lims: tuple[float, float] = LIMS) -> Tensor:
    """FGSM as the original: one signed step up the loss against the model's own smoothed
    target (differentiated through that target where it depends on x), clipped to ``lims``."""
    x = x.detach().clone().requires_grad_(True)
    probs, q = _attack_target(model, x, y, alpha, method, temperature, switches)
    (g,) = torch.autograd.grad(smooth_cross_entropy(probs, q, "none").sum(), x)
    return torch.clamp(x + eps * g.sign(), *lims).detach()


def bim(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, steps: int = 10,
        alpha: float = 0.0, method: str | None = None, temperature: float = 0.001,
        switches: Switches = Switches(), lims: tuple[float, float] = LIMS) -> Tensor:
    """BIM as the original: the smoothed target fixed at the clean point, ``steps`` signed steps
    of eps/steps, projected on the eps-ball; clipped to ``lims`` only at the end (bug switch)."""
    x = x.detach()
    with torch.no_grad():
        _, q = _attack_target(model, x, y, alpha, method, temperature, switches)
    step = eps / steps
    adv = x.clone()
    for _ in range(steps):
        adv = adv.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(smooth_cross_entropy(model(adv), q, "none").sum(), adv)
        adv = torch.min(torch.max(adv.detach() + step * g.sign(), x - eps), x + eps)
        if not switches.bim_clip_at_end:
            adv = torch.clamp(adv, *lims)
    return torch.clamp(adv, *lims)


def _class_grads(model: nn.Module, x: Tensor, order: Tensor, on_softmax: bool
                 ) -> tuple[Tensor, Tensor]:
    """Outputs ``f[:, order]`` and their gradients (n, K, *x.shape[1:]) at ``x``."""
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    f = out if on_softmax else torch.log(out)
    f = f.gather(1, order)
    grads = [torch.autograd.grad(f[:, k].sum(), x, retain_graph=k < f.shape[1] - 1)[0]
             for k in range(f.shape[1])]
    return f.detach(), torch.stack(grads, 1)


def deepfool(model: nn.Module, x: Tensor, *, steps: int = 10, candidates: int = 10,
             switches: Switches = Switches(), lims: tuple[float, float] = LIMS) -> Tensor:
    """DeepFool as the original: candidates are the classes ordered by the CLEAN output; the
    label is the predicted class; at most ``steps`` steps while the prediction is unchanged; each
    step's r_i = |f_k - f_0| w_k / ||w_k||^2 for the closest k (no overshoot) is added to the
    cumulative r, and the point moves by the whole cumulative r again (``deepfool_readd``);
    clipped to ``lims`` only at the end, after the stopping test (``deepfool_clip_at_end``;
    without it each iterate is clipped before the test)."""
    x0 = x.detach()
    with torch.no_grad():
        order = model(x0).argsort(dim=1, descending=True)[:, :candidates]
    label = order[:, 0]
    point = x0.clone()
    r_tot = torch.zeros_like(x0)
    active = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
    for _ in range(steps):
        if not active.any():
            break
        idx = active.nonzero().squeeze(1)
        f, g = _class_grads(model, point[idx], order[idx], switches.deepfool_on_softmax)
        w = (g[:, 1:] - g[:, :1]).flatten(2)
        df = (f[:, 1:] - f[:, :1]).abs()
        wn = w.norm(dim=2)
        best = (df / wn).argmin(dim=1)  # first minimum, as the original's strict '<'
        rows = torch.arange(len(idx), device=x0.device)
        pert = (df / wn)[rows, best]
        wb = w[rows, best]
        r = (pert / wb.norm(dim=1))[:, None] * wb
        r_tot[idx] = r_tot[idx] + r.view_as(x0[idx])
        if switches.deepfool_readd:
            point[idx] = point[idx] + r_tot[idx]
        else:
            point[idx] = x0[idx] + r_tot[idx]
        if not switches.deepfool_clip_at_end:
            point[idx] = torch.clamp(point[idx], *lims)
        with torch.no_grad():
            still = model(point[idx]).argmax(1) == label[idx]
        active[idx] = still
    return torch.clamp(point, *lims)


def tanh_space_maps(constants: tuple[float, float] = (0.999, 0.999999999999999),
                    lims: tuple[float, float] = LIMS
                    ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """CW's maps (to tanh space, back to pixels). To: ``atanh(0.999999999999999 * u)`` with
    ``u`` the pixel mapped to [-1, 1]; back: ``(1 - exp(-2 a w)) / (1 + exp(-2 b w))`` mapped to
    ``lims``, with ``(a, b) = constants`` (equal constants of 1 give tanh)."""
    a_, b_ = constants
    mid, half = (lims[0] + lims[1]) / 2, (lims[1] - lims[0]) / 2

    def to_attack(x: Tensor) -> Tensor:
        return torch.atanh((x - mid) / half * 0.999999999999999)

    def to_model(w: Tensor) -> Tensor:
        return (1 - torch.exp(-2 * a_ * w)) / (1 + torch.exp(-2 * b_ * w)) * half + mid

    return to_attack, to_model


def carlini_wagner(model: nn.Module, x: Tensor, y: Tensor, *, binary_search_steps: int = 5,
                   steps: int = 10, lr: float = 0.1, initial_const: float = 1.0,
                   kappa: float = 0.0, switches: Switches = Switches(),
                   lims: tuple[float, float] = LIMS) -> Tensor:
    """CW-L2 (untargeted) as the original: minimise ``||x' - x_rec||^2 / range^2 + c max(l_y -
    l_o + kappa, 0)`` with ``l = log p`` and ``o`` the most probable other class, by Adam in tanh
    space from the reconstructed point; c starts at ``initial_const``, is multiplied by 10 until
    a success, then bisected. A binary-search step succeeds when its LAST iterate (before the
    last Adam step) is misclassified, and the returned point is the last such iterate (the
    clean point if none), clipped to ``lims``."""
    to_attack, to_model = tanh_space_maps(switches.cw_constants, lims)
    scale = (lims[1] - lims[0]) ** 2
    x0 = x.detach()
    w0 = to_attack(x0)
    rec = to_model(w0)
    n = len(x0)
    c = torch.full((n,), float(initial_const), dtype=x0.dtype, device=x0.device)
    lower = torch.zeros(n, dtype=x0.dtype, device=x0.device)
    upper = torch.full((n,), math.inf, dtype=x0.dtype, device=x0.device)
    best = x0.clone()
    best_l2 = torch.full((n,), math.inf, dtype=x0.dtype, device=x0.device)
    rows = torch.arange(n, device=x0.device)
    for _ in range(binary_search_steps):
        delta = torch.zeros_like(w0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr)
        found = torch.zeros(n, dtype=torch.bool, device=x0.device)
        for _ in range(steps):
            xa = to_model(w0 + delta)
            probs = model(xa)
            logits = torch.log(probs)
            other = (probs * (probs != probs[rows, y][:, None]).to(probs.dtype)).argmax(1)
            margin = logits[rows, y] - logits[rows, other] + kappa
            mis = torch.clamp(margin, min=0.0)
            if not switches.cw_misclass_gradient:
                mis = mis.detach()
            l2 = ((xa - rec) ** 2).flatten(1).sum(1) / scale
            cost = l2 + c * mis
            opt.zero_grad()
            cost.sum().backward()
            opt.step()
            found = logits.argmax(1) != y
            last_x, last_l2 = xa.detach(), l2.detach()
        take = found if switches.cw_last_success else found & (last_l2 < best_l2)
        best[take] = last_x[take]
        best_l2 = torch.where(take, last_l2, best_l2)
        upper = torch.where(found, c, upper)
        lower = torch.where(found, lower, c)
        c = torch.where(torch.isinf(upper), c * 10, (lower + upper) / 2)
    return torch.clamp(best, *lims)


# --------------------------------------------------------------------------------------------
# one row of the tables
# --------------------------------------------------------------------------------------------


@dataclass
class _Result:
    accuracy: float
    clean_accuracy: float
    norms: list[float] = field(default_factory=list)
    nonfinite: int = 0


def _attacked_batches(model: nn.Module, x: Tensor, y: Tensor, attack: str, *, eps: float,
                      alpha: float, method: str | None, temperature: float, switches: Switches,
                      steps: dict[str, int], batch_size: int
                      ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per batch of ``batch_size`` points: the clean inputs, their attacked versions, whether
    the model gets each clean point right and whether it still does after the attack."""
    model.eval()
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        with torch.no_grad():
            ok = model(xb).argmax(1) == yb
        if attack == "clean":
            adv = xb
        elif attack == "FGSM":
            adv = fgsm(model, xb, yb, eps, alpha=alpha, method=method, temperature=temperature,
                       switches=switches)
        elif attack == "BIM":
            adv = bim(model, xb, yb, eps, steps=steps.get("bim", 10), alpha=alpha,
                      method=method, temperature=temperature, switches=switches)
        elif attack == "DeepFool":
            adv = deepfool(model, xb, steps=steps.get("deepfool", 10), switches=switches)
        elif attack == "CW":
            adv = carlini_wagner(model, xb, yb, binary_search_steps=steps.get("cw_bss", 5),
                                 steps=steps.get("cw", 10), switches=switches)
        else:
            raise ValueError(f"attack must be clean, FGSM, BIM, DeepFool or CW, got {attack!r}")
        with torch.no_grad():
            still = model(adv).argmax(1) == yb
        yield xb, adv, ok, still


def attack_accuracy(model: nn.Module, x: Tensor, y: Tensor, attack: str, *, eps: float = 0.0,
                    alpha: float = 0.0, method: str | None = None, temperature: float = 0.001,
                    switches: Switches = Switches(), steps: dict[str, int] | None = None,
                    batch_size: int = 100) -> _Result:
    """Robust accuracy as the original counts it: correct on the clean point AND on the attacked
    point, over all ``len(y)`` points; with the L2 norms of the successful DeepFool/CW
    perturbations of correctly classified points. ``x`` in [-0.5, 0.5], float64.

    The original's DeepFool can return an image that is not a number: once its re-added
    perturbation has pushed the softmax to exact zeros and ones (float64 underflow), every
    gradient is zero, its step is ``inf * 0/0`` and the image is NaN. The model's output on it is
    NaN, whose argmax is class 0 in numpy (the original's count) and in torch alike, so such a
    point counts as fooled unless its label is 0, as in the original. Its perturbation has no
    norm: ``norms`` holds the finite ones only and ``nonfinite`` counts the others."""
    correct = clean = nonfinite = 0
    norms: list[float] = []
    for xb, adv, ok, still in _attacked_batches(
            model, x, y, attack, eps=eps, alpha=alpha, method=method, temperature=temperature,
            switches=switches, steps=steps or {}, batch_size=batch_size):
        correct += int((ok & still).sum())
        clean += int(ok.sum())
        if attack in ("DeepFool", "CW"):
            fooled = ok & ~still
            norm = (adv - xb)[fooled].flatten(1).norm(dim=1)
            finite = torch.isfinite(norm)
            norms += norm[finite].tolist()
            nonfinite += int((~finite).sum())
    return _Result(correct / len(y), clean / len(y), norms, nonfinite)


def robust_points(model: nn.Module, x: Tensor, y: Tensor, attack: str, *, eps: float = 0.0,
                  alpha: float = 0.0, method: str | None = None, temperature: float = 0.001,
                  switches: Switches = Switches(), steps: dict[str, int] | None = None,
                  batch_size: int = 100) -> Tensor:
    """Per point, whether it counts towards :func:`attack_accuracy` (right before and after the
    attack): a bool tensor of ``len(y)``. Each point is attacked on its own (the original's one
    sample at a time, batched), so the accuracy of any slice of the points is the mean of this
    over the slice."""
    return torch.cat([ok & still for _, _, ok, still in _attacked_batches(
        model, x, y, attack, eps=eps, alpha=alpha, method=method, temperature=temperature,
        switches=switches, steps=steps or {}, batch_size=batch_size)])


def slice_bounds(total: int, n: int) -> tuple[int, int]:
    """The first and one-past-last index of the ``n`` test images the original protocol attacks
    in a test set of ``total``: after the validation slice (from :data:`TEST_OFFSET`), or the
    last ``n`` of a test set too small for that (synthetic data)."""
    offset = TEST_OFFSET if total >= TEST_OFFSET + n else max(0, total - n)
    return offset, offset + n


def test_slice(test: Any, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` test images the original protocol attacks, as the original's inputs, and their
    labels: those after the validation slice (from :data:`TEST_OFFSET`), or the last ``n`` of a
    test set too small for that (synthetic data)."""
    start, stop = slice_bounds(len(test.y), n)
    return from_pixels(test.x[start:stop]), test.y[start:stop]


def test_images(rows: Any) -> str:
    """Which test images the original-protocol ``rows`` (a results table) attacked, in words:
    "1,000-9,999 (CW: 1,000-1,999)", or one range where every attack used the same (the
    slices :func:`test_slice` takes for the rows' ``n``)."""
    def span(n: int) -> str:
        return f"{TEST_OFFSET:,}-{TEST_OFFSET + n - 1:,}"

    sizes = {str(a): sorted({int(n) for n in g}) for a, g in rows.groupby("attack")["n"]}
    if any(len(v) != 1 for v in sizes.values()):
        raise ValueError(f"the rows mix test slices within an attack: {sizes}")
    cw = sizes.pop("CW", None)
    rest = sorted({v[0] for v in sizes.values()})
    if len(rest) > 1:
        raise ValueError(f"the rows' attacks other than CW use different slices: {sizes}")
    if not rest:
        return f"CW: {span(cw[0])}" if cw else "none"
    if cw is None or cw == rest:
        return span(rest[0])
    return f"{span(rest[0])} (CW: {span(cw[0])})"


def protocol_steps(protocol: Any) -> dict[str, int]:
    """The iteration counts of a :class:`lslib.experiments.Protocol`, as
    :func:`attack_accuracy`'s ``steps``."""
    return {"bim": protocol.bim["steps"], "deepfool": protocol.deepfool["steps"],
            "cw_bss": protocol.cw["binary_search_steps"], "cw": protocol.cw["steps"]}


def evaluate(row: Any, model: nn.Module, test: Any, protocol: Any, setup: Any,
             config: OriginalConfig) -> dict[str, Any]:
    """One row of the sweep under the original protocol (called by
    :func:`lslib.experiments.row_job`): the test slice after the validation images, the
    protocol's iteration counts and :attr:`Protocol.switches`. ``l2_median`` and ``l2_mean``
    are over the successful perturbations that are numbers (:func:`attack_accuracy`). Rows
    written before that was so took a NaN perturbation into both: their mean is NaN and their
    median meaningless (:func:`lslib.paper_tables.side_by_side` leaves such a median out)."""
    x, y = test_slice(test, protocol.sizes(setup, row.attack) or len(test.y))
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    torch.manual_seed(0)
    start = time.perf_counter()
    steps = protocol_steps(protocol)
    res = attack_accuracy(model, x, y, row.attack, eps=row.eps * setup.eps_scale,
                          alpha=config.alpha, method=config.method,
                          temperature=config.temperature,
                          switches=protocol.switches or Switches(), steps=steps)
    out: dict[str, Any] = {"n": int(len(y)), "accuracy": res.accuracy,
                           "clean_accuracy": res.clean_accuracy, "l2_median": math.nan,
                           "l2_mean": math.nan}
    if res.norms:
        out["l2_median"] = statistics.median(res.norms)
        out["l2_mean"] = statistics.fmean(res.norms)
    out["seconds"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------
# one bug at a time
# --------------------------------------------------------------------------------------------


class AsOriginal(nn.Module):
    """A model of :mod:`lslib.models` (logits on [0, 1] pixels) as the original's: float64,
    inputs in [-0.5, 0.5], softmax output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.double()

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(self.model(x + 0.5), dim=1)


#: Which attacks each switch acts on (the switches a chapter turns off one at a time).
SWITCH_ATTACKS: dict[str, tuple[str, ...]] = {
    "smoothed_attack_target": ("FGSM", "BIM"),
    "bls_target_gradient": ("FGSM",),
    "bim_clip_at_end": ("BIM",),
    "deepfool_on_softmax": ("DeepFool",),
    "deepfool_readd": ("DeepFool",),
    "deepfool_clip_at_end": ("DeepFool",),
    "cw_constants": ("CW",),
    "cw_last_success": ("CW",),
}


def bug_ladder(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, alpha: float = 0.0,
               method: str | None = None, temperature: float = 0.001,
               steps: dict[str, int] | None = None,
               switches: tuple[str, ...] = tuple(SWITCH_ATTACKS),
               attacks: tuple[str, ...] = ("FGSM", "BIM", "DeepFool", "CW")) -> Any:
    """Each bug turned off alone: per switch and attack it acts on, the accuracy with every bug
    (``Switches()``), with that one switch set to its correct value, and the change; then every
    attack with all bugs off (``Switches.fixed()``, switch "all"). ``model`` is an original-style
    model (softmax, float64; see :class:`AsOriginal`), ``x`` in [-0.5, 0.5]. FGSM and BIM use
    ``eps``; only the attacks in ``attacks`` run. Returns a :class:`pandas.DataFrame` (switch,
    attack, with_bug, without, change)."""
    import pandas as pd

    acc: dict[tuple[str, Switches], float] = {}

    def run(attack: str, sw: Switches) -> float:
        if (attack, sw) not in acc:
            acc[attack, sw] = attack_accuracy(model, x, y, attack, eps=eps, alpha=alpha,
                                              method=method, temperature=temperature,
                                              switches=sw, steps=steps).accuracy
        return acc[attack, sw]

    rows = []
    for name in switches:
        for attack in (a for a in SWITCH_ATTACKS[name] if a in attacks):
            bug, off = run(attack, Switches()), run(attack, Switches.without(name))
            rows.append({"switch": name, "attack": attack, "with_bug": bug, "without": off,
                         "change": off - bug})
    for attack in attacks:
        bug, off = run(attack, Switches()), run(attack, Switches.fixed())
        rows.append({"switch": "all", "attack": attack, "with_bug": bug, "without": off,
                     "change": off - bug})
    return pd.DataFrame(rows, columns=["switch", "attack", "with_bug", "without", "change"])
