"""Published robust accuracies to read beside ours: each entry is a QUOTE, with its source.

These are other people's numbers, on their models, test sets and attacks; nothing here was
computed by lslib. Each was checked against the source named in ``source`` (a repository file at
a commit, or a paper's abstract) when it was entered; ``checked`` says what was read. Accuracies
are in percent, as the sources give them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LITERATURE", "literature_table"]

_MOSBACH = ("Mosbach et al. 2018, README of uds-lsv/evaluating-logit-pairing-methods "
            "(commit 4c33976)")
_AA = "Croce & Hein 2020, README of fra31/auto-attack (commit 0185c79)"

#: One dict per quoted result. ``baseline`` / ``strongest``: the robust accuracy under the
#: source's baseline attack and under its strongest one (None where the source gives none).
LITERATURE: tuple[dict[str, Any], ...] = (
    dict(cite="Mosbach et al. 2018", source=_MOSBACH,
         dataset="MNIST", eps="0.3", defence="logit squeezing (LSQ)",
         clean=98.8, baseline=70.6, baseline_attack="their baseline attack",
         strongest=5.0, strongest_attack="PGD, many iterations and random restarts",
         checked="README table 'MNIST'; eps 0.3: the README does not state it, their "
         "eval.py's default --eps is 76.5 on the 0-255 scale"),
    dict(cite="Mosbach et al. 2018", source=_MOSBACH,
         dataset="MNIST", eps="0.3", defence="clean logit pairing (CLP)",
         clean=98.8, baseline=62.4, baseline_attack="their baseline attack",
         strongest=4.1, strongest_attack="PGD, many iterations and random restarts",
         checked="README table 'MNIST'"),
    dict(cite="Mosbach et al. 2018", source=_MOSBACH,
         dataset="MNIST", eps="0.3", defence="natural (Plain)",
         clean=99.2, baseline=0.0, baseline_attack="their baseline attack",
         strongest=0.0, strongest_attack="PGD, many iterations and random restarts",
         checked="README table 'MNIST'"),
    dict(cite="Mosbach et al. 2018", source=_MOSBACH,
         dataset="CIFAR-10", eps="not stated in the README",
         defence="logit squeezing (LSQ)", clean=81.7, baseline=27.0,
         baseline_attack="their baseline attack", strongest=1.7,
         strongest_attack="PGD, many iterations and random restarts",
         checked="README table 'CIFAR-10'"),
    dict(cite="Fu et al. 2020", source="Fu et al. 2020, arXiv 2009.08233 (abstract)",
         dataset="CIFAR-10", eps="-",
         defence="label smoothing (WideResNet)", clean=None, baseline=75.0,
         baseline_attack="PGD ('at most')", strongest=None,
         strongest_attack="transfer from a naturally trained model: 'cannot defend'",
         checked="abstract: up to 75 % under PGD, fails under transferred attacks"),
    dict(cite="Croce & Hein 2020", source=_AA,
         dataset="MNIST", eps="0.3", defence="PGD adversarial training "
         "(Madry et al. 2018)", clean=98.53, baseline=89.62, baseline_attack="as reported",
         strongest=88.43, strongest_attack="AutoAttack",
         checked="README table 'MNIST - Linf', row 6"),
    dict(cite="Croce & Hein 2020", source=_AA,
         dataset="MNIST", eps="0.3", defence="TRADES (Zhang et al. 2019)",
         clean=99.48, baseline=95.60, baseline_attack="as reported", strongest=92.76,
         strongest_attack="AutoAttack", checked="README table 'MNIST - Linf', row 3"),
    dict(cite="Croce & Hein 2020", source=_AA,
         dataset="CIFAR-10", eps="8/255", defence="PGD adversarial training "
         "(Madry et al. 2018)", clean=87.14, baseline=47.04, baseline_attack="as reported",
         strongest=44.29, strongest_attack="AutoAttack",
         checked="README table 'CIFAR-10 - Linf', row 14"),
)


def literature_table() -> Any:
    """:data:`LITERATURE` as a DataFrame (accuracies in percent, the sources' numbers)."""
    import pandas as pd

    df = pd.DataFrame(list(LITERATURE))
    return df[["cite", "dataset", "eps", "defence", "clean", "baseline", "baseline_attack",
               "strongest", "strongest_attack", "source", "checked"]]
