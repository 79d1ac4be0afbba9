"""`mlops serve|deploy|promote|rollback|status|bench|pr|report`: thin adapters over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlops.config import load_params
from mlops.contract import load_contract
from mlops.deploy import Context, Site
from mlops.errors import UserError
from mlops.progress import Progress
from mlops.torchserve import ENVIRONMENTS, LocalServer, local_server, resolve


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"mlops {prog}", description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--root", type=Path, default=Path(), help="repository root (git tags, MLflow default)")
    serve_dir = Path(os.environ.get("MLOPS_SERVE_DIR", "serve"))
    runtime_dir = Path(os.environ.get("MLOPS_RUNTIME_DIR", ".serve"))
    p.add_argument("--serve-dir", type=Path, default=serve_dir, help="environment configs (default: %(default)s)")
    p.add_argument(
        "--runtime-dir", type=Path, default=runtime_dir, help="model stores, logs, keys (default: %(default)s)"
    )
    return p


def _release_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--package", type=Path, default=Path("models/package.json"), help="the archive's record")
    p.add_argument("--model", type=Path, default=Path("models/pipeline.joblib"), help="offline model for parity")
    p.add_argument("--holdout", type=Path, default=Path("data/split/holdout.parquet"))


def _site(args: argparse.Namespace, stage: str) -> Site:
    return Site(args.root, load_params(args.params), args.serve_dir, args.runtime_dir, Progress(stage))


def _context(args: argparse.Namespace, stage: str) -> Context:
    return Context.load(_site(args, stage), load_contract(args.contract), args.package, args.model, args.holdout)


def serve_main(argv: Sequence[str] | None) -> int:
    p = _parser("serve", "start, stop or show the local TorchServe environments")
    p.add_argument(
        "action",
        choices=["up", "down", "status", "request", "replay"],
        help="request: print a ready-to-paste curl; replay: send --batch rows as traffic",
    )
    p.add_argument("--batch", type=Path, action="append", default=[], help="replay: CSV batch(es) to send")
    p.add_argument("--rows-per-request", type=int, default=20)
    p.add_argument("--labels-to", type=Path, help="replay: also write the batch's ground truth here (late labels)")
    p.add_argument("env", nargs="?", choices=ENVIRONMENTS, help="one environment (default: both)")
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--holdout", type=Path, default=Path("data/split/holdout.parquet"))
    args = p.parse_args(argv)
    progress = Progress("serve")
    for env in [args.env] if args.env else list(ENVIRONMENTS):
        server = local_server(env, args.serve_dir, args.runtime_dir)
        if args.action == "up":
            ep = server.up()
            progress(f"{env}: up, inference {ep.inference_url}, management {ep.management_url}")
            progress(f"{env}: tokens in {server.home / 'key_file.json'}")
        elif args.action == "down":
            progress(f"{env}: {'stopped' if server.down() else 'was not running'}")
        elif args.action == "replay":
            _replay(server, args, progress)
        elif args.action == "request":
            print(_curl(server, load_params(args.params).serve.model_name, args.contract, args.holdout))
        else:
            state = f"up (pid {server.pid()})" if server.pid() else "down"
            progress(f"{env}: {state}, inference {server.props['inference_address']}")
    return 0


def _curl(server: LocalServer, name: str, contract: Path, holdout: Path) -> str:
    """A request a person can paste: the first holdout row, with this environment's token."""
    from mlops.datasets import read_table
    from mlops.inference import records

    endpoint = server.endpoint()
    if not endpoint.inference_token:
        raise UserError(f"{server.name} is not running (`mlops serve up {server.name}`)")
    c = load_contract(contract)
    row = records(read_table(holdout).head(1), [c.id, *c.features] if c.id else c.features)[0]
    return (
        f"curl -s {endpoint.inference_url}/predictions/{name} \\\n"
        f"  -H 'Authorization: Bearer {endpoint.inference_token}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(row)}'"
    )


def _replay(server: LocalServer, args: argparse.Namespace, progress: Progress) -> None:
    """Send batches through an environment as clients would; optionally land their labels."""
    from mlops.datasets import read_batch
    from mlops.inference import records
    from mlops.torchserve import Client

    contract = load_contract(args.contract)
    name = load_params(args.params).serve.model_name
    client = Client(server.endpoint())
    for path in args.batch:
        frame = read_batch(path, contract)
        rows = records(frame, [c for c in [contract.id, *contract.features] if c])
        failed = 0
        for start in range(0, len(rows), args.rows_per_request):
            status, _ = client.predict(name, rows[start : start + args.rows_per_request])
            failed += status != 200
        progress(f"{server.name}: replayed {len(rows):,} rows of {path.name} ({failed} failed requests)")
        if args.labels_to and contract.id:
            args.labels_to.mkdir(parents=True, exist_ok=True)
            frame[[contract.id, contract.target]].to_csv(args.labels_to / path.name, index=False)


def deploy_main(argv: Sequence[str] | None) -> int:
    p = _parser("deploy", "deploy the archive to staging: register, wait READY, check, set-default")
    p.add_argument("env", choices=["staging"])
    _release_args(p)
    args = p.parse_args(argv)
    from mlops.deploy import deploy_staging

    deploy_staging(_context(args, "deploy"))
    return 0


def promote_main(argv: Sequence[str] | None) -> int:
    p = _parser("promote", "promote the archive that passed staging to production, and tag it in git")
    p.add_argument("env", choices=["production"])
    p.add_argument("--force", action="store_true", help="promote even a model older than production's")
    _release_args(p)
    args = p.parse_args(argv)
    from mlops.deploy import promote_production

    promote_production(_context(args, "promote"), force=args.force)
    return 0


def rollback_main(argv: Sequence[str] | None) -> int:
    p = _parser("rollback", "make the previous version the default again (no retraining)")
    p.add_argument("env", choices=ENVIRONMENTS)
    args = p.parse_args(argv)
    from mlops.deploy import rollback

    rollback(_site(args, "rollback"), args.env)
    return 0


def status_main(argv: Sequence[str] | None) -> int:
    p = _parser("status", "per environment: serving version, its commit, metrics, when deployed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from mlops.deploy import status

    rows = status(_site(args, "status"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if row["state"] == "down":
            print(f"{row['environment']:<11} down ({row['url']})")
            continue
        metrics = ", ".join(
            f"{k} {v:.4f}"
            for k, v in sorted(row["metrics"].items())
            if k in ("roc_auc", "f1", "rmse", "r2", "accuracy")
        )
        print(
            f"{row['environment']:<11} version {row['version']}  commit {row['commit']}  deployed {row['deployed']}\n"
            f"{'':<11} registered {', '.join(row['registered'])}  {metrics}"
        )
    return 0


def bench_main(argv: Sequence[str] | None) -> int:
    p = _parser(
        "bench", "serving benchmark: 1-row requests at concurrency 1/4/16, 100-row requests, in-process ceiling"
    )
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--seconds", type=float, default=8.0, help="per load level (default: %(default)s)")
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--model", type=Path, default=Path("models/pipeline.joblib"))
    p.add_argument("--holdout", type=Path, default=Path("data/split/holdout.parquet"))
    p.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    args = p.parse_args(argv)
    from mlops import bench
    from mlops.artifacts import load_pipeline
    from mlops.datasets import read_table
    from mlops.inference import Predictor

    site = _site(args, "bench")
    contract = load_contract(args.contract)
    rows = bench.sample_rows(read_table(args.holdout), contract.features)
    endpoint = site.endpoint(args.env, start=False)
    report = {
        "environment": args.env,
        "served": bench.served(endpoint, site.name, rows, args.seconds, site.progress),
        "in_process": bench.in_process(Predictor(load_pipeline(args.model), contract, "bench"), rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(bench.table(report))
    print(f"-> {args.out}")
    return 0


def _report(args: argparse.Namespace, repro_result: Any) -> int:
    from mlops import report

    params = load_params(args.params)
    built = report.build(
        args.root, args.base, load_contract(args.contract), params.gates, args.out.parent, repro_result
    )
    args.out.write_text(built.render())
    kb = sum(p.stat().st_size for p in args.out.parent.iterdir() if p.is_file()) / 1024
    print(f"report: {args.out} ({kb:.0f} KB with its pictures)")
    if built.failures:
        print(f"gate failed: {'; '.join(built.failures)}", file=sys.stderr)
        return 1
    print("gate passed")
    return 0


def _pr_parser(name: str, description: str) -> argparse.ArgumentParser:
    p = _parser(name, description)
    p.add_argument("--base", default="main", help="git revision to compare with (default: %(default)s)")
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--out", type=Path, default=Path("reports/pr/pr-report.md"), help="(default: %(default)s)")
    return p


def report_main(argv: Sequence[str] | None) -> int:
    args = _pr_parser(
        "report", "write the PR report against --base and production; exit 1 if the gate fails"
    ).parse_args(argv)
    return _report(args, None)


def pr_main(argv: Sequence[str] | None) -> int:
    args = _pr_parser("pr", "what the PR workflow runs: dvc repro, the report, the gate").parse_args(argv)
    from mlops import report

    result = report.repro(args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return _report(args, result)


def monitor_main(argv: Sequence[str] | None) -> int:
    p = _parser(
        "monitor", "latency, errors, predictions, missing values, drift and late-label metrics of an environment"
    )
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--contract", type=Path, default=Path("data/contract.yaml"))
    p.add_argument("--log-dir", help="prediction log: a folder or fsspec URL (default: the local server's)")
    p.add_argument("--labels", default="data/labels", help="late ground truth, CSVs of id + target: a folder or URL")
    p.add_argument("--reference", type=Path, help="training reference (default: production's, via DVC at its tag)")
    p.add_argument("--lookback-hours", type=float, help="override monitor.lookback_hours")
    p.add_argument("--since", type=float, help="only predictions logged after this Unix time")
    p.add_argument("--out", type=Path, default=Path("reports/monitor.md"))
    args = p.parse_args(argv)
    from mlops import monitor as mon

    site = _site(args, "monitor")
    params = site.params
    if args.lookback_hours:
        params = params.model_copy(
            update={"monitor": params.monitor.model_copy(update={"lookback_hours": args.lookback_hours})}
        )
    contract = load_contract(args.contract)
    endpoint = resolve(args.env, args.serve_dir, args.runtime_dir)
    local = endpoint.local
    log_dir = args.log_dir or (local.home / "predictions" if local else None)
    if log_dir is None:
        raise UserError(f"remote {args.env}: pass --log-dir with the server's prediction log")
    reference, offline = _reference(args, site)
    result = mon.monitor(
        args.env, contract, params.monitor, params.gates, log_dir, reference, offline,
        metrics_url=endpoint.metrics_url, server_logs=local.logs if local else None, labels_dir=args.labels,
        since=args.since,
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(mon.render(result, args.out.with_suffix(""), params.monitor.psi_threshold))
    args.out.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=2, default=float) + "\n")
    site.progress(f"{result.rows:,} logged predictions in {result.seconds:.1f}s -> {args.out}")
    if result.breaches:
        for b in result.breaches:
            print(f"BREACH {b}", file=sys.stderr)
        print(f"error: {len(result.breaches)} threshold(s) breached in {args.env}", file=sys.stderr)
        return 1
    site.progress("no threshold breached")
    return 0


def _reference(args: argparse.Namespace, site: Site) -> tuple[Any, dict[str, float]]:
    """The training reference and offline metrics of the model production serves."""
    import io

    import pandas as pd

    from mlops import records
    from mlops.artifacts import read_json
    from mlops.datasets import read_table

    if args.reference:
        return read_table(args.reference), read_json(Path("reports/metrics.json"))
    tags = records.production_tags(site.root)
    if tags:
        _, tag, record = tags[-1]
        import dvc.api

        try:
            with dvc.api.open("models/reference.parquet", repo=str(site.root), rev=tag, mode="rb") as f:
                return pd.read_parquet(io.BytesIO(f.read())), record.get("metrics", {})
        except Exception as e:  # DVC raises many kinds; say which and fall back
            site.progress(f"production's reference not available at {tag} ({e}); using models/reference.parquet")
    return read_table(site.root / "models" / "reference.parquet"), read_json(site.root / "reports" / "metrics.json")


def cycle_main(argv: Sequence[str] | None) -> int:
    p = _parser("cycle", "play one continuous-training round locally (after make demo)")
    p.add_argument("--periods", type=int, default=3, help="new periods that arrive (default: %(default)s)")
    p.add_argument("--drift", type=float, default=1.5, help="their downturn size (default: %(default)s)")
    args = p.parse_args(argv)
    from mlops.cycle import play

    result = play(args.root.resolve(), args.periods, args.drift, Progress("cycle"))
    print(json.dumps(result, indent=2))
    return 0


COMMANDS = {
    "serve": (serve_main, "start/stop/show local TorchServe environments (up|down|status [ENV])"),
    "deploy": (deploy_main, "deploy the model archive to staging, with checks"),
    "promote": (promote_main, "promote what passed staging to production; git tag"),
    "rollback": (rollback_main, "make the previous version the default again"),
    "status": (status_main, "what each environment serves"),
    "bench": (bench_main, "serving benchmark against an environment"),
    "pr": (pr_main, "what the PR workflow runs: dvc repro, report vs base and production, gate"),
    "report": (report_main, "the PR report and gate only (no dvc repro)"),
    "monitor": (monitor_main, "monitor an environment; exit 1 on any breached threshold"),
    "cycle": (cycle_main, "one continuous-training round, locally: drift, monitor, retrain PR, deploy"),
}


def main(name: str, argv: Sequence[str] | None) -> int:
    try:
        return COMMANDS[name][0](argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
