"""Deploy, promote and roll back: register, warm, check, then set-default (a pointer swap).

Runtime-agnostic: TorchServe is reached only through ``mlops.serving.torchserve``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.core import paths
from mlops.core.artifacts import load_pipeline, read_json
from mlops.core.config import Params
from mlops.core.contract import Contract
from mlops.core.errors import MlopsError, UserError
from mlops.core.lineage import file_sha256
from mlops.core.task import Task, task_of
from mlops.pipeline.compiled import CompiledPipeline, compile_pipeline
from mlops.pipeline.datasets import read_table
from mlops.pipeline.evaluation import gate_failures
from mlops.pipeline.features import features_and_target
from mlops.release import records
from mlops.serving.inference import records as to_records
from mlops.serving.torchserve import Client, Endpoint, local_server, resolve
from mlops.serving.traffic import CHECK_TRAFFIC


@dataclass
class Check:
    """One deployment check's verdict, its detail in words and the figures behind it."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


class DeployError(MlopsError):
    """A new version failed its checks: it was unregistered and the old default keeps serving (exit 1)."""


@dataclass
class Site:
    """Where environments are configured and recorded; enough for status and rollback."""

    root: Path
    params: Params
    serve_dir: Path
    runtime_dir: Path
    progress: Callable[[str], None] = print

    @property
    def name(self) -> str:
        """The served model's name (``serve.model_name``)."""
        return self.params.serve.model_name

    def ledger(self, env: str) -> records.Ledger:
        """The deployment ledger of ``env``."""
        return records.Ledger(self.runtime_dir / env / "deployments.jsonl")

    def endpoint(self, env: str, start: bool = True) -> Endpoint:
        """Where ``env`` answers; a local server that is down is started, or (without ``start``) refused."""
        endpoint = resolve(env, self.serve_dir, self.runtime_dir)
        if endpoint.local is not None and endpoint.local.pid() is None:
            if not start:
                raise UserError(f"{env}: local TorchServe is not running (`mlops serve up {env}`)")
            self.progress(f"{env}: local TorchServe is not running; starting it")
            endpoint = local_server(env, self.serve_dir, self.runtime_dir).up()
        return endpoint

    def client(self, env: str, start: bool = True) -> Client:
        """A client of ``env``'s server; a local one that is down is started (or, without ``start``, an error).

        Its predictions are the deployment checks': marked, so that monitoring leaves them out.
        """
        return Client(self.endpoint(env, start), traffic=CHECK_TRAFFIC)

    def running(self, env: str) -> Client | None:
        """A client of ``env``'s server, or None when it is a local server that is not running."""
        endpoint = resolve(env, self.serve_dir, self.runtime_dir)
        if endpoint.local is not None and endpoint.local.pid() is None:
            return None
        return Client(endpoint)


@dataclass
class Context(Site):
    """A site plus one release: the archive, its record, the offline model and the holdout."""

    contract: Contract | None = None
    archive: Path = Path()
    package: dict[str, Any] = field(default_factory=dict)
    pipeline: Path = paths.PIPELINE
    holdout: Path = paths.HOLDOUT

    @classmethod
    def load(cls, site: Site, contract: Contract, package_file: Path, pipeline: Path, holdout: Path) -> Context:
        """A release of the archive ``package_file`` records.

        Checks that the archive and the offline model are the ones it names (sha256); raises
        UserError otherwise.
        """
        site.params.gates.check_metrics(task_of(contract).metric_names, contract.task)
        package = read_json(package_file)
        archive = package_file.parent / package["archive"]
        if not archive.exists():
            raise UserError(f"{archive}: no model archive (run `dvc repro` or `dvc pull`)")
        if file_sha256(archive) != package["sha256"]:
            raise UserError(f"{archive}: sha256 differs from {package_file}; rebuild it with `dvc repro package`")
        if file_sha256(pipeline) != package["model_sha256"]:
            raise UserError(f"{pipeline} is not the model inside {archive}; run `dvc repro` (or `dvc pull`)")
        return cls(
            **vars(site), contract=contract, archive=archive, package=package, pipeline=pipeline, holdout=holdout
        )

    @property
    def version(self) -> str:
        """The archive's version (a hash of its content)."""
        return str(self.package["version"])

    @cached_property
    def model(self) -> CompiledPipeline:
        """The offline model, loaded and compiled once for every check: it scores as evaluation did."""
        return compile_pipeline(load_pipeline(self.pipeline), self.task_contract.features)

    @property
    def task_contract(self) -> Contract:
        """The contract of this release."""
        assert self.contract is not None
        return self.contract

    @cached_property
    def task(self) -> Task:
        """The contract's task, in the offline model's class order."""
        return task_of(self.task_contract).for_model(self.model)


# ---- checks, each against the new version's own endpoint -------------------------------------


def _served_table(
    client: Client, name: str, version: str, rows: list[dict[str, Any]], chunk: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), chunk):
        status, body = client.predict(name, rows[start : start + chunk], version)
        if status != 200:
            raise UserError(f"HTTP {status}: {body}")
        out.extend(body["predictions"])
    return out


def check_smoke(ctx: Context, client: Client, frame: pd.DataFrame) -> Check:
    """Holdout rows sent one by one to the new version must each answer 200 with its version."""
    rows = to_records(frame.head(ctx.params.deploy.smoke_rows), ctx.task_contract.features)
    bad = []
    for i, row in enumerate(rows):
        status, body = client.predict(ctx.name, row, ctx.version)
        if status != 200 or body.get("model_version") != ctx.version:
            bad.append(f"row {i}: HTTP {status} {str(body)[:200]}")
    return Check(
        "smoke", not bad, f"{len(rows) - len(bad)}/{len(rows)} rows answered 200" + (f"; {bad[0]}" if bad else "")
    )


def check_contract(ctx: Context, client: Client, frame: pd.DataFrame) -> Check:
    """Malformed JSON and a wrongly typed field must answer 400 with an error body."""
    row = to_records(frame.head(1), ctx.task_contract.features)[0]
    field_name = ctx.task_contract.features[0]
    cases = {"malformed JSON": b"{not json", "wrong type": [dict(row, **{field_name: {"nested": True}})]}
    wrong = []
    for label, body in cases.items():
        status, answer = client.predict(ctx.name, body, ctx.version)
        if status != 400 or not isinstance(answer, dict) or "error" not in answer:
            wrong.append(f"{label}: HTTP {status}")
    return Check("contract", not wrong, "malformed requests answer 400" if not wrong else "; ".join(wrong))


def check_parity(ctx: Context, client: Client, frame: pd.DataFrame) -> Check:
    """Served predictions must equal the offline model's exactly on ``deploy.parity_rows`` rows."""
    sample = frame.head(ctx.params.deploy.parity_rows)
    X, _ = features_and_target(sample, ctx.task_contract)
    served = _served_table(client, ctx.name, ctx.version, to_records(sample, ctx.task_contract.features), 100)
    offline, online = ctx.task.outputs(ctx.model, X), ctx.task.from_answers(served)
    mismatched = int((offline != online).reshape(len(sample), -1).any(axis=1).sum())
    return Check(
        "parity",
        mismatched == 0,
        f"{len(sample) - mismatched}/{len(sample)} served predictions equal offline ones exactly",
        {"rows": len(sample), "mismatched": mismatched},
    )


def check_quality(ctx: Context, client: Client, frame: pd.DataFrame) -> Check:
    """Metrics of served predictions on the holdout must meet the absolute gates."""
    n = ctx.params.deploy.quality_rows or len(frame)
    sample = frame.head(n)
    _, y = features_and_target(sample, ctx.task_contract)
    served = _served_table(client, ctx.name, ctx.version, to_records(sample, ctx.task_contract.features), 500)
    metrics = ctx.task.metrics(y, ctx.task.from_answers(served))
    failures = gate_failures(metrics, ctx.params.gates.minimum, ctx.params.gates.maximum)
    shown = ", ".join(
        f"{k} {metrics[k]:.4f}" for k in [*ctx.params.gates.minimum, *ctx.params.gates.maximum] if k in metrics
    )
    scalar = {k: float(v) for k, v in metrics.items() if isinstance(v, float)}
    return Check(
        "quality", not failures, f"on {len(sample)} served holdout rows: " + ("; ".join(failures) or shown), scalar
    )


def check_latency(ctx: Context, client: Client, frame: pd.DataFrame) -> Check:
    """A burst of 1-row requests must meet ``deploy.latency`` (p99, throughput, no failure)."""
    gate = ctx.params.deploy.latency
    bodies = to_records(frame.head(200), ctx.task_contract.features)
    result = client.load(f"/predictions/{ctx.name}/{ctx.version}", bodies, gate.concurrency, gate.duration_s)
    problems = []
    if result.failures:
        problems.append(f"{result.failures} failed requests")
    if result.p99_ms > gate.max_p99_ms:
        problems.append(f"p99 {result.p99_ms:.0f} ms > {gate.max_p99_ms:.0f} ms")
    if result.rps < gate.min_rps:
        problems.append(f"{result.rps:.0f} requests/s < {gate.min_rps:.0f}")
    shown = f"p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, "
    shown += f"{result.rps:.0f} requests/s at concurrency {gate.concurrency}"
    return Check("latency", not problems, "; ".join(problems) or shown, result.to_dict())


CHECKS = (check_smoke, check_contract, check_parity, check_quality, check_latency)


def run_checks(ctx: Context, client: Client) -> list[Check]:
    """Every check against the new version's own endpoint; stops after a failed smoke check."""
    frame = read_table(ctx.holdout)
    results = []
    for check in CHECKS:
        t0 = time.perf_counter()
        try:
            result = check(ctx, client, frame)
        except MlopsError as e:
            result = Check(check.__name__.removeprefix("check_"), False, str(e))
        ctx.progress(
            f"  {'pass' if result.passed else 'FAIL'} {result.name}: {result.detail} ({time.perf_counter() - t0:.1f}s)"
        )
        results.append(result)
        if not result.passed and result.name == "smoke":
            break  # nothing else can pass
    return results


# ---- the moves ---------------------------------------------------------------------------------


def _record(ctx: Context, env: str, action: str, checks: list[Check]) -> records.Deployment:
    return records.Deployment(
        environment=env,
        action=action,
        version=ctx.version,
        sha256=ctx.package["sha256"],
        model_sha256=ctx.package["model_sha256"],
        git_commit=ctx.package.get("git_commit", "unknown"),
        metrics=ctx.package.get("metrics", {}),
        checks={c.name: {"passed": c.passed, "detail": c.detail, **c.figures} for c in checks},
    )


def _mirror_alias(ctx: Site, env: str, entry: records.Deployment) -> None:
    from mlops.pipeline import tracking  # mlflow is slow to import; only deployments need it here

    found = tracking.set_alias(
        ctx.root,
        ctx.params.mlflow.registered_model,
        env,
        entry.model_sha256,
        {"archive_sha256": entry.sha256, "archive_version": entry.version},
    )
    if found:
        entry.mlflow_run, entry.mlflow_version = found
        ctx.progress(f"MLflow: alias '{env}' -> {ctx.params.mlflow.registered_model} v{found[1]}")
    else:
        ctx.progress(f"MLflow: no run here logged this model; alias '{env}' not moved")


def release(ctx: Context, env: str, action: str) -> records.Deployment | None:
    """Register the archive as a new version, check it, and make it the default, or roll it back.

    None when the environment already serves this version (nothing to do).
    """
    client = ctx.client(env)
    started = time.perf_counter()
    versions = {v["version"]: v for v in client.versions(ctx.name)}
    previous = client.default_version(ctx.name)
    if previous == ctx.version:
        ctx.progress(f"{env} already serves {ctx.name} {ctx.version}; nothing to do")
        return None
    registered_here = ctx.version not in versions
    if registered_here:
        url = client.install(ctx.archive, ctx.name, ctx.version)
        ctx.progress(f"{env}: registering {ctx.name} {ctx.version} ({url})")
        client.register(url, ctx.params.deploy.ready_timeout_s, ctx.params.serve.max_batch_delay_ms)
    client.wait_ready(ctx.name, ctx.version, ctx.params.deploy.ready_timeout_s)
    ctx.progress(f"{env}: {ctx.version} workers READY after {time.perf_counter() - started:.1f}s; checking it")
    checks = run_checks(ctx, client)
    failed = [c for c in checks if not c.passed]
    if failed:
        if registered_here:
            client.unregister(ctx.name, ctx.version)
        ctx.ledger(env).append(_record(ctx, env, "rejected", checks))
        kept = f"; {previous} keeps serving" if previous else ""
        raise DeployError(
            f"{env}: {ctx.name} {ctx.version} rejected ({', '.join(c.name for c in failed)} failed){kept}\n"
            + "\n".join(f"  {c.name}: {c.detail}" for c in failed)
        )
    t_switch = time.perf_counter()
    client.set_default(ctx.name, ctx.version)
    ctx.progress(
        f"{env}: {ctx.name} {ctx.version} is the default (was {previous or 'none'}); "
        f"register to default {t_switch - started:.1f}s"
    )
    _retire(ctx, client, keep={ctx.version} | ({previous} if previous else set()))
    entry = _record(ctx, env, action, checks)
    entry.checks["seconds_to_default"] = round(t_switch - started, 2)
    _mirror_alias(ctx, env, entry)
    ctx.ledger(env).append(entry)
    return entry


def _retire(ctx: Context, client: Client, keep: set[str]) -> None:
    for v in client.versions(ctx.name):
        if v["version"] not in keep and not v["default"]:
            client.unregister(ctx.name, v["version"])
            ctx.progress(f"retired {ctx.name} {v['version']}")


def deploy_staging(ctx: Context) -> records.Deployment | None:
    """Release the archive to staging (see ``release``)."""
    return release(ctx, "staging", "deploy")


def promote_production(ctx: Context, force: bool = False) -> records.Deployment | None:
    """Promote the archive that passed staging; tag the promotion in git."""
    if not ctx.ledger("staging").passed(ctx.package["sha256"]):
        raise UserError(
            f"{ctx.archive} (sha256 {ctx.package['sha256'][:12]}...) has not passed staging; "
            "run `mlops deploy staging` first"
        )
    tags = records.production_tags(ctx.root)
    if tags and not force:
        _, tag, serving = tags[-1]
        serving_commit = records.tag_commit(ctx.root, tag)
        commit = ctx.package.get("git_commit", "unknown")
        if not records.commit_exists(ctx.root, commit) or not records.descends_from(ctx.root, serving_commit, commit):
            raise UserError(
                f"refusing to promote: the archive was built from {commit[:12]}, which does not descend from "
                f"{serving_commit[:12]} that production serves ({tag}, version {serving['version']}); "
                "an older model would replace a newer one. Use --force to do it anyway."
            )
    entry = release(ctx, "production", "promote")
    if entry is None:
        return None
    tag = records.add_production_tag(ctx.root, f"promote {ctx.name} {ctx.version} to production", entry.to_dict())
    ctx.progress(f"git: tagged {tag}")
    return entry


def rollback(ctx: Site, env: str) -> records.Deployment:
    """Make the previous version the default again (it stayed registered); record it."""
    client = ctx.client(env, start=False)
    current = client.default_version(ctx.name)
    registered = {v["version"] for v in client.versions(ctx.name)}
    target = ctx.ledger(env).previous(current or "", registered) or next(iter(sorted(registered - {current})), None)
    if current is None or target is None:
        raise UserError(f"{env}: nothing to roll back to (registered versions: {sorted(registered) or 'none'})")
    t0 = time.perf_counter()
    client.set_default(ctx.name, target)
    ctx.progress(f"{env}: rolled back {ctx.name} {current} -> {target} in {time.perf_counter() - t0:.2f}s")
    before = ctx.ledger(env).latest(target)
    entry = records.Deployment(
        environment=env,
        action="rollback",
        version=target,
        sha256=before.sha256 if before else "unknown",
        model_sha256=before.model_sha256 if before else "unknown",
        git_commit=before.git_commit if before else "unknown",
        metrics=before.metrics if before else {},
        checks={"rolled_back_from": current},
    )
    if before:
        _mirror_alias(ctx, env, entry)
    ctx.ledger(env).append(entry)
    if env == "production":
        tag = records.add_production_tag(
            ctx.root, f"rollback {ctx.name} {current} -> {target} in production", entry.to_dict()
        )
        ctx.progress(f"git: tagged {tag}")
    return entry


def status(ctx: Site) -> list[dict[str, Any]]:
    """Per environment: what serves, from which commit, its metrics, when it was deployed."""
    rows = []
    for env in ("staging", "production"):
        client = ctx.running(env)
        if client is None:
            url = resolve(env, ctx.serve_dir, ctx.runtime_dir).inference_url
            rows.append({"environment": env, "url": url, "state": "down"})
            continue
        row: dict[str, Any] = {"environment": env, "url": client.endpoint.inference_url}
        version = client.default_version(ctx.name)
        entry = ctx.ledger(env).latest(version) if version else None
        row |= {
            "state": "up",
            "version": version or "none",
            "registered": [v["version"] for v in client.versions(ctx.name)],
            "commit": entry.git_commit[:12] if entry else "?",
            "deployed": entry.time if entry else "?",
            "metrics": entry.metrics if entry else {},
        }
        rows.append(row)
    return rows
