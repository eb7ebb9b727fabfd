"""Training throughput (images/s) of lslib.train.train_model: natural, each LS method, PGD-3.

For each model (default: the MNIST MLP, the MNIST LeNet and the CIFAR LeNet; add resnet18 on a
GPU), every defence trains on the same synthetic data (random images of the right shape, random
labels: throughput does not depend on the pixels) through the real training loop
(:func:`lslib.train.train_model`: Adam, one-cycle schedule, the set-up's batch size; PGD-3 is the
paper's adversarial-training baseline with lslib.attacks.bim_last_iterate inside). The defences
are timed INTERLEAVED in one run: every round visits every (model, defence) once in a fresh random
order and trains ``--steps`` batches from a fresh copy of the same initial weights, each visit
paired with a natural-training visit of the same model right before or after it (alternating).
We report the median images/s over the rounds and, per defence, the cost relative to natural
training: the median over the rounds of natural's throughput / the defence's within each pair,
so that the machine's drift cancels, with the interquartile range of those ratios. The paper
reports PGD-3 costing 3-15x natural; label smoothing should cost at most 1.02x.

    python bench/bench_training.py                         # CPU, 1 thread, 7 rounds
    python bench/bench_training.py --threads 2 --rounds 11 --models mlp,lenet-mnist
    python bench/bench_training.py --device cuda --models lenet-cifar,resnet18
    python bench/bench_training.py --models mlp --clock cpu --steps 60   # on a shared machine
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch

from lslib.data import TensorData
from lslib.experiments import SETUPS
from lslib.models import build_model
from lslib.train import TrainConfig, build_loss, train_model

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
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time (CPU only), which "
                         "other jobs on a shared machine disturb far less (use with --threads 1)")
    args = ap.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        ap.error("--clock cpu measures CPU time: it needs --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

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
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        train_model(model, data[name], cfg, device=device, progress=False, reseed=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(data[name]) / (clock() - start)

    for name, _, cfg in jobs:  # warm-up (allocator, kernels, lazy imports)
        visit(name, cfg)
    # every defence's visit is paired with a natural visit of the same model right before or
    # right after it (the order alternates): the machine's drift cancels within each pair
    speed: dict[tuple[str, str], list[float]] = {(m, d): [] for m, d, _ in jobs}
    cost: dict[tuple[str, str], list[float]] = {(m, d): [] for m, d, _ in jobs}
    natural_cfg = {m: cfg for m, d, cfg in jobs if d == "natural"}
    for r in range(args.rounds):
        order = [job for job in jobs if job[1] != "natural"]
        rng.shuffle(order)
        for i, (name, defence, cfg) in enumerate(order):
            if (r + i) % 2:
                nat, other = visit(name, natural_cfg[name]), visit(name, cfg)
            else:
                other, nat = visit(name, cfg), visit(name, natural_cfg[name])
            speed[(name, "natural")].append(nat)
            speed[(name, defence)].append(other)
            cost[(name, defence)].append(nat / other)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    print(f"\ndevice {device} ({args.threads} threads), {args.rounds} rounds x {args.steps} "
          f"batches, {args.clock} clock; cost = natural images/s / defence images/s, median over "
          f"the rounds of each visit paired with an adjacent natural visit [interquartile range]")
    print(f"{'model':12s} {'defence':8s} {'images/s':>10s} {'cost vs natural':>16s} "
          f"{'IQR':>15s}")
    for name in models:
        for defence in DEFENCES:
            s = speed[(name, defence)]
            c = cost[(name, defence)] or [1.0]
            q = statistics.quantiles(c, n=4) if len(c) > 1 else [c[0]] * 3
            print(f"{name:12s} {defence:8s} {statistics.median(s):10.0f} "
                  f"{statistics.median(c):15.3f}x   [{q[0]:.3f}, {q[2]:.3f}]")
    loss_only(models, jobs, speed, args, clock, rng, device)


def loss_only(models, jobs, speed, args, clock, rng, device) -> None:
    """The smoothing's extra cost on its own: the loss's forward + backward on the set-up's
    (batch, 10) logits, timed many times (interleaved), and the ratio it implies for a whole
    step, 1 + (loss_LS - loss_CE) / step_natural. Label smoothing changes nothing else in a
    step, and this estimate is far less sensitive to other jobs than the whole-step ratios."""
    print("\nthe loss alone: forward + backward on (batch, 10) logits, incl. a clone; "
          "implied cost = 1 + extra / natural step")
    print(f"{'model':12s} {'defence':8s} {'loss us':>10s} {'extra us':>9s} {'implied cost':>13s}")
    reps = 200
    for name in models:
        batch = SETUPS[_SETUP_OF[name]].batch_size
        z0 = torch.randn(batch, 10, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        fns = {d: build_loss(cfg, validate_labels=False)  # as train_model builds it
               for m, d, cfg in jobs if m == name and d != "PGD-3"}
        times: dict[str, list[float]] = {d: [] for d in fns}
        order = list(fns)
        for _ in range(args.rounds):
            rng.shuffle(order)
            for d in order:
                start = clock()
                for _ in range(reps):
                    fns[d](z0.clone().requires_grad_(), y).backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[d].append((clock() - start) / reps)
        step = batch / statistics.median(speed[(name, "natural")])
        ce = statistics.median(times["natural"])
        for d, ts in times.items():
            extra = statistics.median(ts) - ce
            print(f"{name:12s} {d:8s} {statistics.median(ts) * 1e6:10.1f} {extra * 1e6:9.1f} "
                  f"{1 + extra / step:12.4f}x")


if __name__ == "__main__":
    main()
