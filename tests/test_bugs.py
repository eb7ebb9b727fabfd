"""lslib.bugs: the bug ladder of an original-protocol table's models, checked against the table."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from lslib import bugs, original


def _table(tmp_path):
    from lslib.experiments import Sweep, run_sweep

    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), baselines=("natural",),
                  attacks=("FGSM", "BIM", "DeepFool", "CW"), eps=(0.1, 0.3), quick=True,
                  data_source="synthetic")
    out = tmp_path / "t.csv"
    run_sweep(sweep, out, cache=tmp_path / "cache", progress=False, device="cpu")
    return out


def test_the_ladder_of_every_model_starts_from_the_tables_cells(tmp_path):
    out = _table(tmp_path)
    table = pd.read_csv(out)
    got = bugs.bugs_of_table(out, cache=tmp_path / "cache", log=lambda m: None)  # its eps
    assert set(got["defence"]) == {"SLS", "natural"} and set(got["eps"].dropna()) == {0.1, 0.3}
    # per model: every switch of its attacks at each FGSM/BIM budget, DeepFool and CW once
    per_model = sum(len(a) for a in original.SWITCH_ATTACKS.values()) + 4
    fgsm_bim = sum(a in ("FGSM", "BIM") for v in original.SWITCH_ATTACKS.values() for a in v) + 2
    assert len(got) == 2 * (per_model + fgsm_bim)
    # the "with every bug" accuracy is the table's cell, for each model, attack and budget
    for row in table.itertuples():
        hit = got[(got["defence"] == row.defence) & (got["attack"] == row.attack)]
        if row.attack in ("FGSM", "BIM"):
            hit = hit[hit["eps"] == row.eps]
        assert (hit["with_bug"] == row.accuracy).all() and len(hit) > 0
    assert (got["change"] == got["without"] - got["with_bug"]).all()
    # a subset of the attacks: the same rows of those attacks, none of the others
    some = bugs.bugs_of_table(out, cache=tmp_path / "cache", attacks=("BIM", "DeepFool"),
                              log=lambda m: None)
    assert set(some["attack"]) == {"BIM", "DeepFool"}
    pd.testing.assert_frame_equal(
        some.reset_index(drop=True),
        got[got["attack"].isin(["BIM", "DeepFool"])].reset_index(drop=True))
    # a table the attacks do not reproduce is refused
    table["accuracy"] = table["accuracy"] + 0.5
    table.to_csv(out, index=False)
    with pytest.raises(RuntimeError, match="not the one"):
        bugs.bugs_of_table(out, cache=tmp_path / "cache", eps=(0.1,), log=lambda m: None)


def _exit_code(argv: list[str]) -> int:
    try:
        return bugs.main(argv)
    except SystemExit as exc:  # argparse's errors
        return int(exc.code)


def test_the_cli_refuses_bad_input_in_one_line(tmp_path, capsys):
    paper = tmp_path / "p.csv"
    pd.DataFrame({"protocol": ["paper"]}).to_csv(paper, index=False)
    out = ["--out", str(tmp_path / "o.csv")]
    for argv, says in [([str(tmp_path / "missing.csv"), *out], "missing.csv"),
                       ([str(paper), "--eps", "1.5", *out], "--eps"),
                       ([str(paper), "--attacks", "PGD", *out], "--attacks"),
                       ([str(paper), *out], "no row of the original protocol")]:
        assert _exit_code(argv) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.csv").exists()


def test_iterations_rerun_the_tables_deepfool_and_cw_at_their_own_counts(tmp_path, capsys):
    from lslib.experiments import PROTOCOLS

    out = _table(tmp_path)
    quick = PROTOCOLS["original"].quick()
    counts = (1, quick.deepfool["steps"], quick.cw["steps"])
    got = bugs.iterations_of_table(out, counts, cache=tmp_path / "cache", log=lambda m: None)
    assert len(got) == 2 * 2 * len(counts)  # models x attacks x counts
    table = pd.read_csv(out).set_index(["defence", "attack"])["accuracy"]
    mine = got[got["in_table"]]
    assert len(mine) == 4 and set(mine["attack"]) == {"DeepFool", "CW"}
    for r in mine.itertuples():
        assert r.accuracy == table.loc[(r.defence, r.attack)]
        assert r.iterations == (quick.cw["steps"] if r.attack == "CW"
                                else quick.deepfool["steps"])
    assert _exit_code([str(out), "--iterations", "10,2.5", "--out",
                       str(tmp_path / "c.csv")]) == 2
    assert "whole numbers" in capsys.readouterr().err
    # the command writes the table and its provenance beside it
    written = tmp_path / "w.csv"
    assert bugs.main([str(out), "--cache", str(tmp_path / "cache"), "--iterations", "1",
                      "--out", str(written)]) == 0
    assert len(pd.read_csv(written)) == 4  # 2 models x 2 attacks x 1 count
    meta = json.loads(written.with_name("w.csv.meta.json").read_text())
    assert meta["command"].startswith("python -m lslib.bugs") and meta["iterations"] == [1]
    assert {"git_commit", "source_hash", "device", "wall_seconds"} <= set(meta)


def test_histories_are_the_validation_losses_of_the_cached_models(tmp_path, capsys):
    """Quick training is one epoch, so each model's one validation loss is that of its cached
    weights on the validation images: recomputed here from the weights."""
    from lslib._files import read_cache_entry
    from lslib.experiments import Sweep, run_sweep

    sweep = Sweep(setups=("mnist-linear",), protocols=("original",), methods=("SLS",),
                  alphas=(0.4,), baselines=("PGD-AT",), attacks=("clean",), quick=True,
                  data_source="synthetic", pgd_clean_weight=0.75)
    out, cache = tmp_path / "t.csv", tmp_path / "cache"
    run_sweep(sweep, out, cache=cache, progress=False, device="cpu")
    got = bugs.histories_of_table(out, cache=cache)
    assert sorted(got["defence"]) == ["PGD-AT", "SLS"] and (got["epoch"] == 1).all()
    assert (got["epochs"] == 1).all()  # quick: one epoch, whatever PGD-AT's full count
    for r in got.itertuples():
        state, record = read_cache_entry(cache / f"{r.model_key}.pt")
        config = original.OriginalConfig(**{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in json.loads(record["config"]).items() if k != "start_from"})
        model = config.build()
        model.load_state_dict(state)
        x, y = original._data(config, "test", None, False)
        with torch.no_grad():
            probs = model.eval()(original.from_pixels(x[:config.val_n]))
            want = original.smooth_cross_entropy(
                probs, original._smoother(config)(y[:config.val_n], probs))
        assert r.val_loss == pytest.approx(float(want), rel=1e-12)
        assert (r.pgd_clean_weight == 0.75) if r.defence == "PGD-AT" else pd.isna(
            r.pgd_clean_weight)
    assert _exit_code([str(out), "--histories", "--iterations", "1", "--out",
                       str(tmp_path / "h.csv")]) == 2
    assert "at most one of" in capsys.readouterr().err
    # several tables: the models of all of them, filtered by key across them
    other = tmp_path / "u.csv"
    run_sweep(dataclasses.replace(sweep, methods=(), baselines=("natural",),
                                  pgd_clean_weight=None), other, cache=cache, progress=False,
              device="cpu")
    both = bugs.histories_of_table([out, other], cache=cache)
    assert sorted(both["defence"]) == ["PGD-AT", "SLS", "natural"]
    natural = both.loc[both["defence"] == "natural", "model_key"].tolist()
    assert bugs.histories_of_table([out, other], cache=cache, models=natural)[
        "defence"].tolist() == ["natural"]
    assert _exit_code([str(out), str(other), "--out", str(tmp_path / "h.csv")]) == 2
    assert "one table, but for --histories" in capsys.readouterr().err
    assert bugs.main([str(out), str(other), "--histories", "--cache", str(cache), "--out",
                      str(tmp_path / "h.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "h.csv")) == 3


def test_slices_read_each_cell_on_other_test_images_as_a_run_on_those_images_would(
        tmp_path, capsys):
    out = _table(tmp_path)
    table = pd.read_csv(out)
    cache = tmp_path / "cache"
    spans = ((0, 9), (3, 40))
    got = bugs.slices_of_table(out, spans, cache=cache, log=lambda m: None)
    # every clean/FGSM/BIM/DeepFool cell of the table, on each slice and on its own one
    cells = table[table["attack"] != "CW"]
    assert len(got) == len(cells) * 3 and set(got["attack"]) == set(cells["attack"])
    own = got[got["in_table"]].merge(cells, on=["defence", "attack", "eps"], how="outer",
                                     suffixes=("", "_table"), validate="1:1")
    assert (own["accuracy"] == own["accuracy_table"]).all() and (own["n"] == own["n_table"]).all()
    # the truth: the attack run on just those images gives the slice's accuracy
    from lslib.experiments import SETUPS

    scale = SETUPS["mnist-linear"].eps_scale
    for key, model_rows, state, config in bugs._model_entries(bugs._original_rows(out), cache):
        model = bugs._built(state, config)
        test, protocol = bugs._split_and_protocol(model_rows.iloc[0], None)
        for attack, eps in (("FGSM", 0.3), ("DeepFool", None)):
            for a, b in spans:
                torch.manual_seed(0)
                want = original.attack_accuracy(
                    model, original.from_pixels(test.x[a:b + 1]), test.y[a:b + 1], attack,
                    eps=(eps or 0.0) * scale, alpha=config["alpha"], method=config["method"],
                    temperature=config["temperature"],
                    steps=original.protocol_steps(protocol)).accuracy
                hit = got[(got["model_key"] == key) & (got["attack"] == attack)
                          & (got["first_image"] == a)]
                hit = hit[hit["eps"] == eps] if eps is not None else hit
                assert len(hit) == 1 and hit["n"].iloc[0] == b - a + 1
                assert hit["accuracy"].iloc[0] == pytest.approx(want, abs=1e-12)
    # bad slices: one line and exit 2, nothing written
    o = ["--out", str(tmp_path / "s.csv"), "--cache", str(cache)]
    for argv, says in [([str(out), "--slices", "9-3", *o], "--slices"),
                       ([str(out), "--slices", "0-9", "--iterations", "1", *o], "at most one of"),
                       ([str(out), "--slices", "0-99999", *o], "the test set has")]:
        assert _exit_code(argv) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.csv").exists()
    assert bugs._spans("authors") == bugs.AUTHORS_SLICES
    # the command writes the rows and its provenance, which names the slices and attacks it ran
    assert bugs.main([str(out), "--slices", "0-9", *o]) == 0
    meta = json.loads((tmp_path / "s.csv.meta.json").read_text())
    assert meta["slices"] == ["0-9"] and meta["attacks"] == list(bugs.SLICE_ATTACKS)
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(cells) * 2
    # --models: only those models of the table, the same rows as the whole run gives them
    sls = table.loc[table["defence"] == "SLS", "model_key"].iloc[0]
    assert bugs.main([str(out), "--slices", "0-9", "--models", sls, *o]) == 0
    one = pd.read_csv(tmp_path / "s.csv")
    assert set(one["model_key"]) == {sls}
    assert json.loads((tmp_path / "s.csv.meta.json").read_text())["models"] == [sls]
    whole = got[(got["model_key"] == sls) & (got["first_image"] == 0) & (got["last_image"] == 9)]
    key = ["attack", "eps", "first_image", "last_image"]
    pair = one.merge(got[got["model_key"] == sls], on=key, suffixes=("", "_whole"),
                     validate="1:1")
    assert len(pair) == len(one) == 2 * len(whole) > 0  # on 0-9 and on the table's slice
    assert (pair["accuracy"] - pair["accuracy_whole"]).abs().max() < 1e-12
    for models, says in [("orig-nosuchmodel", "no model orig-nosuchmodel"),
                         (f"{sls},", "an empty model key")]:
        assert _exit_code([str(out), "--slices", "0-9", "--models", models, *o]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


def test_a_killed_run_resumes_from_its_journal_and_gives_the_same_rows(tmp_path):
    out = _table(tmp_path)
    cache = tmp_path / "cache"
    whole = bugs.bugs_of_table(out, cache=cache, attacks=("FGSM", "DeepFool"),
                               log=lambda m: None)
    journal = tmp_path / "b.journal.jsonl"
    seen = []

    def stop_at_the_third(message):
        seen.append(message)
        if len(seen) == 3:  # the third job is done, not yet journalled: it is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bugs.bugs_of_table(out, cache=cache, attacks=("FGSM", "DeepFool"), journal=journal,
                           log=stop_at_the_third)
    assert len(journal.read_text().splitlines()) == 2  # 2 models x 2 attacks, 2 kept
    resumed, ran = [], []
    again = bugs.bugs_of_table(out, cache=cache, attacks=("FGSM", "DeepFool"), journal=journal,
                               log=ran.append, resumed=resumed)
    assert len(resumed) == 2 and len(ran) == 2  # read back 2, attacked the other 2
    assert {"git_commit", "ran_on", "finished"} <= set(resumed[0])
    pd.testing.assert_frame_equal(again, whole)
    # other settings are other jobs: nothing is read back for them
    other = []
    bugs.bugs_of_table(out, cache=cache, attacks=("FGSM",), eps=(0.1,), journal=journal,
                       log=lambda m: None, resumed=other)
    assert other == []
    # a damaged line is set aside, and its job is run again
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(["{not json", *lines]) + "\n")
    resumed = []
    bugs.bugs_of_table(out, cache=cache, attacks=("FGSM", "DeepFool"), journal=journal,
                       log=lambda m: None, resumed=resumed)
    assert len(resumed) == 4 and journal.with_name(journal.name + ".damaged").exists()
    # a model trained again under the same key is another model: its jobs are not read back,
    # they run, and the table's cells refuse it
    from lslib._files import read_cache_entry

    path = next(cache.glob("*.pt"))
    state, record = read_cache_entry(path)
    torch.save({"state_dict": {k: v * 0.5 for k, v in state.items()}, "record": record}, path)
    with pytest.raises(RuntimeError, match="not the one"):
        bugs.bugs_of_table(out, cache=cache, attacks=("FGSM", "DeepFool"), journal=journal,
                           log=lambda m: None)


def test_the_command_keeps_a_journal_while_it_runs_and_refuses_a_busy_output(tmp_path, capsys):
    from lslib.experiments import exclusive_output

    out = _table(tmp_path)
    cache = str(tmp_path / "cache")
    written = tmp_path / "l.csv"
    journal = tmp_path / "l.csv.journal.jsonl"
    argv = [str(out), "--cache", cache, "--attacks", "DeepFool", "--out", str(written)]
    with exclusive_output(written):  # another run holds the output
        assert bugs.main(argv) == 2
    err = capsys.readouterr().err
    assert "being written by another run" in err and len(err.strip().splitlines()) == 1
    assert not written.exists()
    # a journal of an earlier run is read back, and removed once the table holds its rows
    bugs.bugs_of_table(out, cache=cache, attacks=("DeepFool",), journal=journal,
                       log=lambda m: None)
    assert bugs.main(argv) == 0
    meta = json.loads((tmp_path / "l.csv.meta.json").read_text())
    assert meta["resumed_jobs"] == 2 and meta["execution"] == "embedded (one process)"
    per_model = sum("DeepFool" in a for a in original.SWITCH_ATTACKS.values()) + 1  # + "all"
    assert not journal.exists() and len(pd.read_csv(written)) == 2 * per_model
    assert _exit_code([*argv, "--gpus-per-task", "1"]) == 2
    assert "--gpus-per-task needs --workers" in capsys.readouterr().err


def test_ladder_moves_per_model_from_hand_made_ladders():
    def ladder(key, defence, cells):  # (eps, switch, attack, with_bug, change)
        return pd.DataFrame([dict(setup="s", defence=defence, alpha=0.4, T=None, model_key=key,
                                  n=10, eps=e, switch=sw, attack=a, with_bug=w,
                                  without=w + c, change=c) for e, sw, a, w, c in cells])

    nan = float("nan")
    first = pd.concat([ladder("a", "ALS", [(0.1, "x", "FGSM", 0.5, 0.1),
                                           (nan, "y", "DeepFool", 0.2, 0.3)]),
                       ladder("b", "SLS", [(0.1, "x", "FGSM", 0.6, -0.2)])])
    again = pd.concat([ladder("a", "ALS", [(0.1, "x", "FGSM", 0.5, 0.125),
                                           (nan, "y", "DeepFool", 0.2, 0.25)]),
                       ladder("b", "SLS", [(0.1, "x", "FGSM", 0.75, -0.25)])])
    got = bugs.ladder_moves(first, again).set_index("model_key")
    assert list(got.index) == ["a", "b"] and list(got["entries"]) == [2, 1]
    assert list(got["differ"]) == [False, True]  # a's cells with every bug are the same
    assert got.loc["a", "with_bug"] == 0 and got.loc["b", "with_bug"] == pytest.approx(0.15)
    assert got.loc["a", "change"] == pytest.approx(0.05)  # the DeepFool entry (eps NaN)
    assert got.loc["b", "change"] == pytest.approx(0.05)
    with pytest.raises(pd.errors.MergeError):  # an entry twice in the first ladder
        bugs.ladder_moves(pd.concat([first, first]), again)


def test_versions_run_each_named_version_of_the_original_code_on_the_tables_models(
        tmp_path, capsys):
    out = _table(tmp_path)
    cache = tmp_path / "cache"
    table = pd.read_csv(out)
    got = bugs.versions_of_table(out, ["tables", "cw-2019-03", "fixed"],
                                 attacks=("FGSM", "DeepFool", "CW"), cache=cache,
                                 log=lambda m: None)
    # models x (2 FGSM budgets + DeepFool + CW) x versions
    assert len(got) == 2 * 4 * 3 and set(got["version"]) == {"tables", "cw-2019-03", "fixed"}
    cell = table.set_index(["defence", "attack", "eps"])["accuracy"]
    for r in got[got["version"] == "tables"].itertuples():  # the table's own cells
        assert r.accuracy == cell.loc[(r.defence, r.attack, r.eps)]
    v = got.assign(eps=got["eps"].fillna(-1)).pivot(index=["defence", "attack", "eps"],
                                                    columns="version", values="accuracy")
    # the March 2019 version changes CW alone; FGSM and DeepFool are those of the tables
    not_cw = v.index.get_level_values("attack") != "CW"
    assert (v.loc[not_cw, "cw-2019-03"] == v.loc[not_cw, "tables"]).all()
    # ... and its CW never moves a point: it keeps exactly the clean accuracy of its points
    march = got[(got["version"] == "cw-2019-03") & (got["attack"] == "CW")]
    assert len(march) == 2 and (march["accuracy"] == march["clean"]).all()
    # "fixed" is the ladder's "all" rung (every bug off), computed by the ladder's own code
    ladder = bugs.bugs_of_table(out, cache=cache, attacks=("DeepFool",), log=lambda m: None)
    every_off = ladder[ladder["switch"] == "all"].set_index("defence")["without"]
    fixed = got[(got["version"] == "fixed") & (got["attack"] == "DeepFool")]
    assert (fixed.set_index("defence")["accuracy"] == every_off).all()
    assert (fixed["accuracy"].to_numpy() != v.xs("DeepFool", level="attack")["tables"]
            .to_numpy()).any()  # the bugs matter on these models
    assert got["weights"].nunique() == 2
    with pytest.raises(ValueError, match="cw-2019-03"):
        bugs.versions_of_table(out, ["cw-2020"], cache=cache, log=lambda m: None)
    # the command: its rows and provenance; bad names and two modes at once refused
    written = tmp_path / "v.csv"
    assert bugs.main([str(out), "--cache", str(cache), "--attacks", "CW", "--versions",
                      "tables,cw-2019-03", "--out", str(written)]) == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(written), got[got["attack"] == "CW"].query("version != 'fixed'")
        .reset_index(drop=True), check_dtype=False)
    meta = json.loads(written.with_name("v.csv.meta.json").read_text())
    assert meta["versions"] == ["tables", "cw-2019-03"] and meta["attacks"] == ["CW"]
    for argv, says in [(["--versions", "cw-2020"], "--versions"),
                       (["--versions", "tables", "--slices", "authors"], "at most one of")]:
        assert _exit_code([str(out), *argv, "--out", str(tmp_path / "x.csv")]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
