"""lslib.data: the data root, the real MNIST and CIFAR-10 slices, batches, offline errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lslib.data import DataNotFoundError, TensorData, batches, data_root, load_dataset


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLIB_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("LSLIB_DATA")
    assert data_root() == Path.home() / ".cache" / "lslib" / "data"


@pytest.mark.parametrize("name, what", [("mnist", "MNIST/raw/t10k-images-idx3-ubyte.gz"),
                                        ("cifar10", "cifar-10-batches-py"),
                                        ("cifar10-partial", "cifar10_test_first1017.npz"),
                                        ("svhn", "test_32x32.mat")])
def test_missing_data_says_what_to_put_where(tmp_path, name, what):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, "test", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and what in message and "LSLIB_DATA" in message


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="name"):
        load_dataset("imagenet", "test", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "validation", tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("mnist", "test", tmp_path, limit=0)
    with pytest.raises(ValueError, match="test images only"):
        load_dataset("cifar10-partial", "train", tmp_path)


@pytest.mark.data
def test_real_mnist(data_root):
    test = load_dataset("mnist", "test", data_root)
    assert isinstance(test, TensorData) and len(test) == 10_000
    assert test.x.shape == (10_000, 1, 28, 28) and test.x.dtype == torch.float32
    assert test.y.dtype == torch.long
    assert float(test.x.min()) == 0.0 and float(test.x.max()) == 1.0
    # class counts from shared/data/README.md; the first labels of the official test file
    counts = torch.bincount(test.y, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert test.y[:5].tolist() == [7, 2, 1, 0, 4]
    train = load_dataset("mnist", "train", data_root, limit=100)
    assert train.x.shape == (100, 1, 28, 28) and train.y[:4].tolist() == [5, 0, 4, 1]


@pytest.mark.data
def test_real_cifar10_partial(data_root):
    if not (data_root / "cifar10_test_first1017.npz").exists():
        pytest.skip("cifar10_test_first1017.npz is not in the data root")
    d = load_dataset("cifar10-partial", "test", data_root, limit=20)
    assert d.x.shape == (20, 3, 32, 32) and 0 <= float(d.x.min()) <= float(d.x.max()) <= 1
    assert d.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert len(load_dataset("cifar10-partial", "test", data_root)) == 1017


def _toy(n: int = 10) -> TensorData:
    return TensorData(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n))


def test_batches_slices_in_order_and_drops_last():
    got = [y.tolist() for _, y in batches(_toy(), 4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(y) for _, y in batches(_toy(), 4, drop_last=True)] == [4, 4]
    for x, y in batches(_toy(), 3):
        assert torch.equal(x.view(-1).long(), y)


def test_batches_shuffle_is_a_seeded_permutation():
    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in batches(_toy(), 3, shuffle=True, generator=g)]).tolist()

    assert sorted(order(0)) == list(range(10))
    assert order(0) == order(0) and order(0) != order(1)


def test_batches_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(_toy(), 0))
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(_toy(), True))
