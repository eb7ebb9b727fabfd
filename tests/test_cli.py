"""The command line: python -m lslib reproduce / compare / setups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lslib.__main__ import COMMANDS, build_parser, main
from lslib.experiments import read_results

ROOT = Path(__file__).resolve().parents[1]


def test_subcommands_are_registered():
    assert {"reproduce", "compare", "setups"} <= set(COMMANDS)
    with pytest.raises(SystemExit):
        build_parser().parse_args([])  # a command is required


def test_python_dash_m_lslib_runs():
    out = subprocess.run([sys.executable, "-m", "lslib", "--help"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "reproduce" in out and "compare" in out


def test_setups_lists_every_setup_and_protocol(capsys):
    assert main(["setups"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist-linear", "mnist-lenet", "cifar-lenet", "cifar-resnet", "svhn-lenet",
                 "protocol paper", "protocol strong"):
        assert name in out


def test_reproduce_quick_then_compare(tmp_path, capsys):
    out = tmp_path / "r.csv"
    args = ["reproduce", "svhn-lenet", "--quick", "--synthetic", "--protocol", "paper",
            "--methods", "ALS", "--alphas", "0.1", "--baselines", "natural",
            "--attacks", "clean,FGSM,DeepFool", "--n-test", "8", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (8 rows)" in printed and "mean_abs_diff" in printed
    table = read_results(out)
    assert set(table["protocol"]) == {"paper"} and set(table["setup"]) == {"svhn-lenet"}
    meta = (tmp_path / "r.csv.meta.json").read_text()
    assert "python -m lslib reproduce svhn-lenet --quick" in meta
    assert main(["compare", str(out), "--attack", "FGSM", "--csv", str(tmp_path / "c.csv")]) == 0
    text = capsys.readouterr().out
    assert "svhn-lenet | protocol paper | FGSM (Table 2)" in text
    assert "0.458" in text  # the paper's ALS alpha=0.1 eps=0.05 cell for SVHN LeNet
    assert (tmp_path / "c.csv").exists()


def test_bad_input_is_reported(tmp_path, capsys):
    assert main(["reproduce", "imagenet-vgg", "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown set-up" in capsys.readouterr().err
    # checked at parse time now (argparse's exit status 2; tests/test_bad_inputs.py has the rest)
    out = str(tmp_path / "x.csv")
    for argv in (["reproduce", "mnist-linear", "--methods", "XLS", "--out", out],
                 ["compare", str(tmp_path / "missing.csv")],
                 ["reproduce", "mnist-linear", "--alphas", "a,b"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_audit_subcommand_hands_its_options_to_lslib_audit(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--eps" in out
    with pytest.raises(SystemExit) as exc:  # a required option missing: argparse's error
        main(["audit", "--model", "mlp"])
    assert exc.value.code == 2


def test_recorded_command_has_no_absolute_paths():
    """Provenance records paths relative to the repository, never one machine's folders."""
    from lslib._cli import REPO, command_line

    got = command_line("python -m lslib", [
        "reproduce", "--data-root", str(REPO.parent / "shared" / "data"),
        f"--out={REPO / 'results' / 'x y.csv'}", "--eps", "0.1", "relative/kept"])
    assert got == ("python -m lslib reproduce --data-root ../shared/data "
                   "'--out=results/x y.csv' --eps 0.1 relative/kept")


def test_compare_summary_gives_each_setups_share(capsys):
    from lslib.paper_tables import share_within, side_by_side

    tables = [ROOT / "results" / f"{n}.csv" for n in ("mnist-linear", "mnist-lenet")]
    assert main(["compare", "--summary", *map(str, tables)]) == 0
    out = capsys.readouterr().out
    frame = side_by_side(read_results(tables[0]))
    shares = share_within(frame[frame["setup"] == "mnist-linear"])
    pooled = shares[(shares["protocol"] == "paper") & (shares["table"] == "2-5")].iloc[0]
    block = out.split("mnist-linear: share of its cells")[1].split("mnist-lenet:")[0]
    line = next(x for x in block.splitlines() if x.strip().startswith("paper"))
    assert f"T2-5 {pooled.within}/{pooled.cells} " in line and pooled.cells == 112


def test_compare_defaults_to_the_committed_rungs_which_reproduce_the_tables(monkeypatch, capsys):
    """The default CSVs are each set-up's original rung at its training length (the MLP's of
    10 epochs, the LeNet's of 50), and on each the original protocol puts at least 80 % of the
    112 attack cells of Tables 2-5 within 0.05 of the paper, and every cell of Table 6."""
    from lslib.__main__ import _default_results
    from lslib.paper_tables import share_within, side_by_side

    monkeypatch.chdir(ROOT)
    paths = _default_results(Path("results"))
    assert [p.name for p in paths] == ["mnist-linear.csv", "mnist-lenet.csv",
                                       "mnist-linear-original-epochs-10.csv",
                                       "mnist-lenet-original-authors-start.csv"]
    import pandas as pd

    frame = side_by_side(pd.concat([read_results(p) for p in paths], ignore_index=True))
    for setup in ("mnist-linear", "mnist-lenet"):
        shares = share_within(frame[frame["setup"] == setup])
        mine = shares[shares["protocol"] == "original"]
        t25, t6 = (mine[mine["table"] == t].iloc[0] for t in ("2-5", "6"))
        assert t25.cells == 112 and t25.within >= 0.8 * 112, (setup, t25.within)
        assert t6.within == t6.cells == 14, setup
    assert main(["compare", "--summary"]) == 0
    assert "original T2" in capsys.readouterr().out


def test_compare_defaults_to_the_lenet_from_the_authors_checkpoint(tmp_path):
    from lslib.__main__ import _default_results

    assert _default_results(tmp_path) == []
    for name in ("mnist-linear.csv", "mnist-lenet-original.csv"):
        (tmp_path / name).write_text("x")
    assert _default_results(tmp_path) == [tmp_path / "mnist-linear.csv",
                                          tmp_path / "mnist-lenet-original.csv"]
    (tmp_path / "mnist-lenet-original-authors-start.csv").write_text("x")
    assert _default_results(tmp_path) == [tmp_path / "mnist-linear.csv",
                                          tmp_path / "mnist-lenet-original-authors-start.csv"]


def test_compare_epochs_takes_the_original_files_of_the_shorter_training(tmp_path, capsys,
                                                                          monkeypatch):
    from lslib.__main__ import _default_results

    for name in ("mnist-linear.csv", "mnist-linear-original.csv",
                 "mnist-linear-original-epochs-10.csv",
                 "mnist-lenet-original-authors-start.csv"):
        (tmp_path / name).write_text("x")
    assert _default_results(tmp_path, 10) == [tmp_path / "mnist-linear.csv",
                                              tmp_path / "mnist-linear-original-epochs-10.csv"]
    assert _default_results(tmp_path, 7) == [tmp_path / "mnist-linear.csv"]
    # without --epochs, each set-up's own length: the MLP's 10, the LeNet's 50
    assert _default_results(tmp_path) == [tmp_path / "mnist-linear.csv",
                                          tmp_path / "mnist-linear-original-epochs-10.csv",
                                          tmp_path / "mnist-lenet-original-authors-start.csv"]
    assert _default_results(tmp_path, 50) == [tmp_path / "mnist-linear.csv",
                                              tmp_path / "mnist-linear-original.csv",
                                              tmp_path / "mnist-lenet-original-authors-start.csv"]
    # the rows it prints are those of the file it names (a run of the rung's MLP, renamed)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    rung = read_results(ROOT / "results" / "mnist-linear-original.csv")
    rung.to_csv(tmp_path / "results" / "mnist-linear-original-epochs-10.csv", index=False)
    assert main(["compare", "--epochs", "10", "--summary"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the original protocol's rows: the models trained for at most 10 "
                          "epochs (mnist-linear-original-epochs-10.csv)")
    from lslib.paper_tables import share_within, side_by_side

    shares = share_within(side_by_side(rung))
    pooled = shares[(shares["protocol"] == "original") & (shares["table"] == "2-5")].iloc[0]
    line = next(x for x in out.splitlines() if x.strip().startswith("original"))
    assert f"T2-5 {pooled.within}/{pooled.cells} " in line and pooled.cells == 112
    assert main(["compare", "--epochs", "10", str(ROOT / "results" / "mnist-linear.csv")]) == 2
    assert "give either CSVs or --epochs" in capsys.readouterr().err


def test_compare_defaults_to_a_complete_run_over_one_still_going(tmp_path):
    import json

    from lslib.__main__ import _default_results

    new = tmp_path / "mnist-lenet-original-authors-start.csv"
    before = tmp_path / "mnist-lenet-original-authors-start-slice1000.csv"
    for path in (new, before):
        path.write_text("x")

    def meta(path, *complete):
        sessions = [{"complete": c} if c is not None else {"finished": None} for c in complete]
        path.with_name(path.name + ".meta.json").write_text(json.dumps({"sessions": sessions}))

    meta(before, True)
    meta(new, True, None)  # the new run's last session is still going
    assert _default_results(tmp_path) == [before]
    meta(new, False, True)  # resumed and finished
    assert _default_results(tmp_path) == [new]
    meta(before, False)
    meta(new, False)  # neither is complete: the first of the group
    assert _default_results(tmp_path) == [new]


def test_the_default_output_names_the_lenet_start_file(tmp_path, monkeypatch):
    import hashlib

    from lslib import original
    from lslib.__main__ import _start_suffix

    start = tmp_path / "lenet.pth"
    start.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    assert _start_suffix(None) == ""
    assert _start_suffix(original.StartFile.of(start)) == f"-start-{sha[:12]}"
    monkeypatch.setattr(original, "AUTHORS_LENET_SHA256", sha)
    assert _start_suffix(original.StartFile.of(start)) == "-authors-start"
