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
    "data": ("mlops.cli", "write the example data set (loan batches) under data/raw"),
    "validate": ("mlops.stages.validate", "validate data/raw against the contract (Great Expectations)"),
    "split": ("mlops.stages.split", "split validated data into train and holdout"),
    "train": ("mlops.stages.train", "train the pipeline, log it to MLflow"),
    "evaluate": ("mlops.stages.evaluate", "score the model on the holdout; metrics and plots"),
    "package": ("mlops.stages.package", "build the TorchServe model archive (.mar)"),
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
    for stale in args.out.glob("*.csv") if args.out.is_dir() else []:
        stale.unlink()
    paths = example_data.generate(params, args.out, faults=tuple(args.fault), progress=progress)
    progress(f"{len(paths)} batches of the {params.task} example under {args.out}")
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
    if name == "data":
        return run(_data, rest)
    stage: Callable[[Sequence[str] | None], int] = importlib.import_module(COMMANDS[name][0]).main
    return stage(rest)


if __name__ == "__main__":
    raise SystemExit(main())
