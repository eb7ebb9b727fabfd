"""The command line: ``python -m lslib <command>`` (or ``lslib <command>`` once installed).

Commands (argparse subparsers; add a new one with a ``_add_<name>`` function and an entry in
:data:`COMMANDS`):

- ``reproduce SETUP [SETUP ...]``: run the paper's sweep for the set-ups (``mnist-linear``,
  ``mnist-lenet``, ``cifar-lenet``, ``cifar-resnet``, ``svhn-lenet`` or ``all``) under one or both
  attack protocols, resumable; writes a results CSV (+ ``.journal.jsonl`` and ``.meta.json``).
- ``compare [RESULTS.csv ...]``: the paper's Tables 2-6 beside ours, cell for cell, with the
  difference, and per protocol and table the share of the paper's MNIST cells within 0.05.
- ``setups``: the set-ups, their models, training settings and protocols.
- ``audit --model NAME --checkpoint FILE --eps EPS ...``: the gradient-masking checklist of
  :mod:`lslib.audit` for a saved model (``python -m lslib audit --help`` lists its options).

Examples::

    python -m lslib reproduce mnist-lenet --protocol strong
    python -m lslib reproduce mnist-linear mnist-lenet --data-root ../shared/data
    python -m lslib reproduce mnist-linear mnist-lenet --workers 2     # a local Ray, 2 CPUs
    python -m lslib reproduce all --address auto --gpus-per-task 0.5  # a Ray cluster's GPUs
    python -m lslib reproduce cifar-lenet --quick --synthetic --out /tmp/q.csv   # CI smoke test
    python -m lslib compare results/mnist-lenet.csv --protocol paper --attack FGSM
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lslib import _cli

__all__ = ["COMMANDS", "build_parser", "entry_point", "main"]


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from lslib.experiments import _METHOD_OF, ATTACK_NAMES, PROTOCOLS, SETUPS
    from lslib.runner import add_execution_arguments

    p = sub.add_parser("reproduce", help="run the paper's sweep for one or more set-ups",
                       description="Train (or load from the cache) every model of the sweep and "
                       "attack it; resumable: run the same command again after an interruption.")
    p.add_argument("setups", nargs="+", metavar="SETUP",
                   help=f"one or more of {', '.join(SETUPS)}, or 'all'")
    p.add_argument("--protocol", default="both", choices=[*PROTOCOLS, "both"],
                   help="attack protocol (default: both)")
    p.add_argument("--quick", action="store_true",
                   help="tiny training slices, test slices and attack iterations (CI)")
    p.add_argument("--synthetic", action="store_true",
                   help="random tensors of the right shape instead of the data (smoke tests)")
    p.add_argument("--data-root", type=_cli.data_dir(), default=None,
                   help="data folder (default: $LSLIB_DATA)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download missing data sets (needs a network)")
    p.add_argument("--device", type=_cli.device_type(), default=None,
                   help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--out", type=_cli.output_file(), default=None,
                   help="results CSV (default: results/<setups>[-quick][-synthetic].csv)")
    p.add_argument("--cache", type=_cli.output_dir(), default=None,
                   help="model cache folder (default: $LSLIB_CACHE or ~/.cache/lslib/models)")
    p.add_argument("--seed", type=_cli.int_at_least(0), default=0)
    p.add_argument("--methods", type=_cli.name_list(_METHOD_OF, none_ok=True),
                   default=("ALS", "SLS", "BLS", "SBLS"),
                   help="comma-separated smoothing methods, or none (default: ALS,SLS,BLS,SBLS)")
    p.add_argument("--alphas", type=_cli.float_list(_cli.UNIT),
                   default=(0.005, 0.1, 0.4), help="smoothing parameters, each in [0, 1]")
    p.add_argument("--temperatures", type=_cli.float_list(_cli.POSITIVE),
                   default=None,
                   help="BLS temperatures, each > 0, probability scale (default: the "
                        "protocol's: 0.001, under original 0.01)")
    p.add_argument("--baselines", default=("natural", "PGD-AT"),
                   type=_cli.name_list(("natural", "PGD-AT"), none_ok=True),
                   help="comma-separated natural,PGD-AT, or none (default: both)")
    p.add_argument("--attacks", type=_cli.name_list(ATTACK_NAMES),
                   default=ATTACK_NAMES)
    p.add_argument("--eps", type=_cli.float_list(_cli.NONNEGATIVE), default=None,
                   help="FGSM/BIM budgets in the paper's units, each >= 0 (default: the "
                   "set-up's)")
    p.add_argument("--n-test", type=_cli.int_at_least(1), default=None,
                   help="test images per attack for every protocol (default: the protocol's)")
    p.add_argument("--lenet-start", type=_cli.existing_file(), default=None, metavar="FILE",
                   help="--protocol original: the MNIST LeNet starts from these weights (the "
                   "authors' lenet_mnist_model.pth) instead of a checkpoint trained here")
    p.add_argument("--pgd-clean-weight", type=_cli.number(_cli.UNIT), default=None,
                   metavar="W", help="--protocol original: PGD-AT trains on W * clean + (1 - W) "
                   "* PGD (default 0.75, the authors' module as it last ran; 0.5 is their "
                   "committed source)")
    p.add_argument("--pgd-epochs", type=_cli.int_at_least(1), default=None, metavar="N",
                   help="--protocol original: PGD-AT trains for N epochs, the 20 natural ones "
                   "included (default: the authors' checkpoints', 69 on the MLP and 39 on the "
                   "LeNet; 50 is their runner's default)")
    p.add_argument("--epochs", type=_cli.int_at_least(1), default=None, metavar="N",
                   help="--protocol original: the smoothing and natural models train for at "
                   "most N epochs (default: 10 on the MLP, 50 on the LeNet, the lengths that "
                   "match the published cells best; 50 is the authors' runner's default; PGD-AT "
                   "keeps --pgd-epochs); the default output's name ends in -epochs-N where N "
                   "is not 50")
    p.add_argument("--threads", type=_cli.int_at_least(1), default=None,
                   help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--max-rows", type=_cli.int_at_least(1), default=None,
                   help=argparse.SUPPRESS)
    add_execution_arguments(p)
    p.set_defaults(func=_reproduce)


def _start_suffix(start: Any) -> str:
    """The default output's mark of a LeNet start file (a :class:`lslib.original.StartFile`, or
    None): "-authors-start" for the authors' checkpoint, "-start-<first 12 hex digits of its
    SHA-256>" for another file."""
    if start is None:
        return ""
    from lslib.original import AUTHORS_LENET_SHA256

    sha = start.sha256
    return "-authors-start" if sha == AUTHORS_LENET_SHA256 else f"-start-{sha[:12]}"


def _reproduce(args: argparse.Namespace) -> int:
    from lslib.experiments import SETUPS, OutputBusyError, Sweep, SweepInterrupted, run_sweep
    from lslib.paper_tables import side_by_side
    from lslib.runner import RunnerError, execution_from_args

    setups = list(SETUPS) if args.setups == ["all"] else args.setups
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        print(f"unknown set-up(s) {unknown}: choose from {', '.join(SETUPS)} or 'all'",
              file=sys.stderr)
        return 2
    protocols = ("paper", "strong") if args.protocol == "both" else (args.protocol,)
    try:
        sweep = Sweep(setups=tuple(setups), protocols=protocols, methods=args.methods,
                      alphas=args.alphas, temperatures=args.temperatures,
                      baselines=args.baselines, attacks=args.attacks, eps=args.eps,
                      seed=args.seed, quick=args.quick, n_test=args.n_test,
                      data_source="synthetic" if args.synthetic else "real",
                      lenet_start=None if args.lenet_start is None else str(args.lenet_start),
                      pgd_clean_weight=args.pgd_clean_weight, pgd_epochs=args.pgd_epochs,
                      epochs=args.epochs)
        execution = execution_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = None
    if args.lenet_start is not None:  # a damaged or wrong file fails here, not in a worker
        from lslib.original import StartFile, read_start_file

        start = StartFile.of(args.lenet_start)
        read_start_file(start)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out
    if out is None:
        stem = "-".join(setups) + ("-original" if args.protocol == "original" else "") + (
            _start_suffix(start)
            + (_epochs_suffix(setups, args.epochs)
               if args.protocol == "original" and not args.quick else "")
            + ("-quick" if args.quick else "")
            + ("-synthetic" if args.synthetic else ""))
        out = Path("results") / f"{stem}.csv"
    command = _cli.command_line("python -m lslib", args.argv)
    try:
        table = run_sweep(sweep, out, cache=args.cache, data_root=args.data_root,
                          device=args.device, download=args.download,
                          progress=not args.no_progress, command=command,
                          max_rows=args.max_rows, execution=execution,
                          log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (OutputBusyError, RunnerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SweepInterrupted as exc:
        print(exc, file=sys.stderr)
        return 130
    print(f"wrote {out} ({len(table)} rows)")
    cmp = side_by_side(table)
    if len(cmp) and cmp["ours"].notna().any():
        summary = (cmp.dropna(subset=["paper", "ours"]).assign(abs_diff=lambda d: d["diff"].abs())
                   .groupby(["setup", "protocol", "attack"], sort=False)
                   .agg(cells=("diff", "size"), mean_diff=("diff", "mean"),
                        mean_abs_diff=("abs_diff", "mean")))
        print("ours - paper, by set-up, protocol and attack "
              f"(details: python -m lslib compare {out}):")
        print(summary.round(3).to_string())
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from lslib.experiments import ATTACK_NAMES, PROTOCOLS, SETUPS

    p = sub.add_parser("compare", help="the paper's Tables 2-6 beside a results CSV",
                       description="Print the paper's cells beside ours, cell for cell, with "
                       "the difference ours - paper.")
    p.add_argument("results", type=_cli.existing_file(), nargs="*",
                   help="CSVs written by `lslib reproduce` (default: the MNIST ones of "
                   "results/ that exist; the LeNet's original protocol from the authors' "
                   "checkpoint where it ran)")
    p.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                   help="only this protocol")
    p.add_argument("--attack", default=None, choices=list(ATTACK_NAMES),
                   help="only this attack")
    p.add_argument("--setup", default=None, choices=list(SETUPS), help="only this set-up")
    p.add_argument("--bls-temperature", type=_cli.number(_cli.POSITIVE),
                   default=None, help="which of our BLS temperatures to compare (> 0; default: "
                   "each protocol's, 0.001, under original 0.01)")
    p.add_argument("--csv", type=_cli.output_file(), default=None,
                   help="also write the side-by-side table here")
    p.add_argument("--summary", action="store_true",
                   help="only the share of the paper's cells within 0.05, per protocol and table")
    p.add_argument("--epochs", type=_cli.int_at_least(1), default=None, metavar="N",
                   help="with the default CSVs: the original protocol's from the models trained "
                   "for at most N epochs (the -epochs-N files of `reproduce --epochs N`)")
    p.set_defaults(func=_compare)


#: compare's default CSVs, per set-up: of each group, the first that exists in results/ (the
#: LeNet's original protocol from the authors' own checkpoint, else from one trained here);
#: ``{}`` is where the original protocol's names take the training length (:func:`_epochs_suffix`)
DEFAULT_RESULTS = (("mnist-linear", ("mnist-linear.csv",)),
                   ("mnist-lenet", ("mnist-lenet.csv",)),
                   ("mnist-linear", ("mnist-linear-original{}.csv",
                                     "mnist-linear-original{}-slice1000.csv")),
                   ("mnist-lenet", ("mnist-lenet-original-authors-start{}.csv",
                                    "mnist-lenet-original-authors-start{}-slice1000.csv",
                                    "mnist-lenet-original{}.csv")))


def _epochs_suffix(setups: Iterable[str], epochs: int | None = None) -> str:
    """``-epochs-N`` where the original protocol's smoothing and natural models of ``setups``
    train for N epochs other than the authors' runner's 50 (``epochs``, else each set-up's
    :data:`lslib.original.TRAINING_EPOCHS`), lengths that differ joined (``-epochs-10-50``)."""
    from lslib.experiments import SETUPS
    from lslib.original import MODELS, length_suffix, training_epochs

    lengths = sorted({training_epochs(SETUPS[s].model, epochs) for s in setups
                      if SETUPS[s].model in MODELS})
    if len(lengths) < 2:
        return length_suffix(lengths[0]) if lengths else ""
    return "-epochs-" + "-".join(map(str, lengths))


def _run_complete(path: Path) -> bool:
    """Whether the run that wrote ``path`` finished every row: its meta file's last session
    says so (a table without a meta file, not written by the runner, counts as complete)."""
    import json

    meta = path.with_name(path.name + ".meta.json")
    if not meta.is_file():
        return True
    try:
        sessions = json.loads(meta.read_text()).get("sessions") or [{}]
    except (OSError, ValueError, AttributeError):
        return True  # the table itself is checked when it is read
    return bool(sessions[-1].get("complete"))


def _default_results(folder: Path, epochs: int | None = None) -> list[Path]:
    """Of each group of :data:`DEFAULT_RESULTS`, the first file in ``folder`` whose run is
    complete (a run still going, or stopped, gives way to the next file of its group), else
    the first that exists. The original protocol's groups take the files of its models as each
    set-up trains them (:data:`lslib.original.TRAINING_EPOCHS`), or, with ``epochs``, of the
    models trained for at most that many epochs (``<name>-epochs-N.csv``, none where N is 50)."""
    found = []
    for setup, names in DEFAULT_RESULTS:
        group = tuple(n.format(_epochs_suffix([setup], epochs)) for n in names)
        present = [folder / n for n in group if (folder / n).is_file()]
        path = next((p for p in present if _run_complete(p)), present[0] if present else None)
        if path is not None:
            found.append(path)
    return found


def _compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from lslib._files import read_results_checked
    from lslib.paper_tables import (
        format_share_within,
        format_side_by_side,
        share_within,
        side_by_side,
    )

    if args.epochs is not None and args.results:
        print("error: --epochs picks among the default CSVs: give either CSVs or --epochs",
              file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.results] or _default_results(Path("results"), args.epochs)
    if args.epochs is not None:
        names = ", ".join(p.name for p in paths if "original" in p.name) or "none in results/"
        print(f"the original protocol's rows: the models trained for at most {args.epochs} "
              f"epochs ({names})")
    if not paths:
        print("no results to compare: give CSVs written by `lslib reproduce` (none in results/)",
              file=sys.stderr)
        return 2
    ours = pd.concat([read_results_checked(p) for p in paths], ignore_index=True)
    frame = side_by_side(ours, protocol=args.protocol,
                         bls_temperature="protocol" if args.bls_temperature is None
                         else args.bls_temperature)
    if args.attack:
        frame = frame[frame["attack"] == args.attack]
    if args.setup:
        frame = frame[frame["setup"] == args.setup]
    if frame.empty:
        print("nothing to compare (no matching set-up, protocol or attack)", file=sys.stderr)
        return 1
    if not args.summary:
        print(format_side_by_side(frame))
    mnist = frame[frame["setup"].isin(["mnist-linear", "mnist-lenet"])]
    if len(mnist):
        print(format_share_within(share_within(mnist)))
        for name, cells in mnist.groupby("setup", sort=False) if mnist["setup"].nunique() > 1 \
                else ():
            print(format_share_within(share_within(cells)).replace(
                "share of the paper's cells", f"{name}: share of its cells", 1))
    if args.csv:
        frame.to_csv(args.csv, index=False)
    return 0


def _add_setups(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("setups", help="list the set-ups and the protocols")
    p.set_defaults(func=_setups)


def _setups(args: argparse.Namespace) -> int:
    from lslib.experiments import PROTOCOLS, SETUPS

    for s in SETUPS.values():
        at = s.adversarial_training()
        print(f"{s.name:13s} {s.table_name!r:15s} data={s.dataset:8s} model={s.model:12s} "
              f"epochs={s.epochs} batch={s.batch_size} lr={s.lr:g} eps={list(s.eps)} "
              f"eps_scale={s.eps_scale:g} pgd_at=(eps {at.eps:g}, step {at.step_size:g})")
    for p in PROTOCOLS.values():
        print(f"protocol {p.name}:")
        for a in ("FGSM", "BIM", "DeepFool", "CW"):
            print(f"  {a:8s} {p.describe(a)}")
    return 0


def _add_audit(sub: argparse._SubParsersAction) -> None:
    # listed here for the help; main() hands everything after `audit` to lslib.audit's own parser
    sub.add_parser("audit", add_help=False,
                   help="gradient-masking checklist for a saved model (see audit --help)")


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge results CSVs of runs that split one sweep",
                       description="Merge the results tables PART... (runs that split one "
                       "sweep between processes or machines, each with its own --out) into OUT, "
                       "with every run's provenance; a row computed twice with different "
                       "numbers, or rows of different seeds, are refused.")
    p.add_argument("out", type=_cli.output_file(), metavar="OUT",
                   help="the merged results CSV (created, or added to)")
    p.add_argument("parts", nargs="+", type=_cli.existing_file(), metavar="PART",
                   help="results CSVs written by `lslib reproduce`")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from lslib.experiments import OutputBusyError, merge_results

    try:
        table = merge_results(args.out, args.parts)
    except (ValueError, OutputBusyError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(table)} rows)")
    return 0


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "reproduce": _add_reproduce,
    "compare": _add_compare,
    "merge": _add_merge,
    "setups": _add_setups,
    "audit": _add_audit,
}


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.OneLineParser(prog="lslib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        from lslib.audit import main as audit_main

        return _cli.report_user_errors("python -m lslib audit", lambda: audit_main(argv[1:]))
    args = build_parser().parse_args(argv)
    args.argv = argv
    return _cli.report_user_errors("lslib", lambda: int(args.func(args) or 0))


def entry_point() -> int:
    """``python -m lslib`` and the ``lslib`` script: :func:`main` in a process of its own, with
    the allocator keeping freed memory (:func:`lslib.allocator.keep_freed_memory`)."""
    from lslib.allocator import keep_freed_memory

    keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(entry_point())
