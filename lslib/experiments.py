"""The experiment runner that reproduces the paper's Tables 2-6 (Section 4).

A sweep is plain data (:class:`Sweep`: set-ups x defences (method x alpha x T, natural, PGD-AT) x
protocols x attacks x eps). :func:`run_sweep` turns it into one tidy :class:`pandas.DataFrame`,
one row per (setup, defence, alpha, T, protocol, attack, eps), with the accuracy, the number of
test points, the median/mean L2 norm for DeepFool/CW, wall times and provenance (lslib version, git
commit and dirty flag, device, seed).

Resumable, one writer, one process or many
------------------------------------------
The calling process is the *driver* and the only writer. Every finished row is appended (one JSON
line, flushed and fsync'ed) to a journal beside the output, ``<out>.journal.jsonl``; the CSV is
rebuilt from the journal every few seconds and at the end, and written atomically (temporary file
+ :func:`os.replace`). Kill the run at any moment (``kill -9`` included) and start it again: rows
already in the journal are skipped, a torn last journal line is dropped (that row is recomputed),
a damaged line is set aside in ``<out>.journal.jsonl.damaged`` with a warning, and rows are
deduplicated by their key, so the final table is the same as an uninterrupted run's. Every random
choice of a row (PGD random starts) is seeded from the row's key, so the order rows are computed in
does not matter. A ``<out>.meta.json`` records each invocation (command, execution, start, end, rows
computed). The driver holds ``<out>.lock`` while it runs: a second driver on the same output is
refused with a message, not merged.

The work itself runs on :mod:`lslib.runner`: in this process, in order (the default), or as Ray
tasks on a local Ray (``execution=Execution(workers=N)``, the command line's ``--workers N``) or a
Ray cluster (``Execution(address=...)``, ``--address``), GPUs per task included. Trained models
are cached under ``<cache>/<key>.pt`` where ``key`` is :meth:`lslib.train.TrainConfig.key` (a hash
of every training setting), so the two protocols and later runs share them; the driver writes the
cache, workers get the weights through Ray. The cache folder is the ``cache_dir`` argument, else
``$LSLIB_CACHE``, else ``~/.cache/lslib/models``. Weights are never written under ``results/``.

The three protocols
-------------------
``original`` is the authors' code path, bugs included (:mod:`lslib.original`: its own float64
softmax models trained as the original trained them, its own attacks, each bug a named switch of
:class:`lslib.original.Switches`), on the test images the authors' result files used (1000-9999;
CW 1000-1999); it covers the MNIST set-ups. Its models are cached like the
others (keys ``orig-...``); a config that trains and builds itself is the runner's only seam.

``paper`` reproduces the original code's evaluation (``../shared/notes/original-code.md``):
FGSM and BIM attack the loss against the model's OWN SMOOTHED TARGET (:func:`lslib.train.build_loss`
with ``reduction="none"``; plain cross-entropy for the natural and PGD-trained models), BIM runs 10
steps of eps/10 without random start, DeepFool runs at most 10 iterations without overshoot on the
softmax outputs (the original differentiated probabilities, not logits), CW runs 5 binary-search
steps x 10 Adam steps, lr 0.1, c0 = 1, kappa 0, no early abort; test slices are small (MNIST: the
first 2000 test images, as at the original's HEAD). What our functions do not reproduce (the
``original`` protocol does): the original DeepFool's bug that re-adds the cumulative perturbation
each iteration, and its CW returning the last success instead of the smallest; batch size 1
versus batches changes nothing. (The original's CW class runs 4 binary-search steps, and the
published CW cells took more Adam steps than 10: the ``original`` protocol has both.)
In both protocols BIM stops attacking a point at the first iterate that fools the model
(``early_stop``): a point counts as fooled when any iterate fooled it, with or without the stop,
so the accuracies are the same and only the steps on fooled points are saved.

``strong`` is what a robustness claim should be checked with: true-label cross-entropy, PGD (in
the BIM rows) with a random start, 30 steps of 2.5 eps / 30 (Madry et al.'s ratio) and 2 restarts
(the second re-attacks only the points the first did not fool), DeepFool 50 steps overshoot 0.02,
CW 4 binary-search steps x 100 Adam steps (lr 0.1, c0 = 1, early abort per sample, each run
started at DeepFool's adversarial where DeepFool found one: on the smoothed LeNets whose logit
gradients are a few hundredths, CW from x needs a constant beyond a short search and stalls short
of the boundary; CW optimises in tanh
space, where a pixel at exactly 0, most of MNIST, starts at w = -7.25, so it needs about
lr x steps >= 7 to move background pixels at all: the paper protocol's 10 steps of 0.1 cannot,
which makes that CW much weaker than its settings suggest). These are sized for the
CPU budget of the MNIST reproduction (a few minutes per model on 2 shared cores): the first 1000
test images (CW: the first 500) and the full test set for clean accuracy. They are far stronger
than the paper protocol, not the strongest possible; ``lslib.attacks`` takes larger settings.

The eps of the tables are in the original's pixel units: MNIST was scaled to [-0.5, 0.5] (range 1),
CIFAR10/SVHN to [-1, 1] (range 2), so for those an eps of the tables is ``eps / 2`` on our [0, 1]
pixels (:attr:`SetUp.eps_scale`; the row keeps both, ``eps`` and ``eps_pixels``). The PGD-training
eps and step of the CIFAR/SVHN set-ups (0.05 and 0.02 in the paper) get the same factor.

``quick=True`` shrinks everything (training slice, epochs, test slices, attack iterations) so that a
whole set-up runs in seconds for CI; ``data_source="synthetic"`` replaces the data by random tensors
of the right shape (tests of the CIFAR10/SVHN set-ups, which cannot be downloaded here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from lslib._checks import check_int_at_least, check_nonnegative, check_positive, check_unit_interval
from lslib.data import TensorData, load_dataset
from lslib.models import build_model
from lslib.train import AdversarialTraining, TrainConfig, build_loss, seed_everything, train_model

if TYPE_CHECKING:
    from lslib.runner import Execution

__all__ = [
    "ATTACK_NAMES",
    "DEFENCE_NAMES",
    "PROTOCOLS",
    "SETUPS",
    "TIMING_COLUMNS",
    "Defence",
    "OutputBusyError",
    "Protocol",
    "Row",
    "SetUp",
    "Sweep",
    "SweepInterrupted",
    "atomic_write",
    "cache_dir",
    "cpu_kind",
    "deepfool_settings",
    "device_name",
    "merge_results",
    "provenance",
    "read_journal",
    "read_results",
    "run_sweep",
    "source_hashes",
    "table_from_journal",
    "train_fresh",
    "train_or_load",
]

DEFENCE_NAMES = ("ALS", "SLS", "BLS", "SBLS", "natural", "PGD-AT")
ATTACK_NAMES = ("clean", "FGSM", "BIM", "DeepFool", "CW")
_METHOD_OF = {"ALS": "adversarial", "SLS": "standard", "BLS": "boltzmann", "SBLS": "second_best"}
#: Columns that depend on when/where a row ran, not on what it computed.
TIMING_COLUMNS = ("seconds", "train_seconds", "finished", "lslib_version", "git_commit",
                  "git_dirty", "source_hash", "device")
#: Bump when a change here changes what a row computes (journal rows of other versions re-run).
RUNNER_VERSION = 1


# --------------------------------------------------------------------------------------------
# set-ups, defences, protocols: plain data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetUp:
    """One of the paper's five set-ups (a row group of Tables 2-6) and how we train it."""

    name: str
    table_name: str
    dataset: str
    model: str
    input_shape: tuple[int, int, int]
    epochs: int
    batch_size: int
    lr: float
    eps: tuple[float, ...] = (0.05, 0.2, 0.4)
    eps_scale: float = 1.0
    paper_test_n: int = 2000
    adv_eps: float = 0.25
    adv_step: float = 0.1

    def adversarial_training(self) -> AdversarialTraining:
        """The paper's PGD-3 baseline, in our [0, 1] pixel units."""
        return AdversarialTraining(eps=self.adv_eps * self.eps_scale,
                                   step_size=self.adv_step * self.eps_scale)


_CIFAR = dict(input_shape=(3, 32, 32), eps_scale=0.5, adv_eps=0.05, adv_step=0.02)
SETUPS: dict[str, SetUp] = {s.name: s for s in (
    SetUp("mnist-linear", "MNIST Linear", "mnist", "mlp", (1, 28, 28), epochs=3, batch_size=128,
          lr=1e-3),
    SetUp("mnist-lenet", "MNIST LeNet", "mnist", "lenet-mnist", (1, 28, 28), epochs=4,
          batch_size=128, lr=3e-3),
    SetUp("cifar-lenet", "CIFAR LeNet", "cifar10", "lenet-cifar", epochs=30, batch_size=128,
          lr=2e-3, paper_test_n=1000, **_CIFAR),
    SetUp("cifar-resnet", "CIFAR ResNet", "cifar10", "resnet18", epochs=30, batch_size=128,
          lr=1e-3, eps=(0.05, 0.2), paper_test_n=1000, **_CIFAR),
    SetUp("svhn-lenet", "SVHN LeNet", "svhn", "lenet-cifar", epochs=20, batch_size=128, lr=2e-3,
          eps=(0.05, 0.2), paper_test_n=300, **_CIFAR),
)}
"""The set-ups by CLI name. Epochs, batch and peak learning rate are ours (see
:mod:`lslib.train`); the MNIST ones were measured to reach the paper's standard accuracies on this
CPU, the CIFAR10/SVHN ones are a GPU budget not yet run (the paper's PGD-AT is skipped for
cifar-resnet, as in the paper)."""


@dataclass(frozen=True)
class Defence:
    """A trained model's defence: "natural", "PGD-AT" or a smoothing method ("ALS", "SLS", "BLS",
    "SBLS") with ``alpha`` and, for BLS, ``temperature`` (probability scale, as the original)."""

    name: str
    alpha: float | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.name not in DEFENCE_NAMES:
            raise ValueError(f"defence must be one of {DEFENCE_NAMES}, got {self.name!r}")
        if (self.name in _METHOD_OF) != (self.alpha is not None):
            raise ValueError(f"{self.name} {'needs' if self.name in _METHOD_OF else 'takes no'} "
                             f"alpha")
        if (self.name == "BLS") != (self.temperature is not None):
            raise ValueError("a temperature is given for BLS and only for BLS")
        if self.alpha is not None:
            check_unit_interval(f"{self.name} alpha", self.alpha)
        if self.temperature is not None:  # T <= 0 has no meaning (and 0 must not become 1)
            check_positive(f"{self.name} temperature", self.temperature)

    def train_config(self, setup: SetUp, *, seed: int = 0, quick: bool = False,
                     data_source: str = "real") -> TrainConfig:
        epochs, limit = (1, 1024) if quick else (setup.epochs, None)
        if data_source == "synthetic":
            limit = 64 if quick else 256
        return TrainConfig(
            model=setup.model, dataset=setup.dataset, method=_METHOD_OF.get(self.name),
            alpha=0.0 if self.alpha is None else self.alpha,
            temperature=1.0 if self.temperature is None else self.temperature,
            adversarial=setup.adversarial_training() if self.name == "PGD-AT" else None,
            epochs=epochs, batch_size=setup.batch_size, lr=setup.lr, seed=seed,
            train_limit=limit, data_source=data_source,
        )


@dataclass(frozen=True)
class Protocol:
    """How a model is attacked. ``smoothed_loss``: FGSM/BIM maximise the loss against the model's
    own smoothed target (the original code) instead of the true label's cross-entropy.
    ``bim`` holds keyword arguments of :func:`lslib.attacks.bim` with the step given as
    ``step_frac`` (step = step_frac * eps); ``n``: test images per attack (None: the set-up's
    paper slice), ``n_clean`` for the clean accuracy (None: the same as ``n``; 0: the whole test
    set), ``n_cw`` for CW. ``bls_temperature``: the BLS temperature (probability scale) a sweep
    uses under this protocol unless it is given its own."""

    name: str
    smoothed_loss: bool
    bim: dict[str, Any]
    deepfool: dict[str, Any]
    cw: dict[str, Any]
    deepfool_on_softmax: bool = False
    n: int | None = None
    n_clean: int | None = None
    n_cw: int | None = None
    engine: str = "lslib"
    switches: Any = None
    bls_temperature: float = 0.001

    def quick(self) -> Protocol:
        """A miniature of the protocol for CI (same code paths, tiny iteration counts)."""
        bim = {**self.bim, "steps": min(self.bim["steps"], 3),
               "restarts": min(self.bim.get("restarts", 1), 2)}
        return dataclasses.replace(
            self, bim=bim, deepfool={**self.deepfool, "steps": 3},
            cw={**self.cw, "binary_search_steps": 2, "steps": 5}, n=64, n_clean=128, n_cw=32)

    def sizes(self, setup: SetUp, attack: str) -> int | None:
        """How many test images ``attack`` uses (None: the whole test set)."""
        n = setup.paper_test_n if self.n is None else self.n
        if attack == "clean":
            n = n if self.n_clean is None else (self.n_clean or None)
        elif attack == "CW" and self.n_cw is not None:
            n = self.n_cw
        return n

    def describe(self, attack: str) -> str:
        """The exact attack settings of a row, as a string for the table."""
        if self.engine == "original":
            return self._describe_original(attack)
        loss = "smoothed-target" if self.smoothed_loss else "ce"
        if attack == "clean":
            return "none"
        if attack == "FGSM":
            return f"fgsm loss={loss}"
        if attack == "BIM":
            kw = {k: v for k, v in self.bim.items() if k != "step_frac"}
            return (f"bim loss={loss} step=eps*{self.bim['step_frac']:g} "
                    + " ".join(f"{k}={v}" for k, v in sorted(kw.items())))
        if attack == "DeepFool":
            on = " on=softmax" if self.deepfool_on_softmax else ""
            return "deepfool" + on + " " + " ".join(
                f"{k}={_setting(v)}" for k, v in sorted(self.deepfool.items()))
        return "cw " + " ".join(f"{k}={v}" for k, v in sorted(self.cw.items()))

    def _describe_original(self, attack: str) -> str:
        from lslib.original import Switches

        sw = self.switches or Switches()
        if attack == "clean":
            return "none (original)"
        steps = {"FGSM": "", "BIM": f" steps={self.bim['steps']} step=eps/{self.bim['steps']}",
                 "DeepFool": f" steps={self.deepfool['steps']} candidates=10",
                 "CW": f" binary_search_steps={self.cw['binary_search_steps']} "
                       f"steps={self.cw['steps']} lr=0.1 c0=1 kappa=0"}[attack]
        return f"original {attack.lower()}{steps} switches: {sw.describe()}"


def _setting(value: Any) -> str:
    """One attack setting as :meth:`Protocol.describe` writes it: a tuple as ``10,3,1``."""
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def deepfool_settings(described: str) -> dict[str, Any]:
    """The keyword arguments of :func:`lslib.attacks.deepfool` behind a row's
    ``attack_settings`` (what :meth:`Protocol.describe` wrote for DeepFool, e.g.
    ``deepfool candidates=10 overshoot=0.02 relu_surrogate=10,3,1 steps=50``)."""
    words = str(described).split()
    if not words or words[0] != "deepfool" or any("=" not in w for w in words[1:]):
        raise ValueError(f"attack_settings {described!r} is not a DeepFool row's settings")
    if "on=softmax" in words:
        raise ValueError(f"attack_settings {described!r}: DeepFool on the softmax outputs (the "
                         "paper protocol) is not a keyword argument of lslib.attacks.deepfool")

    def value(text: str) -> Any:
        if "," in text:
            return tuple(float(v) for v in text.split(","))
        try:
            return int(text)
        except ValueError:
            return float(text)

    return {k: value(v) for k, v in (w.split("=", 1) for w in words[1:])}


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        "paper", smoothed_loss=True,
        bim=dict(steps=10, step_frac=0.1, random_start=False, restarts=1, early_stop=True),
        deepfool=dict(steps=10, overshoot=0.0, candidates=10), deepfool_on_softmax=True,
        cw=dict(binary_search_steps=5, steps=10, lr=0.1, initial_const=1.0, kappa=0.0,
                abort_early=False),
    ),
    "strong": Protocol(
        "strong", smoothed_loss=False,
        bim=dict(steps=30, step_frac=2.5 / 30, random_start=True, restarts=2, early_stop=True),
        deepfool=dict(steps=50, overshoot=0.02, candidates=10, relu_surrogate=(10.0, 3.0, 1.0)),
        cw=dict(binary_search_steps=4, steps=100, lr=0.1, initial_const=1.0, kappa=0.0,
                abort_early=True, start="deepfool"),
        n=1000, n_clean=0, n_cw=500,
    ),
}
# the authors' code path, bugs included (lslib.original; MNIST set-ups only): the paper
# protocol's attack settings, BIM without its early stop, CW as the original's CW class runs it
# (4 binary-search steps; 50 Adam steps each, see lslib.original "How many CW iterations"), on
# their test slices (lslib.original "Which test images"): test images 1000-9999 for FGSM, BIM,
# DeepFool and the clean accuracy, 1000-1999 for CW; BLS at the temperature of the authors' one
# file of BLS table cells, 0.01 (lslib.original "Which temperature")
PROTOCOLS["original"] = dataclasses.replace(
    PROTOCOLS["paper"], name="original", bim={**PROTOCOLS["paper"].bim, "early_stop": False},
    cw={**PROTOCOLS["paper"].cw, "binary_search_steps": 4, "steps": 50},
    n=9000, n_cw=1000, engine="original", bls_temperature=0.01)
#: Set-ups the original protocol covers (its models and data are the MNIST ones).
ORIGINAL_SETUPS = ("mnist-linear", "mnist-lenet")


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One cell of the results: what to compute and its key."""

    setup: str
    defence: Defence
    protocol: str
    attack: str
    eps: float  # in the paper's units; 0 for clean, NaN for the unbounded DeepFool/CW

    @property
    def key(self) -> str:
        d = self.defence
        return "|".join([self.setup, d.name, _fmt(d.alpha), _fmt(d.temperature), self.protocol,
                         self.attack, _fmt(self.eps)])


def _fmt(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}"


def _check_sweep_numbers(sweep: Sweep) -> None:
    """The lists are non-empty where they are used and every number is in its range."""
    for name in ("setups", "protocols", "attacks"):
        if not getattr(sweep, name):
            raise ValueError(f"{name} is empty: give at least one")
    if not sweep.methods and not sweep.baselines:
        raise ValueError("methods and baselines are both empty: give at least one defence")
    if sweep.methods and not sweep.alphas:
        raise ValueError("alphas is empty: the smoothing methods need at least one alpha")
    if "BLS" in sweep.methods and sweep.temperatures is not None and not sweep.temperatures:
        raise ValueError("temperatures is empty: BLS needs at least one temperature (or None "
                         "for each protocol's)")
    for a in sweep.alphas:
        check_unit_interval("alphas entry", a)
    for t in sweep.temperatures or ():
        check_positive("temperatures entry", t)
    if sweep.eps is not None:
        if not sweep.eps:
            raise ValueError("eps is empty: give at least one budget, or None for the set-up's")
        for e in sweep.eps:
            check_nonnegative("eps entry", e)
    check_int_at_least("seed", sweep.seed, 0)
    if not isinstance(sweep.quick, bool):
        raise TypeError(f"quick must be True or False, got {sweep.quick!r}")
    if sweep.n_test is not None:
        check_int_at_least("n_test", sweep.n_test, 1)


@dataclass(frozen=True)
class Sweep:
    """A sweep as data: the product set-ups x defences x protocols x attacks x eps.

    The defences are every smoothing method in ``methods`` at every alpha in ``alphas`` (BLS also
    at every T in ``temperatures``; None: at each protocol's, :attr:`Protocol.bls_temperature`)
    plus the ``baselines`` ("natural", "PGD-AT"). ``eps=None``
    uses each set-up's eps (the paper's 0.05, 0.2, 0.4; 0.4 is missing for CIFAR ResNet and SVHN).
    ``quick`` shrinks training and attacks (:meth:`Protocol.quick`); ``n_test`` overrides every
    test-slice size of the protocols; ``data_source="synthetic"`` uses random stand-in data.
    ``lenet_start``: under the original protocol the MNIST LeNet starts from the weights in this
    file (the authors' ``lenet_mnist_model.pth``) instead of a checkpoint trained here.
    ``pgd_clean_weight``: under the original protocol PGD-AT trains on ``w * clean + (1 - w) *
    PGD`` with this ``w`` (None: the protocol's, :data:`lslib.original.PGD_CLEAN_WEIGHT`);
    ``pgd_epochs``: and for this many epochs (None: the set-up's,
    :data:`lslib.original.PGD_AT_EPOCHS`). ``epochs``: under the original protocol the smoothing
    and natural models train for at most this many epochs (None: the set-up's,
    :data:`lslib.original.TRAINING_EPOCHS`; :func:`lslib.original.train_config`).
    """

    setups: tuple[str, ...]
    protocols: tuple[str, ...] = ("paper", "strong")
    methods: tuple[str, ...] = ("ALS", "SLS", "BLS", "SBLS")
    alphas: tuple[float, ...] = (0.005, 0.1, 0.4)
    temperatures: tuple[float, ...] | None = None
    baselines: tuple[str, ...] = ("natural", "PGD-AT")
    attacks: tuple[str, ...] = ATTACK_NAMES
    eps: tuple[float, ...] | None = None
    seed: int = 0
    quick: bool = False
    data_source: str = "real"
    n_test: int | None = None
    lenet_start: str | None = None
    pgd_clean_weight: float | None = None
    pgd_epochs: int | None = None
    epochs: int | None = None

    def __post_init__(self) -> None:
        for name, values, allowed in (("setups", self.setups, SETUPS),
                                      ("protocols", self.protocols, PROTOCOLS),
                                      ("methods", self.methods, _METHOD_OF),
                                      ("baselines", self.baselines, ("natural", "PGD-AT")),
                                      ("attacks", self.attacks, ATTACK_NAMES)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"unknown {name} {bad}: choose from {sorted(allowed)}")
        if self.data_source not in ("real", "synthetic"):
            raise ValueError(f"data_source must be 'real' or 'synthetic', got {self.data_source!r}")
        if self.lenet_start is not None:
            if "original" not in self.protocols or "mnist-lenet" not in self.setups:
                raise ValueError("lenet_start is the original protocol's LeNet checkpoint: it "
                                 "needs protocol 'original' and set-up mnist-lenet")
            if not Path(self.lenet_start).is_file():
                raise ValueError(f"lenet_start: no such file: {self.lenet_start}")
        if self.pgd_clean_weight is not None:
            check_unit_interval("pgd_clean_weight", self.pgd_clean_weight)
        if self.pgd_epochs is not None:
            check_int_at_least("pgd_epochs", self.pgd_epochs, 1)
        for name in ("pgd_clean_weight", "pgd_epochs"):
            if getattr(self, name) is not None and ("original" not in self.protocols
                                                    or "PGD-AT" not in self.baselines):
                raise ValueError(f"{name} is the original protocol's PGD-AT setting: it needs "
                                 "protocol 'original' and baseline PGD-AT")
        if self.epochs is not None:
            check_int_at_least("epochs", self.epochs, 1)
            if "original" not in self.protocols:
                raise ValueError("epochs is the original protocol's training length: it needs "
                                 "protocol 'original'")
        if "original" in self.protocols:
            other = [s for s in self.setups if s not in ORIGINAL_SETUPS]
            if other:
                raise ValueError(f"protocol 'original' covers {', '.join(ORIGINAL_SETUPS)} only, "
                                 f"not {', '.join(other)}")
        _check_sweep_numbers(self)

    def bls_temperatures(self, protocol: str | None = None) -> tuple[float, ...]:
        """The BLS temperatures of the sweep under ``protocol`` (None: under any of its
        protocols): ``temperatures``, or the protocols' own (:attr:`Protocol.bls_temperature`)."""
        if self.temperatures is not None:
            return tuple(self.temperatures)
        names = self.protocols if protocol is None else (protocol,)
        return tuple(dict.fromkeys(PROTOCOLS[p].bls_temperature for p in names))

    def defences(self, setup: SetUp | None = None,
                 protocol: str | None = None) -> list[Defence]:
        """The defences of the sweep on ``setup`` (PGD-AT is not run on CIFAR ResNet) under
        ``protocol`` (None: under any of the sweep's protocols; it sets BLS's temperatures)."""
        out = []
        for m in self.methods:
            for a in self.alphas:
                temps = self.bls_temperatures(protocol) if m == "BLS" else (None,)
                out += [Defence(m, a, t) for t in temps]
        for b in self.baselines:
            if b == "PGD-AT" and setup is not None and setup.name == "cifar-resnet":
                continue  # the paper did not run PGD training on ResNet18 (too slow)
            out.append(Defence(b))
        return out

    def protocol(self, name: str) -> Protocol:
        p = PROTOCOLS[name]
        p = p.quick() if self.quick else p
        if self.n_test is not None:
            p = dataclasses.replace(p, n=self.n_test, n_clean=self.n_test, n_cw=self.n_test)
        return p

    def rows(self) -> list[Row]:
        """Every row, in the order they are computed: set-up, protocol, defence, attack, eps."""
        out = []
        for s in self.setups:
            setup = SETUPS[s]
            eps = setup.eps if self.eps is None else self.eps
            for p in self.protocols:
                for d in self.defences(setup, p):
                    for a in self.attacks:
                        if a in ("FGSM", "BIM"):
                            out += [Row(s, d, p, a, float(e)) for e in eps]
                        else:
                            out.append(Row(s, d, p, a, 0.0 if a == "clean" else math.nan))
        return out


# --------------------------------------------------------------------------------------------
# provenance, cache, data
# --------------------------------------------------------------------------------------------


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The model cache: ``path``, else ``$LSLIB_CACHE``, else ``~/.cache/lslib/models``."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("LSLIB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lslib" / "models"


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str, bool | None]:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        # the package's own files, untracked ones included: results depend on them. No optional
        # locks: a status killed mid-call (kill -9 of a run) must not leave .git/index.lock
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain",
                                "--untracked-files=all", "--",
                                str(here)], cwd=here, capture_output=True, text=True,
                               check=True, timeout=10).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def cpu_kind() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`) and the vector
    instruction set torch's kernels use on it (``AVX512``, ``AVX2``, ...): two machines that
    differ here may round differently, so a training can differ in its last bits."""
    import platform

    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = " ".join((name or platform.processor() or "unknown CPU").split())
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # older torch
        capability = ""
    return f"{name}, {capability}" if capability else name


def device_name(device: torch.device) -> str:
    """A device as the provenance records it: ``cuda:0 (NVIDIA H200)``, ``cpu (2 threads,
    Intel(R) Xeon(R) Processor, AVX512)`` (:func:`cpu_kind`)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {cpu_kind()})"


def source_hashes() -> dict[str, str]:
    """sha256 (12 hex digits) of every module of the package as it is on disk now: with a dirty
    tree this still says exactly which code produced a result."""
    here = Path(__file__).resolve().parent
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in sorted(here.glob("*.py"))}


def provenance(device: str | torch.device = "cpu") -> dict[str, Any]:
    """lslib and torch versions, git commit and dirty flag, a hash of the package's sources,
    device, python."""
    import lslib

    commit, dirty = _git_state()
    files = source_hashes()
    return {
        "lslib_version": lslib.__version__, "git_commit": commit, "git_dirty": dirty,
        "source_hash": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12],
        "device": device_name(torch.device(device)), "torch_version": torch.__version__,
        "python": sys.version.split()[0],
    }


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary)``, fsync, then :func:`os.replace`: a reader (or a
    run killed mid-write) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _synthetic(setup: SetUp, split: str, n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    x = torch.rand((n, *setup.input_shape), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorData(x, y)


def _load(setup: SetUp, split: str, limit: int | None, *, data_source: str, root, seed: int,
          download: bool) -> TensorData:
    if data_source == "synthetic":
        return _synthetic(setup, split, limit or 256, seed)
    return load_dataset(setup.dataset, split, root, limit=limit, download=download)


@functools.lru_cache(maxsize=4)
def _test_split(setup_name: str, data_source: str, root: str | None, seed: int,
                download: bool) -> TensorData:
    """A set-up's test split, read once per process (a Ray worker keeps it between tasks)."""
    return _load(SETUPS[setup_name], "test", None if data_source == "real" else 256,
                 data_source=data_source, root=root, seed=seed, download=download)


def sweep_test_split(setup_name: str, data_source: str, data_root: str | None, seed: int,
                     download: bool = False) -> TensorData:
    """The test split a sweep's rows attack (its sweep seed ``seed``; the seed matters for
    synthetic data only): what a tool that re-runs a committed row must load."""
    return _test_split(setup_name, data_source, data_root, seed + 7, download)


def train_fresh(setup: SetUp, config: TrainConfig, *, device: torch.device, data_root=None,
                download: bool = False, progress: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``config``'s model from its seed (no cache). Returns the model (eval mode, on
    ``device``) and its training record (config, seconds, losses, provenance)."""
    seed_everything(config.seed)
    model = build_model(config.model)
    data = _load(setup, "train", config.train_limit, data_source=config.data_source,
                 root=data_root, seed=config.seed, download=download)
    if log is not None:
        log(f"training {config.key()}: {config.model} {config.method or 'natural'} "
            f"alpha={config.alpha}{' PGD-AT' if config.adversarial else ''} on {len(data)} "
            f"images, {config.epochs} epochs")
    result = train_model(model, data, config, device=device, progress=progress, reseed=False)
    record = {"config": json.dumps(config.to_dict(), sort_keys=True), "seconds": result.seconds,
              "losses": result.losses, "images_per_second": result.images_per_second,
              **{k: str(v) for k, v in provenance(device).items()}}
    return model.eval(), record


def train_or_load(setup: SetUp, config: TrainConfig, *, cache: Path, device: torch.device,
                  data_root=None, download: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> tuple[nn.Module, dict[str, Any]]:
    """The model of ``config``: loaded from ``cache/<key>.pt`` if there, else trained and saved
    (atomically). Returns the model (eval mode, on ``device``) and its training record."""
    from lslib._files import read_cache_entry
    from lslib.runner import ModelSpec, build_trained

    path = Path(cache) / f"{config.key()}.pt"
    if path.exists():
        state, record = read_cache_entry(path)
        return build_trained(ModelSpec(setup.name, config), state, torch.device(device)), record
    model, record = train_fresh(setup, config, device=torch.device(device), data_root=data_root,
                                download=download, progress=progress, log=log)
    Path(cache).mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda p: torch.save({"state_dict": state, "record": record}, p))
    return model, record


# --------------------------------------------------------------------------------------------
# one row
# --------------------------------------------------------------------------------------------


def _row_seed(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def _attack_fn(row: Row, protocol: Protocol, setup: SetUp, config: TrainConfig,
               device: torch.device) -> tuple[Callable, nn.Module | None]:
    """The attack callable of a row (for robust_accuracy) and, if any, a wrapped model."""
    from lslib import attacks

    loss: Any = build_loss(config, reduction="none") if protocol.smoothed_loss else "ce"
    eps = row.eps * setup.eps_scale
    if row.attack == "FGSM":
        return functools.partial(attacks.fgsm, eps=eps, loss=loss), None
    if row.attack == "BIM":
        kw = dict(protocol.bim)
        step = kw.pop("step_frac") * eps
        gen = torch.Generator(device=device).manual_seed(_row_seed(row.key))
        return functools.partial(attacks.bim, eps=eps, step_size=step, loss=loss, generator=gen,
                                 **kw), None
    if row.attack == "DeepFool":
        return functools.partial(attacks.deepfool, **protocol.deepfool), (
            "softmax" if protocol.deepfool_on_softmax else None)
    if row.attack == "CW":
        return functools.partial(attacks.carlini_wagner_l2, **protocol.cw), None
    raise ValueError(row.attack)


def _evaluate(row: Row, model: nn.Module, test: TensorData, protocol: Protocol, setup: SetUp,
              config: TrainConfig, device: torch.device, progress: bool) -> dict[str, Any]:
    from lslib.attacks import robust_accuracy

    n = protocol.sizes(setup, row.attack)
    x, y = (test.x, test.y) if n is None else (test.x[:n], test.y[:n])
    torch.manual_seed(_row_seed(row.key))
    out: dict[str, Any] = {"n": int(y.shape[0]), "l2_median": math.nan, "l2_mean": math.nan,
                           "clean_accuracy": math.nan}
    start = time.perf_counter()
    if row.attack == "clean":
        with torch.no_grad():
            correct = sum(int((model(x[i:i + 1000].to(device)).argmax(1)
                               == y[i:i + 1000].to(device)).sum()) for i in range(0, len(y), 1000))
        out["accuracy"] = out["clean_accuracy"] = correct / len(y)
    else:
        attack, wrap = _attack_fn(row, protocol, setup, config, device)
        target = nn.Sequential(model, nn.Softmax(dim=1)).eval() if wrap == "softmax" else model
        rep = robust_accuracy(target, x, y, attack, batch_size=500, progress=progress)
        out["accuracy"] = rep.robust_accuracy
        out["clean_accuracy"] = rep.clean_accuracy
        if rep.minimal_norm:
            out["l2_median"], out["l2_mean"] = rep.median_norm, rep.mean_norm
    out["seconds"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------
# journal, table, meta: written by the driver only
# --------------------------------------------------------------------------------------------

COLUMNS = ("setup", "table_name", "defence", "alpha", "T", "protocol", "attack", "eps",
           "eps_pixels", "accuracy", "n", "clean_accuracy", "l2_median", "l2_mean",
           "attack_settings", "model_key", "seed", "quick", "data_source", "seconds",
           "train_seconds", "finished", "lslib_version", "git_commit", "git_dirty",
           "source_hash", "device")
_NUMBER = (int, float)
_ROW_TYPES: dict[str, tuple[type, ...]] = {
    "setup": (str,), "defence": (str,), "protocol": (str,), "attack": (str,),
    "accuracy": _NUMBER, "n": (int,)}


def sweep_entry_problem(entry: Any) -> str | None:
    """Why ``entry`` is not a sweep journal entry (``{"key", "settings", "row"}`` with a row
    naming its cell and holding its accuracy), or None when it is one."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    for name in ("key", "settings"):
        if not isinstance(entry.get(name), str):
            return f"{name!r} missing or not a string"
    row = entry.get("row")
    if not isinstance(row, dict):
        return "'row' missing or not an object"
    for name, types in _ROW_TYPES.items():
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, types):
            return f"row field {name!r} missing or not a {types[0].__name__}"
    if row["setup"] not in SETUPS or row["attack"] not in ATTACK_NAMES:
        return f"unknown set-up or attack ({row['setup']!r}, {row['attack']!r})"
    return None


def _parse_journal(path: Path, problem: Callable[[Any], str | None]
                   ) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]], bool]:
    """The good entries, the damaged lines ``(line number, text, why)`` and whether the file
    ends in a torn line (a write cut short by a kill: no newline at the end)."""
    good, bad, torn = [], [], False
    if not path.exists():
        return good, bad, torn
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                torn = True  # the last write was cut short: that row is computed again
                continue
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append((number, line, f"not JSON ({exc.msg})"))
                continue
            why = problem(entry)
            if why is None:
                good.append(entry)
            else:
                bad.append((number, line, why))
    return good, bad, torn


def read_journal(path: str | os.PathLike,
                 fields: tuple[str, ...] = ("key", "row")) -> list[dict[str, Any]]:
    """The journal's complete entries, in order (a torn or corrupt line, or one without all of
    ``fields``, is skipped)."""
    def problem(entry: Any) -> str | None:
        ok = isinstance(entry, dict) and all(k in entry for k in fields)
        return None if ok else "incomplete"

    return _parse_journal(Path(path), problem)[0]


def recover_journal(path: Path, problem: Callable[[Any], str | None],
                    log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The good entries of the journal at ``path``; damaged lines are set aside (appended to
    ``<journal>.damaged``, kept for inspection) and a torn last line dropped, with a warning, so
    that the journal the run goes on appending to is clean. Only the driver, which holds the
    output's lock, may call this."""
    good, bad, torn = _parse_journal(path, problem)
    if not bad and not torn:
        return good
    if bad:
        aside = path.with_name(path.name + ".damaged")
        with open(aside, "a", encoding="utf-8") as f:
            for number, line, why in bad:
                f.write(json.dumps({"line": number, "why": why, "text": line.rstrip("\n"),
                                    "set_aside": _now()}) + "\n")
        log(f"warning: {path}: {len(bad)} damaged line(s) set aside in {aside.name} (first: "
            f"line {bad[0][0]}, {bad[0][2]}); those rows are computed again, unless the "
            "results table holds them")
    atomic_write(path, lambda p: p.write_text("".join(json.dumps(e, sort_keys=True) + "\n"
                                                      for e in good), encoding="utf-8"))
    return good


def append_journal(path: Path, entry: dict[str, Any]) -> None:
    """Append one entry as a JSON line, flushed and fsync'ed: once this returns the entry
    survives a kill -9 or a power cut."""
    line = json.dumps(entry, sort_keys=True) + "\n"
    with open(path, "ab") as f:
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def _table_key(row: dict[str, Any]) -> str:
    """:attr:`Row.key` of a row of a results table."""
    return "|".join([str(row["setup"]), str(row["defence"]), _fmt(row["alpha"]),
                     _fmt(row["T"]), str(row["protocol"]), str(row["attack"]), _fmt(row["eps"])])


def _journal_row(raw: dict[str, Any]) -> dict[str, Any]:
    """A row read from a results CSV as the journal holds it: NaN as None, ``n`` an int."""
    row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in raw.items()}
    if isinstance(row.get("n"), float) and row["n"].is_integer():
        row["n"] = int(row["n"])  # a column with a gap reads as floats
    return row


def adopt_table(out: Path, journal_keys: set[str],
                plans: dict[str, tuple[Protocol, Any, str]]) -> list[dict[str, Any]]:
    """Journal entries for the rows of the table at ``out`` that the journal lacks (a table
    kept without its journal: committed results in a fresh clone, or a copy), so that a run
    resuming on it neither computes them again nor writes them away. ``plans``: each planned
    row key's protocol, model config and settings hash (:func:`_plan`). A row whose model
    (``model_key``), attack settings and number of test images are what the plan would
    compute is done (the plan's settings hash); any other row keeps its place in the table,
    marked to be computed again, until a new row replaces it. A damaged table is an error
    (:func:`lslib._files.read_results_checked`), not something to write over."""
    from lslib._files import read_results_checked

    if not out.is_file():
        return []
    table = read_results_checked(out)
    entries = []
    for raw in table.to_dict("records"):
        row = _journal_row(raw)
        key = _table_key(raw)
        if key in journal_keys:
            continue
        settings = "taken from the table, not planned"
        if key in plans:
            protocol, config, planned = plans[key]
            n = protocol.sizes(SETUPS[row["setup"]], row["attack"])
            same = (row.get("model_key") == config.key()
                    and row.get("attack_settings") == protocol.describe(row["attack"])
                    and (n is None or row.get("n") == n))
            settings = planned if same else "taken from the table, planned otherwise"
        entry = {"key": key, "settings": settings, "row": row}
        problem = sweep_entry_problem(entry)
        if problem:
            raise ValueError(f"{out}: row {key!r} cannot be resumed from ({problem})")
        entries.append(entry)
    return entries


def _order_key(row: dict[str, Any]) -> tuple:
    def num(v):
        return -1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    setups = list(SETUPS)
    return (setups.index(row["setup"]) if row["setup"] in setups else len(setups), row["setup"],
            list(PROTOCOLS).index(row["protocol"]) if row["protocol"] in PROTOCOLS else 9,
            DEFENCE_NAMES.index(row["defence"]) if row["defence"] in DEFENCE_NAMES else 9,
            num(row.get("alpha")), num(row.get("T")), ATTACK_NAMES.index(row["attack"]),
            num(row.get("eps")))


def table_from_journal(entries: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The tidy table: the last entry of every row key, in a canonical order."""
    latest: dict[str, dict[str, Any]] = {}
    for e in entries:
        latest[e["key"]] = e["row"]
    rows = sorted(latest.values(), key=_order_key)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """A results CSV written by :func:`run_sweep`."""
    return pd.read_csv(path, keep_default_na=True)


def _write_table(out: Path, table: pd.DataFrame) -> None:
    atomic_write(out, lambda p: table.to_csv(p, index=False, float_format="%.10g"))


class OutputBusyError(RuntimeError):
    """Another run is writing the same output."""


@contextlib.contextmanager
def exclusive_output(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` (an advisory lock the kernel drops when the process ends, kill -9
    included) for the whole run: a second driver on the same output is refused, never merged."""
    import fcntl

    lock = out.with_name(out.name + ".lock")
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OutputBusyError(
                f"{out} is being written by another run ({holder}); wait for it to finish, "
                "or give another output path") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {platform.node()}, started {_now()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def load_meta(path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The meta file's content (``{"sessions": [...]}``); a damaged one (not JSON, not an object,
    sessions not a list) is moved aside to ``<meta>.damaged-<time>`` with a warning and the run
    starts a fresh one."""
    if not path.exists():
        return {"sessions": []}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("sessions", []), list):
            raise ValueError("not an object with a list of sessions")
    except (ValueError, UnicodeDecodeError) as exc:
        aside = path.with_name(path.name + f".damaged-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
        os.replace(path, aside)
        log(f"warning: {path} is damaged ({str(exc).splitlines()[0]}); moved it to "
            f"{aside.name} and starting a new one")
        return {"sessions": []}
    meta.setdefault("sessions", [])
    return meta


def _plan(row: Row, sweep: Sweep) -> tuple[Protocol, TrainConfig, str]:
    """A row's protocol, its model's training config and the hash of every setting."""
    protocol = sweep.protocol(row.protocol)
    if protocol.engine == "original":
        from lslib.original import train_config

        config: Any = train_config(SETUPS[row.setup], row.defence, seed=sweep.seed,
                                   quick=sweep.quick, data_source=sweep.data_source,
                                   lenet_start=sweep.lenet_start,
                                   pgd_clean_weight=sweep.pgd_clean_weight,
                                   pgd_epochs=sweep.pgd_epochs, epochs=sweep.epochs)
    else:
        config = row.defence.train_config(SETUPS[row.setup], seed=sweep.seed, quick=sweep.quick,
                                          data_source=sweep.data_source)
    return protocol, config, _settings_hash(row, protocol, config)


def _settings_hash(row: Row, protocol: Protocol, config: TrainConfig) -> str:
    payload = json.dumps({"v": RUNNER_VERSION, "model": config.key(),
                          "attack": protocol.describe(row.attack),
                          "n": protocol.n, "n_clean": protocol.n_clean, "n_cw": protocol.n_cw},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# the sweep on the runner
# --------------------------------------------------------------------------------------------


def row_job(models: list[nn.Module], device: torch.device, *, row: Row, protocol: Protocol,
            config: TrainConfig, seed: int, data_source: str, data_root: str | None,
            download: bool) -> dict[str, Any]:
    """One row's numbers (a :class:`lslib.runner.Job` function, run in the driver or a worker)."""
    setup = SETUPS[row.setup]
    test = sweep_test_split(setup.name, data_source, data_root, seed, download)
    if protocol.engine == "original":
        from lslib.original import evaluate

        return evaluate(row, models[0], test, protocol, setup, config)
    return _evaluate(row, models[0], test, protocol, setup, config, device, progress=False)


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_sweep`: the finished rows are journalled; the message says how
    to resume."""


def run_sweep(
    sweep: Sweep,
    out: str | os.PathLike,
    *,
    cache: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    max_rows: int | None = None,
    execution: Execution | None = None,
) -> pd.DataFrame:
    """Run ``sweep``, writing ``out`` (CSV), ``out.journal.jsonl`` and ``out.meta.json``.

    This process is the *driver* and the only writer: it plans the rows, skips those already in
    the journal with the same settings, hands the rest to the runner (:mod:`lslib.runner`:
    embedded by default, on Ray with ``execution``) and appends each finished row to the journal
    itself. A second driver on the same ``out`` is refused (:class:`OutputBusyError`). Kill it at
    any moment and run it again: nothing journalled is lost or computed again. ``max_rows``
    computes at most that many new rows. Ctrl-C raises :class:`SweepInterrupted` once the
    finished rows are safe. Returns the table as read back from ``out``.
    """
    from tqdm.auto import tqdm

    from lslib.runner import Execution, Job, ModelSpec, run_jobs

    execution = execution or Execution()
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"out {out} is a directory; give the path of a CSV file")
    out.parent.mkdir(parents=True, exist_ok=True)
    journal = out.with_name(out.name + ".journal.jsonl")
    meta_path = out.with_name(out.name + ".meta.json")
    if not execution.distributed:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    prov = provenance(device if device is not None else "cpu")
    log = log or (lambda msg: tqdm.write(msg) if progress else None)
    root = None if data_root is None else str(data_root)

    with exclusive_output(out):
        for tmp in out.parent.glob(f".{out.name}*.tmp"):  # left by a killed run
            tmp.unlink(missing_ok=True)
        meta = load_meta(meta_path, log)
        entries = recover_journal(journal, sweep_entry_problem, log)  # + each new row
        rows = sweep.rows()
        plans = {row.key: _plan(row, sweep) for row in rows}
        adopted = adopt_table(out, {e["key"] for e in entries}, plans)
        for entry in adopted:  # the table's rows stay in it whatever happens to this run
            append_journal(journal, entry)
        entries += adopted
        if adopted:
            kept = sum(e["settings"] == plans.get(e["key"], (0, 0, None))[2] for e in adopted)
            unplanned = sum(e["key"] not in plans for e in adopted)
            log(f"{out.name}: {len(adopted)} row(s) that {journal.name} lacked were taken from "
                f"the table ({kept} done, {len(adopted) - kept - unplanned} to compute again"
                + (f", {unplanned} not in this sweep)" if unplanned else ")"))
        done = {e["key"]: e["settings"] for e in entries}
        session = {"id": uuid.uuid4().hex[:12],
                   "command": command or "lslib.experiments.run_sweep (Python API)",
                   "sweep": dataclasses.asdict(sweep), "execution": execution.describe(),
                   "started": _now(), "finished": None, "rows_computed": 0,
                   "models_trained": 0, "wall_seconds": None, **prov,
                   "sources": source_hashes()}

        def save_meta() -> None:
            meta.update(output=out.name, sessions=[*meta["sessions"][:n_before], session])
            atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2,
                                                                      default=str) + "\n"))

        n_before = len(meta["sessions"])
        save_meta()
        start = time.perf_counter()
        todo = [row for row in rows if done.get(row.key) != plans[row.key][2]]
        if max_rows is not None:
            todo = todo[:max_rows]
        jobs = []
        for row in todo:
            protocol, config, _ = plans[row.key]
            jobs.append(Job(row.key, (ModelSpec(row.setup, config),), row_job, dict(
                row=row, protocol=protocol, config=config, seed=sweep.seed,
                data_source=sweep.data_source, data_root=root, download=download)))
        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="sweep",
                   disable=not progress, unit="row", dynamic_ncols=True)
        running: dict[str, str] = {}  # row key -> what it is, while in flight
        training: set[str] = set()
        last_table = [time.monotonic()]

        def show() -> None:
            names = list(running.values())[:2]
            more = f" +{len(running) - 2}" if len(running) > 2 else ""
            bar.set_postfix_str(f"in flight {len(running)}: {', '.join(names)}{more}"
                                + (f"; training {len(training)}" if training else ""),
                                refresh=True)

        def on_event(kind: str, what: Any) -> None:
            if kind == "train":
                training.add(what.key)
            elif kind == "trained":
                training.discard(what.key)
                session["models_trained"] += 1
            else:
                row = what.kwargs["row"]
                d = row.defence
                running[what.key] = " ".join(v for v in (
                    d.name, _fmt(d.alpha), row.protocol, row.attack, _fmt(row.eps)) if v)
            show()

        def on_result(job: Job, result: dict[str, Any], records: dict[str, dict[str, Any]],
                      ran_on: str) -> None:
            row, config = job.kwargs["row"], job.kwargs["config"]
            setup, d = SETUPS[row.setup], row.defence
            record_row = {
                "setup": row.setup, "table_name": setup.table_name, "defence": d.name,
                "alpha": d.alpha, "T": d.temperature, "protocol": row.protocol,
                "attack": row.attack, "eps": row.eps, "eps_pixels": row.eps * setup.eps_scale,
                **result, "attack_settings": job.kwargs["protocol"].describe(row.attack),
                "model_key": config.key(), "seed": sweep.seed, "quick": sweep.quick,
                "data_source": sweep.data_source,
                "train_seconds": records[config.key()]["seconds"], "finished": _now(),
                "lslib_version": prov["lslib_version"], "git_commit": prov["git_commit"],
                "git_dirty": prov["git_dirty"], "source_hash": prov["source_hash"],
                "device": ran_on,
            }
            settings = plans[row.key][2]
            entry = {"key": row.key, "settings": settings, "row": record_row}
            append_journal(journal, entry)
            entries.append(entry)
            done[row.key] = settings
            session["rows_computed"] += 1
            running.pop(job.key, None)
            bar.update()
            show()
            if time.monotonic() - last_table[0] > 5:  # the CSV follows the journal
                _write_table(out, table_from_journal(entries))
                session["wall_seconds"] = time.perf_counter() - start
                save_meta()
                last_table[0] = time.monotonic()

        interrupted = False
        try:
            run_jobs(jobs, on_result, execution=execution, cache=cache_dir(cache),
                     data_root=root, download=download, device=device, progress=progress,
                     log=log, on_event=on_event)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            _write_table(out, table_from_journal(entries))
            session["finished"] = _now()
            session["wall_seconds"] = time.perf_counter() - start
            session["complete"] = all(done.get(r.key) == plans[r.key][2] for r in rows)
            session["interrupted"] = interrupted
            save_meta()
        if interrupted:
            n_done = sum(done.get(r.key) == plans[r.key][2] for r in rows)
            raise SweepInterrupted(
                f"interrupted: {n_done} of {len(rows)} rows are saved in {journal}; run the "
                "same command again to resume")
    return read_results(out)


def _final_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of the results table at ``path`` by key, as a run resuming on it would see them:
    its CSV, with the rows of its journal (where one is beside it) taking precedence."""
    from lslib._files import read_results_checked

    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for raw in read_results_checked(path).to_dict("records"):
            rows[_table_key(raw)] = _journal_row(raw)
    for entry in read_journal(path.with_name(path.name + ".journal.jsonl")):
        rows[entry["key"]] = entry["row"]
    return rows


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows agree in every column, numbers to the digits a table keeps."""
    def norm(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(f"{v:.10g}")
        return v

    return all(norm(a.get(c)) == norm(b.get(c)) for c in COLUMNS)


def merge_results(out: str | os.PathLike, parts: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Merge the results tables ``parts`` into ``out`` (created if missing): the rows of runs
    that split one sweep between processes or machines, each writing its own ``--out``, made one
    table as if one run had computed them. ``out.meta.json`` gains every session of every part
    (each marked ``merged_from``: the part's file name, or the file it was first merged from),
    so each row keeps its provenance.

    Refused, with ``out`` left as it was: a part that is missing, damaged or being written; a
    row key in two files with different rows; rows of different seeds, data sources or quick
    settings (one table holds one of each, as one run would). A part's journal, where it has
    one, counts as its table does in a resumed run. The parts are left in place. A later
    ``reproduce`` on ``out`` resumes from the merged table (computes nothing it holds)."""
    out = Path(out)
    parts = [Path(p) for p in parts]
    if not parts:
        raise ValueError("parts: give at least one results CSV to merge into out")
    for p in parts:
        if not p.is_file():
            raise FileNotFoundError(f"no such results file: {p}")
        if p.resolve() == out.resolve():
            raise ValueError(f"part {p} is the output itself; name each part once, not out")
    if len({p.resolve() for p in parts}) < len(parts):
        raise ValueError("parts: a file is named twice")
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for path in (out, *parts):  # none of them is being written meanwhile
            stack.enter_context(exclusive_output(path))
        tables = {path: _final_rows(path) for path in (out, *parts)}
        for field in ("seed", "data_source", "quick"):
            seen: dict[Any, Path] = {}
            for path, rows in tables.items():
                for row in rows.values():
                    seen.setdefault(row.get(field), path)
            if len(seen) > 1:
                raise ValueError(f"the rows differ in {field}: "
                                 + ", ".join(f"{v!r} in {f}" for v, f in seen.items())
                                 + f"; one table holds one {field}")
        merged: dict[str, dict[str, Any]] = {}
        source: dict[str, Path] = {}
        for path, rows in tables.items():
            for key, row in rows.items():
                if key in merged and not _same_row(merged[key], row):
                    raise ValueError(f"row {key} is in both {source[key]} and {path}, with "
                                     "different numbers; merge runs that computed different "
                                     "rows")
                merged.setdefault(key, row)
                source.setdefault(key, path)
        meta_path = out.with_name(out.name + ".meta.json")
        meta = load_meta(meta_path, lambda msg: None)
        known = {s.get("id") for s in meta["sessions"]}
        for p in parts:  # a session merged before (the same part again) is not added twice
            part_meta = load_meta(p.with_name(p.name + ".meta.json"), lambda msg: None)
            meta["sessions"] += [{"merged_from": p.name, **s} for s in part_meta["sessions"]
                                 if s.get("id") is None or s.get("id") not in known]
        meta["output"] = out.name
        table = pd.DataFrame(sorted(merged.values(), key=_order_key), columns=list(COLUMNS))
        _write_table(out, table)
        atomic_write(meta_path, lambda f: f.write_text(json.dumps(meta, indent=2, default=str)
                                                       + "\n"))
    return read_results(out)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
