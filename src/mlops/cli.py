"""The ``mlops`` command: one subcommand per action, each with its own ``--help``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mlops.stages import run

# name -> (module with main(argv), one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("mlops.cli", "write the example data set (loan batches) under data/raw; --next lands one period"),
    "demo-data": ("mlops.cli", "another name for `data`"),
    "validate": ("mlops.stages.validate", "validate data/raw against the contract (Great Expectations)"),
    "split": ("mlops.stages.split", "split validated data into train and holdout"),
    "train": ("mlops.stages.train", "train the pipeline, log it to MLflow"),
    "evaluate": ("mlops.stages.evaluate", "score the model on the holdout; metrics and plots"),
    "package": ("mlops.stages.package", "build the TorchServe model archive (.mar)"),
    "ingest": ("mlops.cli", "validate landed batches; add valid ones to data/raw, quarantine the rest"),
}


def _data(argv: Sequence[str] | None) -> int:
    from mlops import example_data
    from mlops.config import load_params
    from mlops.progress import Progress

    p = argparse.ArgumentParser(prog="mlops data", description=COMMANDS["data"][1])
    p.add_argument("--params", default="params.yaml", help="reads the 'data' section (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("data/raw"), help="(default: %(default)s)")
    p.add_argument("--seed", type=int, help="override data.seed")
    p.add_argument("--periods", type=int, help="override data.periods")
    p.add_argument("--rows", type=int, help="override data.rows_per_period")
    p.add_argument("--task", choices=["binary", "multiclass", "regression"], help="override data.task")
    p.add_argument("--drift", type=float, help="override data.drift (downturn size, in standard deviations)")
    p.add_argument("--drift-start", type=int, help="override data.drift_start (first drifted period, from 1)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:COLUMN]",
        help=f"break the newest batch on purpose; KIND is one of: {', '.join(example_data.FAULTS)}",
    )
    p.add_argument(
        "--next",
        action="store_true",
        help="land only the period after the newest one in data/raw (and --landing), into --landing",
    )
    p.add_argument("--landing", type=Path, default=Path("data/landing"), help="with --next (default: %(default)s)")
    args = p.parse_args(argv)
    params = load_params(args.params).data
    overrides = {
        "seed": args.seed,
        "periods": args.periods,
        "rows_per_period": args.rows,
        "task": args.task,
        "drift": args.drift,
        "drift_start": args.drift_start,
    }
    params = params.model_validate(params.model_dump() | {k: v for k, v in overrides.items() if v is not None})
    progress = Progress("data")
    if args.next:
        index = example_data.next_period(params.start, [args.out, args.landing])
        paths = example_data.generate(params, args.landing, range(index, index + 1), tuple(args.fault), progress)
        progress(f"landed period {index + 1} in {args.landing}; `mlops ingest` takes it from there")
        return 0
    for stale in args.out.glob("*.csv") if args.out.is_dir() else []:
        stale.unlink()
    paths = example_data.generate(params, args.out, faults=tuple(args.fault), progress=progress)
    progress(f"{len(paths)} batches of the {params.task} example under {args.out}")
    return 0


def _ingest(argv: Sequence[str] | None) -> int:
    from mlops.contract import load_contract
    from mlops.ingest import ingest
    from mlops.progress import Progress

    p = argparse.ArgumentParser(prog="mlops ingest", description=COMMANDS["ingest"][1])
    p.add_argument("--landing", default="data/landing", help="a folder or fsspec URL, e.g. s3://bucket/landing")
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--quarantine", type=Path, default=Path("data/quarantine"))
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--no-dvc", action="store_true", help="do not `dvc add` data/raw afterwards")
    args = p.parse_args(argv)
    progress = Progress("ingest")
    result = ingest(args.landing, args.raw, args.quarantine, load_contract(args.contract), progress, not args.no_dvc)
    progress(
        f"{len(result.added)} added, {len(result.quarantined)} quarantined in {args.quarantine}, "
        f"{len(result.duplicates)} already present"
    )
    return 0


def _usage() -> str:
    from mlops.commands import COMMANDS as MORE

    summaries = {name: summary for name, (_, summary) in COMMANDS.items()}
    summaries |= {name: summary for name, (_, summary) in MORE.items()}
    width = max(map(len, summaries))
    lines = ["usage: mlops COMMAND [options]   (mlops COMMAND --help for each)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in summaries.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    from mlops import commands

    if name in commands.COMMANDS:
        return commands.main(name, rest)
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if name in ("data", "demo-data"):
        return run(_data, rest)
    if name == "ingest":
        return run(_ingest, rest)
    stage: Callable[[Sequence[str] | None], int] = importlib.import_module(COMMANDS[name][0]).main
    return stage(rest)


if __name__ == "__main__":
    raise SystemExit(main())
