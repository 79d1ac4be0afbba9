"""``mlops deploy|promote|rollback|status``: moves between environments, and what each serves."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mlops.commands.common import context, parser, release_args, site
from mlops.core.task import TASKS
from mlops.release import deploy
from mlops.serving.torchserve import ENVIRONMENTS

# the metrics a status line shows: each task's first three, in its order
HEADLINES = list(dict.fromkeys(m for task in TASKS.values() for m in task.metric_names[:3]))


def deploy_main(argv: Sequence[str] | None = None) -> int:
    p = parser("deploy", "deploy the archive to staging: register, wait READY, check, set-default")
    p.add_argument("env", choices=["staging"])
    release_args(p)
    args = p.parse_args(argv)
    deploy.deploy_staging(context(args, "deploy"))
    return 0


def promote_main(argv: Sequence[str] | None = None) -> int:
    p = parser("promote", "promote the archive that passed staging to production, and tag it in git")
    p.add_argument("env", choices=["production"])
    p.add_argument("--force", action="store_true", help="promote even a model older than production's")
    release_args(p)
    args = p.parse_args(argv)
    deploy.promote_production(context(args, "promote"), force=args.force)
    return 0


def rollback_main(argv: Sequence[str] | None = None) -> int:
    p = parser("rollback", "make the previous version the default again (no retraining)")
    p.add_argument("env", choices=ENVIRONMENTS)
    args = p.parse_args(argv)
    deploy.rollback(site(args, "rollback"), args.env)
    return 0


def status_main(argv: Sequence[str] | None = None) -> int:
    p = parser("status", "per environment: serving version, its commit, metrics, when deployed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = deploy.status(site(args, "status"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if row["state"] == "down":
            print(f"{row['environment']:<11} down ({row['url']})")
            continue
        metrics = ", ".join(f"{k} {row['metrics'][k]:.4f}" for k in HEADLINES if k in row["metrics"])
        commit = f"{row['commit']} + uncommitted changes" if row.get("dirty") else row["commit"]
        print(
            f"{row['environment']:<11} version {row['version']}  commit {commit}  deployed {row['deployed']}\n"
            f"{'':<11} registered {', '.join(row['registered'])}  {metrics}"
        )
    return 0
