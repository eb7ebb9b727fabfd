"""Time the book's chapters, each run top to bottom in a fresh kernel, and record the wall times
with their provenance in a JSON file (the GPU notices of the chapters glue them from there).

    python book/_tools/time_chapters.py --mode full --out results/timing/chapters-full-cpu.json \
        --budget 1800 attacks logit_squeezing

Each chapter runs as ``jupyter nbconvert --execute`` would (nbclient, the chapter's folder as
working directory), with ``LSLIB_QUICK`` set by ``--mode``, in its own process group, killed after
``--budget`` seconds: a chapter that does not finish is recorded as such, with its budget.
Besides the wall time, the CPU time of the chapter's processes (the kernel and its client, read
from /proc every few seconds) is recorded: on a machine shared with other jobs the wall time
mostly measures waiting, while the CPU time is what the chapter needs from one core of this CPU.
``--jobs`` runs several chapters at once. Each chapter's entry is written as soon as it ends, so
an interrupted run keeps what it measured.
``--cache`` (default: a fresh temporary folder) is the model cache the chapters see: empty, as on
a fresh Colab runtime, so the times include training.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_RUN_ONE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name="python3",
               resources={"metadata": {"path": sys.argv[3]}}).execute()
"""


def machine() -> dict:
    import torch

    from lslib.book import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__}


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": git("status", "--porcelain", "--untracked-files=no") != ""}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int, seen: dict[int, float]) -> list[int]:
    """Update ``seen`` (pid -> CPU seconds, user + system) for ``root`` and its live descendants
    (the kernel runs in a session of its own); return their pids."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # after the command's ")": state, ppid, ..., utime and stime (fields 14 and 15)
            fields = stat.read_text().rsplit(")", 1)[1].split()
            procs[int(stat.parent.name)] = (int(fields[1]),
                                            (int(fields[11]) + int(fields[12])) / _TICK)
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs:
            tree.append(pid)
            seen[pid] = procs[pid][1]
            frontier += [child for child, (ppid, _) in procs.items() if ppid == pid]
    return tree


def run_chapter(name: str, *, mode: str, budget: float, cell_timeout: int, env: dict) -> dict:
    nb = ROOT / "book" / f"{name}.ipynb"
    if not nb.is_file():
        raise SystemExit(f"time_chapters: no chapter book/{name}.ipynb")
    start = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _RUN_ONE, str(nb), str(cell_timeout),
                             str(nb.parent)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu: dict[int, float] = {}
    chunks: list[str] = []
    reader = ThreadPoolExecutor(1)
    pending = reader.submit(lambda: chunks.append(proc.stdout.read()))
    status = None
    while status is None:
        _tree_cpu(proc.pid, cpu)
        try:
            proc.wait(timeout=2)
            status = "ok" if proc.returncode == 0 else "error"
        except subprocess.TimeoutExpired:
            if time.perf_counter() - t0 > budget:
                for pid in _tree_cpu(proc.pid, cpu):  # the client and its kernel
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
                status = "did not finish"
    wall = time.perf_counter() - t0
    pending.result(timeout=60)
    reader.shutdown()
    out = "".join(chunks)
    entry = {"chapter": name, "mode": mode, "status": status, "wall_seconds": round(wall, 1),
             "cpu_seconds": round(sum(cpu.values()), 1),
             "budget_seconds": budget, "started_utc": start.isoformat(timespec="seconds"),
             "load_average_before": [round(x, 2) for x in load_before],
             "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    if status == "error":
        entry["error_tail"] = out[-2000:]
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("chapters", nargs="+", help="chapter names (book/NAME.ipynb)")
    p.add_argument("--mode", choices=("quick", "full"), required=True,
                   help="LSLIB_QUICK=1 (quick) or LSLIB_QUICK=0 (full)")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to add the times to")
    p.add_argument("--budget", type=float, default=3600,
                   help="seconds each chapter may run before it is stopped (default 3600)")
    p.add_argument("--cell-timeout", type=int, default=3600, help="nbclient's per-cell timeout")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP/MKL threads of the kernels (default: torch's own choice)")
    p.add_argument("--cache", type=Path, default=None,
                   help="model cache for the chapters (default: a fresh, empty folder)")
    p.add_argument("--jobs", type=int, default=1, help="chapters run at the same time")
    p.add_argument("--note", default="", help="a word on the machine's state, kept in the file")
    p.add_argument("--commit", default=None,
                   help="the commit of this tree when it is an export without .git "
                        "(git archive); default: the checkout's HEAD")
    args = p.parse_args(argv)

    env = dict(os.environ, LSLIB_QUICK="1" if args.mode == "quick" else "0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    tmp = None
    if args.cache is None:
        tmp = tempfile.TemporaryDirectory(prefix="lslib-cache-")
        args.cache = Path(tmp.name)
    env["LSLIB_CACHE"] = str(args.cache)

    record = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    session = {"command": "python book/_tools/time_chapters.py " + shlex.join(
                   sys.argv[1:] if argv is None else argv),
               **(git_state() if args.commit is None else {"commit": args.commit,
                                                            "dirty": False, "export": True}),
               "machine": machine(), "threads": args.threads or "default",
               "niceness": os.nice(0), "model_cache": "empty at start" if tmp else str(args.cache),
               "jobs": args.jobs, "note": args.note, "chapters": []}
    record["runs"].append(session)
    pool = ThreadPoolExecutor(args.jobs)
    try:
        futures = [pool.submit(run_chapter, name, mode=args.mode, budget=args.budget,
                               cell_timeout=args.cell_timeout, env=env)
                   for name in args.chapters]
        for future in as_completed(futures):
            entry = future.result()
            session["chapters"].append(entry)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = args.out.with_name(f".{args.out.name}.tmp")
            tmp_out.write_text(json.dumps(record, indent=2) + "\n")
            os.replace(tmp_out, args.out)
            print(f"{entry['chapter']}: {entry['status']} in {entry['wall_seconds']:.0f} s "
                  f"({entry['cpu_seconds']:.0f} CPU-s)", flush=True)
    finally:
        pool.shutdown(wait=True)
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
