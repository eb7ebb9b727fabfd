"""Wall time of a full MNIST reproduction, where it went, and how far its table is from ours.

Reads the output of a timed run of the experiment runner (its CSV and meta file), e.g.

    export LSLIB_DATA=../shared/data
    python -m lslib reproduce mnist-linear mnist-lenet --workers 2 --no-progress \\
        --out /tmp/repro/mnist.csv --cache /tmp/repro/cache        # from an EMPTY cache
    python bench/reproduction_timing.py /tmp/repro/mnist.csv

(the committed runs in results/timing/ predate the Ray runner: they were two cooperating
processes, the second started with a since-removed ``--reverse``).

and prints: the wall time from the first session's start to the last session's end (the goal of
issue 5 is under 20 minutes for both set-ups and both protocols on this CPU), the models trained,
the rows computed, the sum of training and attack seconds per set-up and protocol, and the mean
and largest absolute difference in accuracy from the committed tables (``results/*.csv``).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEY = ["setup", "defence", "alpha", "T", "protocol", "attack", "eps"]


def _workers(session: dict) -> int:
    """Workers of one session: a local Ray's CPUs ("local Ray, 2 CPU(s), ..."), else one."""
    match = re.match(r"local Ray, (\d+) CPU", session.get("execution", ""))
    return int(match.group(1)) if match else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    ap.add_argument("--committed", nargs="*", type=Path,
                    default=[ROOT / "results" / "mnist-linear.csv",
                             ROOT / "results" / "mnist-lenet.csv"])
    args = ap.parse_args()
    run = pd.read_csv(args.csv)
    meta = json.loads(args.csv.with_name(args.csv.name + ".meta.json").read_text())
    sessions = meta["sessions"]
    started = min(datetime.fromisoformat(s["started"]) for s in sessions)
    finished = max(datetime.fromisoformat(s["finished"]) for s in sessions)
    wall = (finished - started).total_seconds()
    commits = sorted({s["git_commit"][:7] + (" dirty" if s["git_dirty"] else "")
                      for s in sessions})
    print(f"{len(sessions)} session(s) at commit(s) {commits} "
          f"on {sorted({s['device'] for s in sessions})}")
    print(f"wall time {wall:.0f} s ({wall / 60:.1f} min), from {started:%H:%M:%S} to "
          f"{finished:%H:%M:%S} UTC; goal 1200 s: {'MET' if wall < 1200 else 'NOT met'}")
    print(f"models trained {sum(s['models_trained'] for s in sessions)}, rows computed "
          f"{sum(s['rows_computed'] for s in sessions)} ({run.shape[0]} in the table), complete "
          f"{all(s.get('complete') for s in sessions)}")
    models = run.drop_duplicates("model_key")
    train = models.groupby("setup")["train_seconds"].sum()
    attack = run.groupby(["setup", "protocol"])["seconds"].sum().unstack()
    print("\nworker-seconds by set-up (training: each model once; attacks: sum of rows)")
    table = pd.DataFrame({"training": train, **{f"attacks, {p}": attack[p] for p in attack}})
    table.loc["total"] = table.sum()
    print(table.round(0).to_string())
    workers = sum(_workers(s) for s in sessions)
    print(f"all work {table.loc['total'].sum():.0f} worker-seconds; "
          f"on {workers} worker(s) {table.loc['total'].sum() / workers:.0f} s each")
    committed = pd.concat([pd.read_csv(p) for p in args.committed if p.exists()])
    if committed.empty:
        return
    both = run.merge(committed, on=KEY, suffixes=("", "_committed"))
    diff = (both["accuracy"] - both["accuracy_committed"]).abs()
    print(f"\naccuracy against the committed tables, {len(both)} common rows:")
    for setup, d in diff.groupby(both["setup"]):
        print(f"  {setup}: mean |diff| {d.mean():.4f}, largest {d.max():.3f}")


if __name__ == "__main__":
    main()
