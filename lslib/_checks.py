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


def check_labels(name: str, labels: torch.Tensor, num_classes: int, batch_size: int, *,
                 values: bool = True) -> None:
    """``labels`` must be a 1-D integer tensor of length ``batch_size`` with values in [0, K).
    ``values=False`` checks type and shape only (the range check is a device synchronisation:
    skip it where the caller checked the values already)."""
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
    if values and labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}] for {num_classes} "
                             f"classes, got values in [{lo}, {hi}]")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` must be one of the strings ``choices`` (e.g. a reduction)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_logits(name: str, logits: torch.Tensor, *, min_classes: int = 2) -> None:
    """``logits`` must be a 2-D floating tensor (N, K) with K >= ``min_classes``."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, K), "
                        f"got {type(logits).__name__}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor (float16, bfloat16, float32 or "
                        f"float64), got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (N, K) (batch, classes), "
                         f"got shape {tuple(logits.shape)}")
    if logits.shape[1] < min_classes:
        raise ValueError(f"{name} must have K >= {min_classes} classes (columns), "
                         f"got shape {tuple(logits.shape)}")


def check_distribution_rows(name: str, q: object, shape: tuple[int, ...]) -> torch.Tensor:
    """``q`` must be a floating tensor of ``shape`` whose rows lie on the probability simplex.

    Entries must be finite and >= -tol, and every row must sum to 1 within tol, where tol is
    1e-8 in float64, 1e-4 in float32 and 1e-2 in float16/bfloat16 (rounding only). One sync.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(q).__name__}")
    if tuple(q.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(q.shape)}")
    if not q.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {q.dtype}")
    if q.numel() == 0:
        return q
    tol = {torch.float64: 1e-8, torch.float32: 1e-4}.get(q.dtype, 1e-2)
    with torch.no_grad():
        finite = torch.isfinite(q).all()
        nonneg = (q >= -tol).all()
        rowsum = q.sum(dim=-1)
        sums = ((rowsum - 1).abs() <= tol).all()
        ok_finite, ok_nonneg, ok_sums = torch.stack([finite, nonneg, sums]).tolist()
        if not ok_finite:
            raise ValueError(f"{name} must be a probability distribution per row: "
                             f"it has NaN or infinite entries")
        if not ok_nonneg:
            raise ValueError(f"{name} must be a probability distribution per row: "
                             f"it has negative entries (min {float(q.min()):.3g})")
        if not ok_sums:
            worst = float((rowsum - 1).abs().max())
            raise ValueError(f"{name} must be a probability distribution per row: rows must sum "
                             f"to 1 (within {tol:g}), the worst row is off by {worst:.3g}")
    return q


def check_real(name: str, value: float) -> float:
    """``value`` must be a finite real number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a finite real number, got {type(value).__name__} "
                        f"{value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def check_bool(name: str, value: object) -> bool:
    """``value`` must be True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_images(name: str, x: object, *, unit_range: bool = True) -> torch.Tensor:
    """``x`` must be a non-empty floating tensor of images (N, C, H, W) with finite pixels, in
    [0, 1] when ``unit_range`` (one device synchronisation for the value checks)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images (N, C, H, W), "
                        f"got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor (pixels in [0, 1]), "
                        f"got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 images): give at least one image")
    with torch.no_grad():
        lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} has NaN or infinite pixels: pixels must be finite, in [0, 1]")
    if unit_range and (lo < 0.0 or hi > 1.0):
        raise ValueError(f"{name} must have pixels in [0, 1], got values in [{lo:g}, {hi:g}] "
                         f"(divide 8-bit images by 255)")
    return x


class BadFileError(ValueError):
    """A file lslib reads is damaged or is not what it should be. The message names the file,
    what is wrong with it and what to do."""

    def __init__(self, path: object, problem: str, remedy: str) -> None:
        self.path, self.problem, self.remedy = path, problem, remedy
        super().__init__(f"{path}: {problem}; {remedy}")
