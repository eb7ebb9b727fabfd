"""Each CPU speed trick on a whole run, with and without it, interleaved in one run.

The tricks: the allocator keeping freed memory (``lslib.allocator.keep_freed_memory``, which
``python -m lslib`` calls) and LeNetMNIST's im2col first layer (``lslib.models.with_cpu_speedups``,
applied by ``build_model``). A third, attacking in CPU chunks sized by the model's largest
activation, was measured here at commit 2106ebf (``results/bench/tricks-cpu.txt``), showed no
gain with the allocator setting on, and was deleted.

A whole run is ``python -m lslib reproduce`` from an empty model cache, in a process of its own:
by default the natural models of both MNIST set-ups (the MLP and the LeNet), trained as the
reproduction trains them and attacked by both protocols on each protocol's test images, the
whole reproduction's work for two of its 28 models; ``--full`` runs the whole MNIST reproduction
instead (about half an hour of one core per variant on a fast machine of this kind, twice that
on a slow one). Each round runs every variant once, in a fresh random order; the script prints
each variant's median CPU seconds (the child process's user + system time, which other jobs on
the machine disturb far less than the wall clock) and its ratio to the run with every trick on
(above 1: the trick pays).

    python bench/bench_tricks.py --rounds 2 --jobs 2
    python bench/bench_tricks.py --full --jobs 2      # the whole reproduction, two at a time
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "all tricks": "",
    "no allocator setting": "import lslib.allocator as M; M.keep_freed_memory = lambda: False\n",
    "no im2col first layer": "import lslib.models as M; M.with_cpu_speedups = lambda m: m\n",
}


def run_variant(patch: str, args: argparse.Namespace) -> float:
    """CPU seconds of one whole run with ``patch`` applied before lslib's entry point (the child
    process's user + system time, read from ``wait4``, so that runs side by side (``--jobs``)
    are counted apart)."""
    with tempfile.TemporaryDirectory() as tmp:
        setups = ["mnist-linear", "mnist-lenet"]
        extra = [] if args.full else ["--methods", "none", "--baselines", "natural"]
        extra += ["--n-test", str(args.n_test)] if args.n_test else []
        cli = ["reproduce", *setups, *extra, "--threads", "1", "--no-progress",
               "--out", f"{tmp}/out.csv", "--cache", f"{tmp}/cache"]
        code = (patch + "import sys\nfrom lslib.__main__ import entry_point\n"
                f"sys.argv = ['lslib', *{cli!r}]\nsys.exit(entry_point())\n")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--n-test", type=int, default=None,
                    help="test images per attack (default: each protocol's own)")
    ap.add_argument("--full", action="store_true", help="the whole MNIST reproduction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="variants run side by side (one core each; CPU seconds are per child)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    start = time.time()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    print(f"# command: python bench/bench_tricks.py {' '.join(sys.argv[1:])}")
    print(f"# lslib {version('lslib')}, commit {commit}, {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores; load average at start: {os.getloadavg()}", flush=True)
    runs = []
    for r in range(args.rounds):
        order = list(VARIANTS)
        rng.shuffle(order)
        runs += [(r, name) for name in order]

    def one(run: tuple[int, str]) -> None:
        r, name = run
        times[name].append(run_variant(VARIANTS[name], args))
        print(f"round {r + 1}: {name}: {times[name][-1]:.1f} CPU s", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, runs))
    images = f"{args.n_test} test images" if args.n_test else "each protocol's test images"
    what = (f"the whole MNIST reproduction on {images}" if args.full else
            f"the natural MLP and LeNet of the MNIST set-ups, trained and attacked by both "
            f"protocols on {images}")
    print(f"\n{what}; {args.rounds} round(s), {args.jobs} at a time, "
          f"{time.time() - start:.0f} s wall; load average "
          f"at the end {os.getloadavg()}")
    base = statistics.median(times["all tricks"])
    print(f"{'variant':24s} {'CPU s':>8s} {'/ all tricks':>13s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:24s} {med:8.1f} {med / base:12.3f}x")


if __name__ == "__main__":
    main()
