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
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lslib._checks import BadFileError, check_bool, check_choice

__all__ = [
    "DATASETS",
    "DataFormatError",
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


class DataFormatError(BadFileError):
    """A data file is there but damaged (truncated, not gzip, not the format, labels out of
    range...): the message names the file and what to do."""


_REFETCH = ("delete it and fetch it again (download=True / --download where a network exists), "
            "or point the data root at a good copy")


class _TensorDataFields(NamedTuple):
    x: Tensor
    y: Tensor


class TensorData(_TensorDataFields):
    """A whole split: ``x`` float (N, C, H, W) in [0, 1], ``y`` long (N,).

    The constructor checks the types and that there is one label per image (no device
    synchronisation); :func:`lslib.train.train_model` checks the values."""

    __slots__ = ()

    def __new__(cls, x: Tensor, y: Tensor) -> TensorData:
        _check_tensor_pair(x, y)
        return super().__new__(cls, x, y)

    @classmethod
    def _make(cls, iterable: Iterable[Tensor]) -> TensorData:
        return cls(*iterable)

    def _replace(self, **fields: Tensor) -> TensorData:
        return type(self)(**{**self._asdict(), **fields})

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device) -> TensorData:
        return TensorData(self.x.to(device), self.y.to(device))


def _check_tensor_pair(x: object, y: object) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"TensorData x must be a torch.Tensor of images, got {type(x).__name__}")
    if not isinstance(y, Tensor):
        raise TypeError(f"TensorData y must be a torch.Tensor of labels, got {type(y).__name__}")
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"TensorData y must be a 1-D integer tensor of class indices, got dtype "
                        f"{y.dtype} and shape {tuple(y.shape)}")
    if x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"TensorData x has {x.shape[0] if x.ndim else 0} images but y has "
                         f"{y.shape[0]} labels: give one label per image")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$LSLIB_DATA``, else ``~/.cache/lslib/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("LSLIB_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lslib" / "data"


_IDX_UBYTE = 0x08


def _read_bytes(path: Path, opener) -> bytes:
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # gzip.BadGzipFile is an OSError
        kind = "not a readable gzip file" if opener is gzip.open else "not readable"
        raise DataFormatError(path, f"{kind} ({type(exc).__name__}: {exc})", _REFETCH) from None


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
    """The array of an IDX file's bytes (unsigned bytes only, as MNIST's)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] < 1:
        raise DataFormatError(path, "not an IDX file of unsigned bytes (bad magic number "
                              f"{raw[:4].hex() or 'in an empty file'})", _REFETCH)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(path, f"truncated header ({len(raw)} bytes, {header} expected)",
                              _REFETCH)
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataFormatError(path, f"{state}: {len(raw)} bytes, the header {shape} says "
                              f"{expected}", _REFETCH)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_idx(path_stem: Path) -> tuple[np.ndarray, Path]:
    """An IDX file (MNIST's format), gzipped or not, and the file it came from."""
    for path, opener in ((path_stem.with_name(path_stem.name + ".gz"), gzip.open),
                         (path_stem, open)):
        if path.exists():
            return _parse_idx(path, _read_bytes(path, opener)), path
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
        return _mnist_pair(raw / img, raw / lab)
    except FileNotFoundError:
        if not download:
            raise _missing("MNIST", root, f"MNIST/raw/{img}.gz and MNIST/raw/{lab}.gz") from None
    _torchvision_download("MNIST", root, split)
    return _mnist_pair(raw / img, raw / lab)


def _mnist_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, x_path = _read_idx(images)
    y, y_path = _read_idx(labels)
    if x.ndim != 3:
        raise DataFormatError(x_path, f"not an image file: shape {x.shape}, (N, H, W) expected",
                              _REFETCH)
    if y.ndim != 1:
        raise DataFormatError(y_path, f"not a label file: shape {y.shape}, (N,) expected",
                              _REFETCH)
    if x.shape[0] != y.shape[0]:
        raise DataFormatError(y_path, f"holds {y.shape[0]} labels but {x_path.name} holds "
                              f"{x.shape[0]} images: the two files do not belong together",
                              _REFETCH)
    if len(y) and int(y.max()) > 9:
        raise DataFormatError(y_path, f"has a label byte of {int(y.max())}, the 10 classes are "
                              f"0-9", _REFETCH)
    return x[:, None], y


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


#: What a damaged torchvision data set raises while being read (pickle, scipy.io, numpy).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                zipfile.BadZipFile, __import__("pickle").UnpicklingError)


def _torchvision_set(name: str, root: Path, split: str, download: bool, what: str,
                     where: Path) -> object:
    import torchvision

    cls = getattr(torchvision.datasets, name)
    kwargs = {"split": split} if name == "SVHN" else {"train": split == "train"}
    try:
        return cls(str(root), download=False, **kwargs)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        if not download and where.exists():
            raise DataFormatError(where, f"fails torchvision's {name} integrity check (a file "
                                  f"is missing or damaged)", _REFETCH) from None
        if not download:
            raise _missing(name, root, what) from None
        return _torchvision_download(name, root, split)
    except _READ_ERRORS as exc:
        raise DataFormatError(where, f"could not be read as {name} ({type(exc).__name__}: "
                              f"{exc})", _REFETCH) from None


def _load_cifar10(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    ds = _torchvision_set("CIFAR10", root, split, download,
                          "torchvision's cifar-10-batches-py/ folder", root / "cifar-10-batches-py")
    return np.asarray(ds.data).transpose(0, 3, 1, 2), np.asarray(ds.targets)


def _load_cifar10_partial(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split != "test":
        raise ValueError("split must be 'test' for cifar10-partial (it holds test images only)")
    path = root / _CIFAR_PARTIAL
    if not path.exists():
        raise _missing("cifar10-partial", root, _CIFAR_PARTIAL)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataFormatError(path, f"has no array {missing[0]!r} (arrays 'x' and 'y' "
                                      f"expected)", _REFETCH)
            x, y = z["x"], z["y"]
    except DataFormatError:
        raise
    except _READ_ERRORS as exc:
        raise DataFormatError(path, f"not a readable .npz file ({type(exc).__name__}: {exc})",
                              _REFETCH) from None
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise DataFormatError(path, f"'x' must be uint8 images (N, 32, 32, 3), got {x.dtype} "
                              f"{x.shape}", _REFETCH)
    return x.transpose(0, 3, 1, 2), y


def _load_svhn(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    ds = _torchvision_set("SVHN", root, split, download, f"torchvision's {split}_32x32.mat",
                          root / f"{split}_32x32.mat")
    return np.asarray(ds.data), np.asarray(ds.labels)


def _check_split(name: str, where: Path, x: np.ndarray, y: np.ndarray) -> None:
    """One integer label in [0, 10) per image, pixels as bytes (what every set here holds)."""
    if y.ndim != 1 or len(y) != len(x):
        raise DataFormatError(where, f"{name} holds {len(x)} images but labels of shape "
                              f"{y.shape}", _REFETCH)
    if not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(where, f"{name}'s labels are {y.dtype}, integers expected",
                              _REFETCH)
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DataFormatError(where, f"{name} has labels in [{int(y.min())}, {int(y.max())}], "
                              f"the 10 classes are 0-9", _REFETCH)
    if len(x) == 0:
        raise DataFormatError(where, f"{name} holds no images", _REFETCH)


_WHERE = {"mnist": "MNIST/raw", "cifar10": "cifar-10-batches-py", "cifar10-partial": _CIFAR_PARTIAL}


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
    check_choice("name", name, DATASETS)
    check_choice("split", split, _SPLITS)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, "
                        f"got {type(root).__name__}")
    check_bool("download", download)
    device = _check_device(device)
    base = data_root(root)
    if name == "mnist":
        x, y = _load_mnist(base, split, download)
    elif name == "cifar10":
        x, y = _load_cifar10(base, split, download)
    elif name == "cifar10-partial":
        x, y = _load_cifar10_partial(base, split)
    else:
        x, y = _load_svhn(base, split, download)
    _check_split(name, base / _WHERE.get(name, f"{split}_32x32.mat"), x, y)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    pixels = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True))
    xt = pixels.to(device=device, dtype=torch.float32).div_(255)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)
    return TensorData(xt, yt)


def _check_device(device: object) -> torch.device:
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must name a torch device (cpu, cuda, cuda:1...), "
                         f"got {device!r} ({exc})") from None


def batches(
    data: TensorData,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches sliced from a :class:`TensorData` (no copies unless shuffled)."""
    if not isinstance(data, TensorData):
        raise TypeError(f"data must be a TensorData (x, y), got {type(data).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_bool("shuffle", shuffle)
    check_bool("drop_last", drop_last)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
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
