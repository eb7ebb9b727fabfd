"""Probe: the validation loss after ONE epoch of the original MLP training at several learning
rates. It was written to date the authors' saved MLP (``model_dict/MNIST_Linear.pt`` at their
commit dc3c764), whose first recorded validation loss, 0.6171, was read as that of epoch 1. It is
not: at dc3c764 the loss is recorded from epoch 20 on, the first PGD epoch, so this comparison
dates nothing. The learning rate of the tables' models is known from the code instead (0.1, see
``lslib.original``); the probe stays as a measurement of how fast each rate trains.

    python bench/original_lr_probe.py 0.01 0.001 0.05
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import torch

from lslib.original import OriginalConfig, train_original


def main() -> None:
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    print(f"# bench/original_lr_probe.py {' '.join(sys.argv[1:])}; commit {commit}; "
          f"load average {load}")
    with tempfile.TemporaryDirectory() as cache:
        for lr in map(float, sys.argv[1:]):
            config = OriginalConfig(model="mlp", epochs=1, lr=lr)
            _, record = train_original(config, cache=cache)
            print(f"lr {lr:g}: validation loss after epoch 1 = {record['losses'][0]:.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
