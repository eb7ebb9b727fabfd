"""The paper's reported numbers, Tables 2-6 of the appendix, as data.

Transcribed from the paper's text (``../shared/paper/goibert-dohmatob-2020-label-smoothing.md``,
Appendix 1.4); ``tests/test_paper_tables.py`` re-parses that file and compares every cell.
Each block below is one table, one line per (defence, set-up) exactly as printed: for FGSM and
BIM the smoothing rows hold 9 cells (eps 0.05, 0.2, 0.4, each at alpha 0.005, 0.1, 0.4) and the
baseline rows 3 (eps 0.05, 0.2, 0.4); for DeepFool, CW and the standard accuracies (Table 6,
attack "clean") the smoothing rows hold 3 cells (alpha 0.005, 0.1, 0.4) and the baselines 1.
``/`` is a missing value (NaN); a trailing ``*`` marks a cell the paper highlights as the best
of its column. The paper's "Normal classifier" is our defence "natural", its "Adv. training" our
"PGD-AT"; it does not say at which temperature its BLS rows were trained (T = 0.001 is its
stated default, on the probability scale of the original code).

:func:`paper_table` gives the tidy frame; :func:`side_by_side` lays our results (a table of
:func:`lslib.experiments.run_sweep`) beside it, cell for cell, with the difference, and
:func:`format_side_by_side` prints that as one small table per set-up, protocol and attack.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lslib.data import TensorData

__all__ = [
    "ALPHAS",
    "EPS",
    "PAPER_SUBMITTED",
    "RESULTS_URL",
    "SETUP_NAMES",
    "TABLES",
    "at_temperature",
    "bls_by_temperature",
    "find_results",
    "format_share_within",
    "format_side_by_side",
    "gains_by_method",
    "paper_table",
    "paper_wide",
    "read_provenance",
    "share_within",
    "side_by_side",
    "slice_fit",
    "two_runs",
    "smoothing_beats_natural",
    "summarise_differences",
    "train_and_attack",
    "versus_alpha",
    "wide_table",
    "across_seeds",
]

ALPHAS = (0.005, 0.1, 0.4)
EPS = (0.05, 0.2, 0.4)
#: The day the paper, with its tables, was submitted as a preprint (HAL hal-02437752v1, the
#: version in ``../shared/paper``: "Preprint submitted on 13 Jan 2020"). Code committed later
#: cannot have made its tables.
PAPER_SUBMITTED = "2020-01-13"
#: The tables' set-up names and ours (``lslib.experiments.SETUPS``).
SETUP_NAMES = {
    "MNIST Linear": "mnist-linear",
    "MNIST LeNet": "mnist-lenet",
    "CIFAR LeNet": "cifar-lenet",
    "CIFAR ResNet": "cifar-resnet",
    "SVHN LeNet": "svhn-lenet",
}
TABLE_NUMBER = {"FGSM": 2, "BIM": 3, "DeepFool": 4, "CW": 5, "clean": 6}

TABLES: dict[str, str] = {
    "FGSM": """
ALS    | MNIST Linear | 0.832 0.870 0.954 0.507 0.526 0.489 0.450 0.465 0.432
ALS    | MNIST LeNet  | 0.957 0.959 0.954 0.847 0.732 0.639 0.822 0.561 0.130
ALS    | CIFAR LeNet  | 0.098 0.160 0.002 0.069 0.147* 0.002 0.067 0.151* 0.001
ALS    | CIFAR ResNet | 0.245 0.365 0.433 0.099 0.125 0.123 / / /
ALS    | SVHN LeNet   | 0.450 0.458 0.497* 0.370 0.302 0.381* / / /
SLS    | MNIST Linear | 0.818 0.848 0.840 0.532 0.470 0.412 0.506* 0.437 0.384
SLS    | MNIST LeNet  | 0.956 0.956 0.954 0.840 0.764 0.656 0.823* 0.699 0.229
SLS    | CIFAR LeNet  | 0.119 0.153 0.127 0.097 0.134 0.101 0.092 0.136 0.093
SLS    | CIFAR ResNet | 0.254 0.345 0.389 0.098 0.115 0.116 / / /
SLS    | SVHN LeNet   | 0.404 0.472 0.395 0.353 0.312 0.195 / / /
BLS    | MNIST Linear | 0.821 0.868 0.858 0.494 0.525 0.494 0.442 0.457 0.441
BLS    | MNIST LeNet  | 0.956 0.958 0.954 0.838 0.741 0.642 0.812 0.616 0.131
BLS    | CIFAR LeNet  | 0.085 0.160 0.122 0.055 0.141 0.107 0.055 0.130 0.114
BLS    | CIFAR ResNet | 0.252 0.346 0.450* 0.096 0.129 0.138* / / /
BLS    | SVHN LeNet   | 0.430 0.442 0.327 0.352 0.293 0.153 / / /
SBLS   | MNIST Linear | 0.763 0.804 0.639 0.530 0.353 0.327 0.431 0.212 0.186
SBLS   | MNIST LeNet  | 0.955 0.956 0.929 0.855 0.695 0.491 0.836* 0.279 0.141
SBLS   | CIFAR LeNet  | 0.103 0.143 0.136 0.061 0.098 0.068 0.058 0.085 0.053
SBLS   | CIFAR ResNet | 0.191 0.159 0.231 0.077 0.079 0.093 / / /
SBLS   | SVHN LeNet   | 0.449 0.375 0.277 0.378 0.157 0.149 / / /
natural| MNIST Linear | 0.791 0.003 0.000
natural| MNIST LeNet  | 0.956 0.498 0.022
natural| CIFAR LeNet  | 0.049 0.002 0.009
natural| CIFAR ResNet | 0.090 0.052 /
natural| SVHN LeNet   | 0.195 0.006 /
PGD-AT | MNIST Linear | 0.970* 0.915* 0.286
PGD-AT | MNIST LeNet  | 0.975* 0.952* 0.823*
PGD-AT | CIFAR LeNet  | 0.201* 0.023 0.011
PGD-AT | CIFAR ResNet | / / /
PGD-AT | SVHN LeNet   | 0.475 0.071 0.075
""",
    "BIM": """
ALS    | MNIST Linear | 0.816 0.854 0.845 0.429 0.485 0.456 0.420 0.472 0.435
ALS    | MNIST LeNet  | 0.947 0.946 0.945 0.813 0.614 0.606 0.811 0.560 0.484
ALS    | CIFAR LeNet  | 0.064 0.140 0.000 0.055 0.137* 0.000 0.054 0.136* 0.000
ALS    | CIFAR ResNet | 0.102 0.167 0.248 0.046 0.076 0.074 / / /
ALS    | SVHN LeNet   | 0.403 0.408 0.470* 0.386 0.324 0.435* / / /
SLS    | MNIST Linear | 0.801 0.829 0.826 0.495 0.447 0.398 0.492 0.439 0.391
SLS    | MNIST LeNet  | 0.946 0.942 0.942 0.817 0.700 0.398 0.815 0.689 0.165
SLS    | CIFAR LeNet  | 0.093 0.131 0.100 0.087 0.128 0.096 0.087 0.128 0.094
SLS    | CIFAR ResNet | 0.135 0.142 0.230 0.051 0.035 0.046 / / /
SLS    | SVHN LeNet   | 0.371 0.421 0.322 0.362 0.345 0.193 / / /
BLS    | MNIST Linear | 0.803 0.853 0.841 0.534 0.481 0.458 0.528* 0.470 0.443
BLS    | MNIST LeNet  | 0.946 0.944 0.947 0.835 0.645 0.532 0.834* 0.603 0.389
BLS    | CIFAR LeNet  | 0.062 0.140 0.103 0.056 0.136 0.097 0.055 0.135 0.097
BLS    | CIFAR ResNet | 0.153 0.142 0.265* 0.060 0.043 0.075 / / /
BLS    | SVHN LeNet   | 0.435 0.393 0.266 0.424 0.322 0.142 / / /
SBLS   | MNIST Linear | 0.736 0.772 0.597 0.470 0.227 0.299 0.370 0.091 0.252
SBLS   | MNIST LeNet  | 0.945 0.945 0.914 0.841 0.359 0.239 0.808 0.126 0.072
SBLS   | CIFAR LeNet  | 0.074 0.114 0.090 0.057 0.077 0.036 0.055 0.068 0.028
SBLS   | CIFAR ResNet | 0.054 0.021 0.045 0.010 0.008 0.018 / / /
SBLS   | SVHN LeNet   | 0.423 0.265 0.200 0.383 0.073 0.116 / / /
natural| MNIST Linear | 0.776 0.001 0.000
natural| MNIST LeNet  | 0.946 0.114 0.000
natural| CIFAR LeNet  | 0.015 0.000 0.000
natural| CIFAR ResNet | 0.003 0.000 /
natural| SVHN LeNet   | 0.117 0.000 /
PGD-AT | MNIST Linear | 0.970* 0.899* 0.288
PGD-AT | MNIST LeNet  | 0.974* 0.940* 0.498
PGD-AT | CIFAR LeNet  | 0.168* 0.003 0.000
PGD-AT | CIFAR ResNet | / / /
PGD-AT | SVHN LeNet   | 0.419 0.014 0.000
""",
    "DeepFool": """
ALS    | MNIST Linear | 0.037 0.092 0.341
ALS    | MNIST LeNet  | 0.047 0.299 0.529
ALS    | CIFAR LeNet  | 0.005 0.006 0.001
ALS    | CIFAR ResNet | 0.040 0.030 0.33
ALS    | SVHN LeNet   | 0.020 0.010 0.008
SLS    | MNIST Linear | 0.036 0.080 0.683*
SLS    | MNIST LeNet  | 0.035 0.183 0.380
SLS    | CIFAR LeNet  | 0.006 0.007 0.008
SLS    | CIFAR ResNet | 0.073 0.049 0.057
SLS    | SVHN LeNet   | 0.020 0.007 0.007
BLS    | MNIST Linear | 0.033 0.088 0.414
BLS    | MNIST LeNet  | 0.031 0.314 0.500
BLS    | CIFAR LeNet  | 0.007 0.008 0.008
BLS    | CIFAR ResNet | 0.051 0.059 0.032
BLS    | SVHN LeNet   | 0.024 0.006 0.006
SBLS   | MNIST Linear | 0.035 0.152 0.516
SBLS   | MNIST LeNet  | 0.028 0.142 0.305
SBLS   | CIFAR LeNet  | 0.005 0.006 0.006
SBLS   | CIFAR ResNet | 0.050 0.037 0.064
SBLS   | SVHN LeNet   | 0.024 0.014 0.038
natural| MNIST Linear | 0.025
natural| MNIST LeNet  | 0.050
natural| CIFAR LeNet  | 0.009
natural| CIFAR ResNet | 0.036
natural| SVHN LeNet   | 0.031
PGD-AT | MNIST Linear | 0.07
PGD-AT | MNIST LeNet  | 0.571*
PGD-AT | CIFAR LeNet  | 0.008
PGD-AT | CIFAR ResNet | /
PGD-AT | SVHN LeNet   | 0.030
""",
    "CW": """
ALS    | MNIST Linear | 0.014 0.056 0.073
ALS    | MNIST LeNet  | 0.020 0.042 0.084
ALS    | CIFAR LeNet  | 0.000 0.002 0.000
ALS    | CIFAR ResNet | 0.022 0.098 0.205
ALS    | SVHN LeNet   | 0.010 0.039 0.056
SLS    | MNIST Linear | 0.013 0.025 0.031
SLS    | MNIST LeNet  | 0.022 0.046 0.058
SLS    | CIFAR LeNet  | 0.000 0.004 0.000
SLS    | CIFAR ResNet | 0.029 0.087 0.159
SLS    | SVHN LeNet   | 0.006 0.044 0.044
BLS    | MNIST Linear | 0.014 0.035 0.059
BLS    | MNIST LeNet  | 0.018 0.046 0.062
BLS    | CIFAR LeNet  | 0.000 0.004 0.000
BLS    | CIFAR ResNet | 0.019 0.089 0.231
BLS    | SVHN LeNet   | 0.006 0.028 0.045
SBLS   | MNIST Linear | 0.017 0.071 0.007
SBLS   | MNIST LeNet  | 0.016 0.128 0.474*
SBLS   | CIFAR LeNet  | 0.002 0.000 0.014
SBLS   | CIFAR ResNet | 0.063 0.173* 0.106
SBLS   | SVHN LeNet   | 0.009 0.062 0.052
natural| MNIST Linear | 0.015
natural| MNIST LeNet  | 0.026
natural| CIFAR LeNet  | 0.000
natural| CIFAR ResNet | 0.015
natural| SVHN LeNet   | 0.031
PGD-AT | MNIST Linear | 0.108
PGD-AT | MNIST LeNet  | 0.442
PGD-AT | CIFAR LeNet  | 0.000
PGD-AT | CIFAR ResNet | /
PGD-AT | SVHN LeNet   | 0.000
""",
    "clean": """
ALS    | MNIST Linear | 0.979 0.981* 0.976
ALS    | MNIST LeNet  | 0.990* 0.990* 0.989
ALS    | CIFAR LeNet  | 0.623 0.664* 0.148
ALS    | CIFAR ResNet | 0.887 0.890 0.889
ALS    | SVHN LeNet   | 0.890 0.894* 0.879
SLS    | MNIST Linear | 0.978 0.981* 0.975
SLS    | MNIST LeNet  | 0.989 0.990* 0.986
SLS    | CIFAR LeNet  | 0.628 0.638 0.643
SLS    | CIFAR ResNet | 0.885 0.894 0.895
SLS    | SVHN LeNet   | 0.892 0.894* 0.889
BLS    | MNIST Linear | 0.978 0.981* 0.976
BLS    | MNIST LeNet  | 0.989 0.990* 0.989
BLS    | CIFAR LeNet  | 0.639 0.651 0.622
BLS    | CIFAR ResNet | 0.888 0.889 0.897*
BLS    | SVHN LeNet   | 0.891 0.890 0.841
SBLS   | MNIST Linear | 0.977 0.977 0.949
SBLS   | MNIST LeNet  | 0.989 0.988 0.975
SBLS   | CIFAR LeNet  | 0.628 0.619 0.572
SBLS   | CIFAR ResNet | 0.883 0.881 0.840
SBLS   | SVHN LeNet   | 0.886 0.883 0.816
natural| MNIST Linear | 0.980
natural| MNIST LeNet  | 0.990*
natural| CIFAR LeNet  | 0.635
natural| CIFAR ResNet | 0.886
natural| SVHN LeNet   | 0.884
PGD-AT | MNIST Linear | 0.981*
PGD-AT | MNIST LeNet  | 0.982
PGD-AT | CIFAR LeNet  | 0.505
PGD-AT | CIFAR ResNet | /
PGD-AT | SVHN LeNet   | 0.831
""",
}
"""The five tables as printed, keyed by attack ("clean" is Table 6, standard accuracy)."""

#: The smoothing methods of the tables (the rows that have an alpha).
SMOOTHING = ("ALS", "SLS", "BLS", "SBLS")

_COLUMNS = ["table", "setup", "table_name", "defence", "alpha", "attack", "eps", "accuracy",
            "best"]


def _cell(text: str) -> tuple[float, bool]:
    if text == "/":
        return math.nan, False
    return float(text.rstrip("*")), text.endswith("*")


def paper_table() -> pd.DataFrame:
    """Tables 2-6 as one tidy frame, one row per printed cell.

    Columns: table (2-6), setup (our name), table_name, defence, alpha (NaN for the baselines),
    attack ("FGSM", "BIM", "DeepFool", "CW", "clean"), eps (0.05/0.2/0.4 for FGSM/BIM, 0 for
    clean, NaN for the unbounded DeepFool/CW), accuracy (NaN where the paper prints "/"), best.
    """
    rows = []
    for attack, block in TABLES.items():
        bounded = attack in ("FGSM", "BIM")
        for line in block.strip().splitlines():
            defence, table_name, cells = (part.strip() for part in line.split("|"))
            values = cells.split()
            baseline = defence in ("natural", "PGD-AT")
            alphas = [math.nan] if baseline else list(ALPHAS)
            epss = list(EPS) if bounded else [0.0 if attack == "clean" else math.nan]
            if len(values) != len(alphas) * len(epss):
                raise AssertionError(f"{attack} {defence} {table_name}: {len(values)} cells")
            it = iter(values)
            for eps in epss:  # eps-major, as printed
                for alpha in alphas:
                    acc, best = _cell(next(it))
                    rows.append((TABLE_NUMBER[attack], SETUP_NAMES[table_name], table_name,
                                 defence, alpha, attack, eps, acc, best))
    return pd.DataFrame(rows, columns=_COLUMNS)


_KEYS = ["setup", "defence", "alpha", "attack", "eps"]
_NA = -1.0  # stands for NaN in merge keys


def at_temperature(rows: pd.DataFrame, temperature: float | str = "protocol") -> pd.Series:
    """Which of ``rows`` (a table with columns defence, T and, for "protocol", protocol) are not
    BLS or are BLS at ``temperature``: a number, or "protocol", each row's protocol's
    (:attr:`lslib.experiments.Protocol.bls_temperature`). A boolean mask."""
    from lslib.experiments import PROTOCOLS

    if isinstance(temperature, str):
        if temperature != "protocol":
            raise ValueError(f"temperature must be a number or 'protocol', got {temperature!r}")
        want = rows["protocol"].map(lambda p: PROTOCOLS[p].bls_temperature
                                    if p in PROTOCOLS else np.nan).astype(float)
    else:
        want = pd.Series(float(temperature), index=rows.index)
    t = pd.to_numeric(rows["T"], errors="coerce")
    return (rows["defence"] != "BLS") | (t - want).abs().le(1e-12 * np.maximum(want, 1))


def side_by_side(ours: pd.DataFrame, *, protocol: str | None = None,
                 bls_temperature: float | str | None = "protocol") -> pd.DataFrame:
    """The paper's cells beside ours, for the set-ups (and protocols) present in ``ours``.

    ``ours`` is a results table of :func:`lslib.experiments.run_sweep`. Our BLS rows are taken at
    temperature ``bls_temperature``: "protocol" (the default), each row's protocol's
    (:attr:`lslib.experiments.Protocol.bls_temperature`: 0.001, under ``original`` 0.01, the
    temperature of the authors' one file of BLS table cells); a number, that one; None, every T
    (a BLS cell then appears once per T). Returns one row per paper cell and
    protocol, columns setup, protocol, defence, alpha, T, attack, eps, paper, ours, diff
    (ours - paper), n, l2_median (ours, DeepFool/CW; NaN where the row's l2_mean is NaN, whose
    median was taken over norms that held a NaN), paper_best; cells we did not run have
    ``ours`` NaN.
    """
    o = ours.copy()
    if protocol is not None:
        o = o[o["protocol"] == protocol]
    if bls_temperature is not None and "T" in o:
        o = o[at_temperature(o, bls_temperature)]
    p = paper_table()
    p = p[p["setup"].isin(o["setup"].unique())]
    out = []
    for proto, group in o.groupby("protocol", sort=False):
        left = p.assign(protocol=proto).fillna({"alpha": _NA, "eps": _NA})
        extra = [c for c in ("l2_median",) if c in group]
        if "l2_median" in group and "l2_mean" in group:
            # a median beside a NaN mean was taken over norms that held a NaN (the original
            # DeepFool's NaN images, in rows written before lslib.original left them out)
            group = group.assign(l2_median=group["l2_median"].where(group["l2_mean"].notna()))
        right = group[[*_KEYS, "T", "accuracy", "n", *extra]].fillna({"alpha": _NA, "eps": _NA})
        merged = left.merge(right, on=_KEYS, how="left", suffixes=("_paper", "_ours"))
        out.append(merged)
    if not out:
        return pd.DataFrame(columns=["setup", "protocol", "defence", "alpha", "T", "attack",
                                     "eps", "paper", "ours", "diff", "n", "l2_median",
                                     "paper_best"])
    m = pd.concat(out, ignore_index=True)
    m = m.rename(columns={"accuracy_paper": "paper", "accuracy_ours": "ours",
                          "best": "paper_best"})
    m["alpha"] = m["alpha"].where(m["alpha"] != _NA)
    m["eps"] = m["eps"].where(m["eps"] != _NA)
    m["diff"] = m["ours"] - m["paper"]
    if "l2_median" not in m:
        m["l2_median"] = math.nan
    return m[["setup", "protocol", "defence", "alpha", "T", "attack", "eps", "paper", "ours",
              "diff", "n", "l2_median", "paper_best"]]


def _num(v: float, fmt: str = "{:.3f}") -> str:
    return "/" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def format_side_by_side(frame: pd.DataFrame) -> str:
    """A printable rendering of :func:`side_by_side`: per set-up, protocol and attack, one line
    per defence and alpha, one column group per eps holding paper, ours and ours - paper (and,
    for DeepFool and CW, our median L2 norm of the successful perturbations)."""
    lines = []
    frame = frame.assign(alpha=frame["alpha"].fillna(_NA), eps=frame["eps"].fillna(_NA))
    for (setup, proto, attack), g in frame.groupby(["setup", "protocol", "attack"], sort=False):
        eps_values = list(dict.fromkeys(g["eps"].tolist()))
        with_l2 = attack in ("DeepFool", "CW") and "l2_median" in g
        lines.append(f"== {setup} | protocol {proto} | {attack} (Table {TABLE_NUMBER[attack]})")
        header = f"{'defence':8s} {'alpha':>6s}"
        for e in eps_values:
            label = "" if e == _NA else ("clean" if e == 0 else f"eps={e:g}")
            header += f" | {label:^19s}"
        sub = f"{'':8s} {'':>6s}" + f" | {'paper':>5s} {'ours':>5s} {'diff':>6s}" * len(
            eps_values)
        if with_l2:
            header += " |"
            sub += f" | {'L2 median':>9s}"
        lines += [header, sub]
        for (defence, alpha), cells in g.groupby(["defence", "alpha"], sort=False):
            line = f"{defence:8s} {'' if alpha == _NA else f'{alpha:g}':>6s}"
            for e in eps_values:
                c = cells[cells["eps"] == e]
                paper, ours, diff = ((c.iloc[0]["paper"], c.iloc[0]["ours"], c.iloc[0]["diff"])
                                     if len(c) else (math.nan, math.nan, math.nan))
                line += f" | {_num(paper):>5s} {_num(ours):>5s} {_num(diff, '{:+.3f}'):>6s}"
            if with_l2:
                line += f" | {_num(cells.iloc[0]['l2_median'], '{:.2f}'):>9s}"
            lines.append(line)
        if with_l2 and (g["ours"].notna() & g["l2_median"].isna()).any():
            lines.append("L2 median '/' where ours ran: not known (no perturbation succeeded, or "
                         "the row's norms held a NaN; see side_by_side)")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# summaries of a side-by-side frame (for the book's chapter "Reproducing Tables 2-6")
# --------------------------------------------------------------------------------------------


def _check_side_by_side(frame: pd.DataFrame) -> None:
    missing = {"setup", "protocol", "defence", "alpha", "attack", "eps", "paper",
               "ours"} - set(frame.columns)
    if missing:
        raise ValueError(f"not a side_by_side() frame: columns {sorted(missing)} are missing")


def summarise_differences(frame: pd.DataFrame, *, tol: float = 0.05) -> pd.DataFrame:
    """How far our cells are from the paper's, per set-up, protocol and attack.

    ``frame`` is a :func:`side_by_side` frame; only cells where both numbers exist count.
    Columns: setup, protocol, attack, table, cells, mean_diff (mean of ours - paper),
    mean_abs_diff, max_abs_diff, within (share of cells with ``|ours - paper| <= tol``).
    """
    _check_side_by_side(frame)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    both = frame[frame["paper"].notna() & frame["ours"].notna()].copy()
    both["abs"] = (both["ours"] - both["paper"]).abs()
    both["d"] = both["ours"] - both["paper"]
    both["in"] = both["abs"] <= tol + 1e-12
    g = both.groupby(["setup", "protocol", "attack"], sort=False)
    out = g.agg(cells=("d", "size"), mean_diff=("d", "mean"), mean_abs_diff=("abs", "mean"),
                max_abs_diff=("abs", "max"), within=("in", "mean")).reset_index()
    out.insert(3, "table", out["attack"].map(TABLE_NUMBER))
    return out


def _one_temperature(rows: pd.DataFrame, what: str) -> None:
    """Refuse ``rows`` that hold one BLS model at two temperatures: a helper that sets runs of
    the same models side by side by method and alpha would mix two models. Filter first
    (:func:`at_temperature`)."""
    if "T" not in rows or "defence" not in rows:
        return
    bls = rows[rows["defence"] == "BLS"]
    keys = [k for k in ("setup", "alpha") if k in bls]
    many = bls.groupby(keys, dropna=False)["T"].nunique()
    if (many > 1).any():
        where = ", ".join(map(str, many[many > 1].index))
        raise ValueError(f"{what} holds BLS at more than one temperature ({where}): keep one "
                         "with at_temperature()")


def across_seeds(first: pd.DataFrame, reruns: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The cells of the models ``reruns`` trained again with other seeds, beside ``first`` (the
    rows of the same set-up's table, every model; seed 0): one row per model and cell of the
    attacks re-run, one column per seed ("seed 0", ...), their ``range`` (max - min) and the
    ``paper``'s cell; and each model's training seconds per seed (index defence, alpha, seed)."""
    models = reruns[["defence", "alpha"]].drop_duplicates()
    first = first.merge(models, on=["defence", "alpha"])
    first = first[first["attack"].isin(set(reruns["attack"]))]
    rows = pd.concat([first, reruns], ignore_index=True)
    _one_temperature(rows, "across_seeds's rows")
    train = rows.drop_duplicates(["defence", "alpha", "seed"]).set_index(
        ["defence", "alpha", "seed"])["train_seconds"].astype(float)
    cells = side_by_side(rows.assign(protocol=lambda d: "seed " + d["seed"].astype(str)),
                         bls_temperature=None).dropna(subset=["ours"])
    index = ["defence", "alpha", "attack", "eps"]
    wide = cells.pivot_table(index=index, columns="protocol", values="ours", dropna=False)
    seeds = list(wide.columns)
    wide = wide.dropna(how="all")
    wide["range"] = wide[seeds].max(axis=1) - wide[seeds].min(axis=1)
    wide["paper"] = cells.drop_duplicates(index).set_index(index)["paper"].reindex(wide.index)
    order = {"clean": 0, "FGSM": 1, "BIM": 2, "DeepFool": 3, "CW": 4}
    wide = (wide.reset_index()
            .sort_values(["defence", "attack", "eps"],
                         key=lambda v: v.map(order) if v.name == "attack" else v)
            .reset_index(drop=True))
    wide.columns.name = None
    return wide, train


def two_runs(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The paper's cells that two results tables both ran, each table's number beside the
    paper's: the same models attacked on other test images, or models trained from another
    start. One row per cell: setup, defence, alpha, attack, eps, T (BLS's temperature; one per
    model, or an error), paper, first, second,
    diff_first and diff_second (ours - paper; ``paper`` NaN where the paper prints "/") and
    shift (second - first)."""
    key = ["setup", "defence", "alpha", "attack", "eps"]
    for name, t in (("first", first), ("second", second)):
        _one_temperature(t, f"two_runs's {name} table")
    a, b = (side_by_side(t.assign(protocol="run"), bls_temperature=None).dropna(subset=["ours"])
            for t in (first, second))
    both = a[[*key, "T", "paper", "ours"]].merge(b[[*key, "ours"]], on=key, how="inner",
                                            suffixes=("_first", "_second"), validate="1:1")
    both = both.rename(columns={"ours_first": "first", "ours_second": "second"})
    both["diff_first"] = both["first"] - both["paper"]
    both["diff_second"] = both["second"] - both["paper"]
    both["shift"] = both["second"] - both["first"]
    return both.reset_index(drop=True)


def slice_fit(slices: pd.DataFrame, rung: pd.DataFrame, *, tol: float = 0.05) -> pd.DataFrame:
    """How many of the paper's cells the original rung matches within ``tol`` on each test
    slice. ``slices`` is what ``python -m lslib.bugs TABLE --slices`` writes (one set-up's or
    several: columns setup, defence, alpha, T, attack, eps, first_image, last_image, accuracy,
    in_table); ``rung`` the original-protocol rows that ran (a results table), whose CW cells
    stay on their own slice and are added to every slice's count. One row per set-up and
    slice: setup, first_image, last_image, protocol (the rung's own slice), ``<attack>`` and
    ``<attack>_cells`` for FGSM, BIM, DeepFool and clean (cells within and cells with a
    number), fgsm_bim_diff (mean of ours - paper under FGSM and BIM), within and cells (the
    attack cells of Tables 2-5, CW included)."""
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    _one_temperature(slices, "slice_fit's slices")
    _one_temperature(rung, "slice_fit's rung")
    out = []
    for setup, rows in slices.groupby("setup", sort=False):
        cw = side_by_side(rung[(rung["setup"] == setup) & (rung["attack"] == "CW")]
                          .assign(protocol="original"), bls_temperature=None)
        cw = cw[cw["paper"].notna() & cw["ours"].notna()]
        cw_within = int((cw["diff"].abs() <= tol + 1e-12).sum())
        for (first, last), one in rows.groupby(["first_image", "last_image"]):
            cells = side_by_side(one.assign(protocol="original"), bls_temperature=None)
            fit: dict[str, Any] = {"setup": setup, "first_image": int(first),
                                   "last_image": int(last),
                                   "protocol": bool(one["in_table"].all()),
                                   **_counts_within(cells, ("FGSM", "BIM", "DeepFool", "clean"),
                                                    tol)}
            fit["within"] += cw_within
            fit["cells"] += len(cw)
            out.append(fit)
    return pd.DataFrame(out)


def _counts_within(cells: pd.DataFrame, attacks: Sequence[str], tol: float) -> dict[str, Any]:
    """Of the cells of a :func:`side_by_side` frame that have both numbers: per attack of
    ``attacks``, those within ``tol`` of the paper (``<attack>``) and all of them
    (``<attack>_cells``); over the attacks of Tables 2-5 among them, ``within`` and ``cells``;
    and ``fgsm_bim_diff``, the mean of ours - paper under FGSM and BIM."""
    cells = cells[cells["paper"].notna() & cells["ours"].notna()]
    within = cells["diff"].abs() <= tol + 1e-12
    out: dict[str, Any] = {}
    for attack in attacks:
        mine = cells["attack"] == attack
        out[attack], out[f"{attack}_cells"] = int((within & mine).sum()), int(mine.sum())
    attacked = cells["attack"].isin([a for a in attacks if a != "clean"])
    out["within"], out["cells"] = int((within & attacked).sum()), int(attacked.sum())
    out["fgsm_bim_diff"] = float(cells.loc[cells["attack"].isin(["FGSM", "BIM"]), "diff"].mean())
    return out


def bls_by_temperature(ours: pd.DataFrame, *, tol: float = 0.05) -> pd.DataFrame:
    """Our BLS models at every temperature they ran at, beside the paper's BLS cells: one row
    per set-up, protocol and T, with ``models`` (how many alphas ran) and the counts of
    :func:`_counts_within` over Tables 2-6 (``within`` and ``cells`` over Tables 2-5). What
    the choice of the original rung's temperature changes (``ours``: a results table that holds
    BLS at several T)."""
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    attacks = ("FGSM", "BIM", "DeepFool", "CW", "clean")
    cells = side_by_side(ours[ours["defence"] == "BLS"], bls_temperature=None)
    cells = cells[(cells["defence"] == "BLS") & cells["ours"].notna()]
    out = [{"setup": setup, "protocol": protocol, "T": float(t), "models": g["alpha"].nunique(),
            **_counts_within(g, attacks, tol)}
           for (setup, protocol, t), g in cells.groupby(["setup", "protocol", "T"], sort=False)]
    return pd.DataFrame(out, columns=[
        "setup", "protocol", "T", "models", *(c for a in attacks for c in (a, f"{a}_cells")),
        "within", "cells", "fgsm_bim_diff"])


def share_within(frame: pd.DataFrame, *, tol: float = 0.05) -> pd.DataFrame:
    """Per protocol and table, how many of the paper's cells we match within ``tol``.

    ``frame`` is a :func:`side_by_side` frame (every paper cell of its set-ups, ``ours`` NaN
    where we did not run it). Columns: protocol, table, attack, cells (the paper's cells with a
    number), run (those we have a number for), within (``|ours - paper| <= tol``), share
    (within / cells: a cell not run counts as not matched) and share_run (within / run). A last
    line per protocol, table "2-5", pools the attack tables.
    """
    _check_side_by_side(frame)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    f = frame[frame["paper"].notna()].copy()
    f["run"] = f["ours"].notna()
    f["within"] = f["run"] & ((f["ours"] - f["paper"]).abs() <= tol + 1e-12)
    f["table"] = f["attack"].map(TABLE_NUMBER).astype(str)
    rows = []
    for proto, g in f.groupby("protocol", sort=False):
        parts = [(t, a, g[g["attack"] == a]) for a, t in TABLE_NUMBER.items() if a != "clean"]
        parts += [("2-5", "FGSM+BIM+DeepFool+CW", g[g["attack"] != "clean"]),
                  ("6", "clean", g[g["attack"] == "clean"])]
        for table, attack, cells in parts:
            n, run, within = len(cells), int(cells["run"].sum()), int(cells["within"].sum())
            rows.append({"protocol": proto, "table": str(table), "attack": attack, "cells": n,
                         "run": run, "within": within,
                         "share": within / n if n else math.nan,
                         "share_run": within / run if run else math.nan})
    return pd.DataFrame(rows, columns=["protocol", "table", "attack", "cells", "run", "within",
                                       "share", "share_run"])


def format_share_within(shares: pd.DataFrame, tol: float = 0.05) -> str:
    """:func:`share_within` as a few printable lines per protocol."""
    lines = [f"share of the paper's cells within {tol:g} (a cell not run counts as missed)"]
    for proto, g in shares.groupby("protocol", sort=False):
        parts = [f"T{r.table} {r.within}/{r.cells} = {r.share:.0%}"
                 + (f" ({r.run} run)" if r.run < r.cells else "") for r in g.itertuples()]
        lines.append(f"  {proto:8s} " + "; ".join(parts))
    return "\n".join(lines)


def _beside_natural(frame: pd.DataFrame) -> pd.DataFrame:
    """The smoothing cells of a :func:`side_by_side` frame, each with the natural model's numbers
    at the same set-up, protocol, attack and eps (``nat_paper``, ``nat_ours``)."""
    _check_side_by_side(frame)
    keys = ["setup", "protocol", "attack", "eps"]
    f = frame.assign(eps=frame["eps"].fillna(-1.0))
    nat = f[f["defence"] == "natural"][[*keys, "paper", "ours"]].rename(
        columns={"paper": "nat_paper", "ours": "nat_ours"})
    return f[f["defence"].isin(SMOOTHING)].merge(nat, on=keys, how="inner")


def smoothing_beats_natural(frame: pd.DataFrame) -> pd.DataFrame:
    """Where the paper's pattern holds: the share of label-smoothing cells (ALS, SLS, BLS, SBLS
    at every alpha) more accurate than the natural model at the same set-up, attack and eps, in
    the paper's numbers and in ours, and by how much on average.

    ``frame`` is a :func:`side_by_side` frame. Columns: setup, protocol, attack, cells (smoothing
    cells with both numbers and a natural cell to compare with), paper (share in the paper),
    ours (share in ours), paper_gain and ours_gain (mean of smoothing - natural accuracy over
    those cells: a share alone counts 0.01 against 0.00 as a win). Ties count as not better.
    """
    ls = _beside_natural(frame)
    ls = ls[ls[["paper", "ours", "nat_paper", "nat_ours"]].notna().all(axis=1)]
    ls = ls.assign(p=ls["paper"] > ls["nat_paper"], o=ls["ours"] > ls["nat_ours"],
                   gp=ls["paper"] - ls["nat_paper"], go=ls["ours"] - ls["nat_ours"])
    out = ls.groupby(["setup", "protocol", "attack"], sort=False).agg(
        cells=("p", "size"), paper=("p", "mean"), ours=("o", "mean"), paper_gain=("gp", "mean"),
        ours_gain=("go", "mean")).reset_index()
    return out


def gains_by_method(frame: pd.DataFrame, *, margin: float = 0.05) -> pd.DataFrame:
    """Per set-up, protocol, attack and smoothing method: how its cells compare with the natural
    model at the same attack and eps, in ours and in the paper's numbers.

    ``frame`` is a :func:`side_by_side` frame. Columns: setup, protocol, attack, method, cells
    (cells with both of our numbers), above (ours more than ``margin`` above natural), below
    (more than ``margin`` under), mean_gain and max_gain (ours - natural), max_alpha and max_eps
    (where the largest gain is), paper_above and paper_mean_gain (the same in the paper's
    numbers, over the same cells).
    """
    ls = _beside_natural(frame)
    ls = ls[ls[["ours", "nat_ours"]].notna().all(axis=1)]
    ls = ls.assign(g=ls["ours"] - ls["nat_ours"], gp=ls["paper"] - ls["nat_paper"])
    rows = []
    for (setup, proto, attack, method), g in ls.groupby(
            ["setup", "protocol", "attack", "defence"], sort=False):
        top = g.loc[g["g"].idxmax()]
        rows.append({"setup": setup, "protocol": proto, "attack": attack, "method": method,
                     "cells": len(g), "above": int((g["g"] > margin).sum()),
                     "below": int((g["g"] < -margin).sum()), "mean_gain": g["g"].mean(),
                     "max_gain": top["g"], "max_alpha": top["alpha"],
                     "max_eps": None if top["eps"] == -1.0 else top["eps"],
                     "paper_above": int((g["gp"] > margin).sum()),
                     "paper_mean_gain": g["gp"].mean()})
    return pd.DataFrame(rows, columns=["setup", "protocol", "attack", "method", "cells", "above",
                                       "below", "mean_gain", "max_gain", "max_alpha",
                                       "max_eps", "paper_above", "paper_mean_gain"])


def versus_alpha(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`side_by_side` frame in long form for plots of accuracy against alpha (the paper's
    Figure 5a-c): one row per cell and source, where source is "paper" or "ours (<protocol>
    protocol)". The natural model is drawn at alpha = 0 of every smoothing method (as in
    Figure 5, where alpha = 0 is the natural classifier); PGD-AT keeps alpha NaN (a reference
    level). Columns: setup, attack, eps, method, alpha, source, accuracy. The paper's numbers
    appear once, not once per protocol.
    """
    _check_side_by_side(frame)
    parts = []
    first = frame["protocol"].drop_duplicates().iloc[0] if len(frame) else None
    paper = frame[frame["protocol"] == first].assign(source="paper", accuracy=frame["paper"])
    parts.append(paper)
    for proto, g in frame.groupby("protocol", sort=False):
        parts.append(g.assign(source=f"ours ({proto} protocol)", accuracy=g["ours"]))
    long = pd.concat(parts, ignore_index=True) if parts else frame.assign(source=[],
                                                                          accuracy=[])
    cols = ["setup", "attack", "eps", "defence", "alpha", "source", "accuracy"]
    long = long[cols].rename(columns={"defence": "method"})
    nat = long[long["method"] == "natural"]
    natural_at_zero = [nat.assign(method=m, alpha=0.0) for m in SMOOTHING]
    rest = long[long["method"] != "natural"]
    return pd.concat([rest, *natural_at_zero], ignore_index=True)[
        ["setup", "attack", "eps", "method", "alpha", "source", "accuracy"]]


def wide_table(frame: pd.DataFrame, attack: str) -> pd.DataFrame:
    """One of Tables 2-6 laid out for reading: one line per set-up, defence and alpha, and per
    eps the paper's cell, ours and ours - paper for every protocol in ``frame`` (a
    :func:`side_by_side` frame). Column labels are (eps label, what), what in "paper",
    "ours <protocol>", "diff <protocol>"."""
    _check_side_by_side(frame)
    if attack not in TABLE_NUMBER:
        raise ValueError(f"attack must be one of {sorted(TABLE_NUMBER)}, got {attack!r}")
    f = frame[frame["attack"] == attack]
    if f.empty:
        raise ValueError(f"no {attack} cells in the frame")
    protocols = list(dict.fromkeys(f["protocol"]))

    def eps_label(e: float) -> str:
        if isinstance(e, float) and math.isnan(e):
            return "unbounded"
        return "clean" if e == 0 else f"eps {e:g}"

    index = ["setup", "defence", "alpha"]
    f = f.assign(eps_label=f["eps"].map(eps_label), alpha=f["alpha"].fillna(_NA))
    pieces = []
    first = f[f["protocol"] == protocols[0]]
    pieces.append(first.pivot_table(index=index, columns="eps_label", values="paper",
                                    sort=False, dropna=False).stack(future_stack=True)
                  .rename("paper"))
    for proto in protocols:
        g = f[f["protocol"] == proto]
        for what, col in (("ours", "ours"), ("diff", "diff")):
            pieces.append(g.pivot_table(index=index, columns="eps_label", values=col,
                                        sort=False, dropna=False).stack(future_stack=True)
                          .rename(f"{what} {proto}"))
    long = pd.concat(pieces, axis=1)
    wide = long.unstack("eps_label")
    wide.columns = wide.columns.swaplevel(0, 1)
    labels = list(dict.fromkeys(f["eps_label"]))
    whats = ["paper", *[f"{w} {p}" for p in protocols for w in ("ours", "diff")]]
    wide = wide.reindex(columns=pd.MultiIndex.from_product([labels, whats]))
    setups = list(dict.fromkeys(first["setup"]))
    order = sorted(dict.fromkeys(map(tuple, first[index].itertuples(index=False))),
                   key=lambda k: setups.index(k[0]))  # stable: the paper's order per set-up
    wide = wide.reindex(pd.MultiIndex.from_tuples(order, names=index))
    wide.index = wide.index.set_levels(
        wide.index.levels[2].map(lambda a: "" if a == _NA else f"{a:g}"), level=2)
    return wide


def paper_wide(setup: str) -> pd.DataFrame:
    """The paper's numbers for one set-up (our name, e.g. "cifar-lenet") as one table: one line
    per defence and alpha, one column per attack and eps ("FGSM eps 0.05", ..., "DeepFool",
    "CW", "clean"), in the printed order; NaN where the paper prints "/"."""
    t = paper_table()
    t = t[t["setup"] == setup]
    if t.empty:
        raise ValueError(f"setup must be one of {sorted(SETUP_NAMES.values())}, got {setup!r}")
    column = [a if a in ("DeepFool", "CW", "clean") else f"{a} eps {e:g}"
              for a, e in zip(t["attack"], t["eps"], strict=True)]
    alpha = ["" if math.isnan(a) else f"{a:g}" for a in t["alpha"]]
    t = t.assign(column=column, alpha=alpha)
    wide = t.set_index(["defence", "alpha", "column"])["accuracy"].unstack("column")
    rows = list(dict.fromkeys(zip(t["defence"], t["alpha"], strict=True)))
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=["defence", "alpha"]),
                        columns=list(dict.fromkeys(column)))
    wide.columns.name = None
    return wide


def read_provenance(results_csv: str | os.PathLike) -> pd.DataFrame:
    """The provenance of a results CSV, from its ``<csv>.meta.json`` (written by
    :func:`lslib.experiments.run_sweep`): one row per session that wrote it, with the command,
    start and end, wall seconds, rows computed, models trained, git commit and dirty flag,
    source hash, device, torch and lslib versions and whether the session completed."""
    meta_path = Path(f"{os.fspath(results_csv)}.meta.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"no provenance file {meta_path} beside {results_csv}")
    meta = json.loads(meta_path.read_text())
    cols = ["command", "started", "finished", "wall_seconds", "rows_computed", "models_trained",
            "git_commit", "git_dirty", "source_hash", "device", "torch_version",
            "lslib_version", "complete"]
    return pd.DataFrame([{c: s.get(c) for c in cols} for s in meta.get("sessions", [])],
                        columns=cols)


# --------------------------------------------------------------------------------------------
# a miniature of one set-up, for the chapter's live widget and its alpha/T/eps explorer
# --------------------------------------------------------------------------------------------

_METHODS = {"ALS": "adversarial", "SLS": "standard", "BLS": "boltzmann", "SBLS": "second_best"}


def train_and_attack(method: str | None, alpha: float, temperature: float,
                     eps: list[float] | tuple[float, ...], *, train: TensorData,
                     test: TensorData, model: str = "mlp", dataset: str = "mnist",
                     epochs: int = 2, lr: float = 2e-3, pgd_steps: int = 10, seed: int = 0,
                     device: str | None = None) -> pd.DataFrame:
    """Train one model on ``train`` with label smoothing ``method`` ("ALS", "SLS", "BLS",
    "SBLS", or None / alpha 0 for the natural model; BLS at ``temperature`` on the probability
    scale), then attack ``test`` with FGSM and L-inf PGD (``pgd_steps`` steps of 2.5 eps /
    steps, random start) at every budget in ``eps`` (on [0, 1] pixels), each with the two attack
    losses of the two protocols: the model's own smoothed target (the paper's code, eq. (2)
    with the method's q) and the true-label cross-entropy.

    Returns one row per (loss, attack, eps): method ("natural" when alpha is 0), alpha, T (NaN
    unless BLS), loss ("smoothed target" / "true label"), attack ("FGSM" / "PGD"), eps,
    accuracy (robust accuracy), clean_accuracy, train_seconds.
    """
    import torch

    from lslib.attacks import bim, fgsm, robust_accuracy
    from lslib.models import build_model
    from lslib.train import TrainConfig, build_loss, seed_everything, train_model

    if method is not None and method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)} or None, got {method!r}")
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    if method is not None and alpha == 0:
        method = None
    if method is None:
        alpha = 0.0
    if any(not e >= 0 for e in eps):
        raise ValueError(f"every eps must be >= 0, got {list(eps)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = TrainConfig(model=model, dataset=dataset, method=_METHODS.get(method or ""),
                      alpha=alpha, temperature=temperature if method == "BLS" else 1.0,
                      epochs=epochs, lr=lr, seed=seed, train_limit=len(train))
    seed_everything(seed)
    net = build_model(model).to(dev)
    fit = train_model(net, train, cfg, device=dev, progress=False)
    losses = {"smoothed target": build_loss(cfg, reduction="none"), "true label": "ce"}
    gen = torch.Generator(device=dev)
    rows = []
    for loss_name, loss in losses.items():
        for e in eps:
            gen.manual_seed(seed)
            attacks = {"FGSM": lambda m, x, y, e=e, loss=loss: fgsm(m, x, y, e, loss=loss),
                       "PGD": lambda m, x, y, e=e, loss=loss: bim(
                           m, x, y, e, steps=pgd_steps, random_start=True, loss=loss,
                           generator=gen)}
            for name, attack in attacks.items():
                rep = robust_accuracy(net, test.x, test.y, attack, progress=False)
                rows.append({"method": method or "natural", "alpha": alpha,
                             "T": temperature if method == "BLS" else math.nan,
                             "loss": loss_name, "attack": name, "eps": float(e),
                             "accuracy": rep.robust_accuracy,
                             "clean_accuracy": rep.clean_accuracy,
                             "train_seconds": fit.seconds})
    return pd.DataFrame(rows)


#: Where the committed results of this project can be read over the network (a Colab runtime has
#: the chapter but not the repository's ``results/`` folder).
RESULTS_URL = "https://raw.githubusercontent.com/lslib/label-smoothing-robustness/main/results/"


def find_results(*names: str, search: Sequence[str | os.PathLike] = ("../results", "results"),
                 download: bool = False, url: str = RESULTS_URL) -> Path | None:
    """The first folder of ``search`` that holds every file of ``names`` (a chapter runs in
    ``book/``, a script at the repository's root). Where none does: with ``download``, the
    files are fetched from ``url`` into ``./results`` (e.g. on Colab) and that folder is
    returned; else None."""
    if not names:
        raise ValueError("find_results needs at least one file name")
    for folder in map(Path, search):
        if all((folder / n).is_file() for n in names):
            return folder
    if not download:
        return None
    import urllib.request

    local = Path("results")
    local.mkdir(exist_ok=True)
    for n in names:
        urllib.request.urlretrieve(url + n, local / n)
    return local
