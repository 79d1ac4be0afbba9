"""``mlops deploy|promote|rollback|status``: moves between environments, and what each serves."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import context, parser, release_args, site
from mlops.core import paths
from mlops.core.artifacts import read_json
from mlops.core.errors import UserError
from mlops.core.lineage import file_sha256
from mlops.core.task import TASKS
from mlops.release import deploy, records
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


def pending_main(argv: Sequence[str] | None = None) -> int:
    p = parser("pending", "deploy=true|false: whether production's record names another archive than this one")
    p.add_argument("--package", type=Path, default=paths.PACKAGE, help="the archive's record")
    args = p.parse_args(argv)
    package = read_json(args.package)
    archive = args.package.parent / package["archive"]
    if not archive.exists():
        raise UserError(f"{archive}: no model archive (run `dvc repro` or `dvc pull`)")
    sha256 = file_sha256(archive)
    if sha256 != package["sha256"]:
        raise UserError(
            f"{archive}: sha256 {sha256[:12]}... is not the {package['sha256'][:12]}... {args.package} names"
        )
    found = records.production_record(args.root)
    serving = found[1].get("sha256") if found else None
    pending = serving != sha256
    why = (
        "production has no record yet" if found is None
        else f"production's record {found[0]} names {str(serving)[:12]}..." if pending
        else f"production's record {found[0]} already names this archive: nothing to deploy"
    )  # fmt: skip
    print(f"{archive} sha256 {sha256[:12]}...: {why}", file=sys.stderr)
    print(f"deploy={str(pending).lower()}\nsha256={sha256}")
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
        print(
            f"{row['environment']:<11} version {row['version']}  commit {row['commit']}  deployed {row['deployed']}\n"
            f"{'':<11} registered {', '.join(row['registered'])}  {metrics}"
        )
    return 0
