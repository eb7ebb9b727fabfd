"""Bad inputs, as a table: every entry point refuses them with a clear word (issue #17).

Each API case is (id, call, exception type, regex the message must match); the call gets a fresh
temporary folder for the files it writes. Each CLI case is (id, argv, regex): the command must
exit with status 2 and print exactly one line on stderr, matching the regex, with no traceback.
A new entry point gets its rows here.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from lslib._checks import BadFileError
from lslib._files import read_results_checked
from lslib.attacks import AttackResult, robust_accuracy
from lslib.audit import load_checkpoint
from lslib.data import DataFormatError, TensorData, batches, load_dataset
from lslib.experiments import COLUMNS, Defence, Sweep
from lslib.gaussian import figure1, figure2, smoothed_weights
from lslib.models import build_model
from lslib.train import AdversarialTraining, TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]


class ApiCase(NamedTuple):
    id: str
    call: Callable[[Path], Any]
    error: type[BaseException]
    match: str


class CliCase(NamedTuple):
    id: str
    argv: list[str]
    match: str


# --------------------------------------------------------------------------------------------
# helpers that make the inputs


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"model": "linear", "dataset": "mnist", "epochs": 1, "batch_size": 8,
                          **kw})


def _data(n: int = 8, *, shape: tuple[int, ...] = (1, 28, 28), labels: int | None = None,
          fill: float | None = None) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, *shape), generator=g)
    if fill is not None:
        x[0, 0, 0, 0] = fill
    y = torch.randint(0, 10, (n if labels is None else labels,), generator=g)
    return TensorData(x, y)


def _train(data: Any = None, config: Any = None, model: Any = None, **kw: Any) -> Any:
    model = build_model("linear") if model is None else model
    return train_model(model, _data() if data is None else data,
                       _cfg() if config is None else config, progress=False, **kw)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist(tmp: Path, *, images: bytes | None = None, labels: bytes | None = None,
           gz: bool = True) -> Path:
    """A data root with MNIST's test files: good ones (3 images) unless bytes are given."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    good_x = _idx(np.zeros((3, 28, 28), np.uint8))
    good_y = _idx(np.array([1, 2, 3], np.uint8))
    for name, blob in (("t10k-images-idx3-ubyte", good_x if images is None else images),
                       ("t10k-labels-idx1-ubyte", good_y if labels is None else labels)):
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (raw / name).write_bytes(blob)
    return tmp


def _raw_gz(tmp: Path, blob: bytes) -> Path:
    """A data root whose images .gz file holds ``blob`` as it is (not gzip-compressed)."""
    root = _mnist(tmp)
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(blob)
    return root


def _npz(tmp: Path, blob: bytes | None = None, **arrays: np.ndarray) -> Path:
    path = tmp / "cifar10_test_first1017.npz"
    if blob is None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        blob = buf.getvalue()
    path.write_bytes(blob)
    return tmp


def _good_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((4, 32, 32, 3), np.uint8), y=np.arange(4))
    return buf.getvalue()


def _load_mnist(root: Path) -> TensorData:
    return load_dataset("mnist", "test", root)


def _load_partial(root: Path) -> TensorData:
    return load_dataset("cifar10-partial", "test", root)


_ROW = {"setup": "mnist-linear", "table_name": "MNIST Linear", "defence": "natural", "alpha": "",
        "T": "", "protocol": "paper", "attack": "clean", "eps": 0, "eps_pixels": 0,
        "accuracy": 0.9, "n": 100}


def _csv_text(rows: int = 4, **override: Any) -> str:
    lines = [",".join(COLUMNS)]
    for i in range(rows):
        row = {**_ROW, "n": 100 + i, **override}
        lines.append(",".join(str(row.get(c, "")) for c in COLUMNS))
    return "\n".join(lines) + "\n"


def _csv(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "r.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _ckpt(tmp: Path, obj: Any = None, *, blob: bytes | None = None, name: str = "m.pt") -> Path:
    path = tmp / name
    if blob is not None:
        path.write_bytes(blob)
    else:
        torch.save(build_model("linear").state_dict() if obj is None else obj, path)
    return path


def _truncated_ckpt(tmp: Path) -> Path:
    good = _ckpt(tmp, name="good.pt").read_bytes()
    return _ckpt(tmp, blob=good[: len(good) // 2])


def _robust(result: Callable[[torch.Tensor], Any]) -> Any:
    model = build_model("linear")
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    return robust_accuracy(model, x, y, lambda m, xb, yb: result(xb), progress=False)


def _result(xb: torch.Tensor, *, n: int | None = None, norms_n: int | None = None,
            adv: torch.Tensor | None = None, dtype: torch.dtype = torch.bool) -> AttackResult:
    k = xb.shape[0]
    return AttackResult(xb.clone() if adv is None else adv,
                        torch.zeros(k if n is None else n, dtype=dtype),
                        torch.zeros(k if norms_n is None else norms_n))


# --------------------------------------------------------------------------------------------
# the API table

NAN, INF = math.nan, math.inf

API_CASES: list[ApiCase] = [
    # TrainConfig: every field
    ApiCase("config-alpha-without-method", lambda t: _cfg(alpha=0.3), ValueError,
            r"alpha=0\.3 needs a smoothing method"),
    ApiCase("config-method-unknown", lambda t: _cfg(method="XLS", alpha=0.1), ValueError,
            r"TrainConfig method must be one of"),
    ApiCase("config-alpha-above-1", lambda t: _cfg(method="SLS", alpha=1.5), ValueError,
            r"TrainConfig alpha must be in \[0, 1\]"),
    ApiCase("config-alpha-negative", lambda t: _cfg(method="SLS", alpha=-0.1), ValueError,
            r"TrainConfig alpha must be in \[0, 1\]"),
    ApiCase("config-alpha-nan", lambda t: _cfg(method="SLS", alpha=NAN), ValueError,
            r"TrainConfig alpha must be in \[0, 1\]"),
    ApiCase("config-alpha-string", lambda t: _cfg(method="SLS", alpha="0.1"), TypeError,
            r"TrainConfig alpha must be a real number"),
    ApiCase("config-temperature-zero", lambda t: _cfg(method="BLS", alpha=0.1, temperature=0),
            ValueError, r"TrainConfig temperature must be > 0"),
    ApiCase("config-temperature-negative",
            lambda t: _cfg(method="BLS", alpha=0.1, temperature=-1.0), ValueError,
            r"TrainConfig temperature must be > 0"),
    ApiCase("config-temperature-nan", lambda t: _cfg(method="BLS", alpha=0.1, temperature=NAN),
            ValueError, r"TrainConfig temperature must be > 0"),
    ApiCase("config-boltzmann-scale", lambda t: _cfg(boltzmann_scale="kelvin"), ValueError,
            r"TrainConfig boltzmann_scale must be one of"),
    ApiCase("config-epochs-zero", lambda t: _cfg(epochs=0), ValueError,
            r"TrainConfig epochs must be an integer >= 1"),
    ApiCase("config-epochs-float", lambda t: _cfg(epochs=1.5), TypeError,
            r"TrainConfig epochs must be an integer >= 1, got float"),
    ApiCase("config-epochs-bool", lambda t: _cfg(epochs=True), TypeError,
            r"TrainConfig epochs must be an integer"),
    ApiCase("config-batch-size-zero", lambda t: _cfg(batch_size=0), ValueError,
            r"TrainConfig batch_size must be an integer >= 1"),
    ApiCase("config-batch-size-float", lambda t: _cfg(batch_size=8.0), TypeError,
            r"TrainConfig batch_size must be an integer"),
    ApiCase("config-lr-zero", lambda t: _cfg(lr=0.0), ValueError,
            r"TrainConfig lr must be finite and > 0"),
    ApiCase("config-lr-negative", lambda t: _cfg(lr=-1e-3), ValueError,
            r"TrainConfig lr must be finite and > 0"),
    ApiCase("config-lr-inf", lambda t: _cfg(lr=INF), ValueError,
            r"TrainConfig lr must be finite and > 0"),
    ApiCase("config-lr-string", lambda t: _cfg(lr="0.1"), TypeError,
            r"TrainConfig lr must be a positive real number, got str"),
    ApiCase("config-weight-decay-negative", lambda t: _cfg(weight_decay=-1.0), ValueError,
            r"TrainConfig weight_decay must be finite and >= 0"),
    ApiCase("config-seed-negative", lambda t: _cfg(seed=-1), ValueError,
            r"TrainConfig seed must be an integer >= 0"),
    ApiCase("config-seed-float", lambda t: _cfg(seed=1.0), TypeError,
            r"TrainConfig seed must be an integer"),
    ApiCase("config-train-limit-zero", lambda t: _cfg(train_limit=0), ValueError,
            r"TrainConfig train_limit must be an integer >= 1"),
    ApiCase("config-train-limit-negative", lambda t: _cfg(train_limit=-5), ValueError,
            r"TrainConfig train_limit must be an integer >= 1"),
    ApiCase("config-data-source-bogus", lambda t: _cfg(data_source="bogus"), ValueError,
            r"TrainConfig data_source must be one of 'real', 'synthetic'"),
    ApiCase("config-model-unknown", lambda t: _cfg(model="vgg16"), ValueError,
            r"TrainConfig model must be one of"),
    ApiCase("config-dataset-unknown", lambda t: _cfg(dataset="imagenet"), ValueError,
            r"TrainConfig dataset must be one of"),
    ApiCase("config-detach-targets-string", lambda t: _cfg(detach_targets="yes"), TypeError,
            r"TrainConfig detach_targets must be True or False"),
    ApiCase("config-adversarial-string", lambda t: _cfg(adversarial="pgd"), TypeError,
            r"TrainConfig adversarial must be an AdversarialTraining"),
    ApiCase("config-adversarial-dict-adv-weight",
            lambda t: _cfg(adversarial={"eps": 0.1, "step_size": 0.05, "adv_weight": 2.0}),
            ValueError, r"adv_weight must be in \[0, 1\]"),
    # AdversarialTraining
    ApiCase("adv-eps-negative", lambda t: AdversarialTraining(eps=-0.1, step_size=0.1),
            ValueError, r"AdversarialTraining eps must be finite and >= 0"),
    ApiCase("adv-eps-nan", lambda t: AdversarialTraining(eps=NAN, step_size=0.1), ValueError,
            r"AdversarialTraining eps must be finite"),
    ApiCase("adv-step-zero", lambda t: AdversarialTraining(eps=0.1, step_size=0.0), ValueError,
            r"AdversarialTraining step_size must be finite and > 0"),
    ApiCase("adv-steps-zero", lambda t: AdversarialTraining(eps=0.1, step_size=0.1, steps=0),
            ValueError, r"AdversarialTraining steps must be an integer >= 1"),
    ApiCase("adv-steps-float", lambda t: AdversarialTraining(eps=0.1, step_size=0.1, steps=2.5),
            TypeError, r"AdversarialTraining steps must be an integer"),
    ApiCase("adv-weight-2", lambda t: AdversarialTraining(eps=0.1, step_size=0.1,
                                                          adv_weight=2.0),
            ValueError, r"AdversarialTraining adv_weight must be in \[0, 1\], got 2\.0"),
    ApiCase("adv-weight-negative", lambda t: AdversarialTraining(eps=0.1, step_size=0.1,
                                                                 adv_weight=-0.5),
            ValueError, r"AdversarialTraining adv_weight must be in \[0, 1\]"),
    ApiCase("adv-random-start-int", lambda t: AdversarialTraining(eps=0.1, step_size=0.1,
                                                                  random_start=1),
            TypeError, r"AdversarialTraining random_start must be True or False"),
    # TensorData
    ApiCase("tensordata-x-list", lambda t: TensorData([[0.0]], torch.zeros(1, dtype=torch.long)),
            TypeError, r"TensorData x must be a torch\.Tensor"),
    ApiCase("tensordata-y-list", lambda t: TensorData(torch.rand(2, 1, 2, 2), [0, 1]),
            TypeError, r"TensorData y must be a torch\.Tensor"),
    ApiCase("tensordata-y-float", lambda t: TensorData(torch.rand(2, 1, 2, 2), torch.zeros(2)),
            TypeError, r"TensorData y must be a 1-D integer tensor"),
    ApiCase("tensordata-y-bool",
            lambda t: TensorData(torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.bool)),
            TypeError, r"TensorData y must be a 1-D integer tensor"),
    ApiCase("tensordata-y-2d",
            lambda t: TensorData(torch.rand(2, 1, 2, 2), torch.zeros(2, 1, dtype=torch.long)),
            TypeError, r"TensorData y must be a 1-D integer tensor"),
    ApiCase("tensordata-64-images-10-labels", lambda t: _data(64, labels=10), ValueError,
            r"TensorData x has 64 images but y has 10 labels"),
    ApiCase("tensordata-scalar-x",
            lambda t: TensorData(torch.tensor(1.0), torch.zeros(1, dtype=torch.long)),
            ValueError, r"TensorData x has 0 images but y has 1 labels"),
    # train_model
    ApiCase("train-tuple-as-data", lambda t: _train(data=(torch.rand(8, 1, 28, 28),
                                                          torch.zeros(8, dtype=torch.long))),
            TypeError, r"data must be a lslib\.data\.TensorData\(x, y\), got tuple"),
    ApiCase("tensordata-replaced-labels", lambda t: _data(64)._replace(
        y=torch.zeros(10, dtype=torch.long)), ValueError,
            r"TensorData x has 64 images but y has 10 labels"),
    ApiCase("train-bypassed-constructor", lambda t: _train(data=tuple.__new__(
        TensorData, (torch.rand(64, 1, 28, 28), torch.zeros(10, dtype=torch.long)))),
            ValueError, r"TensorData x has 64 images but y has 10 labels"),
    ApiCase("train-model-not-module", lambda t: _train(model="linear"), TypeError,
            r"model must be a torch\.nn\.Module, got str"),
    ApiCase("train-model-without-parameters", lambda t: _train(model=torch.nn.Identity()),
            ValueError, r"model has no parameters"),
    ApiCase("train-config-dict", lambda t: _train(config={"model": "linear"}), TypeError,
            r"config must be a TrainConfig, got dict"),
    ApiCase("train-nan-inputs", lambda t: _train(data=_data(fill=NAN)), ValueError,
            r"data\.x has NaN or infinite pixels"),
    ApiCase("train-inf-inputs", lambda t: _train(data=_data(fill=INF)), ValueError,
            r"data\.x has NaN or infinite pixels"),
    ApiCase("train-pixels-0-255", lambda t: _train(data=TensorData(_data().x * 255,
                                                                   _data().y)),
            ValueError, r"data\.x must have pixels in \[0, 1\], got values in"),
    ApiCase("train-negative-pixels", lambda t: _train(data=_data(fill=-0.5)), ValueError,
            r"data\.x must have pixels in \[0, 1\]"),
    ApiCase("train-empty-data", lambda t: _train(data=_data(0)), ValueError,
            r"data\.x is empty \(0 images\)"),
    ApiCase("train-wrong-image-shape", lambda t: _train(data=_data(shape=(3, 32, 32))),
            ValueError, r"data\.x has images of shape \(3, 32, 32\), which the model does not"),
    ApiCase("train-3d-images", lambda t: _train(data=TensorData(torch.rand(8, 28, 28),
                                                                torch.zeros(8, dtype=torch.long))),
            ValueError, r"data\.x must be 4-D \(N, C, H, W\)"),
    ApiCase("train-uint8-images", lambda t: _train(data=TensorData(
        torch.zeros(8, 1, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))),
            TypeError, r"data\.x must be a floating-point tensor"),
    ApiCase("train-label-10", lambda t: _train(data=TensorData(_data().x,
                                                               torch.full((8,), 10))),
            ValueError, r"the data's labels must lie in \[0, 9\]"),
    ApiCase("train-label-negative", lambda t: _train(data=TensorData(_data().x,
                                                                     torch.full((8,), -1))),
            ValueError, r"the data's labels must lie in \[0, 9\]"),
    ApiCase("train-device-bogus", lambda t: _train(device="bogus"), ValueError,
            r"device must name a torch device"),
    ApiCase("train-device-int-list", lambda t: _train(device=[0]), TypeError,
            r"device must be a str or torch\.device"),
    ApiCase("train-amp-string", lambda t: _train(amp="yes"), TypeError,
            r"amp must be True or False"),
    ApiCase("train-progress-int", lambda t: train_model(build_model("linear"), _data(), _cfg(),
                                                        progress=1), TypeError,
            r"progress must be True or False"),
    ApiCase("train-reseed-string", lambda t: _train(reseed="no"), TypeError,
            r"reseed must be True or False"),
    # load_dataset and batches: arguments
    ApiCase("load-name-unknown", lambda t: load_dataset("imagenet", "test", t), ValueError,
            r"name must be one of 'mnist'"),
    ApiCase("load-split-unknown", lambda t: load_dataset("mnist", "validation", t), ValueError,
            r"split must be one of 'train', 'test'"),
    ApiCase("load-limit-zero", lambda t: load_dataset("mnist", "test", t, limit=0), ValueError,
            r"limit must be a positive integer or None, got 0"),
    ApiCase("load-limit-float", lambda t: load_dataset("mnist", "test", t, limit=1.5),
            ValueError, r"limit must be a positive integer or None, got 1\.5"),
    ApiCase("load-limit-bool", lambda t: load_dataset("mnist", "test", t, limit=True),
            ValueError, r"limit must be a positive integer or None, got True"),
    ApiCase("load-download-string", lambda t: load_dataset("mnist", "test", t, download="yes"),
            TypeError, r"download must be True or False"),
    ApiCase("load-device-bogus", lambda t: load_dataset("mnist", "test", t, device="gpu0"),
            ValueError, r"device must name a torch device"),
    ApiCase("load-root-int", lambda t: load_dataset("mnist", "test", 123), TypeError,
            r"root must be a path"),
    ApiCase("batches-tuple", lambda t: list(batches((torch.zeros(2), torch.zeros(2)), 1)),
            TypeError, r"data must be a TensorData"),
    ApiCase("batches-size-zero", lambda t: list(batches(_data(), 0)), ValueError,
            r"batch_size must be a positive integer, got 0"),
    ApiCase("batches-size-float", lambda t: list(batches(_data(), 2.0)), ValueError,
            r"batch_size must be a positive integer, got 2\.0"),
    ApiCase("batches-shuffle-string", lambda t: list(batches(_data(), 2, shuffle="yes")),
            TypeError, r"shuffle must be True or False"),
    ApiCase("batches-drop-last-int", lambda t: list(batches(_data(), 2, drop_last=1)),
            TypeError, r"drop_last must be True or False"),
    ApiCase("batches-generator-int", lambda t: list(batches(_data(), 2, shuffle=True,
                                                            generator=5)),
            TypeError, r"generator must be a torch\.Generator"),
    # data files: MNIST's IDX files
    ApiCase("idx-label-count-differs", lambda t: _load_mnist(_mnist(
        t, labels=_idx(np.array([1, 2], np.uint8)))), DataFormatError,
            r"t10k-labels-idx1-ubyte\.gz: holds 2 labels but t10k-images-idx3-ubyte\.gz holds "
            r"3 images"),
    ApiCase("idx-label-byte-200", lambda t: _load_mnist(_mnist(
        t, labels=_idx(np.array([1, 200, 3], np.uint8)))), DataFormatError,
            r"t10k-labels-idx1-ubyte\.gz: has a label byte of 200, the 10 classes are 0-9"),
    ApiCase("idx-truncated", lambda t: _load_mnist(_mnist(
        t, images=_idx(np.zeros((3, 28, 28), np.uint8))[:1000])), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: truncated: 1000 bytes"),
    ApiCase("idx-too-long", lambda t: _load_mnist(_mnist(
        t, images=_idx(np.zeros((3, 28, 28), np.uint8)) + b"\0")), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: longer than its header says"),
    ApiCase("idx-empty-file", lambda t: _load_mnist(_mnist(t, images=b"", gz=False)),
            DataFormatError, r"t10k-images-idx3-ubyte: not an IDX file .*empty file"),
    ApiCase("idx-empty-gz", lambda t: _load_mnist(_raw_gz(t, b"")), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: not an IDX file"),
    ApiCase("idx-random-bytes", lambda t: _load_mnist(_mnist(
        t, images=np.random.default_rng(0).bytes(5000))), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: not an IDX file of unsigned bytes \(bad magic"),
    ApiCase("idx-gz-of-random-bytes", lambda t: _load_mnist(_raw_gz(
        t, np.random.default_rng(1).bytes(5000))), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: not a readable gzip file"),
    ApiCase("idx-gz-truncated", lambda t: _load_mnist(_raw_gz(
        t, gzip.compress(np.random.default_rng(2).bytes(20000))[:3000])), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: not a readable gzip file \(EOFError"),
    ApiCase("idx-float-type", lambda t: _load_mnist(_mnist(
        t, images=bytes([0, 0, 0x0D, 3]) + bytes(12))), DataFormatError,
            r"not an IDX file of unsigned bytes \(bad magic number 00000d03\)"),
    ApiCase("idx-truncated-header", lambda t: _load_mnist(_mnist(
        t, images=bytes([0, 0, 8, 3, 0, 0]))), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: truncated header"),
    ApiCase("idx-images-file-1d", lambda t: _load_mnist(_mnist(
        t, images=_idx(np.zeros(3, np.uint8)))), DataFormatError,
            r"t10k-images-idx3-ubyte\.gz: not an image file"),
    ApiCase("idx-labels-file-2d", lambda t: _load_mnist(_mnist(
        t, labels=_idx(np.zeros((3, 2), np.uint8)))), DataFormatError,
            r"t10k-labels-idx1-ubyte\.gz: not a label file"),
    ApiCase("idx-error-says-what-to-do", lambda t: _load_mnist(_raw_gz(t, b"junk")),
            DataFormatError, r"delete it and fetch it again .*download=True"),
    ApiCase("mnist-missing", lambda t: _load_mnist(t), FileNotFoundError,
            r"MNIST not found under data root .*MNIST/raw/t10k-images-idx3-ubyte\.gz"),
    # data files: the cifar10-partial .npz
    ApiCase("npz-random-bytes", lambda t: _load_partial(_npz(
        t, np.random.default_rng(3).bytes(4000))), DataFormatError,
            r"cifar10_test_first1017\.npz: not a readable \.npz file"),
    ApiCase("npz-empty", lambda t: _load_partial(_npz(t, b"")), DataFormatError,
            r"cifar10_test_first1017\.npz: not a readable \.npz file"),
    ApiCase("npz-truncated", lambda t: _load_partial(_npz(t, _good_npz_bytes()[:2000])),
            DataFormatError, r"cifar10_test_first1017\.npz: not a readable \.npz file"),
    ApiCase("npz-missing-y", lambda t: _load_partial(_npz(
        t, x=np.zeros((4, 32, 32, 3), np.uint8))), DataFormatError,
            r"cifar10_test_first1017\.npz: has no array 'y'"),
    ApiCase("npz-x-wrong-shape", lambda t: _load_partial(_npz(
        t, x=np.zeros((4, 3, 32, 32), np.uint8), y=np.arange(4))), DataFormatError,
            r"cifar10_test_first1017\.npz: 'x' must be uint8 images \(N, 32, 32, 3\)"),
    ApiCase("npz-x-float", lambda t: _load_partial(_npz(
        t, x=np.zeros((4, 32, 32, 3)), y=np.arange(4))), DataFormatError,
            r"'x' must be uint8 images, got float64|'x' must be uint8 images"),
    ApiCase("npz-label-11", lambda t: _load_partial(_npz(
        t, x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([1, 11]))), DataFormatError,
            r"cifar10_test_first1017\.npz: cifar10-partial has labels in \[1, 11\]"),
    ApiCase("npz-counts-differ", lambda t: _load_partial(_npz(
        t, x=np.zeros((3, 32, 32, 3), np.uint8), y=np.arange(2))), DataFormatError,
            r"cifar10-partial holds 3 images but labels of shape \(2,\)"),
    ApiCase("npz-float-labels", lambda t: _load_partial(_npz(
        t, x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([0.5, 1.0]))), DataFormatError,
            r"cifar10-partial's labels are float64, integers expected"),
    ApiCase("npz-no-images", lambda t: _load_partial(_npz(
        t, x=np.zeros((0, 32, 32, 3), np.uint8), y=np.zeros(0, np.int64))), DataFormatError,
            r"cifar10-partial holds no images"),
    ApiCase("cifar10-damaged-folder", lambda t: (
        (t / "cifar-10-batches-py").mkdir(), (t / "cifar-10-batches-py" / "test_batch")
        .write_bytes(b"junk"), load_dataset("cifar10", "test", t)), DataFormatError,
            r"cifar-10-batches-py: fails torchvision's CIFAR10 integrity check"),
    # the Gaussian model's figure helpers
    ApiCase("figure1-alphas-empty", lambda t: figure1(alphas=[]), ValueError,
            r"alphas is empty: give at least one alpha in \[0, 1\]"),
    ApiCase("figure2-alphas-empty", lambda t: figure2(alphas=[]), ValueError,
            r"alphas is empty"),
    ApiCase("figure1-alphas-2d", lambda t: figure1(alphas=[[0.1, 0.2]]), ValueError,
            r"alphas must be 1-D \(a list of alphas\), got shape \(1, 2\)"),
    ApiCase("figure2-alphas-2d", lambda t: figure2(alphas=np.zeros((2, 2))), ValueError,
            r"alphas must be 1-D"),
    ApiCase("smoothed-weights-alphas-empty",
            lambda t: smoothed_weights([1.0, 1.0], [1.0, 1.0], []), ValueError,
            r"alphas is empty"),
    ApiCase("figure1-alpha-1.5", lambda t: figure1(alphas=[0.1, 1.5]), ValueError,
            r"alphas must lie in \[0, 1\]"),
    ApiCase("figure2-alpha-nan", lambda t: figure2(alphas=[NAN]), ValueError,
            r"alphas must be finite"),
    ApiCase("figure1-alphas-string", lambda t: figure1(alphas="0.1"), TypeError,
            r"alphas must be a sequence of real numbers"),
    ApiCase("figure1-alphas-words", lambda t: figure1(alphas=["a"]), TypeError,
            r"alphas must be an array of real numbers"),
    ApiCase("figure1-d-zero", lambda t: figure1(d=0), ValueError, r"d must be an integer >= 1"),
    ApiCase("figure2-eps-negative", lambda t: figure2(alphas=[0.1], eps=[-1.0]), ValueError,
            r"eps must be >= 0"),
    ApiCase("figure1-method-unknown", lambda t: figure1(alphas=[0.1], method="XLS"), ValueError,
            r"method must be one of"),
    # robust_accuracy: what the attack returns
    ApiCase("robust-short-success", lambda t: _robust(lambda xb: _result(xb, n=7)), ValueError,
            r"attack returned an AttackResult whose success is \(7,\) for a batch of 8"),
    ApiCase("robust-long-norms", lambda t: _robust(lambda xb: _result(xb, norms_n=9)),
            ValueError, r"whose norms is \(9,\) for a batch of 8 images"),
    ApiCase("robust-wrong-adversarial", lambda t: _robust(
        lambda xb: _result(xb, adv=xb[:4])), ValueError,
            r"attack returned adversarial \(4, 1, 28, 28\) for a batch of shape \(8, 1, 28, 28\)"),
    ApiCase("robust-float-success", lambda t: _robust(lambda xb: _result(xb, dtype=torch.float)),
            TypeError, r"attack returned success of dtype torch\.float32"),
    ApiCase("robust-tuple-result", lambda t: _robust(lambda xb: (xb, None)), TypeError,
            r"attack must return an AttackResult, got tuple"),
    # Defence and Sweep
    ApiCase("defence-bls-t-zero", lambda t: Defence("BLS", 0.1, 0.0), ValueError,
            r"BLS temperature must be finite and > 0, got 0\.0"),
    ApiCase("defence-bls-t-negative", lambda t: Defence("BLS", 0.1, -1.0), ValueError,
            r"BLS temperature must be finite and > 0"),
    ApiCase("defence-bls-t-nan", lambda t: Defence("BLS", 0.1, NAN), ValueError,
            r"BLS temperature must be finite and > 0"),
    ApiCase("defence-als-alpha-1.5", lambda t: Defence("ALS", 1.5), ValueError,
            r"ALS alpha must be in \[0, 1\]"),
    ApiCase("defence-sls-alpha-nan", lambda t: Defence("SLS", NAN), ValueError,
            r"SLS alpha must be in \[0, 1\]"),
    ApiCase("defence-unknown", lambda t: Defence("bogus"), ValueError,
            r"defence must be one of"),
    ApiCase("sweep-setups-empty", lambda t: Sweep(setups=()), ValueError,
            r"setups is empty"),
    ApiCase("sweep-protocols-empty", lambda t: Sweep(setups=("mnist-linear",), protocols=()),
            ValueError, r"protocols is empty"),
    ApiCase("sweep-attacks-empty", lambda t: Sweep(setups=("mnist-linear",), attacks=()),
            ValueError, r"attacks is empty"),
    ApiCase("sweep-alphas-empty", lambda t: Sweep(setups=("mnist-linear",), alphas=()),
            ValueError, r"alphas is empty: the smoothing methods need at least one alpha"),
    ApiCase("sweep-temperatures-empty",
            lambda t: Sweep(setups=("mnist-linear",), temperatures=()), ValueError,
            r"temperatures is empty: BLS needs"),
    ApiCase("sweep-no-defence", lambda t: Sweep(setups=("mnist-linear",), methods=(),
                                                baselines=()),
            ValueError, r"methods and baselines are both empty"),
    ApiCase("sweep-alpha-1.5", lambda t: Sweep(setups=("mnist-linear",), alphas=(0.1, 1.5)),
            ValueError, r"alphas entry must be in \[0, 1\], got 1\.5"),
    ApiCase("sweep-temperature-zero", lambda t: Sweep(setups=("mnist-linear",),
                                                      temperatures=(0.0,)),
            ValueError, r"temperatures entry must be finite and > 0"),
    ApiCase("sweep-eps-negative", lambda t: Sweep(setups=("mnist-linear",), eps=(-1.0,)),
            ValueError, r"eps entry must be finite and >= 0"),
    ApiCase("sweep-eps-empty", lambda t: Sweep(setups=("mnist-linear",), eps=()), ValueError,
            r"eps is empty"),
    ApiCase("sweep-n-test-zero", lambda t: Sweep(setups=("mnist-linear",), n_test=0),
            ValueError, r"n_test must be an integer >= 1, got 0"),
    ApiCase("sweep-n-test-negative", lambda t: Sweep(setups=("mnist-linear",), n_test=-5),
            ValueError, r"n_test must be an integer >= 1, got -5"),
    ApiCase("sweep-seed-negative", lambda t: Sweep(setups=("mnist-linear",), seed=-1),
            ValueError, r"seed must be an integer >= 0"),
    ApiCase("sweep-quick-string", lambda t: Sweep(setups=("mnist-linear",), quick="yes"),
            TypeError, r"quick must be True or False"),
    ApiCase("sweep-data-source-bogus", lambda t: Sweep(setups=("mnist-linear",),
                                                       data_source="bogus"),
            ValueError, r"data_source must be 'real' or 'synthetic'"),
    ApiCase("sweep-method-unknown", lambda t: Sweep(setups=("mnist-linear",), methods=("XLS",)),
            ValueError, r"unknown methods \['XLS'\]"),
    # results CSV (compare)
    ApiCase("csv-truncated-mid-line", lambda t: read_results_checked(_csv(
        t, _csv_text()[: len(_csv_text()) * 2 // 3])), BadFileError,
            r"r\.csv: the last line is cut short .*truncated"),
    ApiCase("csv-missing-fields", lambda t: read_results_checked(_csv(
        t, _csv_text() + "mnist-linear,MNIST Linear,natural\n")), BadFileError,
            r"r\.csv: line 6 has 3 fields, the header has \d+: the file is truncated"),
    ApiCase("csv-empty", lambda t: read_results_checked(_csv(t, "")), BadFileError,
            r"r\.csv: the file is empty"),
    ApiCase("csv-not-results", lambda t: read_results_checked(_csv(t, "a,b\n1,2\n")),
            BadFileError, r"r\.csv: the header lacks the column\(s\) setup, defence"),
    ApiCase("csv-binary", lambda t: read_results_checked(_csv(t, b"\xff\xfe\x00junk\n")),
            BadFileError, r"r\.csv: not a text file"),
    ApiCase("csv-accuracy-1.5", lambda t: read_results_checked(_csv(t, _csv_text(accuracy=1.5))),
            BadFileError, r"r\.csv: line 2 has accuracy '1\.5', a number in \[0, 1\]"),
    ApiCase("csv-defence-unknown", lambda t: read_results_checked(_csv(
        t, _csv_text(defence="XLS"))), BadFileError, r"r\.csv: line 2 has defence 'XLS'"),
    ApiCase("csv-says-what-to-do", lambda t: read_results_checked(_csv(t, "")), BadFileError,
            r"rebuild it by running again the `lslib reproduce` command"),
    ApiCase("csv-missing", lambda t: read_results_checked(t / "nope.csv"), FileNotFoundError,
            r"no such results file: .*nope\.csv"),
    # checkpoints
    ApiCase("ckpt-missing", lambda t: load_checkpoint("linear", str(t / "none.pt")),
            FileNotFoundError, r"no such checkpoint file: .*none\.pt"),
    ApiCase("ckpt-random-bytes", lambda t: load_checkpoint("linear", str(_ckpt(
        t, blob=np.random.default_rng(4).bytes(3000)))), BadFileError,
            r"m\.pt: not a readable torch checkpoint"),
    ApiCase("ckpt-empty", lambda t: load_checkpoint("linear", str(_ckpt(t, blob=b""))),
            BadFileError, r"m\.pt: not a readable torch checkpoint"),
    ApiCase("ckpt-truncated", lambda t: load_checkpoint("linear", str(_truncated_ckpt(t))),
            BadFileError, r"m\.pt: not a readable torch checkpoint"),
    ApiCase("ckpt-a-list", lambda t: load_checkpoint("linear", str(_ckpt(t, [1, 2]))),
            BadFileError, r"m\.pt: holds a list, not a state_dict"),
    ApiCase("ckpt-wrong-model", lambda t: load_checkpoint("mlp", str(_ckpt(t))), BadFileError,
            r"m\.pt: does not hold the weights of a 'mlp' model"),
    ApiCase("ckpt-model-unknown", lambda t: load_checkpoint("vgg", str(_ckpt(t))), ValueError,
            r"model name must be one of"),
    ApiCase("ckpt-says-what-to-do", lambda t: load_checkpoint("linear", str(_ckpt(t, blob=b""))),
            BadFileError, r"delete it and train or save the model again"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_refuses(case: ApiCase, tmp_path: Path) -> None:
    with pytest.raises(case.error, match=case.match):
        case.call(tmp_path)


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in API_CASES] + [c.id for c in CLI_CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 150


# --------------------------------------------------------------------------------------------
# the command line

def _cli_files(tmp: Path) -> dict[str, str]:
    """Files the CLI cases name as {placeholders}."""
    (tmp / "dir").mkdir()
    (tmp / "file").write_text("x\n")
    good_csv = _csv(tmp, _csv_text())
    truncated = tmp / "trunc.csv"
    truncated.write_text(_csv_text()[:300])
    empty = tmp / "empty.csv"
    empty.write_text("")
    other = tmp / "other.csv"
    other.write_text("a,b\n1,2\n")
    good_pt = _ckpt(tmp, name="good.pt")
    bad_pt = _ckpt(tmp, blob=b"not a checkpoint", name="bad.pt")
    damaged = tmp / "damaged"
    _raw_gz(damaged, b"junk")
    return {"tmp": str(tmp), "dir": str(tmp / "dir"), "file": str(tmp / "file"),
            "csv": str(good_csv), "trunc": str(truncated), "empty": str(empty),
            "other": str(other), "good_pt": str(good_pt), "bad_pt": str(bad_pt),
            "damaged": str(damaged), "out": str(tmp / "out.csv"), "missing": str(tmp / "none")}


def _r(*extra: str) -> list[str]:
    return ["reproduce", "mnist-linear", "--out", "{out}", *extra]


def _a(*extra: str) -> list[str]:
    return ["audit", "--model", "linear", "--checkpoint", "{good_pt}", "--eps", "0.1", *extra]


CLI_CASES: list[CliCase] = [
    # reproduce: numbers
    CliCase("alphas-1.5", _r("--alphas", "1.5"),
            r"argument --alphas: 1\.5 is not accepted: each value must be finite and in \[0, 1\]"),
    CliCase("alphas-negative", _r("--alphas", "0.1,-0.1"), r"argument --alphas: -0\.1 is not"),
    CliCase("alphas-nan", _r("--alphas", "nan"), r"argument --alphas: nan .*finite"),
    CliCase("alphas-inf", _r("--alphas", "inf"), r"argument --alphas: inf .*finite"),
    CliCase("alphas-empty", _r("--alphas", ""), r"argument --alphas: empty list"),
    CliCase("alphas-comma-only", _r("--alphas", ","), r"argument --alphas: empty list"),
    CliCase("alphas-empty-entry", _r("--alphas", "0.1,,0.2"),
            r"argument --alphas: '0\.1,,0\.2' has an empty entry"),
    CliCase("alphas-words", _r("--alphas", "a,b"), r"argument --alphas: 'a' is not a number"),
    CliCase("temperatures-zero", _r("--temperatures", "0"),
            r"argument --temperatures: 0 is not accepted: each value must be finite and > 0"),
    CliCase("temperatures-negative", _r("--temperatures", "-1"),
            r"argument --temperatures: -1 is not accepted"),
    CliCase("temperatures-nan", _r("--temperatures", "nan"), r"argument --temperatures: nan"),
    CliCase("temperatures-inf", _r("--temperatures", "inf"), r"argument --temperatures: inf"),
    CliCase("temperatures-empty", _r("--temperatures", ""),
            r"argument --temperatures: empty list"),
    CliCase("eps-negative", _r("--eps", "-1"), r"argument --eps: -1 is not accepted: .*>= 0"),
    CliCase("eps-nan", _r("--eps", "0.1,nan"), r"argument --eps: nan is not accepted"),
    CliCase("eps-inf", _r("--eps", "inf"), r"argument --eps: inf is not accepted"),
    CliCase("eps-empty", _r("--eps", ""), r"argument --eps: empty list"),
    CliCase("n-test-negative", _r("--n-test", "-5"),
            r"argument --n-test: -5 must be an integer >= 1"),
    CliCase("n-test-zero", _r("--n-test", "0"), r"argument --n-test: 0 must be an integer >= 1"),
    CliCase("n-test-float", _r("--n-test", "1.5"), r"argument --n-test: '1\.5' is not an integer"),
    CliCase("n-test-word", _r("--n-test", "ten"), r"argument --n-test: 'ten' is not an integer"),
    CliCase("threads-negative", _r("--threads", "-1"), r"argument --threads: -1 must be"),
    CliCase("threads-zero", _r("--threads", "0"), r"argument --threads: 0 must be an integer >= 1"),
    CliCase("max-rows-negative", _r("--max-rows", "-1"), r"argument --max-rows: -1 must be"),
    CliCase("max-rows-zero", _r("--max-rows", "0"), r"argument --max-rows: 0 must be"),
    CliCase("seed-negative", _r("--seed", "-1"), r"argument --seed: -1 must be an integer >= 0"),
    CliCase("seed-float", _r("--seed", "0.5"), r"argument --seed: '0\.5' is not an integer"),
    # reproduce: names
    CliCase("methods-unknown", _r("--methods", "XLS"),
            r"argument --methods: unknown 'XLS': choose from ALS,SLS,BLS,SBLS"),
    CliCase("methods-empty", _r("--methods", ""), r"argument --methods: empty list.*'none'"),
    CliCase("baselines-unknown", _r("--baselines", "adversarial"),
            r"argument --baselines: unknown 'adversarial'"),
    CliCase("baselines-empty", _r("--baselines", ""), r"argument --baselines: empty list"),
    CliCase("attacks-empty", _r("--attacks", ""), r"argument --attacks: empty list"),
    CliCase("attacks-unknown", _r("--attacks", "clean,PGD"), r"argument --attacks: unknown 'PGD'"),
    CliCase("protocol-unknown", _r("--protocol", "weak"), r"argument --protocol: invalid choice"),
    CliCase("setup-unknown", ["reproduce", "imagenet-vgg", "--out", "{out}"],
            r"unknown set-up\(s\) \['imagenet-vgg'\]"),
    CliCase("no-defence", _r("--methods", "none", "--baselines", "none"),
            r"methods and baselines are both empty"),
    # reproduce: device and paths
    CliCase("device-bogus", _r("--device", "bogus"),
            r"argument --device: 'bogus' is not a device: use cpu, cuda, cuda:N or mps"),
    CliCase("device-tpu", _r("--device", "xla"), r"argument --device: 'xla'"),
    CliCase("device-cuda-99", _r("--device", "cuda:99"),
            r"argument --device: cuda:99: (no CUDA device|this machine has)"),
    CliCase("out-existing-dir", ["reproduce", "mnist-linear", "--out", "{dir}"],
            r"argument --out: .*dir is a folder: give a file name inside it"),
    CliCase("out-under-a-file", ["reproduce", "mnist-linear", "--out", "{file}/r.csv"],
            r"argument --out: .*file/r\.csv: .*file is not a folder"),
    CliCase("out-unwritable", ["reproduce", "mnist-linear", "--out", "/proc/lslib/r.csv"],
            r"argument --out: /proc/lslib/r\.csv: folder /proc is not writable"),
    CliCase("out-empty", ["reproduce", "mnist-linear", "--out", ""], r"argument --out: empty path"),
    CliCase("cache-is-a-file", _r("--cache", "{file}"),
            r"argument --cache: .*file exists and is not a folder"),
    CliCase("cache-unwritable", _r("--cache", "/proc/lslib-cache"),
            r"argument --cache: /proc/lslib-cache: folder /proc is not writable"),
    CliCase("data-root-is-a-file", _r("--data-root", "{file}"),
            r"argument --data-root: .*file is a file, not a folder"),
    CliCase("data-damaged", _r("--data-root", "{damaged}", "--cache", "{tmp}/c", "--quick",
                               "--protocol", "paper", "--methods", "none", "--baselines",
                               "natural", "--attacks", "clean", "--no-progress"),
            r"t10k-images-idx3-ubyte\.gz: not a readable gzip file|train-images"),
    CliCase("data-missing", _r("--data-root", "{missing}", "--cache", "{tmp}/c", "--quick",
                               "--protocol", "paper", "--methods", "none", "--baselines",
                               "natural", "--attacks", "clean", "--no-progress"),
            r"MNIST not found under data root .*none"),
    # compare
    CliCase("compare-missing", ["compare", "{missing}.csv"],
            r"argument results: no such file: .*none\.csv"),
    CliCase("compare-dir", ["compare", "{dir}"], r"argument results: .*dir is a folder"),
    CliCase("compare-truncated", ["compare", "{trunc}"],
            r"trunc\.csv: the last line is cut short .*truncated"),
    CliCase("compare-empty", ["compare", "{empty}"], r"empty\.csv: the file is empty"),
    CliCase("compare-not-results", ["compare", "{other}"],
            r"other\.csv: the header lacks the column"),
    CliCase("compare-bls-t-zero", ["compare", "{csv}", "--bls-temperature", "0"],
            r"argument --bls-temperature: 0 is not accepted: .*> 0"),
    CliCase("compare-bls-t-nan", ["compare", "{csv}", "--bls-temperature", "nan"],
            r"argument --bls-temperature: nan is not accepted"),
    CliCase("compare-bls-t-word", ["compare", "{csv}", "--bls-temperature", "hot"],
            r"argument --bls-temperature: 'hot' is not a number"),
    CliCase("compare-protocol", ["compare", "{csv}", "--protocol", "weak"],
            r"argument --protocol: invalid choice: 'weak'"),
    CliCase("compare-attack", ["compare", "{csv}", "--attack", "PGD"],
            r"argument --attack: invalid choice: 'PGD'"),
    CliCase("compare-setup", ["compare", "{csv}", "--setup", "mnist"],
            r"argument --setup: invalid choice: 'mnist'"),
    CliCase("compare-csv-dir", ["compare", "{csv}", "--csv", "{dir}"],
            r"argument --csv: .*dir is a folder"),
    # merge
    CliCase("merge-no-part", ["merge", "{out}"],
            r"the following arguments are required: PART"),
    CliCase("merge-missing-part", ["merge", "{out}", "no-such.csv"],
            r"argument PART: no such file: no-such\.csv"),
    CliCase("merge-truncated-part", ["merge", "{out}", "{trunc}"],
            r"trunc\.csv: the last line is cut short"),
    CliCase("merge-not-results", ["merge", "{out}", "{other}"],
            r"other\.csv: the header lacks the column"),
    CliCase("merge-into-itself", ["merge", "{csv}", "{csv}"],
            r"^error: part .*\.csv is the output itself"),
    # audit
    CliCase("audit-eps-negative", _a()[:-1] + ["-1"], r"argument --eps: -1 is not accepted"),
    CliCase("audit-eps-nan", _a()[:-1] + ["nan"], r"argument --eps: nan is not accepted"),
    CliCase("audit-eps-word", _a()[:-1] + ["big"], r"argument --eps: 'big' is not a number"),
    CliCase("audit-two-eps", _a("0.2"), r"--eps takes one budget when auditing a checkpoint"),
    CliCase("audit-limit-zero", _a("--limit", "0"), r"argument --limit: 0 must be"),
    CliCase("audit-limit-negative", _a("--limit", "-5"), r"argument --limit: -5 must be"),
    CliCase("audit-square-queries", _a("--square-queries", "0"),
            r"argument --square-queries: 0 must be an integer >= 1"),
    CliCase("audit-autoattack-iters", _a("--autoattack-iters", "-1"),
            r"argument --autoattack-iters: -1 must be"),
    CliCase("audit-threads-zero", _a("--threads", "0"), r"argument --threads: 0 must be"),
    CliCase("audit-device-bogus", _a("--device", "bogus"),
            r"argument --device: 'bogus' is not a device"),
    CliCase("audit-model-unknown", ["audit", "--model", "vgg", "--checkpoint", "{good_pt}",
                                    "--eps", "0.1"], r"argument --model: invalid choice: 'vgg'"),
    CliCase("audit-dataset-unknown", _a("--dataset", "imagenet"),
            r"argument --dataset: invalid choice: 'imagenet'"),
    CliCase("audit-setup-unknown", ["audit", "--setup", "mnist", "--out", "{out}"],
            r"argument --setup: invalid choice: 'mnist'"),
    CliCase("audit-setup-without-out", ["audit", "--setup", "mnist-linear"],
            r"--setup needs --out"),
    CliCase("audit-out-dir", ["audit", "--setup", "mnist-linear", "--out", "{dir}"],
            r"argument --out: .*dir is a folder"),
    CliCase("audit-json-dir", _a("--json", "{dir}"), r"argument --json: .*dir is a folder"),
    CliCase("audit-cache-file", ["audit", "--setup", "mnist-linear", "--out", "{out}",
                                 "--cache", "{file}"],
            r"argument --cache: .*file exists and is not a folder"),
    CliCase("audit-checkpoint-missing", ["audit", "--model", "linear", "--checkpoint",
                                         "{missing}.pt", "--eps", "0.1"],
            r"argument --checkpoint: no such file: .*none\.pt"),
    CliCase("audit-checkpoint-dir", ["audit", "--model", "linear", "--checkpoint", "{dir}",
                                     "--eps", "0.1"], r"argument --checkpoint: .*dir is a folder"),
    CliCase("audit-checkpoint-corrupt", ["audit", "--model", "linear", "--checkpoint",
                                         "{bad_pt}", "--eps", "0.1"],
            r"bad\.pt: not a readable torch checkpoint"),
    CliCase("audit-checkpoint-wrong-model", ["audit", "--model", "mlp", "--checkpoint",
                                             "{good_pt}", "--eps", "0.1"],
            r"good\.pt: does not hold the weights of a 'mlp' model"),
    CliCase("audit-source-missing", _a("--source-model", "linear", "--source-checkpoint",
                                       "{missing}.pt"),
            r"argument --source-checkpoint: no such file"),
    CliCase("audit-source-alone", _a("--source-model", "linear"),
            r"--source-model and --source-checkpoint go together"),
    CliCase("audit-no-checkpoint", ["audit", "--model", "linear", "--eps", "0.1"],
            r"--model, --checkpoint and --eps are required"),
    CliCase("audit-data-root-file", _a("--data-root", "{file}"),
            r"argument --data-root: .*file is a file, not a folder"),
    CliCase("audit-data-damaged", _a("--data-root", "{damaged}", "--device", "cpu"),
            r"t10k-images-idx3-ubyte\.gz: not a readable gzip file"),
    CliCase("audit-data-missing", _a("--data-root", "{missing}", "--device", "cpu"),
            r"MNIST not found under data root"),
    # the command itself
    CliCase("no-command", [], r"the following arguments are required: COMMAND"),
    CliCase("unknown-command", ["train"], r"argument COMMAND: invalid choice: 'train'"),
    CliCase("unknown-option", ["reproduce", "mnist-linear", "--bogus", "0.1", "--out", "{out}"],
            r"unrecognized arguments: --bogus 0\.1"),
]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _cli_files(tmp_path_factory.mktemp("cli"))


def _argv(case: CliCase, files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in case.argv]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses(case: CliCase, cli_files: dict[str, str], capsys) -> None:
    from lslib.__main__ import main

    try:
        status = main(_argv(case, cli_files))
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert re.search(case.match, lines[0]), lines[0]


def test_cli_refuses_before_writing_anything(cli_files: dict[str, str], tmp_path: Path) -> None:
    """A refused command leaves no output behind (checked before any work starts)."""
    from lslib.__main__ import main

    out = tmp_path / "sub" / "r.csv"
    with pytest.raises(SystemExit):
        main(["reproduce", "mnist-linear", "--out", str(out), "--temperatures", "0"])
    assert not (tmp_path / "sub").exists()


# the same through a real process: exit status, stderr, no traceback (a handful: each starts
# python and imports torch)
SUBPROCESS_CASES = ["temperatures-zero", "compare-truncated", "audit-checkpoint-corrupt"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_cli_refuses_in_a_process(case_id: str, cli_files: dict[str, str]) -> None:
    case = next(c for c in CLI_CASES if c.id == case_id)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "lslib", *_argv(case, cli_files)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(case.match, lines[0]), lines[0]
    assert proc.stdout == ""


def test_bls_temperature_is_kept_as_given() -> None:
    """Defence.train_config no longer maps a falsy temperature to 1 (T = 0 is refused above)."""
    from lslib.experiments import SETUPS

    config = Defence("BLS", 0.1, 1e-9).train_config(SETUPS["mnist-linear"])
    assert config.temperature == 1e-9
    assert Defence("natural").train_config(SETUPS["mnist-linear"]).temperature == 1.0
