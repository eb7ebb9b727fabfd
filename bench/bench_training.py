"""Training throughput (images/s) of lslib.train.train_model: natural, each LS method, PGD-3.

For each model (default: the MNIST MLP, the MNIST LeNet and the CIFAR LeNet; add resnet18 on a
GPU), every defence trains on the same synthetic data (random images of the right shape, random
labels: throughput does not depend on the pixels) through the real training loop
(:func:`lslib.train.train_model`: Adam, one-cycle schedule, the set-up's batch size; PGD-3 is the
paper's adversarial-training baseline with lslib.attacks.bim inside). The defences are timed
INTERLEAVED in one run: every round visits every (model, defence) once in a fresh random order
and trains ``--steps`` batches from a fresh copy of the same initial weights. We report the median
images/s over the rounds and, per defence, the ratio of natural's throughput to it, i.e. the cost
relative to natural training (the median of the per-round paired ratios, so a shared machine's
slow drift cancels). The paper reports PGD-3 costing 3-15x natural; label smoothing should cost
at most 1.02x.

    python bench/bench_training.py                         # CPU, 1 thread, 7 rounds
    python bench/bench_training.py --threads 2 --rounds 11 --models mlp,lenet-mnist
    python bench/bench_training.py --device cuda --models lenet-cifar,resnet18
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics

import torch

from lslib.data import TensorData
from lslib.experiments import SETUPS
from lslib.models import build_model
from lslib.train import TrainConfig, train_model

DEFENCES = {
    "natural": dict(method=None),
    "SLS": dict(method="SLS", alpha=0.1),
    "ALS": dict(method="ALS", alpha=0.1),
    "BLS": dict(method="BLS", alpha=0.1, temperature=0.001),
    "SBLS": dict(method="SBLS", alpha=0.1),
    "PGD-3": dict(adversarial=True),
}
_SETUP_OF = {"mlp": "mnist-linear", "lenet-mnist": "mnist-lenet", "lenet-cifar": "cifar-lenet",
             "resnet18": "cifar-resnet", "linear": "mnist-linear"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,lenet-mnist,lenet-cifar")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="batches per timed visit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = random.Random(args.seed)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    jobs, data, init = [], {}, {}
    for name in models:
        setup = SETUPS[_SETUP_OF[name]]
        g = torch.Generator().manual_seed(args.seed)
        n = args.steps * setup.batch_size
        data[name] = TensorData(torch.rand((n, *setup.input_shape), generator=g),
                                torch.randint(0, 10, (n,), generator=g)).to(device)
        torch.manual_seed(args.seed)
        init[name] = build_model(name).to(device)
        for defence, kw in DEFENCES.items():
            kw = dict(kw)
            adv = setup.adversarial_training() if kw.pop("adversarial", False) else None
            cfg = TrainConfig(model=name, dataset=setup.dataset, epochs=1,
                              batch_size=setup.batch_size, lr=setup.lr, adversarial=adv,
                              seed=args.seed, **kw)
            jobs.append((name, defence, cfg))

    def visit(name: str, cfg: TrainConfig) -> float:
        model = copy.deepcopy(init[name])
        return train_model(model, data[name], cfg, device=device, progress=False,
                           reseed=False).images_per_second

    for name, _, cfg in jobs:  # warm-up (allocator, kernels, lazy imports)
        visit(name, cfg)
    speed: dict[tuple[str, str], list[float]] = {(m, d): [] for m, d, _ in jobs}
    for r in range(args.rounds):
        order = jobs[:]
        rng.shuffle(order)
        for name, defence, cfg in order:
            speed[(name, defence)].append(visit(name, cfg))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    print(f"\ndevice {device} ({args.threads} threads), {args.rounds} rounds x {args.steps} "
          f"batches, interleaved; cost = natural images/s / defence images/s "
          f"(median of per-round ratios)")
    print(f"{'model':12s} {'defence':8s} {'images/s':>10s} {'cost vs natural':>16s}")
    for name in models:
        nat = speed[(name, "natural")]
        for defence in DEFENCES:
            s = speed[(name, defence)]
            ratio = statistics.median(a / b for a, b in zip(nat, s, strict=True))
            print(f"{name:12s} {defence:8s} {statistics.median(s):10.0f} {ratio:15.3f}x")


if __name__ == "__main__":
    main()
