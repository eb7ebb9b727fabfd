"""Training: natural, with any label-smoothing method, and the PGD-3 adversarial-training baseline.

Everything is driven by a :class:`TrainConfig` (plain data, hashable: the experiment runner caches
trained models under :meth:`TrainConfig.key`) and :func:`train_model`, which trains a model in place
on a whole-split :class:`~lslib.data.TensorData` (no DataLoader; batches are slices of one tensor).

Optimiser settings, and why
---------------------------
The original code used plain SGD (no momentum) at learning rate 1e-4, batch 100, for 50 epochs,
starting the MNIST LeNet from a pretrained checkpoint. That is far too slow for a CPU reproduction.
We use **Adam, one-cycle learning-rate schedule** (peak ``lr``, 15 % warm-up, cosine decay to ~0,
:class:`torch.optim.lr_scheduler.OneCycleLR`; Adam's fused kernel where torch has one), no weight
decay, from scratch. The decay to zero is what lets a handful of epochs reach the paper's standard
accuracies (Table 6: MNIST MLP ~0.98, LeNet ~0.99); a constant Adam rate plateaus about half a
point lower after the same epochs. The per-set-up values (epochs, batch size, peak rate) live in
:data:`lslib.experiments.SETUPS`, and ``results/README.md`` gives the accuracies they reach.

Adversarial training (the paper's baseline)
-------------------------------------------
Madry-style PGD with 3 iterations as in the paper (eps 0.25, step 0.1 on MNIST; eps 0.05, step 0.02
otherwise). As the original code did, the adversarial batch is crafted **without random start**
(so it is BIM-3) on the cross-entropy of the true label, with the model in eval mode while
crafting, and the training loss is ``0.5 * loss(clean) + 0.5 * loss(adv)``. The adversarial batch
is the last iterate (:func:`lslib.attacks.bim_last_iterate`, as in Madry et al.), with no forward
pass spent on judging it.
Clean and adversarial halves go through the model in one forward pass (identical to two passes
for models without batch normalisation, which are the ones the paper adversarially trained).

Reproducibility
---------------
``seed`` seeds the weight initialisation, the shuffling (its own :class:`torch.Generator`) and
dropout; on the CPU two runs with the same config and the same number of torch threads give
bit-identical weights (tested; another thread count changes the order of floating-point sums,
hence the weights: on MNIST that moves robust accuracies by up to ~0.015). On a CUDA
device the forward/backward runs under ``torch.autocast(dtype=torch.bfloat16)`` (``amp=None``
means "on for CUDA, off otherwise"; the CPU never uses it), and cuDNN kernels are not guaranteed to
be deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lslib._checks import (
    check_bool,
    check_choice,
    check_images,
    check_int_at_least,
    check_labels,
    check_nonnegative,
    check_positive,
    check_unit_interval,
)
from lslib.data import DATASETS, TensorData, _check_tensor_pair, batches

__all__ = [
    "AdversarialTraining",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "build_loss",
    "seed_everything",
    "train_model",
]

#: Bump when a change to this module changes what a given config trains (it invalidates caches).
TRAINING_CODE_VERSION = 2

_METHOD_ALIASES = {
    "SLS": "standard", "ALS": "adversarial", "BLS": "boltzmann", "SBLS": "second_best",
}


@dataclass(frozen=True)
class AdversarialTraining:
    """The PGD adversarial-training baseline: ``steps`` iterations of size ``step_size`` inside the
    L-inf ball of radius ``eps``, no random start (as the original), loss
    ``(1 - adv_weight) * clean + adv_weight * adversarial``."""

    eps: float
    step_size: float
    steps: int = 3
    random_start: bool = False
    adv_weight: float = 0.5

    def __post_init__(self) -> None:
        check_nonnegative("AdversarialTraining eps", self.eps)
        check_positive("AdversarialTraining step_size", self.step_size)
        check_int_at_least("AdversarialTraining steps", self.steps, 1)
        check_bool("AdversarialTraining random_start", self.random_start)
        check_unit_interval("AdversarialTraining adv_weight", self.adv_weight)

    @classmethod
    def paper(cls, dataset: str) -> AdversarialTraining:
        """The paper's settings: eps 0.25 step 0.1 for MNIST, eps 0.05 step 0.02 otherwise."""
        if dataset == "mnist":
            return cls(eps=0.25, step_size=0.1)
        return cls(eps=0.05, step_size=0.02)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (the cache key is a hash of it).

    ``method`` is None for natural training (plain cross-entropy), else a label-smoothing method of
    :mod:`lslib.losses` ("standard", "adversarial", "boltzmann", "second_best"; the paper's short
    names SLS, ALS, BLS, SBLS are accepted too) with ``alpha`` and, for BLS, ``temperature`` on the
    ``boltzmann_scale`` ("probabilities" is the original code's scale, on which the paper's
    T = 0.001 default is meant). ``adversarial`` turns on the PGD adversarial-training baseline.
    """

    model: str
    dataset: str
    method: str | None = None
    alpha: float = 0.0
    temperature: float = 1.0
    boltzmann_scale: str = "probabilities"
    detach_targets: bool = True
    adversarial: AdversarialTraining | None = None
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    train_limit: int | None = None
    data_source: str = "real"

    def __post_init__(self) -> None:
        if self.method is not None:
            object.__setattr__(self, "method", _METHOD_ALIASES.get(self.method, self.method))
        if isinstance(self.adversarial, dict):
            object.__setattr__(self, "adversarial", AdversarialTraining(**self.adversarial))
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """A short stable hash of the config (and of :data:`TRAINING_CODE_VERSION`)."""
        payload = json.dumps({"v": TRAINING_CODE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_config(c: TrainConfig) -> None:
    """Every field of a :class:`TrainConfig` (nothing is corrected: the cache key hashes them as
    given)."""
    from lslib.losses import BOLTZMANN_SCALES, METHODS
    from lslib.models import MODELS

    check_choice("TrainConfig model", c.model, tuple(MODELS))
    check_choice("TrainConfig dataset", c.dataset, DATASETS)
    if c.method is not None:
        check_choice("TrainConfig method", c.method, (*METHODS, *_METHOD_ALIASES))
    check_unit_interval("TrainConfig alpha", c.alpha)
    if c.method is None and c.alpha != 0:
        raise ValueError(f"TrainConfig alpha={c.alpha!r} needs a smoothing method (method= one "
                         f"of {', '.join(METHODS)}); natural training has alpha=0")
    check_positive("TrainConfig temperature", c.temperature, allow_inf=True)
    check_choice("TrainConfig boltzmann_scale", c.boltzmann_scale, BOLTZMANN_SCALES)
    check_bool("TrainConfig detach_targets", c.detach_targets)
    if c.adversarial is not None and not isinstance(c.adversarial, AdversarialTraining):
        raise TypeError(f"TrainConfig adversarial must be an AdversarialTraining (or its dict) or "
                        f"None, got {type(c.adversarial).__name__}")
    check_int_at_least("TrainConfig epochs", c.epochs, 1)
    check_int_at_least("TrainConfig batch_size", c.batch_size, 1)
    check_positive("TrainConfig lr", c.lr)
    check_nonnegative("TrainConfig weight_decay", c.weight_decay)
    check_int_at_least("TrainConfig seed", c.seed, 0)
    if c.train_limit is not None:
        check_int_at_least("TrainConfig train_limit", c.train_limit, 1)
    check_choice("TrainConfig data_source", c.data_source, ("real", "synthetic"))


@dataclass
class TrainResult:
    """What :func:`train_model` measured: per-epoch mean training loss, wall time, images/s."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (init, dropout) and return a fresh CPU generator for shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_loss(config: TrainConfig, reduction: str = "mean", *,
               validate_labels: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of ``config``: cross-entropy or a
    :class:`lslib.losses.SmoothCrossEntropyLoss`.

    With ``reduction="none"`` this is also the paper protocol's attack loss (the model's own
    smoothed target). ``validate_labels=False``: the labels were checked beforehand (see
    :class:`~lslib.losses.SmoothCrossEntropyLoss`)."""
    if config.method is None or config.alpha == 0:
        return nn.CrossEntropyLoss(reduction=reduction)
    from lslib.losses import SmoothCrossEntropyLoss

    return SmoothCrossEntropyLoss(
        method=config.method, alpha=config.alpha, temperature=config.temperature,
        reduction=reduction, detach_targets=config.detach_targets,
        boltzmann_scale=config.boltzmann_scale, validate_labels=validate_labels,
    )


def _check_train_args(model: nn.Module, data: TensorData, config: TrainConfig,
                      amp: bool | None, progress: bool, reseed: bool) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError("model has no parameters to train")
    if not isinstance(data, TensorData):
        raise TypeError(f"data must be a lslib.data.TensorData(x, y), got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if amp is not None:
        check_bool("amp", amp)
    check_bool("progress", progress)
    check_bool("reseed", reseed)
    _check_tensor_pair(data.x, data.y)  # (again: tuple.__new__ would bypass the constructor)
    check_images("data.x", data.x)


def _check_data_labels(model: nn.Module, data: TensorData, device: torch.device) -> None:
    """The images fit the model and the labels of the whole data set lie in [0, K), K the
    model's number of outputs (one forward of one image, in eval mode and without a graph: no
    random number is drawn)."""
    was_training = model.training  # (train_model sets the mode at every step anyway)
    model.eval()
    try:
        with torch.no_grad():
            out = model(data.x[:1].to(device))
    except RuntimeError as exc:
        raise ValueError(f"data.x has images of shape {tuple(data.x.shape[1:])}, which the "
                         f"model does not take ({str(exc).splitlines()[0]})") from None
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ValueError(f"the model must output logits (N, K), got shape {tuple(out.shape)}")
    check_labels("the data's labels", data.y, out.shape[1], len(data))


def _use_amp(device: torch.device, amp: bool | None) -> bool:
    if amp and device.type != "cuda":
        raise ValueError("amp (bfloat16 autocast) is only used on CUDA devices")
    return device.type == "cuda" if amp is None else amp


def _adam(model: nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the parameters' device (the same
    update, one kernel per tensor instead of several, which matters for the MLP's large layers),
    else the default implementation."""
    try:
        return torch.optim.Adam(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)


def train_model(
    model: nn.Module,
    data: TensorData,
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = True,
    reseed: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``data`` as ``config`` says; returns a :class:`TrainResult`.

    ``reseed=True`` seeds torch's global RNG with ``config.seed`` first; build the model after
    :func:`seed_everything` (as :func:`lslib.experiments.train_or_load` does) for identical
    initial weights too. The model is left in eval mode.
    """
    from tqdm.auto import tqdm

    from lslib.data import _check_device

    _check_train_args(model, data, config, amp, progress, reseed)
    device = _check_device(device) if device is not None else next(model.parameters()).device
    use_amp = _use_amp(device, amp)
    generator = seed_everything(config.seed) if reseed else torch.Generator().manual_seed(
        config.seed)
    model.to(device)
    data = data.to(device)
    _check_data_labels(model, data, device)  # once, not at every step
    loss_fn = build_loss(config, validate_labels=False)
    optimizer = _adam(model, config)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    adv = config.adversarial
    if adv is not None:
        from lslib.attacks import bim_last_iterate

    result = TrainResult()
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress, leave=False,
               desc=f"train {config.model} {config.method or 'natural'}"
                    f"{' +PGD' if adv else ''} a={config.alpha:g}")
    start = time.perf_counter()
    for _ in range(config.epochs):
        total, count = 0.0, 0
        for x, y in batches(data, config.batch_size, shuffle=True, generator=generator):
            if adv is not None:
                x_adv = bim_last_iterate(model, x, y, adv.eps, step_size=adv.step_size,
                                         steps=adv.steps, random_start=adv.random_start)
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                if adv is None:
                    loss = loss_fn(model(x), y)
                else:  # one forward pass over clean and adversarial halves
                    logits = model(torch.cat([x, x_adv]))
                    n = x.shape[0]
                    loss = ((1 - adv.adv_weight) * loss_fn(logits[:n], y)
                            + adv.adv_weight * loss_fn(logits[n:], y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            bar.update()
        result.losses.append(total / count)
        bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - start
    result.images = config.epochs * len(data)
    bar.close()
    model.eval()
    return result


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorData, *, batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` (eval mode) on ``data``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for x, y in batches(data, batch_size):
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    model.train(was_training)
    return correct / max(len(data), 1)
