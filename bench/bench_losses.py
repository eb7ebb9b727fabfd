"""Cost of label smoothing in a training step: LeNet (MNIST) on the CPU, batch 128.

One training step = forward, loss, backward, SGD step. The inputs are random tensors of shape
(128, 1, 28, 28) in [0, 1] with random labels (step time does not depend on the pixel values).
Every method gets its own copy of the same initial model and optimiser. The methods are timed
INTERLEAVED in one run: each round visits every method once, in a fresh random order, and times
``--inner`` consecutive steps (after a warm-up); we report the median per-step time over the
rounds and two ratios to plain cross-entropy: of the medians, and the median of the per-round
ratios (paired, so slow drift of a shared machine cancels) with a bootstrap 95% interval.
Goal: ratio <= 1.02 for every method. Part B times the loss alone (forward + backward on the
logits), interleaved the same way, and converts its extra cost over cross-entropy into the step
ratio it implies (a measure that load noise hardly moves).

    python bench/bench_losses.py                  # 1 thread, 80 rounds of 5 steps
    python bench/bench_losses.py --threads 2 --rounds 100
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import time

import torch
from torch import nn

from lslib.losses import SmoothCrossEntropyLoss
from lslib.models import build_model


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--rounds", type=int, default=80, help="round-robin rounds (default 80)")
    ap.add_argument("--inner", type=int, default=5, help="steps timed per visit (default 5)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    losses: dict[str, nn.Module] = {
        "cross_entropy": nn.CrossEntropyLoss(),
        "standard (SLS)": SmoothCrossEntropyLoss("standard", args.alpha),
        "adversarial (ALS)": SmoothCrossEntropyLoss("adversarial", args.alpha),
        "boltzmann (BLS, logits, T=1)": SmoothCrossEntropyLoss("boltzmann", args.alpha, 1.0),
        "boltzmann (BLS, probs, T=1e-3)": SmoothCrossEntropyLoss(
            "boltzmann", args.alpha, 1e-3, boltzmann_scale="probabilities"),
        "second_best (SBLS)": SmoothCrossEntropyLoss("second_best", args.alpha),
    }

    x = torch.rand(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    base = build_model("lenet-mnist")
    setups = {}
    for name, loss_fn in losses.items():
        model = copy.deepcopy(base).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        setups[name] = (model, opt, loss_fn)

    def step(model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    print(f"torch {torch.__version__}, {platform.python_implementation()} "
          f"{platform.python_version()}, CPU: {_cpu_name()} ({os.cpu_count()} logical cores)")
    print(f"torch.set_num_threads({args.threads}); interop threads "
          f"{torch.get_num_interop_threads()}; model LeNetMNIST, batch {args.batch}, "
          f"alpha {args.alpha}, SGD lr 1e-3")
    print("inputs: random tensors (N, 1, 28, 28) in [0, 1] with random labels (not MNIST)")
    print(f"{args.rounds} rounds x {len(setups)} methods (random order per round) x "
          f"{args.inner} steps per visit; load average {os.getloadavg()[0]:.2f} at start")

    for model, opt, loss_fn in setups.values():  # warm-up
        for _ in range(5):
            step(model, opt, loss_fn)

    times: dict[str, list[float]] = {name: [] for name in setups}
    names = list(setups)
    for _ in range(args.rounds):
        rng.shuffle(names)
        for name in names:
            model, opt, loss_fn = setups[name]
            t0 = time.perf_counter()
            for _ in range(args.inner):
                step(model, opt, loss_fn)
            times[name].append((time.perf_counter() - t0) / args.inner)

    ref = times["cross_entropy"]
    ref_med = statistics.median(ref)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    print("\nA. one training step (forward, loss, backward, SGD step)")
    print(f"{'method':32s} {'median ms/step':>14s} {'IQR ms':>15s} {'ratio':>6s} "
          f"{'paired ratio [95% CI]':>23s}")
    worst = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        q = statistics.quantiles(ts, n=4)
        ratio = med / ref_med
        paired = [t / r for t, r in zip(ts, ref, strict=True)]
        pmed = statistics.median(paired)
        lo, hi = _bootstrap_median_ci(paired, rng)
        if name != "cross_entropy":
            worst = max(worst, ratio, pmed)
        print(f"{name:32s} {med * 1e3:14.2f} {q[0] * 1e3:7.2f}-{q[2] * 1e3:7.2f} {ratio:6.3f} "
              f"{pmed:8.3f} [{lo:.3f}, {hi:.3f}]")
    print(f"worst ratio {worst:.3f} (goal <= 1.02): {'met' if worst <= 1.02 else 'NOT met'}")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print("warning: the load average exceeds the number of cores (other jobs are running):"
              " part A's ratios are noisy; see the intervals, and part B")

    # B. the loss alone, forward + backward on (batch, 10) logits: its absolute cost, and the
    # step ratio it implies (1 + extra / median cross-entropy step), which load noise hardly moves
    z0 = torch.randn(args.batch, 10)
    loss_times: dict[str, list[float]] = {name: [] for name in setups}
    reps = 50
    for _ in range(args.rounds):
        rng.shuffle(names)
        for name in names:
            loss_fn = setups[name][2]
            t0 = time.perf_counter()
            for _ in range(reps):
                z = z0.clone().requires_grad_()
                loss_fn(z, y).backward()
            loss_times[name].append((time.perf_counter() - t0) / reps)
    ce_loss = statistics.median(loss_times["cross_entropy"])
    print(f"\nB. the loss alone (forward + backward on ({args.batch}, 10) logits, incl. a clone)")
    print(f"{'method':32s} {'median us':>10s} {'extra us':>9s} {'implied step ratio':>19s}")
    for name, ts in loss_times.items():
        med = statistics.median(ts)
        print(f"{name:32s} {med * 1e6:10.1f} {(med - ce_loss) * 1e6:9.1f} "
              f"{1 + (med - ce_loss) / ref_med:19.4f}")


def _bootstrap_median_ci(xs: list[float], rng: random.Random, n: int = 2000) -> tuple[float, float]:
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


if __name__ == "__main__":
    main()
