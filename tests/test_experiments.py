"""lslib.experiments: the sweep as data, the model cache, the journal, resuming after kill -9."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lslib.experiments import (
    PROTOCOLS,
    SETUPS,
    TIMING_COLUMNS,
    Defence,
    OutputBusyError,
    Sweep,
    cache_dir,
    read_journal,
    read_results,
    run_sweep,
    table_from_journal,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_full_sweep_has_one_row_per_cell():
    sweep = Sweep(setups=("mnist-linear", "mnist-lenet"))
    rows = sweep.rows()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    # per set-up and protocol: 14 models x (clean + 3 FGSM + 3 BIM + DeepFool + CW)
    assert len(rows) == 2 * 2 * 14 * 9
    defences = sweep.defences(SETUPS["mnist-lenet"])
    assert Defence("BLS", 0.1, 0.001) in defences and Defence("PGD-AT") in defences
    assert len(defences) == 14
    # the paper did not adversarially train the ResNet, and has no eps 0.4 there
    resnet = Sweep(setups=("cifar-resnet",), protocols=("paper",))
    assert Defence("PGD-AT") not in resnet.defences(SETUPS["cifar-resnet"])
    assert {r.eps for r in resnet.rows() if r.attack == "FGSM"} == {0.05, 0.2}
    bls_t = Sweep(setups=("mnist-linear",), methods=("BLS",), temperatures=(1e-3, 1e-2),
                  baselines=())
    assert len(bls_t.defences()) == 6
    # without temperatures, BLS runs at each protocol's: 0.001, under original 0.01
    both = Sweep(setups=("mnist-linear",), protocols=("paper", "original"), methods=("BLS",),
                 alphas=(0.1,), baselines=(), attacks=("CW",))
    assert {(r.protocol, r.defence.temperature) for r in both.rows()} == {
        ("paper", 0.001), ("original", 0.01)}
    assert [d.temperature for d in both.defences()] == [0.001, 0.01]
    assert [d.temperature for d in both.defences(protocol="original")] == [0.01]
    given = dataclasses.replace(both, temperatures=(0.1,))
    assert {r.defence.temperature for r in given.rows()} == {0.1}


def test_sweep_and_defence_validate_their_arguments():
    with pytest.raises(ValueError, match="setups"):
        Sweep(setups=("imagenet-vgg",))
    with pytest.raises(ValueError, match="attacks"):
        Sweep(setups=("mnist-linear",), attacks=("Square",))
    with pytest.raises(ValueError, match="alpha"):
        Defence("ALS")
    with pytest.raises(ValueError, match="temperature"):
        Defence("ALS", 0.1, 0.001)


def test_protocols_are_the_papers_and_a_strong_one():
    paper, strong = PROTOCOLS["paper"], PROTOCOLS["strong"]
    assert paper.smoothed_loss and not strong.smoothed_loss
    assert paper.bim == dict(steps=10, step_frac=0.1, random_start=False, restarts=1,
                             early_stop=True)  # the stop changes no accuracy, only time
    assert paper.deepfool["steps"] == 10 and paper.deepfool["overshoot"] == 0
    assert paper.deepfool_on_softmax
    assert (paper.cw["binary_search_steps"], paper.cw["steps"], paper.cw["lr"],
            paper.cw["initial_const"]) == (5, 10, 0.1, 1.0)
    assert paper.sizes(SETUPS["mnist-lenet"], "BIM") == 2000
    assert paper.sizes(SETUPS["svhn-lenet"], "BIM") == 300
    assert strong.bim["random_start"] and strong.bim["restarts"] > 1
    assert strong.bim["steps"] > paper.bim["steps"]
    assert strong.deepfool["steps"] == 50 and strong.deepfool["overshoot"] == 0.02
    assert strong.deepfool["relu_surrogate"] and "relu_surrogate" not in paper.deepfool
    assert strong.sizes(SETUPS["mnist-lenet"], "clean") is None  # the whole test set
    assert "smoothed-target" in paper.describe("FGSM") and "loss=ce" in strong.describe("BIM")


def test_a_deepfool_rows_settings_are_read_back_as_deepfools_arguments():
    from lslib.experiments import deepfool_settings

    strong = PROTOCOLS["strong"]
    described = strong.describe("DeepFool")
    assert "relu_surrogate=10,3,1" in described.split()  # one word: the string splits on blanks
    assert deepfool_settings(described) == strong.deepfool
    assert deepfool_settings(strong.quick().describe("DeepFool")) == strong.quick().deepfool
    # a row written before the strong DeepFool had its fallback
    old = deepfool_settings("deepfool candidates=10 overshoot=0.02 steps=50")
    assert old == dict(candidates=10, overshoot=0.02, steps=50)
    assert type(old["steps"]) is int and type(old["overshoot"]) is float
    for bad in ("cw steps=10", "deepfool steps", "", PROTOCOLS["paper"].describe("DeepFool")):
        with pytest.raises(ValueError, match="attack_settings"):
            deepfool_settings(bad)


def test_cifar_eps_are_on_the_originals_two_pixel_scale():
    at = SETUPS["cifar-lenet"].adversarial_training()
    assert (at.eps, at.step_size) == (0.025, 0.01)
    at = SETUPS["mnist-lenet"].adversarial_training()
    assert (at.eps, at.step_size) == (0.25, 0.1)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LSLIB_CACHE", str(tmp_path / "env"))
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert cache_dir() == tmp_path / "env"
    monkeypatch.delenv("LSLIB_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "lslib" / "models"


def test_journal_skips_torn_lines_and_the_table_keeps_the_last_entry(tmp_path):
    path = tmp_path / "j.jsonl"
    row = dict(setup="mnist-linear", defence="natural", alpha=None, T=None, protocol="paper",
               attack="clean", eps=0.0, accuracy=0.5)
    good = {"key": "k1", "settings": "s", "row": row}
    newer = {"key": "k1", "settings": "s2", "row": {**row, "accuracy": 0.7}}
    other = {"key": "k2", "settings": "s", "row": {**row, "attack": "FGSM", "eps": 0.05}}
    path.write_text(json.dumps(good) + "\n" + "{not json}\n" + json.dumps(other) + "\n"
                    + json.dumps(newer) + "\n" + json.dumps(good)[:20])
    entries = read_journal(path)
    assert [e["key"] for e in entries] == ["k1", "k2", "k1"]
    table = table_from_journal(entries)
    assert len(table) == 2 and list(table["attack"]) == ["clean", "FGSM"]
    assert table.loc[table.attack == "clean", "accuracy"].item() == 0.7


_TINY = dict(setups=("mnist-linear",), methods=("ALS",), alphas=(0.1,), baselines=("natural",),
             attacks=("clean", "FGSM", "BIM", "DeepFool", "CW"), eps=(0.1,), quick=True,
             data_source="synthetic", n_test=16)


def test_run_sweep_writes_a_tidy_table_with_provenance_and_resumes(tmp_path):
    sweep = Sweep(**_TINY)
    out = tmp_path / "r.csv"
    table = run_sweep(sweep, out, cache=tmp_path / "cache", device="cpu", progress=False)
    assert len(table) == len(sweep.rows()) == 2 * 2 * 5
    assert list(read_results(out).columns) == list(table.columns)
    assert table["accuracy"].between(0, 1).all() and (table["n"] == 16).all()
    for col in ("lslib_version", "git_commit", "git_dirty", "source_hash", "device", "seed",
                "seconds", "train_seconds", "model_key", "attack_settings"):
        assert table[col].notna().all(), col
    minimal = table[table.attack.isin(["DeepFool", "CW"])]
    assert minimal["l2_median"].notna().any() and minimal["eps"].isna().all()
    assert table.loc[table.attack != "clean", "clean_accuracy"].notna().all()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one file per trained model
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["sessions"][0]["rows_computed"] == 20 and meta["sessions"][0]["complete"]
    assert meta["sessions"][0]["models_trained"] == 2
    # running again computes nothing and gives the same table
    again = run_sweep(sweep, out, cache=tmp_path / "cache", device="cpu", progress=False)
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["sessions"][1]["rows_computed"] == 0
    pd.testing.assert_frame_equal(again, read_results(out), check_dtype=False)
    # changed attack settings supersede the old rows instead of duplicating them
    bigger = Sweep(**{**_TINY, "n_test": 20, "attacks": ("clean",)})
    t3 = run_sweep(bigger, out, cache=tmp_path / "cache", device="cpu", progress=False)
    assert len(t3) == 20 and sorted(t3.loc[t3.attack == "clean", "n"]) == [20] * 4


def test_a_table_without_its_journal_is_resumed_from_not_written_away(tmp_path):
    """A committed table in a fresh clone has no journal: running the same command again
    computes nothing, and a run of other settings keeps every row it has not replaced yet."""
    sweep = Sweep(**_TINY)
    out, cache = tmp_path / "r.csv", tmp_path / "cache"
    first = run_sweep(sweep, out, cache=cache, device="cpu", progress=False)
    journal = tmp_path / "r.csv.journal.jsonl"
    journal.unlink()
    again = run_sweep(sweep, out, cache=cache, device="cpu", progress=False)
    meta = json.loads((tmp_path / "r.csv.meta.json").read_text())
    assert meta["sessions"][1]["rows_computed"] == 0 and meta["sessions"][1]["complete"]
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    assert len(read_journal(journal)) == len(first)  # the journal holds the table again
    # other settings, and a run stopped after one row: the other rows are all still there
    journal.unlink()
    bigger = Sweep(**{**_TINY, "n_test": 20})
    part = run_sweep(bigger, out, cache=cache, device="cpu", progress=False, max_rows=1)
    assert len(part) == len(first) and sorted(part["n"]) == [16] * (len(first) - 1) + [20]
    rest = run_sweep(bigger, out, cache=cache, device="cpu", progress=False)
    assert (rest["n"] == 20).all() and len(rest) == len(first)


def test_a_damaged_table_without_its_journal_is_refused_and_kept(tmp_path):
    out = tmp_path / "r.csv"
    text = "setup,defence,attack,accuracy\nmnist-linear,natural,clean,not-a-number\n"
    out.write_text(text)
    from lslib._files import ResultsFileError

    with pytest.raises(ResultsFileError, match="r.csv"):
        run_sweep(Sweep(**_TINY), out, cache=tmp_path / "cache", device="cpu",
                  progress=False)
    assert out.read_text() == text


def _stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)


def _cli(out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "lslib", "reproduce", "mnist-linear", "--quick", "--synthetic",
            "--methods", "ALS,SBLS", "--alphas", "0.1", "--baselines", "natural",
            "--attacks", "clean,FGSM,BIM", "--eps", "0.1,0.3", "--n-test", "24",
            "--out", str(out), "--cache", str(cache), "--no-progress", "--threads", "1"]


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_table(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    a, b = tmp_path / "a" / "r.csv", tmp_path / "b" / "r.csv"
    # the uninterrupted run
    subprocess.run(_cli(a, tmp_path / "cache-a"), check=True, cwd=ROOT, env=env,
                   capture_output=True, timeout=600)
    reference = read_results(a)
    assert len(reference) == 3 * 2 * 5
    # the interrupted one: SIGKILL once a few rows are in the journal
    journal = b.with_name(b.name + ".journal.jsonl")
    proc = subprocess.Popen(_cli(b, tmp_path / "cache-b"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_journal(journal)
    assert 6 <= len(partial) < len(reference)
    # a kill can land mid-append: simulate the torn line it would leave
    with open(journal, "a") as f:
        f.write('{"key": "mnist-linear|torn')
    # resume: the same command
    subprocess.run(_cli(b, tmp_path / "cache-b"), check=True, cwd=ROOT, env=env,
                   capture_output=True, timeout=600)
    resumed = read_results(b)
    assert not resumed.duplicated(["defence", "alpha", "protocol", "attack", "eps"]).any()
    pd.testing.assert_frame_equal(_stable(resumed), _stable(reference))
    meta = json.loads(b.with_name(b.name + ".meta.json").read_text())
    assert len(meta["sessions"]) == 2 and meta["sessions"][1]["complete"]
    # nothing journalled was computed again; the torn row was
    assert meta["sessions"][1]["rows_computed"] == len(reference) - len(partial)
    assert len(read_journal(journal)) == len(reference)


@pytest.mark.parametrize("setup", ["cifar-lenet", "svhn-lenet", "cifar-resnet"])
def test_cifar_and_svhn_setups_run_end_to_end_on_synthetic_stand_ins(tmp_path, setup):
    resnet = setup == "cifar-resnet"  # ResNet18 on the CPU: one model, one protocol
    sweep = Sweep(setups=(setup,), methods=() if resnet else ("BLS",), alphas=(0.1,),
                  baselines=("natural",) if resnet else ("PGD-AT",),
                  protocols=("paper",) if resnet else ("paper", "strong"),
                  attacks=("clean", "FGSM", "BIM", "DeepFool", "CW"), eps=(0.05,), quick=True,
                  data_source="synthetic", n_test=4 if resnet else 16)
    table = run_sweep(sweep, tmp_path / "r.csv", cache=tmp_path / "c", device="cpu",
                      progress=False)
    assert len(table) == len(sweep.rows()) and table["accuracy"].notna().all()
    fgsm = table[table.attack == "FGSM"]
    assert (fgsm["eps_pixels"] == 0.025).all()  # half of the paper's eps on [0, 1] pixels
    assert (table["data_source"] == "synthetic").all()
    assert not math.isnan(table["train_seconds"].iloc[0])


def test_the_cpu_in_the_provenance_is_the_machines_model_and_torchs_instruction_set(monkeypatch):
    import platform
    from pathlib import Path as P

    import torch

    from lslib.experiments import cpu_kind, device_name

    info = P("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (info.read_text().splitlines() if info.is_file() else []) if
             line.startswith("model name")]
    capability = torch.backends.cpu.get_cpu_capability()
    if names:
        assert cpu_kind() == f"{' '.join(names[0].split())}, {capability}"
    assert device_name(torch.device("cpu")) == (f"cpu ({torch.get_num_threads()} threads, "
                                                f"{cpu_kind()})")

    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(P, "read_text", unreadable)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_kind() == f"unknown CPU, {capability}"


_MERGE = dict(setups=("mnist-linear",), alphas=(0.1,), attacks=("clean", "FGSM"), eps=(0.1,),
              quick=True, data_source="synthetic", n_test=16)


def test_merged_parts_are_the_table_of_one_run_and_a_resume_computes_nothing(tmp_path):
    """Two runs that split a sweep (each its own output), merged, give the table one run of the
    whole sweep gives, with both runs' provenance; the whole sweep resumed on it computes
    nothing."""
    from lslib.experiments import merge_results

    whole = Sweep(**_MERGE, methods=("ALS",), baselines=("natural",))
    cache = tmp_path / "cache"
    reference = run_sweep(whole, tmp_path / "whole.csv", cache=cache, device="cpu",
                          progress=False)
    a, b, out = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "m.csv"
    run_sweep(Sweep(**_MERGE, methods=("ALS",), baselines=()), a, cache=cache, device="cpu",
              progress=False)
    run_sweep(Sweep(**_MERGE, methods=(), baselines=("natural",)), b, cache=cache,
              device="cpu", progress=False)
    merged = merge_results(out, [b, a])
    pd.testing.assert_frame_equal(_stable(merged), _stable(reference), check_dtype=False)
    meta = json.loads((tmp_path / "m.csv.meta.json").read_text())
    assert [s["merged_from"] for s in meta["sessions"]] == ["b.csv", "a.csv"]
    assert meta["sessions"][1]["sweep"]["methods"] == ["ALS"]
    assert merge_results(out, [a]).equals(merged)  # a part merged again: nothing changes
    assert len(json.loads((tmp_path / "m.csv.meta.json").read_text())["sessions"]) == 2
    again = run_sweep(whole, out, cache=cache, device="cpu", progress=False)
    meta = json.loads((tmp_path / "m.csv.meta.json").read_text())
    assert meta["sessions"][-1]["rows_computed"] == 0 and meta["sessions"][-1]["complete"]
    pd.testing.assert_frame_equal(_stable(again), _stable(reference), check_dtype=False)


def test_merge_refuses_other_seeds_clashing_rows_and_parts_being_written(tmp_path):
    from lslib.experiments import exclusive_output, merge_results

    cache = tmp_path / "cache"
    one = dict(_MERGE, methods=(), baselines=("natural",))
    a, b, c, out = (tmp_path / f"{n}.csv" for n in "abco")
    run_sweep(Sweep(**one), a, cache=cache, device="cpu", progress=False)
    run_sweep(Sweep(**one, seed=1), b, cache=cache, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"differ in seed: 0 in .*a\.csv, 1 in .*b\.csv"):
        merge_results(out, [a, b])
    assert not out.exists()
    other = read_results(a)
    other.loc[0, "accuracy"] = 1 - other.loc[0, "accuracy"]  # the same row, another number
    other.to_csv(c, index=False)
    with pytest.raises(ValueError, match=r"row mnist-linear\|natural.* is in both .*a\.csv and "
                       r".*c\.csv, with different numbers"):
        merge_results(out, [a, c])
    with pytest.raises(ValueError, match="is the output itself"):
        merge_results(a, [a])
    with pytest.raises(FileNotFoundError, match="no such results file"):
        merge_results(out, [tmp_path / "missing.csv"])
    with exclusive_output(a), pytest.raises(OutputBusyError, match="a.csv is being written"):
        merge_results(out, [a])
    proc = subprocess.run([sys.executable, "-m", "lslib", "merge", str(out), str(a), str(b)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: the rows differ in seed")
