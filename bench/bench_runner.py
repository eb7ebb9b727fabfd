"""One sweep in one process and on a local Ray with ``--workers N``, timed in one run.

Each execution starts from an EMPTY model cache (so training is timed too) and runs the same
command, ``python -m lslib reproduce SETUPS --protocol P --no-progress`` plus its own options, as
a subprocess; the script prints the wall times, the speed-up, the worker-seconds the rows and
models report, and whether the tables agree cell for cell (timings aside). The one-process run
uses ``--threads 1``, the thread count of a Ray task, so both compute exactly the same thing and
the speed-up is the runner's alone; ``--also-default-threads`` adds one process on torch's
default thread count (what a user gets without ``--threads``; its numbers differ in the last
digits, since another thread count changes the order of floating-point sums).

    export LSLIB_DATA=../shared/data
    python bench/bench_runner.py --setups mnist-linear --protocol both --workers 2

Issue 15's goal: a sweep of at least 5 minutes in one process runs at least 1.7x faster with
``--workers 2`` on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lslib.experiments import TIMING_COLUMNS, provenance  # noqa: E402


def _run(label: str, cmd: list[str]) -> tuple[float, pd.DataFrame, dict]:
    print(f"== {label}: {shlex.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=4 * 3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    out = Path(cmd[cmd.index("--out") + 1])
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())["sessions"][-1]
    return wall, pd.read_csv(out), meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", default="mnist-linear")
    ap.add_argument("--protocol", default="both", choices=["paper", "strong", "both"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--also-default-threads", action="store_true",
                    help="also time one process on torch's default thread count")
    ap.add_argument("--data-root", default=os.environ.get("LSLIB_DATA"))
    ap.add_argument("--extra", default="", help="more reproduce options, e.g. '--n-test 200'")
    ap.add_argument("--save", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    base = [sys.executable, "-m", "lslib", "reproduce", *args.setups.split(","),
            "--protocol", args.protocol, "--no-progress", *shlex.split(args.extra)]
    if args.data_root:
        base += ["--data-root", args.data_root]
    one = base + ["--out", str(work / "one.csv"), "--cache", str(work / "cache-one"),
                  "--threads", "1"]
    ray = base + ["--out", str(work / "ray.csv"), "--cache", str(work / "cache-ray"),
                  "--workers", str(args.workers)]
    t_one, table_one, meta_one = _run("one process, --threads 1", one)
    t_ray, table_ray, meta_ray = _run(f"--workers {args.workers}", ray)
    if args.also_default_threads:
        default = base + ["--out", str(work / "default.csv"), "--cache",
                          str(work / "cache-default")]
        t_def, table_def, meta_def = _run("one process, torch's default threads", default)

    def work_seconds(table: pd.DataFrame) -> float:
        return float(table["seconds"].sum() + table.drop_duplicates("model_key")
                     ["train_seconds"].sum())

    stable = [c for c in table_one.columns if c not in TIMING_COLUMNS]
    same = table_one[stable].equals(table_ray[stable])
    diff = (table_one["accuracy"] - table_ray["accuracy"]).abs()
    prov = provenance("cpu")
    lines = [
        f"# command: python bench/bench_runner.py {shlex.join(sys.argv[1:])}",
        f"# commit: {prov['git_commit'][:7]}{' (dirty)' if prov['git_dirty'] else ''}, lslib "
        f"{prov['lslib_version']}, torch {prov['torch_version']}, {os.cpu_count()} CPUs "
        f"({platform.machine()}), run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"sweep: {args.setups}, protocol {args.protocol}, {len(table_one)} rows, "
        f"{table_one['model_key'].nunique()} models, from an empty cache each",
        f"one process ({meta_one['device']}): {t_one:7.1f} s wall, "
        f"{work_seconds(table_one):7.1f} s of rows + training",
        *([f"one process ({meta_def['device']}): {t_def:7.1f} s wall, "
           f"{work_seconds(table_def):7.1f} s of rows + training; --workers {args.workers} is "
           f"{t_def / t_ray:.2f}x faster than this"] if args.also_default_threads else []),
        f"--workers {args.workers} ({meta_ray['execution']}; tasks on "
        f"{table_ray['device'].iloc[0]}): {t_ray:7.1f} s wall, "
        f"{work_seconds(table_ray):7.1f} worker-s of rows + training",
        f"speed-up over one process on the same threads per task: {t_one / t_ray:.2f}x "
        f"(goal >= 1.7x: {'MET' if t_one / t_ray >= 1.7 else 'NOT met'})",
        f"tables equal cell for cell (timings aside): {same}; accuracy |diff| mean "
        f"{diff.mean():.4f}, max {diff.max():.4f}",
    ]
    report = "\n".join(lines)
    print(report)
    if args.save:
        args.save.write_text(report + "\n")


if __name__ == "__main__":
    main()
