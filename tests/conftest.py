"""Shared fixtures: the real-data root and the CUDA device, each skipping with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data sets (``$LSLIB_DATA``, e.g. ``../shared/data``); skips when it is absent."""
    root = os.environ.get("LSLIB_DATA")
    if not root:
        pytest.skip("needs real data: set LSLIB_DATA to a folder holding MNIST/raw/*.gz")
    path = Path(root)
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"needs real data: {path}/MNIST/raw does not exist")
    return path


@pytest.fixture(scope="session")
def cuda_device() -> torch.device:
    """A CUDA device; skips when none is present."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: none is present on this machine")
    return torch.device("cuda")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one intra-op thread for a module of tiny models: one thread is as fast there, and
    spin-waiting OpenMP threads make a loaded machine (other jobs, parallel workers) many times
    slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
