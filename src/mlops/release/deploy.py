"""Deploy, promote and roll back: register, wait READY, check, then switch (a pointer swap) with records.

Every command holds the environment's lock and starts by reconciling its records
(``mlops.release.environments``); the switch writes intent, git tag, default, alias and
outcome in that order. Runtime-agnostic: TorchServe is reached only through
``mlops.serving.torchserve``.
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
from mlops.core.contract import Contract
from mlops.core.errors import MlopsError, UserError
from mlops.core.lineage import Source, file_sha256, source
from mlops.core.task import Task, task_of
from mlops.pipeline.compiled import CompiledPipeline, compile_pipeline
from mlops.pipeline.datasets import read_table
from mlops.pipeline.evaluation import gate_failures
from mlops.pipeline.features import features_and_target
from mlops.release import faults, records
from mlops.release.environments import (
    Options,
    RecordError,
    Site,
    State,
    check_recordable,
    history,
    reconcile,
    restore,
    rollback,
    status,
    switch,
)
from mlops.release.publish import publish
from mlops.serving.inference import records as to_records
from mlops.serving.torchserve import Client


@dataclass
class Check:
    """One deployment check's verdict, its detail in words and the figures behind it."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


class DeployError(MlopsError):
    """A new version failed its checks: it was unregistered and the old default keeps serving (exit 1)."""


CheckFunction = Callable[["Context", Client, pd.DataFrame], Check]

__all__ = [
    "CHECKS",
    "Check",
    "Context",
    "DeployError",
    "Options",
    "Site",
    "deploy_staging",
    "passed_staging",
    "promote_production",
    "restore",
    "rollback",
    "run_checks",
    "status",
]


@dataclass
class Context(Site):
    """A site plus one release: the archive, its record, the offline model and the holdout."""

    contract: Contract | None = None
    archive: Path = Path()
    package: dict[str, Any] = field(default_factory=dict)
    pipeline: Path = paths.PIPELINE
    holdout: Path = paths.HOLDOUT
    checks: tuple[CheckFunction, ...] | None = None  # None: every check (CHECKS)

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

    @property
    def sha256(self) -> str:
        """The archive's sha256."""
        return str(self.package["sha256"])

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
    for check in CHECKS if ctx.checks is None else ctx.checks:
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


def _uncommitted(ctx: Context, commit: str) -> Source | None:
    """The checkout's uncommitted changes when ``commit`` is its HEAD (what a deploy from it may carry)."""
    src = source(ctx.root)
    return src if src.dirty and src.commit == commit else None


def _entry(ctx: Context, env: str, action: str, checks: list[Check], commit: str) -> records.Deployment:
    dirty = _uncommitted(ctx, commit)
    return records.Deployment(
        environment=env,
        action=action,
        version=ctx.version,
        sha256=ctx.sha256,
        model_sha256=ctx.package["model_sha256"],
        git_commit=commit,
        metrics=ctx.package.get("metrics", {}),
        checks={c.name: {"passed": c.passed, "detail": c.detail, **c.figures} for c in checks},
        dirty=dirty is not None,
        diff_sha256=dirty.diff_sha256 if dirty else None,
        model=ctx.name,
    )


def _begin(ctx: Context, env: str, options: Options) -> tuple[Client, State, str]:
    """The server (started if local and down), its state after reconciling, and the commit deployed."""
    commit = records.resolve_commit(ctx.root, options.commit)
    client = ctx.client(env)
    state = reconcile(ctx, env, client, options, keep=frozenset({ctx.version}), archives={ctx.version: ctx.archive})
    return client, state, commit


def _unchanged(ctx: Context, env: str, state: State, commit: str) -> records.Deployment | None:
    """When ``env`` already serves this archive: record that (the next job reads it) and say so."""
    if state.serving != ctx.version or (state.record is not None and state.record.sha256 != ctx.sha256):
        return None
    entry = _entry(ctx, env, "unchanged", [], commit)
    if state.record is not None:
        entry.registry_version, entry.mlflow_run = state.record.registry_version, state.record.mlflow_run
        entry.mlflow_version = state.record.mlflow_version
    ctx.ledger(env).append(entry)
    ctx.progress(f"{env} already serves {ctx.name} {ctx.version} (sha256 {ctx.sha256[:12]}...); recorded as unchanged")
    return entry


def _install(ctx: Context, env: str, client: Client) -> str:
    """The URL the server registers the archive from: published (remote) or copied to its store (local)."""
    endpoint = client.endpoint
    if endpoint.local is None and endpoint.archive_url_prefix:
        published = publish(ctx.archive, ctx.sha256, endpoint.archive_url_prefix, ctx.name, ctx.version)
        ctx.progress(f"{env}: {'published' if published.uploaded else 'already published'} {published.url}")
        return published.url
    return client.install(ctx.archive, ctx.name, ctx.version)


def _release(
    ctx: Context, env: str, action: str, options: Options, client: Client, state: State, commit: str
) -> records.Deployment:
    """Register the archive as a new version, check it, and switch to it; or unregister it and raise."""
    started = time.perf_counter()
    check_recordable(ctx, env, _entry(ctx, env, action, [], commit), options)  # refuse before registering
    served = {e.version for e in history(ctx, env)}
    ours = ctx.version not in served  # never served here: ours to remove if it fails
    if ctx.version not in {v["version"] for v in client.versions(ctx.name)}:
        url = _install(ctx, env, client)
        ctx.progress(f"{env}: registering {ctx.name} {ctx.version} ({url})")
        client.register(
            url, ctx.name, ctx.version, ctx.params.deploy.ready_timeout_s, ctx.params.serve.max_batch_delay_ms
        )
    else:
        try:
            client.wait_ready(ctx.name, ctx.version, ctx.params.deploy.ready_timeout_s)
        except MlopsError:
            if ours:
                client.unregister(ctx.name, ctx.version)
            raise
    faults.reached("after-register")
    ctx.progress(f"{env}: {ctx.version} workers READY after {time.perf_counter() - started:.1f}s; checking it")
    checks = run_checks(ctx, client)
    failed = [c for c in checks if not c.passed]
    if failed:
        if ours:
            client.unregister(ctx.name, ctx.version)
        ctx.ledger(env).append(_entry(ctx, env, "rejected", checks, commit))
        kept = f"; {state.serving} keeps serving" if state.serving else ""
        raise DeployError(
            f"{env}: {ctx.name} {ctx.version} rejected ({', '.join(c.name for c in failed)} failed){kept}\n"
            + "\n".join(f"  {c.name}: {c.detail}" for c in failed)
        )
    faults.reached("after-checks")
    entry = _entry(ctx, env, action, checks, commit)
    entry.previous = state.serving
    entry.checks["seconds_to_default"] = round(time.perf_counter() - started, 2)
    try:
        return switch(ctx, env, client, entry, options)
    except RecordError:
        if ours and client.default_version(ctx.name) != ctx.version:
            client.unregister(ctx.name, ctx.version)
        raise


def deploy_staging(ctx: Context, options: Options | None = None) -> records.Deployment:
    """Release the archive to staging: reconcile, then register, check and switch (or record it unchanged)."""
    options = options or Options()
    with ctx.lock("staging"):
        client, state, commit = _begin(ctx, "staging", options)
        return _unchanged(ctx, "staging", state, commit) or _release(
            ctx, "staging", "deploy", options, client, state, commit
        )


def passed_staging(site: Site, sha256: str) -> bool:
    """True when staging's ledger or its git record shows this archive passed staging."""
    if site.ledger("staging").passed(sha256):
        return True
    return any(t.record.get("sha256") == sha256 for t in site.registry().assignments("staging"))


def _older_than_production(ctx: Context, commit: str) -> None:
    """Refuse a commit that does not descend from the one production's newest promotion came from."""
    promotions = [t for t in ctx.registry().assignments("production") if t.record.get("action") == "promote"]
    if not promotions:
        return
    last = promotions[-1]
    # legacy tags recorded the build commit; they point at the commit deployed, which is what counts
    bar = last.commit if last.legacy else str(last.record.get("git_commit") or last.commit)
    what = f"{last.name}, version {last.record.get('version', '?')}"
    if not records.commit_exists(ctx.root, bar):
        raise UserError(
            f"production's newest promotion ({what}) came from commit {bar[:12]}, which this clone does not have; "
            "fetch the whole history (actions/checkout fetch-depth: 0), or use --force"
        )
    if not records.descends_from(ctx.root, bar, commit):
        raise UserError(
            f"refusing to promote: commit {commit[:12]} does not descend from {bar[:12]}, which production's "
            f"newest promotion came from ({what}); an older model would replace a newer one. "
            "Use --force to do it anyway."
        )


def promote_production(ctx: Context, options: Options | None = None) -> records.Deployment:
    """Promote the archive that passed staging: reconcile, refuse an older commit, switch with a git record.

    When production already serves this archive, that is success: it is recorded as unchanged.
    """
    options = options or Options()
    with ctx.lock("production"):
        dirty = _uncommitted(ctx, records.resolve_commit(ctx.root, options.commit))
        if dirty is not None:  # production runs only what a commit rebuilds; no flag overrides this
            raise UserError(
                f"refusing to promote: the checkout has uncommitted changes to {dirty.commit[:12]} "
                f"(diff sha256 {str(dirty.diff_sha256)[:12]}); commit them, rebuild with `dvc repro` "
                "and deploy to staging again"
            )
        client, state, commit = _begin(ctx, "production", options)
        unchanged = _unchanged(ctx, "production", state, commit)
        if unchanged is not None:
            return unchanged
        if not passed_staging(ctx, ctx.sha256):
            raise UserError(
                f"{ctx.archive} (sha256 {ctx.sha256[:12]}...) has not passed staging; run `mlops deploy staging` first"
            )
        if not options.force:
            _older_than_production(ctx, commit)
        return _release(ctx, "production", "promote", options, client, state, commit)
