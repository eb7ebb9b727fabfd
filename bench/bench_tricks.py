"""Each CPU speed trick on a whole run, with and without it, interleaved in one run.

The tricks: attacking in CPU chunks (``lslib._attack_base.CPU_CHUNK_BYTES``), the allocator
keeping freed memory (``lslib.allocator.keep_freed_memory``, which ``python -m lslib`` calls) and
LeNetMNIST's im2col first layer (``lslib.models.with_cpu_speedups``, applied by
``build_model``). A whole run is ``python -m lslib reproduce`` from an empty model cache, in a
process of its own: by default the natural LeNet of the "MNIST LeNet" set-up, trained as the
reproduction trains it and attacked by both protocols on ``--n-test`` test images; ``--full``
runs the whole MNIST reproduction instead (hours on a shared CPU). Each round runs every variant
once, in a fresh random order; the script prints each variant's median CPU seconds (the child
process's user + system time, which other jobs on the machine disturb far less than the wall
clock) and its ratio to the run with every trick on (above 1: the trick pays).

    python bench/bench_tricks.py --rounds 1 --n-test 200
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "all tricks": "",
    "no CPU chunks": "import lslib._attack_base as B; B.CPU_CHUNK_BYTES = 0\n",
    "no allocator setting": "import lslib.allocator as M; M.keep_freed_memory = lambda: False\n",
    "no im2col first layer": "import lslib.models as M; M.with_cpu_speedups = lambda m: m\n",
}


def run_variant(patch: str, args: argparse.Namespace) -> float:
    """CPU seconds of one whole run with ``patch`` applied before lslib's entry point."""
    with tempfile.TemporaryDirectory() as tmp:
        setups = ["mnist-linear", "mnist-lenet"] if args.full else ["mnist-lenet"]
        extra = [] if args.full else ["--methods", "none", "--baselines", "natural",
                                      "--n-test", str(args.n_test)]
        cli = ["reproduce", *setups, *extra, "--threads", "1", "--no-progress",
               "--out", f"{tmp}/out.csv", "--cache", f"{tmp}/cache"]
        code = (patch + "import sys\nfrom lslib.__main__ import entry_point\n"
                f"sys.argv = ['lslib', *{cli!r}]\nsys.exit(entry_point())\n")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n-test", type=int, default=200, help="test images per attack")
    ap.add_argument("--full", action="store_true", help="the whole MNIST reproduction")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    start = time.time()
    print(f"# load average at start: {os.getloadavg()}", flush=True)
    for r in range(args.rounds):
        order = list(VARIANTS)
        rng.shuffle(order)
        for name in order:
            times[name].append(run_variant(VARIANTS[name], args))
            print(f"round {r + 1}: {name}: {times[name][-1]:.1f} CPU s", flush=True)
    what = "the whole MNIST reproduction" if args.full else (
        f"the natural MNIST LeNet, trained and attacked by both protocols on {args.n_test} "
        f"test images")
    print(f"\n{what}; {args.rounds} round(s), {time.time() - start:.0f} s wall; load average "
          f"at the end {os.getloadavg()}")
    base = statistics.median(times["all tricks"])
    print(f"{'variant':24s} {'CPU s':>8s} {'/ all tricks':>13s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:24s} {med:8.1f} {med / base:12.3f}x")


if __name__ == "__main__":
    main()
