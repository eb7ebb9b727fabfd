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

import math

import pandas as pd

__all__ = [
    "ALPHAS",
    "EPS",
    "SETUP_NAMES",
    "TABLES",
    "format_side_by_side",
    "paper_table",
    "side_by_side",
]

ALPHAS = (0.005, 0.1, 0.4)
EPS = (0.05, 0.2, 0.4)
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


def side_by_side(ours: pd.DataFrame, *, protocol: str | None = None,
                 bls_temperature: float | None = 0.001) -> pd.DataFrame:
    """The paper's cells beside ours, for the set-ups (and protocols) present in ``ours``.

    ``ours`` is a results table of :func:`lslib.experiments.run_sweep`. Our BLS rows are taken at
    temperature ``bls_temperature`` (None: keep every T). Returns one row per paper cell and
    protocol, columns setup, protocol, defence, alpha, T, attack, eps, paper, ours, diff
    (ours - paper), n, l2_median (ours, DeepFool/CW), paper_best; cells we did not run have
    ``ours`` NaN.
    """
    o = ours.copy()
    if protocol is not None:
        o = o[o["protocol"] == protocol]
    if bls_temperature is not None and "T" in o:
        bls = o["defence"] == "BLS"
        o = o[~bls | (o["T"] - bls_temperature).abs().le(1e-12 * max(bls_temperature, 1))]
    p = paper_table()
    p = p[p["setup"].isin(o["setup"].unique())]
    out = []
    for proto, group in o.groupby("protocol", sort=False):
        left = p.assign(protocol=proto).fillna({"alpha": _NA, "eps": _NA})
        extra = [c for c in ("l2_median",) if c in group]
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
        lines.append("")
    return "\n".join(lines)
