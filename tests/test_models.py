"""lslib.models: shapes, architectures as in the original code, normalisation inside the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lslib.models import (
    MLP,
    MNIST_MEAN,
    MNIST_STD,
    MODELS,
    Im2colConv2d,
    LeNetCIFAR,
    LeNetMNIST,
    LinearModel,
    Normalize,
    ResNet18,
    build_model,
    with_cpu_speedups,
)

SHAPES = {
    "linear": (1, 28, 28),
    "mlp": (1, 28, 28),
    "lenet-mnist": (1, 28, 28),
    "lenet-cifar": (3, 32, 32),
    "resnet18": (3, 32, 32),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7).eval()
    x = torch.rand(3, *SHAPES[name])
    out = model(x)
    assert out.shape == (3, 7)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # differentiable with respect to the input (the attacks need it)
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="mlp"):
        build_model("vgg")


def _linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def test_architectures_match_the_original_code():
    assert _linear_shapes(MLP()) == [(784, 500), (500, 256), (256, 10)]
    assert _linear_shapes(LinearModel()) == [(784, 10)]
    assert _linear_shapes(LeNetMNIST()) == [(320, 50), (50, 10)]
    assert _linear_shapes(LeNetCIFAR()) == [(400, 120), (120, 84), (84, 10)]
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in LeNetMNIST().modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 10, (5, 5)), (10, 20, (5, 5))]
    drop = [type(m) for m in LeNetMNIST().modules() if isinstance(m, nn.Dropout | nn.Dropout2d)]
    assert drop == [nn.Dropout2d, nn.Dropout]
    resnet = ResNet18()
    n_params = sum(p.numel() for p in resnet.parameters())
    assert 11_000_000 < n_params < 11_300_000  # the CIFAR ResNet18 has ~11.17M parameters
    assert resnet.stem[0].kernel_size == (3, 3) and resnet.stem[0].stride == (1, 1)


def test_normalisation_is_inside_the_model():
    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 1.0))
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.5, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    mlp = MLP()
    assert float(mlp.normalize.mean) == pytest.approx(MNIST_MEAN)
    assert float(mlp.normalize.std) == pytest.approx(MNIST_STD)
    assert float(LeNetCIFAR().normalize.std.mean()) == pytest.approx(0.5)
    # the original's [-0.5, 0.5] scaling is one argument away, and is the same function class:
    # with the first layer re-parametrised, the two MLPs agree exactly
    a, b = MLP(mean=0.5, std=1.0), MLP()
    b.net.load_state_dict(a.net.state_dict())
    with torch.no_grad():
        lin = b.net[0]
        # a: W (x - 0.5) + c ; b: W' (x - m)/s + c'  =>  W' = W s, c' = c + W (m - 0.5)
        lin.bias += lin.weight @ torch.full((784,), MNIST_MEAN - 0.5)
        lin.weight *= MNIST_STD
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(a(x), b(x), atol=1e-4, rtol=1e-4)


def test_normalize_rejects_flat_input_and_follows_dtype():
    with pytest.raises(ValueError, match="4-D"):
        Normalize(0.5, 0.5)(torch.rand(2, 784))
    model = build_model("lenet-mnist").double().eval()
    assert model(torch.rand(2, 1, 28, 28, dtype=torch.float64)).dtype == torch.float64


# --- LeNetMNIST's CPU path (im2col first convolution, channels-last after it) ---------------


def _reference_lenet(model: LeNetMNIST, x: torch.Tensor) -> torch.Tensor:
    """The same network through plain nn modules (oneDNN convolution, contiguous layout)."""
    conv = model.features[0]
    z = nn.functional.conv2d(model.normalize(x), conv.weight, conv.bias)
    for layer in model.features[1:]:
        z = layer(z)
    return model.classifier(z.flatten(1))


def _fast_lenet() -> LeNetMNIST:
    return with_cpu_speedups(LeNetMNIST())


def test_the_cpu_speed_path_is_applied_at_build_time_only():
    plain, fast = LeNetMNIST(), build_model("lenet-mnist")
    assert type(plain.features[0]) is nn.Conv2d  # the class itself is plain PyTorch
    assert type(fast.features[0]) is Im2colConv2d
    assert type(build_model("lenet-mnist", cpu_speedups=False).features[0]) is nn.Conv2d
    assert list(plain.state_dict()) == list(fast.state_dict())  # checkpoints load either way
    assert type(with_cpu_speedups(LeNetCIFAR()).features[0]) is nn.Conv2d


def _mnist_like(n: int, dtype=torch.float32) -> torch.Tensor:
    """Images with a black background (exact ties inside the pooling windows) and a bright blob."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 28, 28, dtype=dtype)
    x[:, :, 8:20, 6:22] = torch.rand(n, 1, 12, 16, generator=g, dtype=dtype)
    x[: n // 2, :, 10:14, 10:14] = 1.0  # exact ties at the top of the range too
    return x


def test_lenet_mnist_cpu_path_is_taken_where_it_applies():
    from lslib.models import _im2col_applies

    conv = nn.Conv2d(1, 10, 5)
    assert _im2col_applies(torch.rand(2, 1, 28, 28), conv)
    assert _im2col_applies(torch.rand(2, 1, 28, 28, dtype=torch.float64), conv)
    assert not _im2col_applies(torch.rand(2, 1, 28, 28).half(), conv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _im2col_applies(torch.rand(2, 1, 28, 28), conv)
    with torch.no_grad():  # a forward alone: oneDNN
        assert not _im2col_applies(torch.rand(2, 1, 28, 28), conv)
    conv.requires_grad_(False)  # nothing to differentiate
    assert not _im2col_applies(torch.rand(2, 1, 28, 28), conv)
    assert _im2col_applies(torch.rand(2, 1, 28, 28).requires_grad_(), conv)


def test_lenet_mnist_forward_alone_equals_the_differentiable_forward():
    torch.manual_seed(0)
    model = _fast_lenet().eval()
    x = _mnist_like(16)
    with torch.no_grad():
        alone = model(x)
    torch.testing.assert_close(model(x.requires_grad_()).detach(), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lenet_mnist_forward_alone_equals_the_plain_network(dtype):
    """Without a graph the first convolution stays on oneDNN and the rest runs channels-last:
    the same values as the plain modules in the default layout, ties in the pools included."""
    torch.manual_seed(0)
    model = _fast_lenet().to(dtype).eval()
    x = _mnist_like(24, dtype)
    with torch.no_grad():
        plain = _reference_lenet(model, x)
        torch.testing.assert_close(model(x), plain, rtol=0, atol=1e-12 if dtype == torch.float64
                                   else 1e-5)


def test_im2col_conv_refuses_layers_it_does_not_compute():
    from lslib.models import _im2col_conv

    with pytest.raises(ValueError, match="one input channel"):
        _im2col_conv(nn.Conv2d(3, 6, 5), torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="one input channel"):
        _im2col_conv(nn.Conv2d(1, 6, 5, padding=2), torch.rand(1, 1, 28, 28))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_lenet_mnist_cpu_path_equals_the_plain_network_in_value_and_input_gradient(dtype, tol):
    torch.manual_seed(0)
    model = _fast_lenet().to(dtype).eval()
    x = _mnist_like(64, dtype)
    y = torch.randint(0, 10, (64,))
    grads, outs = [], []
    for forward in (model, lambda z: _reference_lenet(model, z)):
        xg = x.clone().requires_grad_(True)
        out = forward(xg)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(out, y), xg)
        grads.append(g)
        outs.append(out.detach())
    scale = float(grads[1].abs().max())
    assert scale > 0
    torch.testing.assert_close(outs[0], outs[1], atol=tol, rtol=tol)
    # the max-pooling routes every gradient to the same pixel (ties included): same gradient
    torch.testing.assert_close(grads[0], grads[1], atol=tol * scale, rtol=tol)
    assert torch.equal(grads[0] == 0, grads[1] == 0)


def test_lenet_mnist_cpu_path_trains_as_the_plain_network():
    """Train mode (both dropouts draw the same masks from the same seed): same loss, same
    parameter gradients, and two optimiser steps land on the same weights."""
    x, y = _mnist_like(32, torch.float64), torch.randint(0, 10, (32,))
    models = []
    for forward in ("model", "reference"):
        torch.manual_seed(1)
        model = _fast_lenet().double().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(2):
            torch.manual_seed(100 + step)
            out = model(x) if forward == "model" else _reference_lenet(model, x)
            opt.zero_grad()
            nn.functional.cross_entropy(out, y).backward()
            opt.step()
        models.append(model)
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=name)


def test_lenet_mnist_cpu_path_has_a_second_derivative():
    """Input-gradient penalties differentiate twice (d/dW of ||d loss/dx||^2): ATen's own double
    backward is kept, and gives what the plain network gives."""
    torch.manual_seed(0)
    model = _fast_lenet().double().eval()
    x = _mnist_like(4, torch.float64)
    weight = model.features[0].weight
    penalties = []
    for forward in (model, lambda z: _reference_lenet(model, z)):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(forward(xg)[:, 3].sum(), xg, create_graph=True)
        (gw,) = torch.autograd.grad(g.square().sum(), weight)
        penalties.append(gw)
    assert float(penalties[1].abs().max()) > 0
    torch.testing.assert_close(penalties[0], penalties[1], atol=1e-12, rtol=1e-10)
