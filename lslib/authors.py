"""The authors' own saved models, attacked by the original protocol.

The authors' repository (MGoibert/Label_smoothing) holds, at commit dc3c764, the PGD-trained
MNIST MLP and LeNet behind the PGD-AT cells of Tables 2-5 (``model_dict/MNIST_Linear.pt`` and
``model_dict/MNIST_LeNet.pt``, key ``adversarial_0.0_None_PGD_adv_training``) and the result files
those cells were copied from (``res_dataframes/MNIST_*_smoothing=adversarial_attacks=*_PGD_adv_
training.csv``: one accuracy per true label and one over all points). :func:`compare` attacks
their models with :mod:`lslib.original`'s attacks, on the test images each file used, and sets
our accuracy beside theirs. The models are held fixed, so this checks the attacks alone against
the published numbers: where they agree, a gap between the cells of the models we train and the
paper's belongs to the training, not to the attacks. ``--switches-off`` attacks them again with
one bug turned off at a time (DeepFool's final clip, ``deepfool_clip_at_end``: what their own
DeepFool cells rest on).

Which test images a file used is read from the file itself: every per-label accuracy is a count
of points divided by the number of test points of that label, so only the right slice makes all
of them whole counts (:func:`infer_size`). The FGSM and BIM files of dc3c764 were computed on test
images 1000-9999 (the runner of spring 2019), and so were its DeepFool files; its CW files on
1000-1999. Which test images the runner itself attacked at each commit is read from its code
(:func:`runner_slices`: the if/elif chain of the MNIST branch's loop that fills the list of test
points is evaluated at every index), with the commit's dates.

Two more records of how their models were made are read by :func:`checkpoint_histories` (the
validation-loss history each checkpoint saved beside its weights, ``--histories``) and
:func:`compiled_modules` (the compiled modules committed beside the source, which record the
code as it last ran, ``--compiled``; :mod:`lslib.bytecode`).

Nothing of the repository is copied into this project: the command reads the files from a clone
of it, at the commit given, and writes only its own measurements::

    git clone https://github.com/MGoibert/Label_smoothing /tmp/Label_smoothing
    python -m lslib.authors /tmp/Label_smoothing --commit dc3c764 --iterations 10,50 \\
        --switches-off deepfool_clip_at_end --out results/mnist-authors-models.csv
    python -m lslib.authors /tmp/Label_smoothing --runner-slices \\
        --out results/mnist-authors-runner-slices.csv
    python -m lslib.authors /tmp/Label_smoothing --histories \\
        --out results/mnist-authors-histories.csv
    python -m lslib.authors /tmp/Label_smoothing --compiled \\
        --out results/mnist-authors-compiled.csv
"""

from __future__ import annotations

import argparse
import ast
import io
import math
import re
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lslib.experiments import _METHOD_OF

__all__ = ["MODEL_KEY", "SETUPS", "checkpoint_histories", "clean_beside_table6", "compare",
           "compiled_modules", "history_distance",
           "file_slices", "find_slices",
           "infer_size", "load_model", "read_result_file", "runner_slices",
           "runner_test_images"]

#: The checkpoint entry of the PGD-trained model in the authors' ``model_dict/*.pt``.
MODEL_KEY = "adversarial_0.0_None_PGD_adv_training"
#: Our set-up -> (the authors' file prefix, our model name in ``lslib.original.MODELS``).
SETUPS = {"mnist-linear": ("MNIST_Linear", "mlp"), "mnist-lenet": ("MNIST_LeNet", "lenet-mnist")}
#: The table budgets compared (FGSM and BIM); their files hold a grid that contains them.
BUDGETS = (0.05, 0.2, 0.4)
#: The test slices the authors' runner used, as numbers of points after the validation slice.
SIZES = (1000, 9000)
#: The slice lengths :func:`find_slices` tries, at every start: the runner's (after the
#: 1000 validation images: 1000, 2000 at HEAD, 9000) and the whole test split.
SCAN_SIZES = (1000, 2000, 9000, 10000)
GIT_TIMEOUT = 120
#: The authors' runner, whose MNIST branch picks the test images it attacks.
RUNNER = "run_label_smoothing.py"
_REMEDY = "give a clone of MGoibert/Label_smoothing and a commit that has the file (e.g. dc3c764)"


def _git(repo: str | Path, *args: str) -> bytes:
    """``git -C repo args``, bounded; a failure names the repository and what was asked."""
    from lslib._checks import BadFileError

    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              timeout=GIT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BadFileError(repo, f"`git {' '.join(args)}` took over {GIT_TIMEOUT} s",
                           _REMEDY) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise BadFileError(repo, f"`git {' '.join(args)}` failed "
                           f"({why[-1] if why else 'no reason'})", _REMEDY)
    return done.stdout


def load_model(blob: bytes, model_name: str, where: str) -> nn.Module:
    """The authors' PGD-trained model (entry :data:`MODEL_KEY` of their ``model_dict`` file, read
    as ``blob``) in our float64 softmax model ``model_name``, in eval mode. ``where`` names the
    file in errors."""
    from lslib import original
    from lslib._checks import BadFileError

    try:
        saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise BadFileError(where, f"not a readable torch file ({type(exc).__name__})",
                           _REMEDY) from exc
    if not isinstance(saved, dict) or MODEL_KEY not in saved:
        raise BadFileError(where, f"has no entry {MODEL_KEY!r}", _REMEDY)
    model = original.MODELS[model_name]().double()
    try:
        model.load_state_dict(saved[MODEL_KEY])
    except RuntimeError as exc:
        raise BadFileError(where, f"its {MODEL_KEY!r} does not fit our {model_name} "
                           f"({str(exc).splitlines()[0]})", _REMEDY) from exc
    return model.eval()


def read_result_file(text: str, where: str) -> pd.DataFrame:
    """The authors' result CSV as one row per attack and budget: ``attack``, ``eps``,
    ``accuracy`` (over all points: the row whose label is one past the last class) and
    ``per_label`` (a dict class -> accuracy)."""
    from lslib._checks import BadFileError

    try:
        raw = pd.read_csv(io.StringIO(text))
        raw = raw[["acc", "attack_method", "epsilon", "label"]]
    except Exception as exc:  # noqa: BLE001
        raise BadFileError(where, f"not one of the authors' result files ({exc})",
                           _REMEDY) from exc
    overall = int(raw["label"].max())
    out = []
    for (attack, eps), group in raw.groupby(["attack_method", "epsilon"], sort=False):
        by_label = dict(zip(group["label"].astype(int), group["acc"].astype(float),
                            strict=True))
        if overall not in by_label:
            raise BadFileError(where, f"{attack} at {eps}: no accuracy over all points", _REMEDY)
        acc = by_label.pop(overall)
        out.append({"attack": attack, "eps": float(eps), "accuracy": acc, "per_label": by_label})
    return pd.DataFrame(out)


def infer_size(per_label: dict[int, float], labels: torch.Tensor,
               sizes: Sequence[int] = SIZES) -> int | None:
    """The number of test points (after the validation slice, as
    :func:`lslib.original.test_slice` takes them) for which every per-label accuracy is a whole
    count of that label's points; None when no size of ``sizes`` fits. ``labels``: the test
    split's labels in order."""
    from lslib import original

    for n in sizes:
        if len(labels) < original.TEST_OFFSET + n:
            continue
        counts = torch.bincount(labels[original.TEST_OFFSET:original.TEST_OFFSET + n],
                                minlength=10)
        fits = all(int(counts[c]) > 0
                   and abs(acc * int(counts[c]) - round(acc * int(counts[c]))) < 1e-6
                   for c, acc in per_label.items())
        if fits:
            return n
    return None


def find_slices(groups: Sequence[dict[int, float]], labels: torch.Tensor,
                sizes: Sequence[int] = SCAN_SIZES) -> list[tuple[int, int]]:
    """Every contiguous run of test images ``(first, n)``, n in ``sizes`` and any first image,
    for which every per-label accuracy of every group of one result file is a whole count of
    that label's points (a group: one attack, budget and model of the file, as
    ``{label: accuracy}``). ``labels``: the test split's labels in order. Exhaustive, so a
    file computed on other images (shuffled, or of another length) gives ``[]``."""
    onehot = torch.nn.functional.one_hot(labels.long(), 10).to(torch.float64)
    cum = torch.cat([torch.zeros(1, 10, dtype=torch.float64), onehot.cumsum(0)])
    found = []
    for n in sizes:
        if n > len(labels):
            continue
        counts = cum[n:] - cum[:-n]  # (first, class): that class's points in [first, first + n)
        fits = torch.ones(len(counts), dtype=torch.bool)
        for group in groups:
            for c, acc in group.items():
                hits = acc * counts[:, c]
                fits &= (counts[:, c] > 0) & ((hits - hits.round()).abs() < 1e-6)
        found += [(int(first), n) for first in fits.nonzero().flatten()]
    return found


#: :func:`file_slices` lists the slices that fit a file when there are at most this many.
MAX_CANDIDATES = 5
#: The authors' smoothing method names -> ours (the inverse of the sweep's).
METHOD_NAMES = {theirs: ours for ours, theirs in _METHOD_OF.items()}
#: Where the authors' runner saves each process's results before the run's file
#: (``pid=N.csv``): these files name no data set.
SCRATCH = "res_dataframes/tmp/"


def _model_name(r: pd.Series) -> str:
    """One model of the authors' result files in our names ("ALS 0.4", "BLS 0.1 T=0.01");
    "alpha 0" for a model without smoothing (natural or adversarially trained: the file's
    name says which)."""
    if float(r["alpha"]) == 0:
        return "alpha 0"
    return (f"{METHOD_NAMES.get(str(r['smoothing_method']), r['smoothing_method'])} "
            f"{float(r['alpha']):g}"
            + (f" T={float(r['temperature']):g}" if pd.notna(r.get("temperature")) else ""))


def _smoothed_models(raw: pd.DataFrame) -> str:
    """The smoothed models of one of the authors' result files, in our names ("ALS 0.4",
    "BLS 0.1 T=0.01"), comma-separated; "" when every model of the file has alpha 0."""
    if "alpha" not in raw or "smoothing_method" not in raw:
        return ""
    cols = [c for c in ("smoothing_method", "alpha", "temperature") if c in raw]
    models = raw.loc[raw["alpha"].astype(float) > 0, cols].drop_duplicates()
    return ", ".join(_model_name(r) for _, r in models.iterrows())


def _clean_accuracies(raw: pd.DataFrame, overall: int) -> str:
    """Each model's accuracy over all points at budget 0 of an FGSM or BIM file: its clean
    accuracy on the file's test images (Table 6's cells are these, as the PGD-AT files show),
    "; "-separated as "<model> <accuracy>" (:func:`_model_name`, three digits); "" for a file
    without budget 0."""
    need = {"alpha", "smoothing_method", "attack_method", "epsilon", "label", "acc"}
    if not need <= set(raw):
        return ""
    rows = raw[raw["attack_method"].isin(["FGSM", "BIM"])
               & (raw["epsilon"].astype(float) == 0) & (raw["label"].astype(int) == overall)]
    return "; ".join(dict.fromkeys(f"{_model_name(r)} {float(r['acc']):.3f}"
                                   for _, r in rows.iterrows()))


def _table_cells(raw: pd.DataFrame, overall: int) -> str:
    """The published MNIST cells (Tables 2-5) that one of the authors' result files holds
    digit for digit: a smoothed model's accuracy over all points that rounds to the paper's
    three digits at the same method, alpha, attack and (FGSM, BIM) budget; "; "-separated,
    e.g. "MNIST Linear ALS 0.4 CW". Only a hint where it stands alone (three digits can agree
    by chance); the chapter weighs it."""
    from lslib.paper_tables import paper_table

    if "alpha" not in raw or "smoothing_method" not in raw:
        return ""
    paper = paper_table()
    paper = paper[paper["setup"].isin(SETUPS) & paper["attack"].ne("clean")]
    rows = raw[(raw["label"].astype(int) == overall) & (raw["alpha"].astype(float) > 0)]
    found = []
    for _, r in rows.iterrows():
        method = METHOD_NAMES.get(str(r["smoothing_method"]))
        cells = paper[(paper["defence"] == method)
                      & (paper["alpha"] - float(r["alpha"])).abs().le(1e-9)
                      & (paper["attack"] == r["attack_method"])]
        if r["attack_method"] in ("FGSM", "BIM"):
            cells = cells[(cells["eps"] - float(r["epsilon"])).abs().le(1e-9)]
        for c in cells.itertuples():
            if abs(round(float(r["acc"]), 3) - c.accuracy) < 1e-9:
                found.append(f"{c.table_name} {c.defence} {c.alpha:g} {c.attack}"
                             + (f" {c.eps:g}" if c.attack in ("FGSM", "BIM") else ""))
    return "; ".join(dict.fromkeys(found))


def clean_beside_table6(files: pd.DataFrame, first_image: int) -> pd.DataFrame:
    """The clean accuracies of :func:`file_slices`'s ``clean`` column, for the files whose
    slice starts at test image ``first_image``, beside the published Table 6 cells of the same
    models. One row per model and published cell it could be (a scratch file names no data
    set: the cell of each MNIST set-up): file, setup (the file's, None for a scratch file),
    defence, alpha, accuracy, cell_setup, published. A model with no cell is left out, and so
    is the alpha-0 model of an adversarial-training file (not the tables' PGD-AT)."""
    from lslib.paper_tables import paper_table

    t6 = paper_table().query("attack == 'clean'")
    t6 = t6[t6["setup"].isin(SETUPS)]
    rows = []
    mine = files[(files["first_image"] == first_image) & files["clean"].fillna("").ne("")]
    for r in mine.itertuples():
        named = next((s for s, (prefix, _) in SETUPS.items() if prefix in r.file), None)
        for part in r.clean.split("; "):
            model, acc = part.rsplit(" ", 1)
            if model == "alpha 0" and "adv_training" in r.file:
                continue
            defence, alpha = (("natural", math.nan) if model == "alpha 0"
                              else (model.split()[0], float(model.split()[1])))
            cells = t6[(t6["defence"] == defence)
                       & ((t6["alpha"] - alpha).abs().le(1e-9) if alpha == alpha
                          else t6["alpha"].isna())]
            if named:
                cells = cells[cells["setup"] == named]
            rows += [{"file": r.file, "setup": named, "defence": defence, "alpha": alpha,
                      "accuracy": float(acc), "cell_setup": c.setup, "published": c.accuracy}
                     for c in cells.itertuples()]
    return pd.DataFrame(rows, columns=["file", "setup", "defence", "alpha", "accuracy",
                                       "cell_setup", "published"])


def file_slices(repo: str | Path, *, labels: torch.Tensor, prefix: str = "res_dataframes/MNIST_",
                sizes: Sequence[int] = SCAN_SIZES, scratch: bool = True,
                log: Any = print) -> pd.DataFrame:
    """Which test images each of the authors' MNIST result files was computed on
    (:func:`find_slices`), for every version of every file in the history of the clone
    ``repo`` (all branches), oldest first. One row per file version: the commit that first
    holds it and its date, the path, the blob, the attacks in the file, the number of
    slices that fit and, where exactly one does, its first and last test image; every slice
    that fits as ``first-last`` where at most :data:`MAX_CANDIDATES` do; then its
    smoothed models (``smoothing``, our names; empty when every model has alpha 0), each
    model's clean accuracy on those images where the file has budget 0 (``clean``) and the
    published MNIST cells it holds digit for digit (``table_cells``).

    ``scratch``: also the runner's per-process files (:data:`SCRATCH`, ``pid=N.csv``), whose
    name gives no data set; those that fit no slice of the MNIST test split are left out
    (they are another data set's, or were computed on other images), and a scratch file
    whose content equals a named file's (the same blob) is that file's row."""
    log_lines = _git(repo, "log", "--all", "--reverse", "--format=%H %cs", "--",
                     "res_dataframes").decode().split()
    seen, rows = set(), []
    for commit, date in zip(log_lines[::2], log_lines[1::2], strict=True):
        tree = _git(repo, "ls-tree", "-r", commit, "--", "res_dataframes").decode()
        entries = []  # (path, blob)
        for line in tree.splitlines():
            meta, path = line.split("\t", 1)
            entries.append((path, meta.split()[2]))
        # the named files first, so that a scratch copy of one is not a row of its own
        entries.sort(key=lambda e: e[0].startswith(SCRATCH))
        for path, blob in entries:
            named = path.startswith(prefix)
            if (not named and not (scratch and path.startswith(SCRATCH))
                    or not path.endswith(".csv") or blob in seen):
                continue
            seen.add(blob)
            raw = pd.read_csv(io.StringIO(_git(repo, "show", blob).decode()))
            overall = int(raw["label"].max())
            keys = [k for k in ("attack_method", "epsilon", "alpha", "smoothing_method",
                                "temperature") if k in raw]
            groups = [dict(zip(g["label"].astype(int), g["acc"].astype(float), strict=True))
                      for _, g in raw.groupby(keys, dropna=False)]
            groups = [{c: a for c, a in g.items() if c != overall} for g in groups]
            fits = find_slices(groups, labels, sizes)
            if not named and not fits:
                continue
            one = fits[0] if len(fits) == 1 else None
            rows.append({"commit": commit[:7], "date": date, "file": path[len("res_dataframes/"):],
                         "blob": blob[:7],
                         "attacks": "+".join(sorted(raw["attack_method"].astype(str).unique())),
                         "slices_fitting": len(fits),
                         "first_image": one[0] if one else None,
                         "last_image": one[0] + one[1] - 1 if one else None,
                         "points": one[1] if one else None,
                         "candidates": "; ".join(f"{a}-{a + k - 1}" for a, k in fits)
                         if len(fits) <= MAX_CANDIDATES else "",
                         "smoothing": _smoothed_models(raw),
                         "clean": _clean_accuracies(raw, overall),
                         "table_cells": _table_cells(raw, overall)})
            log(f"{commit[:7]} {path}: {len(fits)} slice(s) fit"
                + (f", test images {one[0]}-{one[0] + one[1] - 1}" if one else ""))
    out = pd.DataFrame(rows)
    for column in ("first_image", "last_image", "points"):
        out[column] = out[column].astype("Int64")
    return out


_COMPARE = {ast.Lt: int.__lt__, ast.LtE: int.__le__, ast.Gt: int.__gt__, ast.GtE: int.__ge__,
            ast.Eq: int.__eq__, ast.NotEq: int.__ne__}


def _truth(node: ast.expr, var: str, i: int) -> bool:
    """The condition ``node`` (comparisons of the loop index ``var`` with whole numbers, joined
    by ``and``, ``or`` and ``not``) at ``var == i``; any other construct is a ValueError."""
    if isinstance(node, ast.BoolOp):
        values = (_truth(v, var, i) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _truth(node.operand, var, i)
    if isinstance(node, ast.Compare):
        terms = [_number(t, var, i) for t in (node.left, *node.comparators)]
        return all(_COMPARE[type(op)](a, b)
                   for op, a, b in zip(node.ops, terms, terms[1:], strict=False))
    raise ValueError(f"a condition this reader does not evaluate: {ast.unparse(node)}")


def _number(node: ast.expr, var: str, i: int) -> int:
    if isinstance(node, ast.Name) and node.id == var:
        return i
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    raise ValueError(f"a term this reader does not evaluate: {ast.unparse(node)}")


def _appends(body: list[ast.stmt], var: str, i: int, target: str) -> bool:
    """Whether running ``body`` at ``var == i`` reaches ``target.append(...)``."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            if _appends(stmt.body if _truth(stmt.test, var, i) else stmt.orelse, var, i, target):
                return True
        elif (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
              and isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr == "append"
              and isinstance(stmt.value.func.value, ast.Name)
              and stmt.value.func.value.id == target):
            return True
    return False


def _is_dataset_test(node: ast.AST, dataset: str | None = None) -> bool:
    """Whether ``node`` is ``dataset == "<dataset>"`` (any data set when ``dataset`` is None)."""
    return (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
            and node.left.id == "dataset" and isinstance(node.ops[0], ast.Eq)
            and isinstance(node.comparators[0], ast.Constant)
            and (dataset is None or node.comparators[0].value == dataset))


def runner_test_images(source: str, *, dataset: str = "MNIST", total: int = 10000,
                       target: str = "test") -> list[int]:
    """Which of the ``total`` test images the runner's source attacks for ``dataset``: the
    indices ``i`` of its loop ``for i, x in enumerate(...)`` inside ``if dataset == "MNIST":``
    (or anywhere, in a runner of one data set that has no such branch) for which the loop's
    if/elif/else chain reaches ``test.append(x)``. The chain is evaluated at every index, not
    pattern-matched, so ``i > 1000 and i <= 2000`` gives 1001-2000. A source without that
    branch or loop, or with a condition other than comparisons of the index with whole
    numbers, is a ValueError (a source that does not parse, a SyntaxError)."""
    tree = ast.parse(source)
    branches = [n.body for n in ast.walk(tree)
                if isinstance(n, ast.If) and _is_dataset_test(n.test, dataset)]
    if not branches:
        if any(_is_dataset_test(n) for n in ast.walk(tree)):
            raise ValueError(f"no `if dataset == {dataset!r}:` branch")
        branches = [tree.body]  # a runner of one data set
    for loop in (n for stmt in branches[0] for n in ast.walk(stmt)):
        if (isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call)
                and isinstance(loop.iter.func, ast.Name) and loop.iter.func.id == "enumerate"
                and isinstance(loop.target, ast.Tuple)
                and isinstance(loop.target.elts[0], ast.Name)):
            var = loop.target.elts[0].id
            return [i for i in range(total) if _appends(loop.body, var, i, target)]
    raise ValueError(f"the {dataset} branch has no loop over enumerate(...)")


def runner_slices(repo: str | Path, *, path: str = RUNNER, total: int = 10000,
                  log: Any = print) -> pd.DataFrame:
    """Which MNIST test images the authors' runner (``path``) attacks at every commit of the
    clone ``repo`` (all branches) that changed it, oldest first
    (:func:`runner_test_images`): commit, authored and date (the author's and the committer's
    dates: a rebase moves only the second), first_image, last_image, points, and contiguous
    (whether the images are one run from first to last); a version that cannot be read gives
    empty numbers and the reason in ``note``."""
    lines = _git(repo, "log", "--all", "--reverse", "--format=%H %as %cs", "--", path).decode()
    rows = []
    for commit, authored, date in (line.split() for line in lines.splitlines()):
        row: dict[str, Any] = {"commit": commit[:7], "authored": authored, "date": date,
                               "first_image": None, "last_image": None, "points": None,
                               "contiguous": None, "note": ""}
        try:
            images = runner_test_images(_git(repo, "show", f"{commit}:{path}").decode(),
                                        total=total)
        except SyntaxError as why:
            row["note"] = f"does not parse as Python ({why.msg}, line {why.lineno})"
        except ValueError as why:
            row["note"] = str(why)
        else:
            if images:
                row.update(first_image=images[0], last_image=images[-1], points=len(images),
                           contiguous=images[-1] - images[0] + 1 == len(images))
        rows.append(row)
        log(f"{commit[:7]} {date}: " + (row["note"] or f"test images {row['first_image']}-"
                                        f"{row['last_image']}"))
    out = pd.DataFrame(rows, columns=["commit", "authored", "date", "first_image", "last_image",
                                      "points", "contiguous", "note"])
    for column in ("first_image", "last_image", "points"):
        out[column] = out[column].astype("Int64")
    return out


def checkpoint_histories(repo: str | Path, *, log: Any = print) -> pd.DataFrame:
    """The training histories the authors saved in their checkpoints: for every commit of the
    clone ``repo`` (all branches) that changed a ``model_dict/*.pt``, every model of the file
    (its key) with a ``loss_<key>`` list, one row per entry: ``entry`` (1 is the first), the
    validation ``loss`` and the model's ``acc_tr`` (its validation accuracy after training). A
    file the clone does not hold (a large file left out of a partial copy) gives one row with
    the reason in ``note``."""
    from lslib._checks import BadFileError

    lines = _git(repo, "log", "--all", "--reverse", "--format=%H %cs", "--",
                 "model_dict/*.pt").decode()
    rows = []
    for commit, date in (line.split() for line in lines.splitlines()):
        changed = _git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                       commit, "--", "model_dict/*.pt").decode().split()
        for path in changed:
            base = {"commit": commit[:7], "date": date, "file": path}
            try:
                blob = _git(repo, "show", f"{commit}:{path}")
            except BadFileError as why:
                if "does not exist in" in str(why):
                    continue  # deleted by this commit
                fatal = re.search(r"\(fatal: ([^()]*)", str(why))
                reason = " ".join(fatal.group(1).split()[:2]) if fatal else "failed"
                rows.append({**base, "note": f"not in this clone (git: {reason})"})
                continue
            try:
                saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is the same note
                rows.append({**base, "note": f"not a readable torch file ({type(exc).__name__})"})
                continue
            for key, losses in saved.items():
                if not (isinstance(key, str) and key.startswith("loss_")
                        and isinstance(losses, list)):
                    continue
                model = key.removeprefix("loss_")
                acc = saved.get(f"acc_tr_{model}")
                rows += [{**base, "key": model, "entry": i + 1, "loss": float(v),
                          "acc_tr": acc, "note": ""} for i, v in enumerate(losses)]
                log(f"{commit[:7]} {path} {model}: {len(losses)} losses")
    out = pd.DataFrame(rows, columns=["commit", "date", "file", "key", "entry", "loss", "acc_tr",
                                      "note"])
    out["entry"] = out["entry"].astype("Int64")
    return out


def history_distance(theirs: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """Our models' validation-loss histories beside one the authors saved, entry by entry.

    ``theirs``: the rows of one history of :func:`checkpoint_histories` (``entry``, ``loss``);
    ``ours``: rows of :func:`lslib.bugs.histories_of_table` (``model_key``, ``epoch``,
    ``val_loss``, and any columns that describe the model, kept). The i-th loss of each of our
    models is set beside their i-th, over the entries both have (their first validation loss
    and ours are both taken after the first epoch the history covers). One row per model of
    ``ours``: ``entries`` compared, ``mean_abs_diff`` (the mean of ``|ours - theirs|``) and
    ``closest``, the entries at which this model is the nearest of ``ours`` to theirs."""
    theirs = theirs.assign(entry=pd.to_numeric(theirs["entry"]),  # a CSV read as text
                           loss=pd.to_numeric(theirs["loss"]))
    theirs = theirs.sort_values("entry")["loss"].to_numpy(dtype=float)
    first = ours.drop_duplicates("model_key")
    keep = [c for c in first.columns if c not in ("epoch", "val_loss", "lr_next")]
    n = min([len(theirs), *ours.groupby("model_key").size()])
    by_model = {k: g.sort_values("epoch")["val_loss"].to_numpy(dtype=float)[:n]
                for k, g in ours.groupby("model_key", sort=False)}
    keys = list(by_model)
    gaps = np.abs(np.stack([by_model[k] for k in keys]) - theirs[:n])
    nearest = gaps.argmin(axis=0)
    out = first[keep].set_index("model_key").loc[keys].reset_index()
    return out.assign(entries=n, mean_abs_diff=gaps.mean(axis=1),
                      closest=[int((nearest == i).sum()) for i in range(len(keys))])


def compiled_modules(repo: str | Path, *, log: Any = print) -> pd.DataFrame:
    """What the compiled modules committed in the clone ``repo`` (``__pycache__/*.pyc``, all
    branches) say about the code that ran (:mod:`lslib.bytecode`): one row per commit that has
    them, compiled module and function whose float constants differ from the source committed
    beside it (one row with an empty ``function`` where none differs), with the size and time of
    the source the module was compiled from (``compiled_size``, ``compiled_mtime``, UTC) and the
    committed source's size (``committed_size``; empty when the commit has no such source)."""
    from lslib import bytecode
    from lslib._checks import BadFileError

    lines = _git(repo, "log", "--all", "--reverse", "--format=%H %cs", "--", "*.pyc").decode()
    rows = []
    for commit, date in (line.split() for line in lines.splitlines()):
        listing = _git(repo, "ls-tree", "-r", commit).decode().splitlines()
        pycs = [entry.split("\t", 1)[1] for entry in listing
                if re.search(r"__pycache__/[^/]+\.cpython-36\.pyc$", entry)]
        for pyc in pycs:
            source = re.sub(r"__pycache__/([^/]+)\.cpython-36\.pyc$", r"\1.py", pyc)
            where = f"{commit[:7]}:{pyc}"
            data = _git(repo, "show", f"{commit}:{pyc}")
            try:
                header = bytecode.read_header(data, where)
                code = bytecode.read_code(data, where)
            except bytecode.BytecodeError as why:
                raise BadFileError(where, str(why).removeprefix(f"{where}: "), _REMEDY) from None
            base = {"commit": commit[:7], "date": date, "compiled": pyc, "source": source,
                    "compiled_size": header.source_size,
                    "compiled_mtime": header.source_mtime.strftime("%Y-%m-%d %H:%M:%S")}
            try:
                text = _git(repo, "show", f"{commit}:{source}").decode("utf-8")
            except BadFileError:
                rows.append({**base, "committed_size": None, "function": "",
                             "only_compiled": "", "only_committed": ""})
                continue
            base["committed_size"] = len(text.encode("utf-8"))
            diffs = bytecode.compare_floats(code, text, source) or [
                {"function": "", "only_compiled": [], "only_source": []}]
            for d in diffs:
                rows.append({**base, "function": d["function"],
                             "only_compiled": " ".join(f"{x:g}" for x in d["only_compiled"]),
                             "only_committed": " ".join(f"{x:g}" for x in d["only_source"])})
            if diffs[0]["function"]:
                log(f"{commit[:7]} {pyc}: " + "; ".join(
                    f"{d['function']} {d['only_compiled']} (committed {d['only_source']})"
                    for d in diffs))
    out = pd.DataFrame(rows, columns=["commit", "date", "compiled", "source", "compiled_size",
                                      "committed_size", "compiled_mtime", "function",
                                      "only_compiled", "only_committed"])
    out["committed_size"] = out["committed_size"].astype("Int64")
    return out


def _table_budget(eps: float) -> bool:
    return any(abs(eps - b) < 1e-9 for b in BUDGETS)


def compare(repo: str | Path, commit: str, test: Any, *, setups: Sequence[str] = tuple(SETUPS),
            iterations: Sequence[int] | None = None, switches_off: Sequence[str] = (),
            sizes: Sequence[int] = SIZES, log: Any = print) -> pd.DataFrame:
    """Our original-protocol attacks on the authors' PGD-trained models of ``setups`` at
    ``commit`` of the clone ``repo``, beside every table cell of their PGD-AT result files.

    FGSM and BIM at the tables' budgets (and the clean accuracy, their budget 0); DeepFool and
    CW with each count of ``iterations`` (default: the original protocol's), CW with the
    protocol's binary-search steps. Each on the test images the file used (:func:`infer_size`).
    Then, for each switch of ``switches_off`` (names of :class:`lslib.original.Switches`), the
    cells of the attacks it acts on (:data:`lslib.original.SWITCH_ATTACKS`) again with that one
    bug turned off, at the protocol's counts (column ``switch_off``; empty: every bug on). One
    row per set-up, file, attack, budget, count and switch: the published accuracy, ours, the
    difference and the number of points it amounts to."""
    from lslib import original
    from lslib._checks import BadFileError
    from lslib.experiments import PROTOCOLS

    steps = original.protocol_steps(PROTOCOLS["original"])
    full = _git(repo, "rev-parse", f"{commit}^{{commit}}").decode().strip()
    names = _git(repo, "ls-tree", "-r", "--name-only", full).decode().splitlines()
    rows = []
    for setup in setups:
        prefix, model_name = SETUPS[setup]
        model_path = f"model_dict/{prefix}.pt"
        model = load_model(_git(repo, "show", f"{full}:{model_path}"), model_name,
                           f"{repo}@{commit}:{model_path}")
        model_blob = _git(repo, "rev-parse", f"{full}:{model_path}").decode().strip()
        pattern = re.compile(rf"res_dataframes/{prefix}_smoothing=adversarial_attacks=.*PGD"
                             r"_adv_training\.csv")
        for path in sorted(n for n in names if pattern.fullmatch(n)):
            where = f"{repo}@{commit}:{path}"
            cells = read_result_file(_git(repo, "show", f"{full}:{path}").decode(), where)
            for cell in cells.itertuples():
                attack, eps = str(cell.attack), float(cell.eps)
                if attack == "BIM" and eps == 0:
                    continue  # the clean accuracy, as FGSM's row at 0 gives it
                if attack == "FGSM" and eps == 0:
                    attack = "clean"
                elif attack in ("FGSM", "BIM") and not _table_budget(eps):
                    continue
                n = infer_size(cell.per_label, test.y, sizes)
                if n is None:
                    raise BadFileError(where, f"{cell.attack} at {eps}: its per-label "
                                       f"accuracies fit no test slice of {list(sizes)} points",
                                       "the file was not computed on the test images "
                                       "1000-1999 or 1000-9999")
                x, y = original.test_slice(test, n)
                knob = {"DeepFool": "deepfool", "CW": "cw"}.get(attack)
                counts = [None] if knob is None else list(iterations or [steps[knob]])
                runs = [(count, "") for count in counts] + [
                    (None if knob is None else steps[knob], name) for name in switches_off
                    if attack in original.SWITCH_ATTACKS[name]]
                for count, off in runs:
                    run = steps if knob is None else {**steps, knob: int(count)}
                    switches = original.Switches.without(off) if off else original.Switches()
                    t0 = time.perf_counter()
                    ours = original.attack_accuracy(model, x, y, attack, eps=eps, steps=run,
                                                    switches=switches).accuracy
                    rows.append({
                        "setup": setup, "model_file": model_path, "model_blob": model_blob,
                        "result_file": path, "attack": attack,
                        "eps": eps if attack in ("FGSM", "BIM") else np.nan,
                        "iterations": count,
                        "binary_search_steps": steps["cw_bss"] if attack == "CW" else None,
                        "switch_off": off,
                        "in_protocol": not off and (count is None or count == steps[knob]),
                        "n": n, "test_images": f"{original.TEST_OFFSET}-"
                                               f"{original.TEST_OFFSET + n - 1}",
                        "published": float(cell.accuracy), "ours": ours,
                        "diff": ours - float(cell.accuracy),
                        "points": int(round((ours - float(cell.accuracy)) * n)),
                        "seconds": time.perf_counter() - t0})
                    log(f"{setup} {path.split('=')[-1]} {attack} "
                        f"{'' if knob else eps} {count or ''}"
                        f"{f' without {off}' if off else ''}: published "
                        f"{cell.accuracy:.4f}, ours {ours:.4f}")
    out = pd.DataFrame(rows)
    for column in ("iterations", "binary_search_steps"):
        out[column] = out[column].astype("Int64")
    out.attrs["commit"] = full
    return out


def main(argv: list[str] | None = None) -> int:
    from lslib import _cli
    from lslib.bugs import _counts
    from lslib.experiments import sweep_test_split
    from lslib.original import SWITCH_ATTACKS

    ap = _cli.OneLineParser(prog="python -m lslib.authors", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", help="a clone of MGoibert/Label_smoothing (its folder or its .git)")
    ap.add_argument("--commit", default="dc3c764", help="the commit to read (default dc3c764)")
    ap.add_argument("--setup", type=_cli.name_list(SETUPS), default=tuple(SETUPS),
                    help="set-ups, comma-separated (default both)")
    ap.add_argument("--iterations", type=_counts, default=None, metavar="COUNTS",
                    help="DeepFool's and CW's iteration counts (default: the original "
                         "protocol's)")
    ap.add_argument("--switches-off", type=_cli.name_list(SWITCH_ATTACKS), default=(),
                    metavar="NAMES",
                    help="also attack with each of these bugs turned off alone, at the "
                         "protocol's counts (names of lslib.original.Switches, comma-separated)")
    ap.add_argument("--data", type=_cli.data_dir(), default=None,
                    help="the data root (default $LSLIB_DATA)")
    ap.add_argument("--slices", action="store_true",
                    help="attack nothing: write which test images every MNIST result file of "
                         "the repository's history was computed on (the runner's scratch files "
                         "too), its smoothed models and the published cells it holds")
    ap.add_argument("--runner-slices", action="store_true",
                    help=f"attack nothing: write which MNIST test images the runner ({RUNNER}) "
                         "attacks at every commit that changed it")
    ap.add_argument("--histories", action="store_true",
                    help="attack nothing: write the validation-loss histories the authors "
                         "saved in their checkpoints (model_dict/*.pt), at every commit")
    ap.add_argument("--compiled", action="store_true",
                    help="attack nothing: write what the compiled modules committed in the "
                         "repository (__pycache__/*.pyc) say about the code that ran: the float "
                         "constants that differ from the source committed beside them")
    ap.add_argument("--out", type=_cli.output_file(), required=True)
    ap.add_argument("--threads", type=_cli.int_at_least(1), default=1)
    args = ap.parse_args(argv)
    modes = [f"--{m}" for m in ("slices", "runner-slices", "compiled", "histories")
             if getattr(args, m.replace("-", "_"))]
    if len(modes) > 1:
        ap.error(f"argument {modes[1]}: not allowed with argument {modes[0]}")
    if not Path(args.repo).is_dir():
        ap.error(f"argument repo: no such folder: {args.repo}")
    torch.set_num_threads(args.threads)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()

    def run() -> int:
        # the clone before the data
        whole = bool(modes)
        _git(args.repo, "rev-parse", "--git-dir" if whole else f"{args.commit}^{{commit}}")
        whole_history = {"--runner-slices": runner_slices, "--compiled": compiled_modules,
                         "--histories": checkpoint_histories}
        if modes and modes[0] in whole_history:  # read the clone only, no data
            found = whole_history[modes[0]](args.repo)
            _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started,
                                t0=t0, threads=args.threads,
                                authors_repository="MGoibert/Label_smoothing",
                                authors_head=_git(args.repo, "rev-parse", "HEAD").decode().strip())
            return 0
        test = sweep_test_split("mnist-linear", "real", args.data, 0)
        if args.slices:
            found = file_slices(args.repo, labels=test.y)
            _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started,
                                t0=t0, threads=args.threads,
                                authors_repository="MGoibert/Label_smoothing")
            return 0
        found = compare(args.repo, args.commit, test, setups=args.setup,
                        iterations=args.iterations, switches_off=args.switches_off)
        _cli.write_analysis(args.out, found, prog=ap.prog, argv=argv, started=started, t0=t0,
                            threads=args.threads,
                            authors_repository="MGoibert/Label_smoothing",
                            authors_commit=found.attrs["commit"], iterations=args.iterations,
                            switches_off=list(args.switches_off))
        return 0

    return _cli.report_user_errors(ap.prog, run)


if __name__ == "__main__":
    raise SystemExit(main())
