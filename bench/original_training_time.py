"""Estimate: how long the original training (``lslib.original.train_original``: float64, plain
SGD, batch 100, 50 epochs on 60,000 MNIST images) takes per epoch and per model on this machine.

It trains ``--batches`` batches of each MNIST set-up (interleaved, ``--rounds`` times), reads the
wall and CPU seconds spent in the training batches alone (``batch_seconds`` and
``batch_cpu_seconds`` of the training record; reading the data and validating are left out),
keeps the median over rounds and multiplies out: per epoch (600 batches), per model (50
epochs), per set-up
(the 14 models of the tables, plus the LeNet's natural starting checkpoint; PGD-AT counted as 20
natural epochs + 30 epochs at 1 + 3 + 1 forward/backward passes per batch, i.e. 3.4 models).
An estimate, not a run: the sweep's own training records (``epoch_seconds`` in the model
cache) are the measurement.

    python bench/original_training_time.py --threads 1 --batches 40
"""

from __future__ import annotations

import argparse
import statistics
import subprocess

import torch

from lslib.original import OriginalConfig, train_original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"# bench/original_training_time.py --batches {args.batches} --rounds {args.rounds} "
          f"--threads {args.threads}; commit {commit}; load average {' '.join(load)}")
    per_batch: dict[str, list[float]] = {"mlp": [], "lenet-mnist": []}
    per_cpu: dict[str, list[float]] = {"mlp": [], "lenet-mnist": []}
    for _ in range(args.rounds):
        for model in per_batch:
            config = OriginalConfig(model=model, method="standard", alpha=0.1, epochs=1)
            _, rec = train_original(config, max_batches=args.batches)
            per_batch[model].append(rec["batch_seconds"] / rec["batches"])
            per_cpu[model].append(rec["batch_cpu_seconds"] / rec["batches"])
    print("set-up        clock  s/batch  s/epoch  min/model  hours/set-up (14 models"
          " + checkpoint)")
    for model, name in (("mlp", "mnist-linear"), ("lenet-mnist", "mnist-lenet")):
        for clock, values in (("wall", per_batch[model]), ("cpu", per_cpu[model])):
            b = statistics.median(values)
            epoch = 600 * b
            model_min = 50 * epoch / 60
            n_models = 13 + 3.4 + (1 if model == "lenet-mnist" else 0)  # PGD-AT ~3.4 models
            print(f"{name:13s} {clock:5s} {b:7.3f} {epoch:8.0f} {model_min:10.0f} "
                  f"{n_models * model_min / 60:12.1f}")


if __name__ == "__main__":
    main()
