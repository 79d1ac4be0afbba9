"""``mlops init``: make a table of your own the repository's data (contract, params, batches, DVC)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.core.progress import Progress
from mlops.pipeline.onboarding import init_project
from mlops.pipeline.profiling import InitParams


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mlops init",
        description="Profile a table (CSV or Parquet, a path or URL) and make it the repository's data: "
        "data/contract.yaml with a comment per inferred choice, params.yaml's names, split and gates for the "
        "task, time-ordered batches under data/raw tracked by DVC, and a commit of what changed.",
    )
    p.add_argument("--data", required=True, metavar="PATH_OR_URL", help="the table")
    p.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    p.add_argument("--task", choices=["auto", "binary", "multiclass", "regression"], default="auto")
    p.add_argument("--time", metavar="COL", help="the time column: batches and the holdout follow it")
    p.add_argument("--time-format", metavar="FMT", help="how the time column reads (strftime, e.g. %%Y-%%m or %%b)")
    p.add_argument("--id", metavar="COL", help="an entity id: never a feature; joins late labels")
    p.add_argument("--name", help="the model's name (default: the table's file name)")
    p.add_argument("--force", action="store_true", help="replace data that is already your own (not the example)")
    p.add_argument("--no-commit", action="store_true", help="leave the changes uncommitted")
    p.add_argument("--root", type=Path, default=Path(), help="repository root (default: here)")
    args = p.parse_args(argv)
    if args.time_format and not args.time:
        p.error("--time-format needs --time")
    spec = InitParams(args.data, args.target, args.task, args.time, args.time_format, args.id, args.name)
    progress = Progress("init")
    result = init_project(args.root, spec, force=args.force, commit=not args.no_commit, progress=progress)
    contract = result.profile.contract
    if result.commit:
        progress(f"committed as {result.commit[:12]} (`git show` to review)")
    print(f"\n{contract.name}: {contract.task} on '{contract.target}', {len(contract.features)} features")
    for s in result.settings:
        print(f"  params {s.key} = {s.value}  ({s.why})")
    print("\nCheck by hand (data/contract.yaml says why for every column):")
    for line in [*result.checks, "the ranges (observed values plus a margin) and max_missing of each column"]:
        print(f"  - {line}")
    print("\nThen: `make demo` (dvc repro, local staging and production) and `make test`.")
    return 0
