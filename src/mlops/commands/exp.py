"""``mlops exp best``: the DVC experiment with the best metric, and how it becomes a pull request."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.core.errors import UserError
from mlops.pipeline.experiments import best_experiment


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlops exp", description="Choose among this commit's DVC experiments.")
    sub = p.add_subparsers(dest="action", required=True)
    best = sub.add_parser("best", help="the finished experiment with the best metric (dvc exp show's values)")
    best.add_argument("--metric", required=True, help="a metric dvc exp show lists, e.g. roc_auc")
    best.add_argument("--lower", action="store_true", help="lower is better (log_loss, rmse)")
    best.add_argument("--root", type=Path, default=Path(), help="the repository (default: here)")
    args = p.parse_args(argv)

    import dvc.api  # slow to import: only this command needs it
    from dvc.exceptions import DvcException

    try:
        rows = dvc.api.exp_show(repo=str(args.root))
    except DvcException as e:
        raise UserError(f"dvc exp show: {str(e)[:300]}") from None
    chosen = best_experiment(rows, args.metric, higher_is_better=not args.lower)
    print(f"{chosen.name}\t{args.metric} {chosen.value:g}\t(rev {chosen.rev})")
    branch = f"exp/{chosen.name}"
    print(f"take it into the loop: dvc exp branch {chosen.name} {branch}, push the branch, open a pull request")
    return 0
