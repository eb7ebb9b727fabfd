"""lslib.runner: the sweep and the audit on Ray give the one-process tables; faults lose nothing.

One local Ray with 2 CPUs (``ray_address``, started once for the session) serves the tests that
join a cluster (``--address``); one test starts its own local Ray with ``--workers 2``. The
reference is the embedded run on one torch thread, the thread count of a Ray task (another thread
count changes the order of floating-point sums, see lslib.train).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lslib.experiments import (
    TIMING_COLUMNS,
    Sweep,
    exclusive_output,
    read_journal,
    read_results,
    run_sweep,
)
from lslib.runner import Execution

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
TIMEOUT = 600  # seconds, for every subprocess here


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray with 2 CPUs shared by the tests that join a cluster; its GCS address."""
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    key, value = MARK.split("=")
    os.environ[key] = value  # its workers carry the mark too
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _cli(out: Path, cache: Path, data_root: Path, *extra: str) -> list[str]:
    """A small real-data sweep: 5 LeNet models, 7 rows each, a few seconds per model."""
    return [sys.executable, "-m", "lslib", "reproduce", "mnist-lenet", "--quick",
            "--protocol", "paper", "--methods", "ALS,SBLS", "--alphas", "0.1,0.4",
            "--baselines", "natural", "--attacks", "clean,FGSM,BIM,DeepFool,CW",
            "--eps", "0.1,0.3", "--n-test", "64", "--data-root", str(data_root),
            "--out", str(out), "--cache", str(cache), "--no-progress", "--threads", "1", *extra]


N_ROWS = 5 * 7


#: Marks the environment of every process these tests start, and so of every Ray process their
#: drivers start: the process checks below see (and kill) only those, never a Ray that another
#: run on the same machine is using.
MARK = f"LSLIB_TEST_RUNNER={os.getpid()}"


def _env() -> dict[str, str]:
    key, value = MARK.split("=")
    return {**os.environ, "PYTHONHASHSEED": "0", "RAY_USAGE_STATS_ENABLED": "0", key: value}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """The one-process table (and how long it took)."""
    where = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    _run(_cli(where / "r.csv", where / "cache", data_root))
    table = read_results(where / "r.csv")
    assert len(table) == N_ROWS
    return table, time.monotonic() - start


def _cmdline(pid: int | str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:  # gone meanwhile
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _ours(pid: int) -> bool:
    """Whether the process runs in the environment these tests gave their drivers."""
    try:
        return MARK.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile, or not readable
        return False


def _new_ray_processes(before: set[int]) -> set[int]:
    """Ray processes started by these tests' drivers since ``before`` was taken, less the new
    workers of a cluster that was already there (the tests' shared one)."""
    return {p for p in _ray_processes() - before if _ppid(p) not in before and _ours(p)}


def _ray_processes() -> set[int]:
    """Pids of Ray's processes: its servers and its workers."""
    return {int(pid) for pid in os.listdir("/proc") if pid.isdigit()
            and (b"ray/core/src/ray" in (cmd := _cmdline(pid)) or cmd.startswith(b"ray::"))}


def test_workers_2_gives_the_one_process_table_and_leaves_no_process(tmp_path, data_root,
                                                                    reference):
    before = _ray_processes()
    out = tmp_path / "r.csv"
    done = _run(_cli(out, tmp_path / "cache", data_root, "--workers", "2"))
    assert "local Ray, 2 CPU(s)" in done.stderr
    table = read_results(out)
    pd.testing.assert_frame_equal(_stable(table), _stable(reference[0]))
    assert table["device"].str.startswith("cpu (1 threads, ").all()
    meta = json.loads(out.with_name("r.csv.meta.json").read_text())
    session = meta["sessions"][0]
    assert session["execution"].startswith("local Ray, 2 CPU(s)") and session["complete"]
    assert session["models_trained"] == 5 and session["rows_computed"] == N_ROWS
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 5  # written by the driver
    deadline = time.monotonic() + 30
    while _new_ray_processes(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _new_ray_processes(before), "the local Ray outlived its driver"


def test_kill_9_of_a_workers_driver_leaves_no_ray_process(tmp_path, data_root):
    before = _ray_processes()
    proc = subprocess.Popen(_cli(tmp_path / "r.csv", tmp_path / "cache", data_root, "--workers",
                                 "2"), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT
    while not any(_cmdline(p).startswith(b"ray::") for p in _new_ray_processes(before)):
        assert proc.poll() is None and time.monotonic() < deadline, "no Ray worker started"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=TIMEOUT)
    # the servers die with the driver; Ray's two agents notice their raylet is gone within a
    # minute or so (seen: 20-65 s on a loaded machine) and exit on their own
    deadline = time.monotonic() + 180
    while _new_ray_processes(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _new_ray_processes(before)
    for pid in left:  # do not leave them to the next test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "the local Ray outlived its driver's kill -9"


def test_kill_9_of_the_driver_three_times_then_resume(tmp_path, data_root, reference,
                                                      ray_address):
    out = tmp_path / "r.csv"
    journal = out.with_name("r.csv.journal.jsonl")
    cmd = _cli(out, tmp_path / "cache", data_root, "--address", ray_address)
    rng = random.Random(12)
    for _ in range(3):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2, max(3, 0.5 * reference[1])))  # any moment, start-up included
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    partial = len(read_journal(journal))
    assert partial < N_ROWS, "the runs ended before they were killed"
    _run(cmd)
    table = read_results(out)
    pd.testing.assert_frame_equal(_stable(table), _stable(reference[0]))
    entries = read_journal(journal)
    assert len(entries) == N_ROWS == len({e["key"] for e in entries})  # nothing twice
    meta = json.loads(out.with_name("r.csv.meta.json").read_text())
    assert meta["sessions"][-1]["rows_computed"] == N_ROWS - partial  # nothing journalled redone


def test_a_worker_killed_mid_task_is_retried_and_the_table_is_the_same(tmp_path, data_root,
                                                                        reference, ray_address):
    out = tmp_path / "r.csv"
    proc = subprocess.Popen(_cli(out, tmp_path / "cache", data_root, "--address", ray_address),
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + TIMEOUT
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            cmd = _cmdline(pid) if pid.isdigit() else b""
            if cmd.startswith((b"ray::train_task", b"ray::job_task")) and _ours(int(pid)):
                os.kill(int(pid), signal.SIGKILL)
                killed = cmd.split()[0].decode()
                break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert killed, "no task was caught running"
    assert proc.returncode == 0, err[-3000:]
    pd.testing.assert_frame_equal(_stable(read_results(out)), _stable(reference[0]))
    assert len(read_journal(out.with_name("r.csv.journal.jsonl"))) == N_ROWS


def test_a_second_driver_on_the_same_output_is_refused(tmp_path, data_root):
    out = tmp_path / "r.csv"
    with exclusive_output(out):
        done = subprocess.run(_cli(out, tmp_path / "cache", data_root), cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "is being written by another run (pid" in done.stderr
    assert not out.exists()  # refused before anything was written


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, data_root, reference,
                                                     ray_address):
    out = tmp_path / "r.csv"
    cmd = _cli(out, tmp_path / "cache", data_root, "--address", ray_address)
    journal = out.with_name("r.csv.journal.jsonl")
    # SIGINT as a terminal delivers it, even where this suite runs as a background job (whose
    # children inherit SIGINT ignored, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "run the same command again to resume" in err.strip().splitlines()[-1]
    meta = json.loads(out.with_name("r.csv.meta.json").read_text())
    assert meta["sessions"][0]["interrupted"] and not meta["sessions"][0]["complete"]
    _run(cmd)
    pd.testing.assert_frame_equal(_stable(read_results(out)), _stable(reference[0]))


def test_the_audit_on_ray_gives_the_embedded_rows(tmp_path, data_root, ray_address):
    from lslib.audit import AuditSettings, audit_setup

    kw = dict(n=24, eps=(0.2,), eps_grid=(0.1,), quick=True, seed=0,
              defences=(("natural", None, None), ("ALS", 0.4, None)),
              settings=AuditSettings(pgd_steps=3, pgd_restarts=1, square_queries=10,
                                     autoattack_iters=3, audit_queries=10,
                                     autoattack="apgd-ce+apgd-t"),
              cache=str(tmp_path / "cache"), data_root=str(data_root))

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows, signs = audit_setup(**kw, device="cpu")
    finally:
        torch.set_num_threads(threads)
    journal = tmp_path / "ray.jsonl"
    rows2, signs2 = audit_setup(**kw, execution=Execution(address=ray_address),
                                journal=journal)
    assert strip(rows2) == strip(rows) and signs2 == signs
    assert len(read_journal(journal, ("key", "rows", "signs"))) == 2


def test_the_bug_ladder_on_ray_gives_the_embedded_rows(tmp_path, ray_address):
    """lslib.bugs: one job per model and attack; on a Ray cluster, the weights travel with the
    jobs and the rows are the one-process run's, in the table's order."""
    import torch

    from lslib import bugs

    table = tmp_path / "t.csv"
    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("ALS",),
                  alphas=(0.4,), baselines=("natural",), attacks=("FGSM", "DeepFool", "CW"),
                  eps=(0.1,), quick=True, data_source="synthetic")
    run_sweep(sweep, table, cache=tmp_path / "cache", progress=False, device="cpu")
    kw = dict(cache=tmp_path / "cache", log=lambda m: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task's thread count
    try:
        here = bugs.bugs_of_table(table, **kw)
    finally:
        torch.set_num_threads(threads)
    journal = tmp_path / "ray.jsonl"
    on_ray = bugs.bugs_of_table(table, **kw, execution=Execution(address=ray_address),
                                journal=journal)
    pd.testing.assert_frame_equal(on_ray, here)
    assert len(journal.read_text().splitlines()) == 2 * 3  # models x attacks


def test_the_audit_command_takes_the_runner_options(tmp_path):
    from lslib.audit import main

    with pytest.raises(SystemExit) as exc:
        main(["--setup", "mnist-linear", "--out", str(tmp_path / "a.csv"),
              "--gpus-per-task", "1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--setup", "mnist-linear", "--out", "x.csv", "--workers", "2", "--address", "a"])


# --------------------------------------------------------------------------------------------
# options, damaged files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(workers=0), "workers must be an integer >= 1"),
    (dict(workers=1.5), "workers must be an integer >= 1"),
    (dict(workers=2, address="auto"), "not both"),
    (dict(address=""), "address must be a Ray address"),
    (dict(gpus_per_task=1), "gpus_per_task needs Ray"),
    (dict(workers=2, gpus_per_task=-1), "gpus_per_task must be a finite number >= 0"),
    (dict(workers=2, cpus_per_task=0), "needs a CPU or a GPU"),
    (dict(threads=0), "threads must be an integer >= 1"),
])
def test_execution_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Execution(**kwargs)


def test_execution_threads_and_description():
    assert Execution().task_threads() is None and Execution(threads=3).task_threads() == 3
    assert Execution(workers=2).task_threads() == 1
    assert Execution(workers=4, cpus_per_task=2).task_threads() == 2
    assert Execution().describe() == "embedded (one process)"
    assert "0.5 GPU(s) per task" in Execution(address="auto", gpus_per_task=0.5).describe()


@pytest.mark.parametrize(("flags", "message"), [
    (["--workers", "0"], "argument --workers: 0 must be an integer >= 1"),
    (["--workers", "two"], "argument --workers: 'two' is not an integer"),
    (["--gpus-per-task", "0"], "argument --gpus-per-task: 0 is not accepted"),
    (["--gpus-per-task", "1"], "--gpus-per-task needs --workers or --address"),
    (["--workers", "2", "--address", "auto"], "not allowed with argument"),
])
def test_the_cli_refuses_bad_runner_options_in_one_line(tmp_path, flags, message):
    done = subprocess.run([sys.executable, "-m", "lslib", "reproduce", "mnist-linear", "--quick",
                           "--synthetic", "--out", str(tmp_path / "r.csv"), *flags], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r.csv").exists()


def test_device_is_for_one_process():
    import argparse

    from lslib.runner import execution_from_args

    args = argparse.Namespace(workers=2, address=None, gpus_per_task=None, threads=None,
                              device="cuda")
    with pytest.raises(ValueError, match="--device is for one process"):
        execution_from_args(args)
    assert execution_from_args(argparse.Namespace(**{**vars(args), "device": "cpu"})).workers == 2


_TINY = dict(setups=("mnist-linear",), methods=("ALS",), alphas=(0.1,), baselines=("natural",),
             attacks=("clean", "FGSM"), eps=(0.1,), quick=True, data_source="synthetic",
             n_test=16)


def test_rows_of_the_table_outside_the_sweep_are_kept_and_counted_as_such(tmp_path):
    """A table's rows that the journal lacks and this sweep does not plan stay in the table
    and are counted apart from the rows to compute again."""
    out = tmp_path / "r.csv"
    kw = dict(cache=tmp_path / "cache", device="cpu", progress=False)
    first = run_sweep(Sweep(**_TINY), out, **kw)
    out.with_name("r.csv.journal.jsonl").unlink()
    warnings: list[str] = []
    both = run_sweep(Sweep(**{**_TINY, "baselines": ()}), out, **kw, log=warnings.append)
    n = len(first)
    natural = int((first["defence"] == "natural").sum())
    assert natural and any(f"r.csv: {n} row(s) that r.csv.journal.jsonl lacked were taken from "
                           f"the table ({n - natural} done, 0 to compute again, {natural} not "
                           "in this sweep)" in w for w in warnings)
    assert len(both) == n


@pytest.mark.parametrize("table_kept", [False, True], ids=["table-gone", "table-kept"])
def test_a_damaged_journal_line_or_meta_file_is_set_aside_and_the_run_goes_on(tmp_path,
                                                                              table_kept):
    """A damaged journal line is set aside; its row is computed again, or, where the results
    table still holds it (the table is written from the journal before the damage), taken
    from the table like any row the journal lacks."""
    sweep = Sweep(**_TINY)
    out = tmp_path / "r.csv"
    kw = dict(cache=tmp_path / "cache", device="cpu", progress=False)
    reference = run_sweep(sweep, out, **kw)
    journal = out.with_name("r.csv.journal.jsonl")
    lines = journal.read_text().splitlines()
    entry = json.loads(lines[1])
    damaged = [lines[0], "{not json", json.dumps([1, 2]),
               json.dumps({**entry, "row": {**entry["row"], "accuracy": "high"}}), *lines[2:]]
    journal.write_text("\n".join(damaged) + "\n")
    meta = out.with_name("r.csv.meta.json")
    meta.write_text("[1, 2")
    if not table_kept:
        out.unlink()
    warnings: list[str] = []
    again = run_sweep(sweep, out, **kw, log=warnings.append)
    assert len(warnings) == 2 + table_kept
    assert any("r.csv: 1 row(s) that r.csv.journal.jsonl lacked were taken from the table "
               "(1 done, 0 to compute again)" in w for w in warnings) == table_kept
    assert any("3 damaged line(s) set aside in r.csv.journal.jsonl.damaged" in w
               and "line 2, not JSON" in w for w in warnings)
    assert any("r.csv.meta.json is damaged" in w for w in warnings)
    aside = [json.loads(x) for x in (tmp_path / "r.csv.journal.jsonl.damaged").read_text()
             .splitlines()]
    assert [a["line"] for a in aside] == [2, 3, 4]
    assert "row field 'accuracy'" in aside[2]["why"]
    assert aside[0]["text"] == "{not json"  # kept for inspection
    assert len(list(tmp_path.glob("r.csv.meta.json.damaged-*"))) == 1
    pd.testing.assert_frame_equal(_stable(again), _stable(reference))
    fresh = json.loads(meta.read_text())
    # only the damaged row was redone, or none where the table held it
    assert fresh["sessions"][0]["rows_computed"] == (0 if table_kept else 1)
    assert len(read_journal(journal)) == len(reference)


def test_a_damaged_checkpoint_is_set_aside_and_the_model_trained_again(tmp_path):
    sweep = Sweep(**_TINY)
    kw = dict(cache=tmp_path / "cache", device="cpu", progress=False)
    reference = run_sweep(sweep, tmp_path / "a.csv", **kw)
    first = sorted((tmp_path / "cache").glob("*.pt"))[0]
    first.write_bytes(first.read_bytes()[:100])
    warnings: list[str] = []
    again = run_sweep(sweep, tmp_path / "b.csv", **kw, log=warnings.append)
    assert len(warnings) == 1 and f"{first}: not a readable torch checkpoint" in warnings[0]
    assert len(list((tmp_path / "cache").glob("*.pt.damaged-*"))) == 1
    pd.testing.assert_frame_equal(_stable(again), _stable(reference))


def test_one_progress_bar_counts_the_whole_sweep_with_the_rows_in_flight(tmp_path, capsys):
    sweep = Sweep(**_TINY)
    run_sweep(sweep, tmp_path / "r.csv", cache=tmp_path / "cache", device="cpu", progress=True)
    err = capsys.readouterr().err
    total = len(sweep.rows())
    assert "sweep: 100%" in err and f"{total}/{total}" in err
    assert "in flight 1: ALS 0.1 paper clean" in err
    # resumed: the bar starts at the rows already done
    run_sweep(sweep, tmp_path / "r.csv", cache=tmp_path / "cache", device="cpu", progress=True)
    assert f"{total}/{total}" in capsys.readouterr().err


def test_ray_trains_a_start_checkpoint_first_and_once(tmp_path, ray_address):
    """The original protocol's LeNets start from one natural checkpoint: on Ray it is trained
    once, before the models that need it (not once per worker), and the table is the embedded
    one."""
    from lslib.experiments import Sweep

    sweep = Sweep(setups=("mnist-lenet",), protocols=("original",), methods=("SLS", "ALS"),
                  alphas=(0.4,), baselines=("natural",), attacks=("clean",), quick=True,
                  data_source="synthetic")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_sweep(sweep, tmp_path / "one.csv", cache=tmp_path / "one", progress=False,
                  device="cpu")
    finally:
        torch.set_num_threads(threads)
    run_sweep(sweep, tmp_path / "ray.csv", cache=tmp_path / "ray", progress=False,
              execution=Execution(address=ray_address))
    meta = json.loads((tmp_path / "ray.csv.meta.json").read_text())
    assert meta["sessions"][0]["models_trained"] == 4  # the checkpoint and the three
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())
    pd.testing.assert_frame_equal(_stable(read_results(tmp_path / "ray.csv")),
                                  _stable(read_results(tmp_path / "one.csv")))
