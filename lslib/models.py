"""The paper's models (Section 4; ``../shared/notes/original-code.md`` has the originals).

Every model takes images in [0, 1] of shape (N, C, H, W) and returns logits (N, K). Input
normalisation lives inside the model (a :class:`Normalize` first layer), so attacks work in
pixel space and their budgets are in [0, 1] pixel units whatever the normalisation.

The original code fed MNIST scaled to [-0.5, 0.5] and CIFAR10/SVHN scaled to [-1, 1]. The
CIFAR10/SVHN models keep that (mean 0.5, std 0.5). The MNIST models standardise with MNIST's own
pixel mean and standard deviation (:data:`MNIST_MEAN`, :data:`MNIST_STD`): a normalisation is an
affine change of the first layer's parameters, so it changes neither the function class nor the
attacks, only how fast training converges, and [-0.5, 0.5] leaves the mostly-black inputs at
-0.5, a large common offset. Measured on the MLP (Adam 1e-3, one epoch): test accuracy 0.942 with
[-0.5, 0.5], 0.965 standardised; pass ``mean=0.5, std=1.0`` for the original's scaling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "Normalize",
    "LinearModel",
    "MLP",
    "LeNetMNIST",
    "LeNetCIFAR",
    "ResNet18",
    "MODELS",
    "build_model",
    "with_cpu_speedups",
    "Im2colConv2d",
]


MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``mean`` and ``std`` are buffers (they follow .to())."""

    def __init__(self, mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class LinearModel(nn.Module):
    """One linear layer on the flattened image (the one-layer classifiers of Fig. 4b)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.normalize(x).flatten(1))


class MLP(nn.Module):
    """784-500-256-K with ReLU: what the paper's tables call "MNIST Linear"."""

    def __init__(self, in_features: int = 784, num_classes: int = 10,
                 hidden: tuple[int, int] = (500, 256), mean: float = MNIST_MEAN,
                 std: float = MNIST_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.normalize(x).flatten(1))


class LeNetMNIST(nn.Module):
    """The original code's MNIST LeNet: conv 1->10 k5, pool, ReLU; conv 10->20 k5, Dropout2d(0.5),
    pool, ReLU; FC 320->50, ReLU, dropout 0.5; FC 50->K."""

    def __init__(self, num_classes: int = 10, mean: float = MNIST_MEAN,
                 std: float = MNIST_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(320, 50), nn.ReLU(), nn.Dropout(0.5), nn.Linear(50, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


# --------------------------------------------------------------------------------------------
# the CPU speed path: one seam, applied when a model is built (build_model), never in forward
# --------------------------------------------------------------------------------------------


def with_cpu_speedups(model: nn.Module) -> nn.Module:
    """The model with this project's CPU speed path, in place: the same function, faster.

    For :class:`LeNetMNIST` the first convolution (one input channel) becomes an
    :class:`Im2colConv2d`: ATen's im2col kernel where a backward can follow, and channels-last
    data after it, on which max-pooling runs several times faster. Other models are returned
    unchanged. The parameters, their names and the state dict stay those of the plain model.
    ``python bench/bench_models.py`` times both paths, step by step.
    """
    if isinstance(model, LeNetMNIST) and type(model.features[0]) is nn.Conv2d:
        model.features[0].__class__ = Im2colConv2d
    return model


class Im2colConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (one input channel, stride 1, no padding) computed on the CPU through
    ATen's im2col convolution where a backward can follow, returning channels-last data.

    The same function with the same autograd (ATen's own backward, double backward included);
    only the kernel and the memory layout differ. Why: for a single input channel, oneDNN's
    backward to the input (what every attack step needs) is several times slower than
    im2col's on the project's CPU, and the max-pooling that follows runs faster on
    channels-last data. oneDNN stays faster for more input channels (LeNetCIFAR's 3) and for a
    forward alone (no im2col buffer).
    """

    def forward(self, x: Tensor) -> Tensor:
        z = _im2col_conv(self, x) if _im2col_applies(x, self) else super().forward(x)
        return z.contiguous(memory_format=torch.channels_last) if z.is_cpu else z


_SLOW_CONV2D = getattr(torch.ops.aten, "_slow_conv2d_forward", None)


def _im2col_applies(x: Tensor, conv: nn.Conv2d) -> bool:
    """Whether :class:`Im2colConv2d` takes the im2col kernel: float32/float64 on the CPU,
    outside autocast, with ATen's im2col kernel present, and only where a backward through the
    layer can follow (gradients enabled, and the input or the weight requires them). A forward
    alone (``torch.no_grad``, judging an attack's result) is faster through oneDNN, which needs
    no im2col buffer (58 MB for 1000 MNIST images)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and _SLOW_CONV2D is not None and not torch.is_autocast_enabled("cpu")
            and torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))


def _im2col_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` through ATen's im2col convolution (``aten::_slow_conv2d_forward``), for a
    layer with ONE input channel, stride 1, no padding, on the CPU."""
    if not (conv.in_channels == 1 and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1):
        raise ValueError("_im2col_conv handles one input channel, stride 1, no padding only")
    weight = conv.weight.to(x.dtype)
    bias = None if conv.bias is None else conv.bias.to(x.dtype)
    return _SLOW_CONV2D(x.contiguous(), weight, list(conv.kernel_size), bias, [1, 1], [0, 0])


class LeNetCIFAR(nn.Module):
    """The original code's CIFAR10/SVHN LeNet: conv 3->6 k5, ReLU, pool; conv 6->16 k5, ReLU, pool;
    FC 400->120->84->K."""

    def __init__(self, num_classes: int = 10, mean: float = 0.5, std: float = 0.5) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18, CIFAR variant: 3x3 stem, BasicBlocks [2, 2, 2, 2], widths 64-512, avgpool, FC."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: float = 0.5, std: float = 0.5) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(64), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        in_planes = 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [_BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)]
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.stem(self.normalize(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": LinearModel,
    "mlp": MLP,
    "lenet-mnist": LeNetMNIST,
    "lenet-cifar": LeNetCIFAR,
    "resnet18": ResNet18,
}


def build_model(name: str, num_classes: int = 10, *, cpu_speedups: bool = True,
                **kwargs) -> nn.Module:
    """A fresh model by name: one of ``MODELS`` ("linear", "mlp", "lenet-mnist", "lenet-cifar",
    "resnet18"), with the CPU speed path of :func:`with_cpu_speedups` unless ``cpu_speedups``
    is False (the same function either way)."""
    if name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    model = MODELS[name](num_classes=num_classes, **kwargs)
    return with_cpu_speedups(model) if cpu_speedups else model
