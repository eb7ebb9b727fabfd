"""Argument checks shared by every module.

Each check raises with a message that names the argument, what was given and what is accepted.
Nothing is silently corrected.
"""

from __future__ import annotations

import math
from numbers import Real

import torch


def check_unit_interval(name: str, value: float) -> float:
    """``value`` must be a real number in [0, 1] (e.g. the smoothing parameter alpha)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    v = float(value)
    if not (0.0 <= v <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def check_positive(name: str, value: float, *, allow_inf: bool = False) -> float:
    """``value`` must be a real number > 0 (e.g. a temperature T or a step size)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a positive real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v <= 0.0 or (math.isinf(v) and not allow_inf):
        accepted = "> 0 (inf allowed)" if allow_inf else "finite and > 0"
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """``value`` must be a finite real number >= 0 (e.g. an attack budget epsilon)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number >= 0, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def check_int_at_least(name: str, value: int, minimum: int) -> int:
    """``value`` must be an integer >= ``minimum`` (e.g. a number of steps)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_labels(name: str, labels: torch.Tensor, num_classes: int, batch_size: int) -> None:
    """``labels`` must be a 1-D integer tensor of length ``batch_size`` with values in [0, K)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer class indices, "
                        f"got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices (e.g. torch.long), "
                        f"got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (N,), got shape {tuple(labels.shape)}")
    if labels.shape[0] != batch_size:
        raise ValueError(f"{name} has {labels.shape[0]} entries but the batch has {batch_size}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes, "
                         f"got values in [{int(labels.min())}, {int(labels.max())}]")
