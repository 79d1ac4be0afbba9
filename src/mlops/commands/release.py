"""``mlops deploy|promote|rollback|reconcile|status|publish|pending``: moves between environments, and their records."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import context, parser, release_args, site
from mlops.core import paths
from mlops.core.artifacts import read_json
from mlops.core.config import load_params
from mlops.core.errors import UserError
from mlops.core.lineage import file_sha256
from mlops.core.progress import Progress
from mlops.release import environments, records
from mlops.release.environments import Options
from mlops.release.publish import archive_prefix, prefix_variable, publish, publish_layout
from mlops.serving.torchserve import ENVIRONMENTS


def move_args(p: argparse.ArgumentParser) -> None:
    """How a move is recorded: the commit it deploys and a remote to push its git record to first."""
    p.add_argument(
        "--commit",
        default="HEAD",
        help="the commit being deployed, whose dvc.lock names the archive (default: HEAD; CI passes its sha)",
    )
    p.add_argument("--push", metavar="REMOTE", help="push the record's git tags to REMOTE before switching")


def options(args: argparse.Namespace) -> Options:
    return Options(commit=args.commit, push=args.push, force=getattr(args, "force", False))


def deploy_main(argv: Sequence[str] | None = None) -> int:
    p = parser("deploy", "deploy the archive to staging: register, wait READY, check, set-default")
    p.add_argument("env", choices=["staging"])
    release_args(p)
    move_args(p)
    args = p.parse_args(argv)
    from mlops.release import deploy  # pandas and scikit-learn: only moves with an archive need them

    deploy.deploy_staging(context(args, "deploy"), options(args))
    return 0


def promote_main(argv: Sequence[str] | None = None) -> int:
    p = parser("promote", "promote the archive that passed staging to production, and record it in git")
    p.add_argument("env", choices=["production"])
    p.add_argument("--force", action="store_true", help="promote even a commit older than production's")
    release_args(p)
    move_args(p)
    args = p.parse_args(argv)
    from mlops.release import deploy  # pandas and scikit-learn: only moves with an archive need them

    deploy.promote_production(context(args, "promote"), options(args))
    return 0


def rollback_main(argv: Sequence[str] | None = None) -> int:
    p = parser("rollback", "make the previous version the default again (no retraining)")
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--to", metavar="VERSION", help="the version to serve again (default: the previous one)")
    move_args(p)
    args = p.parse_args(argv)
    environments.rollback(site(args, "rollback"), args.env, options(args), to=args.to)
    return 0


def reconcile_main(argv: Sequence[str] | None = None) -> int:
    p = parser("reconcile", "bring an environment's server, ledger, git tag and MLflow alias in line")
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--push", metavar="REMOTE", help="push any git tag it writes to REMOTE")
    args = p.parse_args(argv)
    s = site(args, "reconcile")
    with s.lock(args.env):
        state = environments.converge(s, args.env, s.client(args.env), Options(push=args.push))
    record = state.record
    s.progress(
        f"{args.env}: serves {state.serving or 'nothing'}" + (f"; in line with {state.source}" if record else "")
    )
    return 0


def publish_main(argv: Sequence[str] | None = None) -> int:
    p = parser("publish", "upload the archive to MLOPS_<ENV>_ARCHIVE_URL_PREFIX as <name>-<version>.mar, verified")
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--package", type=Path, default=paths.PACKAGE, help="the archive's record")
    p.add_argument("--prefix", help="the fsspec URL prefix (default: $MLOPS_<ENV>_ARCHIVE_URL_PREFIX)")
    p.add_argument(
        "--layout",
        action="store_true",
        help="publish the folder <prefix>/<name>-<version>/ a KServe storageUri names (config/, model-store/)",
    )
    args = p.parse_args(argv)
    progress = Progress("publish")
    try:
        package = json.loads(args.package.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{args.package}: cannot read the archive's record ({e})") from None
    archive = args.package.parent / package["archive"]
    if not archive.exists():
        raise UserError(f"{archive}: no model archive (run `dvc repro` or `dvc pull`)")
    if file_sha256(archive) != package["sha256"]:
        raise UserError(f"{archive}: sha256 differs from {args.package}; rebuild it with `dvc repro package`")
    prefix = args.prefix or archive_prefix(args.env)
    if args.layout:
        with tempfile.TemporaryDirectory() as tmp:
            serve = load_params(args.params).serve
            done = publish_layout(
                archive, package["sha256"], prefix, package["name"], package["version"], serve, Path(tmp)
            )
    else:
        done = publish(archive, package["sha256"], prefix, package["name"], package["version"])
    where = (args.prefix and "--prefix") or prefix_variable(args.env)
    said = "published" if done.uploaded else "already published"
    progress(f"{said} {done.url} (sha256 {done.sha256[:12]}..., read back and verified; prefix from {where})")
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
    p = parser("status", "per environment: serving version, its commit, metrics, when deployed, what differs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = environments.status(site(args, "status"))
    from mlops.core.task import TASKS  # numpy and scikit-learn: only the table needs the metric names

    headlines = list(dict.fromkeys(m for task in TASKS.values() for m in task.metric_names[:3]))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if row["state"] == "down":
            print(f"{row['environment']:<11} down ({row['url']})")
        else:
            metrics = ", ".join(f"{k} {row['metrics'][k]:.4f}" for k in headlines if k in row["metrics"])
            commit = f"{row['commit']} + uncommitted changes" if row.get("dirty") else row["commit"]
            print(
                f"{row['environment']:<11} version {row['version']}  commit {commit}  "
                f"deployed {row['deployed']}\n"
                f"{'':<11} registered {', '.join(row['registered'])}  {metrics}"
            )
        if row["record"]:
            print(f"{'':<11} record: {row['record']['version']} ({row['source']})")
        for problem in row["problems"]:
            print(f"{'':<11} warning: {problem}")
        for difference in row["differences"]:
            print(f"{'':<11} DIFFERS: {difference} (`mlops reconcile {row['environment']}` repairs it)")
    return 0
