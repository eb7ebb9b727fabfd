"""lslib.authors: the authors' saved models beside their result files. The truth here is built
by hand: per-label accuracies are whole counts of a known slice, and the published accuracies
of the fake result file come from an FGSM written out in the test."""

from __future__ import annotations

import io
import json
import subprocess

import pandas as pd
import pytest
import torch

from lslib import authors, original
from lslib._checks import BadFileError
from lslib.data import TensorData
from lslib.original import Switches

pytestmark = pytest.mark.usefixtures("one_thread")


def _labels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


def _per_label(correct: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    return {c: float(correct[y == c].double().mean()) for c in range(10)}


def test_infer_size_finds_the_slice_whose_per_label_accuracies_are_whole_counts():
    labels = _labels(original.TEST_OFFSET + 300)
    hits = torch.rand(300, generator=torch.Generator().manual_seed(1)) < 0.8
    y300 = labels[original.TEST_OFFSET:]
    y100 = y300[:100]
    assert authors.infer_size(_per_label(hits, y300), labels, sizes=(100, 300)) == 300
    assert authors.infer_size(_per_label(hits[:100], y100), labels, sizes=(100, 300)) == 100
    assert authors.infer_size({c: 0.123456 for c in range(10)}, labels, sizes=(100, 300)) is None
    # a slice longer than the test split is not a candidate
    assert authors.infer_size(_per_label(hits, y300), labels, sizes=(5000,)) is None


def test_find_slices_searches_every_start_and_finds_only_the_slice_used():
    labels = _labels(3000, seed=2)
    rng = torch.Generator().manual_seed(3)
    first, n = 1001, 1000  # one image later than the runner's usual slice, as 19722ec's
    groups = [_per_label(torch.rand(n, generator=rng) < p, labels[first:first + n])
              for p in (0.9, 0.5, 0.1)]
    assert authors.find_slices(groups, labels, sizes=(1000, 2000)) == [(first, n)]
    # a file whose points are not a contiguous run of test images fits nothing
    picked = torch.randperm(3000, generator=rng)[:n]
    hits = torch.rand(n, generator=rng) < 0.7
    assert authors.find_slices([_per_label(hits, labels[picked])], labels, sizes=(1000,)) == []
    # accuracies of exactly 0 and 1 are whole counts of any slice: they do not decide
    every = authors.find_slices([{c: 1.0 for c in range(10)}], labels, sizes=(1000,))
    assert len(every) == 3000 - 1000 + 1


def _fgsm_by_hand(model, x, y, eps):
    """FGSM on the true label of a softmax model, from the definition: one step of eps along
    the sign of the gradient of -log p_y, clipped to the original's [-0.5, 0.5]."""
    out = []
    for xi, yi in zip(x, y, strict=True):
        xi = xi[None].clone().requires_grad_(True)
        loss = -torch.log(model(xi)[0, yi])
        (g,) = torch.autograd.grad(loss, xi)
        out.append((xi + eps * g.sign()).clamp(-0.5, 0.5).detach())
    return torch.cat(out)


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def fake_repo(tmp_path):
    """A repository shaped like the authors': a PGD entry in model_dict/MNIST_Linear.pt and a
    result file whose accuracies were computed in the test, on 200 test points."""
    torch.manual_seed(0)
    n = 200
    pixels = torch.rand(original.TEST_OFFSET + n, 1, 28, 28)
    test = TensorData(pixels, _labels(original.TEST_OFFSET + n))
    model = original.OriginalMLP().double().eval()
    x, y = original.from_pixels(test.x[original.TEST_OFFSET:]), test.y[original.TEST_OFFSET:]
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    rows = []
    for eps in (0.0, 0.2, 0.3):  # 0.3 is no table budget: skipped
        adv = _fgsm_by_hand(model, x, y, eps)
        with torch.no_grad():
            ok = clean & (model(adv).argmax(1) == y)
        acc = {**_per_label(ok, y), 10: float(ok.double().mean())}
        rows += [{"acc": a, "alpha": 0.0, "attack_method": "FGSM", "epsilon": eps, "label": c,
                  "smoothing_method": "adversarial", "temperature": None}
                 for c, a in acc.items()]
    repo = tmp_path / "repo"
    (repo / "model_dict").mkdir(parents=True)
    (repo / "res_dataframes").mkdir()
    torch.save({authors.MODEL_KEY: model.state_dict()}, repo / "model_dict/MNIST_Linear.pt")
    name = "MNIST_Linear_smoothing=adversarial_attacks=FGSM_PGD_adv_training.csv"
    pd.DataFrame(rows).to_csv(repo / "res_dataframes" / name)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "fake")
    return repo, test, n, name


def test_compare_reproduces_a_result_file_made_by_a_hand_written_fgsm(fake_repo):
    repo, test, n, name = fake_repo
    got = authors.compare(repo, "HEAD", test, setups=["mnist-linear"], sizes=(n,),
                          log=lambda _: None)
    assert list(got["attack"]) == ["clean", "FGSM"]
    assert got["eps"].isna().iloc[0] and got["eps"].iloc[1] == pytest.approx(0.2)
    assert (got["n"] == n).all() and (got["test_images"] == "1000-1199").all()
    assert (got["result_file"] == f"res_dataframes/{name}").all()
    assert got["ours"].tolist() == pytest.approx(got["published"].tolist(), abs=1e-12)
    assert (got["points"] == 0).all()
    assert got["published"].iloc[0] > got["published"].iloc[1]  # the attack did something
    assert len(got.attrs["commit"]) == 40


def test_compare_turns_each_named_bug_off_alone_on_the_attacks_it_acts_on(fake_repo,
                                                                          monkeypatch):
    repo, test, n, _ = fake_repo
    # on a PGD-trained model the target is one-hot, so the accuracies alone cannot tell whether
    # the switch reached the attack: record the switches each attack ran with
    seen = []
    real = original.attack_accuracy

    def spy(*args, **kwargs):
        seen.append((args[3], kwargs["switches"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(original, "attack_accuracy", spy)
    got = authors.compare(repo, "HEAD", test, setups=["mnist-linear"], sizes=(n,),
                          switches_off=("smoothed_attack_target", "deepfool_clip_at_end"),
                          log=lambda _: None)
    assert seen == [("clean", Switches()), ("FGSM", Switches()),
                    ("FGSM", Switches(smoothed_attack_target=False))]
    # the file holds clean and FGSM cells: only FGSM is attacked again, with the target's bug
    # off (DeepFool's switch has no cell here), and that row is not the protocol's
    assert got[["attack", "switch_off"]].values.tolist() == [
        ["clean", ""], ["FGSM", ""], ["FGSM", "smoothed_attack_target"]]
    assert got["in_protocol"].tolist() == [True, True, False]
    state = torch.load(repo / "model_dict/MNIST_Linear.pt")[authors.MODEL_KEY]
    model = original.OriginalMLP().double().eval()
    model.load_state_dict(state)
    x, y = original.test_slice(test, n)
    direct = original.attack_accuracy(model, x, y, "FGSM", eps=float(got["eps"].iloc[2]),
                                      switches=Switches(smoothed_attack_target=False))
    assert float(got["ours"].iloc[2]) == direct.accuracy


def _rewrite(repo, name, acc_of_label, message):
    raw = pd.read_csv(repo / "res_dataframes" / name, index_col=0)
    raw["acc"] = [acc_of_label(int(c)) for c in raw["label"]]
    raw.to_csv(repo / "res_dataframes" / name)
    _git(repo, "commit", "-qam", message)


def test_file_slices_reads_the_test_images_of_every_file_version(fake_repo):
    repo, test, n, name = fake_repo
    y = test.y[1000:1000 + n]
    hits = torch.rand(n, generator=torch.Generator().manual_seed(4)) < 0.6
    per = {**_per_label(hits, y), 10: float(hits.double().mean())}
    _rewrite(repo, name, per.__getitem__, "accuracies that only test images 1000-1199 give")
    _rewrite(repo, name, lambda c: 0.123456, "accuracies of no slice")
    got = authors.file_slices(repo, labels=test.y, sizes=(n - 50, n), log=lambda _: None)
    assert got["file"].tolist() == [name] * 3 and (got["attacks"] == "FGSM").all()
    assert got["commit"].str.len().tolist() == [7, 7, 7]
    # the fixture's version (a random model: accuracies near 0 on every budget) fits several
    # slices, so it decides nothing; the second fits one; the third none
    assert got["slices_fitting"].iloc[0] > 1 and got["slices_fitting"].iloc[1:].tolist() == [1, 0]
    assert got["first_image"].isna().tolist() == [True, False, True]
    row = got.iloc[1]
    assert (row["first_image"], row["last_image"], row["points"]) == (1000, 1000 + n - 1, n)


def test_file_slices_reads_the_runners_scratch_files_and_names_the_cells_they_hold(fake_repo):
    repo, test, n, name = fake_repo
    y = test.y[1000:1000 + n]
    hits = torch.rand(n, generator=torch.Generator().manual_seed(5)) < 0.1
    tmp = repo / "res_dataframes" / "tmp"
    tmp.mkdir()
    # an ALS 0.4 CW run whose accuracy over all points rounds to the paper's MNIST Linear cell
    # (Table 5: 0.073) and whose per-label accuracies are whole counts of images 1000-1199
    per = {**_per_label(hits, y), 10: 0.0731}
    pd.DataFrame([{"acc": a, "alpha": 0.4, "attack_method": "CW", "epsilon": 1, "label": c,
                   "smoothing_method": "adversarial", "temperature": None}
                  for c, a in per.items()]).to_csv(tmp / "pid=1.csv")
    # a BLS run at T = 0.01 on the same images, at no published accuracy
    per = {**_per_label(~hits, y), 10: 0.5}
    pd.DataFrame([{"acc": a, "alpha": 0.1, "attack_method": "CW", "epsilon": 1, "label": c,
                   "smoothing_method": "boltzmann", "temperature": 0.01}
                  for c, a in per.items()]).to_csv(tmp / "pid=2.csv")
    # a copy of the named file (the same blob: that file's row) and one of no slice (left out)
    (tmp / "pid=3.csv").write_bytes((repo / "res_dataframes" / name).read_bytes())
    raw = pd.read_csv(repo / "res_dataframes" / name, index_col=0).assign(acc=0.123456)
    raw.to_csv(tmp / "pid=4.csv")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "the runner's scratch files")
    got = authors.file_slices(repo, labels=test.y, sizes=(n - 50, n), log=lambda _: None)
    assert got["file"].tolist() == [name, "tmp/pid=1.csv", "tmp/pid=2.csv"]
    assert got["smoothing"].tolist() == ["", "ALS 0.4", "BLS 0.1 T=0.01"]
    assert got["table_cells"].tolist() == ["", "MNIST Linear ALS 0.4 CW", ""]
    # the named FGSM file has budget 0: its model's clean accuracy on those images; CW has none
    state = torch.load(repo / "model_dict/MNIST_Linear.pt")[authors.MODEL_KEY]
    model = original.OriginalMLP().double().eval()
    model.load_state_dict(state)
    x = original.from_pixels(test.x[original.TEST_OFFSET:])
    with torch.no_grad():
        clean = float((model(x).argmax(1) == test.y[original.TEST_OFFSET:]).double().mean())
    assert got["clean"].tolist() == [f"alpha 0 {clean:.3f}", "", ""]
    assert got["first_image"].tolist()[1:] == [1000, 1000]
    assert got["last_image"].tolist()[1:] == [1000 + n - 1] * 2
    assert got["candidates"].tolist()[1:] == [f"1000-{1000 + n - 1}"] * 2
    named = authors.file_slices(repo, labels=test.y, sizes=(n - 50, n), scratch=False,
                                log=lambda _: None)
    assert named["file"].tolist() == [name]


def test_a_result_file_of_other_test_images_is_refused(fake_repo):
    repo, test, n, _ = fake_repo
    with pytest.raises(BadFileError, match="fit no test slice"):
        authors.compare(repo, "HEAD", test, setups=["mnist-linear"], sizes=(n - 50,),
                        log=lambda _: None)


def test_a_model_file_without_the_pgd_entry_is_refused_with_its_name():
    blob = io.BytesIO()
    torch.save({"standard_0.1_None": {}}, blob)
    with pytest.raises(BadFileError, match="MNIST_Linear.pt: has no entry"):
        authors.load_model(blob.getvalue(), "mlp", "MNIST_Linear.pt")
    with pytest.raises(BadFileError, match="not a readable torch file"):
        authors.load_model(b"not torch", "mlp", "MNIST_Linear.pt")


@pytest.mark.parametrize("argv, expected", [
    (["/no/such/folder", "--out", "x.csv"], "no such folder"),
    (["{tmp}", "--out", "x.csv"], "failed"),
    (["{tmp}", "--iterations", "0", "--out", "x.csv"], ">= 1"),
    (["{tmp}", "--slices", "--out", "x.csv"], "failed"),
    (["{tmp}", "--runner-slices", "--out", "x.csv"], "failed"),
    (["{tmp}", "--runner-slices", "--slices", "--out", "x.csv"], "not allowed with"),
    (["{tmp}", "--compiled", "--out", "x.csv"], "failed"),
    (["{tmp}", "--slices", "--compiled", "--out", "x.csv"], "--compiled: not allowed with"),
    (["{tmp}", "--histories", "--out", "x.csv"], "failed"),
    (["{tmp}", "--switches-off", "deepfool_clip", "--out", "x.csv"],
     "unknown 'deepfool_clip': choose from"),
])
def test_cli_user_errors_are_one_line_and_status_2(tmp_path, capsys, argv, expected):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    argv[argv.index("--out") + 1] = str(tmp_path / "x.csv")
    try:
        code = authors.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err, err


_RUNNER = '''
if dataset == "MNIST":
    test_set = load("mnist")
    val_data = []
    test = []
    for i, x in enumerate(test_set):
        if i < 1000:
            val_data.append(x)
        elif {cond}:
            test.append(x)
elif dataset == "CIFAR10":
    for i, x in enumerate(test_set):
        if i >= 5000:
            test.append(x)
'''


@pytest.mark.parametrize("cond, expected", [
    ("i > 1000 and i <= 2000", range(1001, 2001)),
    ("i >= 1000 and i < 3000", range(1000, 3000)),
    ("not i < 9990", range(9990, 10000)),
    ("i == 4000 or 7000 < i < 7003 or i == 5", [4000, 7001, 7002]),  # 5 went to validation
])
def test_runner_test_images_runs_the_mnist_branch_chain_at_every_index(cond, expected):
    source = _RUNNER.format(cond=cond)
    assert authors.runner_test_images(source) == list(expected)
    assert authors.runner_test_images(source, dataset="CIFAR10") == list(range(5000, 10000))


def test_runner_test_images_reads_a_runner_of_one_data_set_and_refuses_what_it_cannot_run():
    one = "val, test = [], []\nfor i, x in enumerate(s):\n    if i < 1000:\n        val.append(x)"
    assert authors.runner_test_images(one + "\n    else:\n        test.append(x)\n", total=1200) \
        == list(range(1000, 1200))
    with pytest.raises(ValueError, match=r"does not evaluate: i % 2"):
        authors.runner_test_images(_RUNNER.format(cond="i % 2 == 0"))
    with pytest.raises(ValueError, match="no `if dataset == 'SVHN':` branch"):
        authors.runner_test_images(_RUNNER.format(cond="True"), dataset="SVHN")
    with pytest.raises(SyntaxError):
        authors.runner_test_images(_RUNNER.format(cond="i >"))


def test_runner_slices_reads_every_commit_of_the_runner_with_its_dates(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for cond in ("i >= 1000", "i > 1000 and i <= 2000", "i >"):  # the last does not parse
        (repo / authors.RUNNER).write_text(_RUNNER.format(cond=cond))
        _git(repo, "add", ".")
        _git(repo, "commit", "-qm", cond)
    got = authors.runner_slices(repo, log=lambda _: None)
    assert got["first_image"].tolist()[:2] == [1000, 1001]
    assert got["last_image"].tolist()[:2] == [9999, 2000]
    assert got["points"].tolist()[:2] == [9000, 1000]
    assert got["contiguous"].tolist()[:2] == [True, True]
    assert got["first_image"].isna().tolist() == [False, False, True]
    assert got["note"].iloc[2].startswith("does not parse as Python")
    assert (got["commit"].str.len() == 7).all() and got["date"].str.match(r"\d{4}-\d\d-\d\d").all()


def test_cli_whole_history_mode_writes_what_its_function_reads(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for cond in ("i >= 1000", "i > 1000 and i <= 2000"):
        (repo / authors.RUNNER).write_text(_RUNNER.format(cond=cond))
        _git(repo, "add", ".")
        _git(repo, "commit", "-qm", cond)
    out = tmp_path / "slices.csv"
    assert authors.main([str(repo), "--runner-slices", "--out", str(out)]) == 0
    got = pd.read_csv(out)
    want = authors.runner_slices(repo, log=lambda _: None)
    assert got[["first_image", "last_image", "points"]].values.tolist() == \
        want[["first_image", "last_image", "points"]].values.tolist() == \
        [[1000, 9999, 9000], [1001, 2000, 1000]]
    meta = json.loads((tmp_path / "slices.csv.meta.json").read_text())
    assert "--runner-slices" in json.dumps(meta)


def test_checkpoint_histories_reads_every_saved_history_and_names_what_the_clone_lacks(
        tmp_path):
    repo = tmp_path / "repo"
    (repo / "model_dict").mkdir(parents=True)
    _git(repo, "init", "-q")
    state = original.OriginalMLP().double().state_dict()
    first = {"adv": state, "loss_adv": [0.6, 0.5, 0.45], "acc_tr_adv": 0.97}
    torch.save(first, repo / "model_dict/MNIST_Linear.pt")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    torch.save({**first, "loss_adv": [0.7], "std": state, "loss_std": [1.0, 0.9],
                "acc_tr_std": 0.5}, repo / "model_dict/MNIST_Linear.pt")
    torch.save({"x": state}, repo / "model_dict/MNIST_LeNet.pt")  # no history: no row
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "two")
    (repo / "model_dict/MNIST_LeNet.pt").unlink()  # deleted: no row either
    torch.save({"loss_z": [0.1]}, repo / "model_dict/SVHN_LeNet.pt")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "three")
    blob = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD:model_dict/SVHN_LeNet.pt"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # a copy without that file
    got = authors.checkpoint_histories(repo, log=lambda _: None)
    one, two, three = (got[got["commit"] == c] for c in got["commit"].unique())
    assert one["loss"].tolist() == [0.6, 0.5, 0.45] and one["entry"].tolist() == [1, 2, 3]
    assert set(one["acc_tr"]) == {0.97} and set(one["key"]) == {"adv"}
    assert two.groupby("key")["loss"].apply(list).to_dict() == {"adv": [0.7], "std": [1.0, 0.9]}
    assert len(three) == 1 and three["note"].iloc[0] == "not in this clone (git: bad object)"
    assert set(got["file"]) == {"model_dict/MNIST_Linear.pt", "model_dict/SVHN_LeNet.pt"}


def test_history_distance_sets_each_of_our_histories_beside_theirs_entry_by_entry():
    theirs = pd.DataFrame({"entry": [3, 1, 2, 4], "loss": [0.3, 0.6, 0.5, 0.2]})
    ours = pd.DataFrame({"model_key": ["a"] * 3 + ["b"] * 3,
                         "pgd_clean_weight": [0.5] * 3 + [0.75] * 3,
                         "epoch": [21, 22, 23, 23, 22, 21],
                         "val_loss": [0.7, 0.4, 0.35, 0.3, 0.52, 0.58]})
    got = authors.history_distance(theirs, ours).set_index("model_key")
    assert list(got.index) == ["a", "b"] and (got["entries"] == 3).all()
    # a: |0.7-0.6|, |0.4-0.5|, |0.35-0.3|; b (sorted by epoch): 0.58, 0.52, 0.3
    assert got.loc["a", "mean_abs_diff"] == pytest.approx((0.1 + 0.1 + 0.05) / 3)
    assert got.loc["b", "mean_abs_diff"] == pytest.approx((0.02 + 0.02 + 0.0) / 3)
    assert got["closest"].to_dict() == {"a": 0, "b": 3}
    assert got.loc["b", "pgd_clean_weight"] == 0.75
    # entries read as text (a CSV read with keep_default_na=False) sort as numbers
    many = pd.DataFrame({"entry": [str(i) for i in range(1, 12)], "loss": [str(0.1 * i)
                                                                           for i in range(11)]})
    ours = pd.DataFrame({"model_key": "c", "epoch": range(21, 32),
                         "val_loss": [0.1 * i for i in range(11)]})
    assert authors.history_distance(many, ours)["mean_abs_diff"].iloc[0] == pytest.approx(0)


def test_clean_beside_table6_pairs_each_models_clean_accuracy_with_its_published_cell():
    from lslib.paper_tables import paper_table

    files = pd.DataFrame([
        {"file": "MNIST_Linear_smoothing=standard_attacks=FGSM.csv", "first_image": 1001,
         "clean": "alpha 0 0.965"},
        {"file": "MNIST_Linear_smoothing=standard_attacks=FGSM_adv_training.csv",
         "first_image": 1001, "clean": "alpha 0 0.863"},  # not the tables' PGD-AT: left out
        {"file": "tmp/pid=1.csv", "first_image": 1001, "clean": "SLS 0.1 0.969; SLS 0.5 0.96"},
        {"file": "tmp/pid=2.csv", "first_image": 1000, "clean": "ALS 0.4 0.97"},  # other slice
        {"file": "MNIST_LeNet_smoothing=standard_attacks=CW.csv", "first_image": 1001,
         "clean": ""}])
    got = authors.clean_beside_table6(files, 1001)
    t6 = paper_table().query("attack == 'clean'")

    def cell(setup, defence, alpha=None):
        rows = t6[(t6["setup"] == setup) & (t6["defence"] == defence)]
        return float((rows[rows["alpha"].isna()] if alpha is None
                      else rows[rows["alpha"] == alpha])["accuracy"].iloc[0])

    assert got["file"].tolist() == [files["file"][0], "tmp/pid=1.csv", "tmp/pid=1.csv"]
    assert got["setup"].tolist()[0] == "mnist-linear" and got["setup"].isna().tolist()[1:] == [
        True, True]
    assert got["defence"].tolist() == ["natural", "SLS", "SLS"]  # SLS 0.5 has no cell
    assert got["accuracy"].tolist() == [0.965, 0.969, 0.969]
    assert got["cell_setup"].tolist() == ["mnist-linear", "mnist-linear", "mnist-lenet"]
    assert got["published"].tolist() == [cell("mnist-linear", "natural"),
                                          cell("mnist-linear", "SLS", 0.1),
                                          cell("mnist-lenet", "SLS", 0.1)]
