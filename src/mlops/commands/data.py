"""``mlops data``: write the example data set (loan batches); ``--next`` lands one more period."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.errors import UserError
from mlops.core.progress import Progress
from mlops.example import data as example_data

EXAMPLE_ONLY = (
    "{params} has no `data:` section: `mlops data` writes the example loan data, in the example repository "
    "only. Your own table comes in with `mlops init --data ...`, later batches with `mlops ingest`."
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlops data", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--params", default=paths.PARAMS, help="reads the 'data' section (default: %(default)s)")
    p.add_argument("--out", type=Path, default=paths.RAW, help="(default: %(default)s)")
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
    p.add_argument("--landing", type=Path, default=paths.LANDING, help="with --next (default: %(default)s)")
    args = p.parse_args(argv)
    params = load_params(args.params).data
    if params is None:
        raise UserError(EXAMPLE_ONLY.format(params=args.params))
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
        path = example_data.land_next(params, args.out, args.landing, tuple(args.fault), progress)
        progress(f"landed {path}; `mlops ingest` takes it from there")
        return 0
    for stale in args.out.glob("*.csv") if args.out.is_dir() else []:
        stale.unlink()
    written = example_data.generate(params, args.out, faults=tuple(args.fault), progress=progress)
    progress(f"{len(written)} batches of the {params.task} example under {args.out}")
    return 0
