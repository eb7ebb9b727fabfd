"""LeNetMNIST on the CPU: its im2col first layer against the plain nn modules (oneDNN).

``lslib.models.build_model("lenet-mnist")`` applies the CPU speed path
(``lslib.models.with_cpu_speedups``): the first convolution (one input channel) becomes an
``Im2colConv2d``, computed with ATen's im2col kernel where a backward can follow, which passes
channels-last data on after it in every case. This script times the same network both ways,
INTERLEAVED in one run (every round visits both in a fresh random order), on the kinds of step
the project runs:

- attack step: forward + backward to the INPUT only (``torch.autograd.grad``), eval mode, in the
  batch sizes the attacks see (136, which the attacks' CPU chunks used before they were removed;
  500: the experiment runner's batch; 1000);
- forward alone (``torch.no_grad``, eval mode): judging an attack's result, clean accuracy;
- training step: forward + backward to the parameters + an Adam step, train mode, batch 128.

It prints the median time per step over the rounds and the median of the per-round paired ratios
plain / lslib (above 1: lslib's path is faster). Random images: the time does not depend on them.

    python bench/bench_models.py                       # 1 thread, 7 rounds
    python bench/bench_models.py --clock cpu --rounds 11   # on a shared machine
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lslib.models import LeNetMNIST, with_cpu_speedups


def _plain(model: LeNetMNIST, x: torch.Tensor) -> torch.Tensor:
    conv = model.features[0]
    z = F.conv2d(model.normalize(x), conv.weight, conv.bias)
    for layer in model.features[1:]:
        z = layer(z)
    return model.classifier(z.flatten(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed visit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time, which other jobs disturb far less")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    model = with_cpu_speedups(LeNetMNIST())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def attack_step(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> None:
        model.eval()
        xg = x.requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(forward(xg), y, reduction="none").sum(), xg)

    def forward_step(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad():
            forward(x)

    def train_step(forward: Callable, x: torch.Tensor, y: torch.Tensor) -> None:
        model.train()
        opt.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        opt.step()

    paths = {"lslib": model, "plain": lambda x: _plain(model, x)}
    kinds = {f"attack step, batch {n}": (attack_step, n) for n in (136, 500, 1000)}
    kinds |= {f"forward (no grad), batch {n}": (forward_step, n) for n in (136, 1000)}
    kinds["training step, batch 128"] = (train_step, 128)
    times: dict[tuple[str, str], list[float]] = {(k, p): [] for k in kinds for p in paths}
    batches = {k: (torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
               for k, (_, n) in kinds.items()}
    for k, (step, _) in kinds.items():  # warm up
        for forward in paths.values():
            step(forward, batches[k][0].clone(), batches[k][1])
    for _ in range(args.rounds):
        visits = [(k, p) for k in kinds for p in paths]
        rng.shuffle(visits)
        for k, p in visits:
            step, _ = kinds[k]
            x, y = batches[k]
            start = clock()
            for _ in range(args.steps):
                step(paths[p], x.clone(), y)
            times[(k, p)].append((clock() - start) / args.steps)

    print(f"LeNetMNIST, CPU, {args.threads} thread(s), {args.rounds} interleaved rounds x "
          f"{args.steps} steps, {args.clock} clock; torch {torch.__version__}")
    print(f"{'step':32s} {'lslib (ms)':>11s} {'plain (ms)':>11s} {'plain / lslib':>14s}")
    for k in kinds:
        a, b = times[(k, "lslib")], times[(k, "plain")]
        ratio = statistics.median(pb / pa for pa, pb in zip(a, b, strict=True))
        print(f"{k:32s} {1e3 * statistics.median(a):11.1f} {1e3 * statistics.median(b):11.1f} "
              f"{ratio:13.2f}x")


if __name__ == "__main__":
    main()
