"""Data sets as whole tensors: MNIST, CIFAR10 and SVHN, pixels in [0, 1].

These images are small, so a whole split is kept as one tensor (on the device if asked), which
removes per-batch DataLoader overhead (:func:`batches` slices it). Files are looked for under a data
root: the ``root`` argument, else ``$LSLIB_DATA``, else ``~/.cache/lslib/data``; the layout is
torchvision's (``MNIST/raw/*.gz``, ``cifar-10-batches-py/``, ``test_32x32.mat``). Where a network
exists (e.g. Colab) ``download=True`` lets torchvision fetch a missing set; offline, a missing set
raises :class:`DataNotFoundError` saying what to put where.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "DataNotFoundError",
    "TensorData",
    "batches",
    "data_root",
    "load_dataset",
]

DATASETS = ("mnist", "cifar10", "cifar10-partial", "svhn")
_SPLITS = ("train", "test")
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_PARTIAL = "cifar10_test_first1017.npz"


class DataNotFoundError(FileNotFoundError):
    """A data set is not under the data root and could not be downloaded."""


class TensorData(NamedTuple):
    """A whole split: ``x`` float (N, C, H, W) in [0, 1], ``y`` long (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device) -> TensorData:
        return TensorData(self.x.to(device), self.y.to(device))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$LSLIB_DATA``, else ``~/.cache/lslib/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("LSLIB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lslib" / "data"


def _read_idx(path_stem: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    for path, opener in ((path_stem.with_name(path_stem.name + ".gz"), gzip.open),
                         (path_stem, open)):
        if path.exists():
            with opener(path, "rb") as f:
                raw = f.read()
            ndim = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    raise FileNotFoundError(path_stem)


def _missing(name: str, root: Path, what: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} not found under data root {root}: put {what} there, or point the root at a folder "
        f"that has them (argument `root` or the LSLIB_DATA environment variable), or pass "
        f"download=True where a network exists."
    )


def _load_mnist(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    raw = root / "MNIST" / "raw"
    img, lab = _MNIST_FILES[split]
    try:
        return _read_idx(raw / img)[:, None], _read_idx(raw / lab)
    except FileNotFoundError:
        if not download:
            raise _missing("MNIST", root, f"MNIST/raw/{img}.gz and MNIST/raw/{lab}.gz") from None
    _torchvision_download("MNIST", root, split)
    return _read_idx(raw / img)[:, None], _read_idx(raw / lab)


def _torchvision_download(name: str, root: Path, split: str) -> object:
    import torchvision

    cls = getattr(torchvision.datasets, name)
    kwargs = {"split": split} if name == "SVHN" else {"train": split == "train"}
    try:
        return cls(str(root), download=True, **kwargs)
    except Exception as exc:  # no network, bad checksum, ...
        raise DataNotFoundError(
            f"{name} ({split}) is not under data root {root} and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Put torchvision's {name} files there, or set "
            f"LSLIB_DATA to a folder that has them."
        ) from exc


def _load_cifar10(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision

    try:
        ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=False)
    except RuntimeError:
        if not download:
            raise _missing("CIFAR10", root, "torchvision's cifar-10-batches-py/ folder") from None
        ds = _torchvision_download("CIFAR10", root, split)
    return np.asarray(ds.data).transpose(0, 3, 1, 2), np.asarray(ds.targets)


def _load_cifar10_partial(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split != "test":
        raise ValueError("split must be 'test' for cifar10-partial (it holds test images only)")
    path = root / _CIFAR_PARTIAL
    if not path.exists():
        raise _missing("cifar10-partial", root, _CIFAR_PARTIAL)
    z = np.load(path)
    return z["x"].transpose(0, 3, 1, 2), z["y"]


def _load_svhn(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import torchvision

    try:
        ds = torchvision.datasets.SVHN(str(root), split=split, download=False)
    except RuntimeError:
        if not download:
            raise _missing("SVHN", root, f"torchvision's {split}_32x32.mat") from None
        ds = _torchvision_download("SVHN", root, split)
    return np.asarray(ds.data), np.asarray(ds.labels)


def load_dataset(
    name: str,
    split: str = "test",
    root: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    download: bool = False,
) -> TensorData:
    """A whole split of ``name`` ("mnist", "cifar10", "cifar10-partial", "svhn") as tensors.

    ``x`` is float32 (N, C, H, W) in [0, 1] and ``y`` long (N,), both on ``device``; ``limit``
    keeps the first ``limit`` examples (the order of the official files). "cifar10-partial" is the
    genuine first 1017 CIFAR-10 test images in ``cifar10_test_first1017.npz`` (an offline stand-in).
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    base = data_root(root)
    if name == "mnist":
        x, y = _load_mnist(base, split, download)
    elif name == "cifar10":
        x, y = _load_cifar10(base, split, download)
    elif name == "cifar10-partial":
        x, y = _load_cifar10_partial(base, split)
    else:
        x, y = _load_svhn(base, split, download)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    pixels = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))
    xt = pixels.to(device=device, dtype=torch.float32).div_(255)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)
    return TensorData(xt, yt)


def batches(
    data: TensorData,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches sliced from a :class:`TensorData` (no copies unless shuffled)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(data)
    if shuffle:
        perm = torch.randperm(n, generator=generator).to(data.y.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if shuffle:
            idx = perm[start:start + batch_size]
            yield data.x[idx], data.y[idx]
        else:
            yield data.x[start:start + batch_size], data.y[start:start + batch_size]
