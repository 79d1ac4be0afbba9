"""An environment's four records, how they are brought into line, and the switch that writes them.

What an environment serves is said four times: by the server (its default version), by the
ledger (``deployments.jsonl``), by git (the GTO stage tag) and by the MLflow alias. A move
writes them in a fixed order, each step durable before the next:

    ledger intent -> git tag (pushed, with --push) -> set-default -> MLflow alias -> ledger outcome -> retire

so the record always leads and the server follows. Whatever a crash interrupts, the next
command starts with ``reconcile``: the newest record (the ledger's or git's) is what the
environment should serve, and reconcile finishes the interrupted switch (registers the
version again from its stored archive if the server lost it, sets it as the default, writes
the missing tag, alias and outcome) or says exactly what still differs.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.core.config import Params
from mlops.core.errors import MlopsError, ServiceError, UserError
from mlops.release import faults, records
from mlops.release.records import Deployment
from mlops.serving.torchserve import Client, Endpoint, local_server, resolve
from mlops.serving.traffic import CHECK_TRAFFIC


class RecordError(ServiceError):
    """The record of a move could not be written (or pushed): the move was abandoned, nothing switched."""


@dataclass(frozen=True)
class Options:
    """How a move is made and recorded.

    ``commit``: the commit being deployed (its dvc.lock names the archive; CI passes the sha it
    checked out). ``push``: a git remote to push the record's tags to before switching.
    ``force``: promote even when the commit does not descend from production's.
    """

    commit: str = "HEAD"
    push: str | None = None
    force: bool = False


@dataclass
class Site:
    """Where environments are configured and recorded; enough for status, reconcile and rollback."""

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
        return records.Ledger(self.runtime_dir / env / "deployments.jsonl", self.name)

    def registry(self) -> records.Registry:
        """The model's records in git."""
        return records.Registry(self.root, self.name)

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

    @contextmanager
    def lock(self, env: str) -> Iterator[None]:
        """Hold ``env``'s lock: one deploy, promote, rollback or reconcile at a time on this machine.

        A flock: the kernel releases it when the process dies, so a crash never leaves it held.
        """
        path = self.runtime_dir / env / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress(f"{env}: another command holds {path}; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


# ---- the state of an environment ------------------------------------------------------------------


@dataclass
class State:
    """What an environment's server, ledger, git tag and MLflow alias say, and where they differ."""

    environment: str
    up: bool
    serving: str | None = None
    registered: list[str] = field(default_factory=list)
    record: Deployment | None = None  # what the environment should serve: the newest record
    source: str = "none"  # where the record comes from: ledger | git tag <name>
    ledger: Deployment | None = None
    tag: records.Tag | None = None
    alias: dict[str, str] | None = None
    strays: list[str] = field(default_factory=list)  # registered, never recorded as serving here
    finished: Deployment | None = None  # the interrupted move reconcile just finished
    problems: list[str] = field(default_factory=list)  # torn or unreadable ledger lines

    @property
    def differences(self) -> list[str]:
        """Every way the four records disagree, in words; empty when they agree."""
        out = []
        record = self.record
        if record is None:
            if self.serving:
                out.append(f"the server serves {self.serving}, but no record says so")
            return out + [f"registered but never recorded here: {v}" for v in self.strays]
        said = f"the record ({self.source}) says {record.version}"
        if not self.up:
            out.append(f"the server is down; {said}")
        elif self.serving != record.version:
            out.append(f"the server serves {self.serving or 'nothing'}; {said}")
        if record.phase == "intent":
            out.append(f"an interrupted {record.action} of {record.version} (intent at {record.time}, no outcome)")
        elif not record.same_move(self.ledger) and (self.ledger is None or self.ledger.version != record.version):
            out.append(f"the ledger says {self.ledger.version if self.ledger else 'nothing'}; {said}")
        tagged = self.tag.deployment() if self.tag else None
        if self.environment == "production" and (tagged is None or tagged.version != record.version):
            out.append(
                f"git says {tagged.version if tagged else 'nothing'} ({self.tag.name if self.tag else 'no tag'})"
            )
        archive = alias_archive(self.alias, self.environment)
        if archive is not None and archive != record.version:
            out.append(f"the MLflow alias '{self.environment}' names archive {archive}")
        out += [f"registered but never recorded here: {v}" for v in self.strays]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (``mlops status --json``)."""
        return {
            "record": self.record.to_dict() if self.record else None,
            "source": self.source,
            "tag": self.tag.name if self.tag else None,
            "alias": self.alias,
            "differences": self.differences,
            "problems": self.problems,
        }


def alias_archive(alias: dict[str, str] | None, env: str) -> str | None:
    """The archive version an MLflow alias stands for (its model version's tag for ``env``)."""
    if alias is None:
        return None
    return alias.get(f"{env}.archive_version") or alias.get("archive_version")


def history(site: Site, env: str, registry: records.Registry | None = None) -> list[Deployment]:
    """Every record of what ``env`` served (ledger and git), oldest first."""
    found = site.ledger(env).moves()
    for tag in (registry or site.registry()).assignments(env):
        entry = tag.deployment()
        if entry is not None and not any(entry.same_move(e) for e in found):
            found.append(entry)
    return sorted(found, key=lambda e: e.instant)


def record_of(site: Site, env: str, version: str) -> Deployment | None:
    """The newest record of ``version`` in ``env`` (for rollback: its sha256, commit and metrics)."""
    found = [e for e in history(site, env) if e.version == version]
    return found[-1] if found else None


def previous_version(
    site: Site, env: str, current: str | None, available: Callable[[str], bool] = lambda _: True
) -> str | None:
    """The newest version ``env`` served other than ``current`` for which ``available`` holds."""
    for entry in reversed(history(site, env)):
        if entry.version != current and available(entry.version):
            return entry.version
    return None


def _alias(site: Site, env: str) -> dict[str, str] | None:
    from mlops.pipeline import tracking  # mlflow is slow to import; only the moves and status need it

    try:
        return tracking.alias_target(site.root, site.params.mlflow.registered_model, env)
    except Exception as e:  # MLflow raises many kinds (a locked database, a server down)
        site.progress(f"MLflow: could not read alias '{env}' ({type(e).__name__}: {str(e)[:200]})")
        return None


def read_state(site: Site, env: str, client: Client | None, alias: bool = True) -> State:
    """The four records of ``env`` as they are now (``client`` None: the server is down)."""
    ledger = site.ledger(env)
    last = ledger.serving()
    registry = site.registry()
    tag = registry.current(env)
    state = State(env, up=client is not None, ledger=last, tag=tag, problems=list(ledger.problems))
    tagged = tag.deployment() if tag else None
    if last is not None and (tagged is None or last.instant >= tagged.instant):  # a tie: the same move
        state.record, state.source = last, "ledger"
    elif tagged is not None and tag is not None:
        state.record, state.source = tagged, f"git tag {tag.name}"
    if client is not None:
        versions = client.versions(site.name)
        state.registered = [v["version"] for v in versions]
        state.serving = next((v["version"] for v in versions if v["default"]), None)
        served = {e.version for e in history(site, env, registry)}
        state.strays = [v for v in state.registered if v not in served and v != state.serving]
    if alias and state.record is not None:
        state.alias = _alias(site, env)
    return state


# ---- writing the records and switching ------------------------------------------------------------


def summary(site: Site, entry: Deployment) -> str:
    """The first line of a record's tag message."""
    if entry.action == "rollback":
        return f"rollback {site.name} {entry.previous or '?'} -> {entry.version} in {entry.environment}"
    return f"{entry.action} {site.name} {entry.version} to {entry.environment}"


def _record_commit(site: Site, entry: Deployment, options: Options) -> str:
    """The commit to register the entry's archive on if git does not know it yet: its own, else --commit."""
    registry = site.registry()
    if entry.version in registry.versions():
        return entry.git_commit
    for candidate in (entry.git_commit, options.commit):
        if candidate and records.commit_exists(site.root, candidate):
            commit = records.resolve_commit(site.root, candidate)
            if registry.registered_at(commit) is None:
                return commit
    return records.resolve_commit(site.root, options.commit)


def check_recordable(site: Site, env: str, entry: Deployment, options: Options) -> None:
    """Production: raise UserError before anything moves when git could not record this entry."""
    if env == "production":
        site.registry().check_recordable(entry, _record_commit(site, entry, options))


def write_tag(site: Site, env: str, entry: Deployment, options: Options) -> list[str]:
    """Record the entry as a GTO assignment (pushed with ``options.push``); the tags made.

    Production must be recorded: any failure is raised, and tags that could not be pushed are
    deleted again, before anything switches. Staging's tags mirror its ledger: a version git
    cannot record there is said and skipped.
    """
    registry = site.registry()
    record = Deployment.from_dict({**entry.to_dict(), "phase": "done"})
    try:
        made = registry.record(env, record, _record_commit(site, entry, options), summary(site, entry))
    except UserError as e:
        if env == "production":
            raise
        site.progress(f"git: {env} not recorded in a tag ({e})")
        return []
    entry.registry_version = record.registry_version
    if options.push:
        # the version's registration goes along: an assignment means nothing to GTO without it
        registration = f"{registry.tag_prefix}@{record.registry_version}"
        try:
            registry.push(options.push, list(dict.fromkeys([registration, *made])))
        except ServiceError:
            registry.delete(made)
            raise
    site.progress(f"git: tagged {', '.join(made)}" + (f" and pushed them to {options.push}" if options.push else ""))
    return made


def find_mlflow_version(site: Site, entry: Deployment) -> None:
    """Fill in the MLflow run and registry version that logged this model, when a run here logged it.

    A deployed model is registered: when its run has no version (training registers on main only),
    the version is registered here, from the run.
    """
    from mlops.pipeline import tracking  # mlflow is slow to import; only deployments need it here

    try:
        found = tracking.find_model_version(
            site.root, site.params.mlflow.registered_model, entry.model_sha256, register=True
        )
    except Exception as e:  # MLflow raises many kinds; the alias is a mirror and can be moved later
        site.progress(f"MLflow: lookup failed ({type(e).__name__}: {str(e)[:200]})")
        return
    if found:
        entry.mlflow_run, entry.mlflow_version = found


def mirror_alias(site: Site, env: str, entry: Deployment) -> None:
    """Point the MLflow alias ``env`` at the model version of this entry (when MLflow has it)."""
    from mlops.pipeline import tracking  # mlflow is slow to import; only deployments need it here

    model = site.params.mlflow.registered_model
    try:
        # two environments may serve archives of one model file (a serving-config change): the
        # model version's tags say which archive each alias stands for
        facts = {
            "archive_sha256": entry.sha256,
            "archive_version": entry.version,
            f"{env}.archive_version": entry.version,
        }
        known = (entry.mlflow_run, entry.mlflow_version) if entry.mlflow_run and entry.mlflow_version else None
        found = tracking.set_alias(site.root, model, env, entry.model_sha256, facts, known)
    except Exception as e:  # MLflow raises many kinds
        raise ServiceError(
            f"MLflow: moving alias '{env}' failed ({type(e).__name__}: {str(e)[:200]}); "
            f"`mlops reconcile {env}` moves it when MLflow answers"
        ) from None
    if found:
        entry.mlflow_run, entry.mlflow_version = found
        site.progress(f"MLflow: alias '{env}' -> {model} v{found[1]}")
    else:
        site.progress(f"MLflow: no run here logged this model; alias '{env}' not moved")


def retire(site: Site, client: Client, keep: set[str | None]) -> None:
    """Unregister every version but the default and ``keep`` (the previous one stays for rollback)."""
    for v in client.versions(site.name):
        if v["version"] not in keep and not v["default"]:
            client.unregister(site.name, v["version"])
            site.progress(f"retired {site.name} {v['version']}")


def switch(site: Site, env: str, client: Client, entry: Deployment, options: Options) -> Deployment:
    """Make ``entry.version`` (registered, checked) what ``env`` serves, writing every record in order.

    intent -> tag -> set-default -> alias -> outcome -> retire; a fault point after each.
    """
    check_recordable(site, env, entry, options)
    find_mlflow_version(site, entry)
    ledger = site.ledger(env)
    entry.phase = "intent"
    ledger.append(entry)
    faults.reached("after-intent")
    try:
        write_tag(site, env, entry, options)
    except MlopsError as e:
        ledger.append(Deployment.from_dict({**entry.to_dict(), "phase": "abandoned", "note": str(e)[:500]}))
        raise RecordError(f"{e}; nothing switched") from None
    faults.reached("after-tag")
    client.set_default(site.name, entry.version)
    site.progress(f"{env}: {site.name} {entry.version} is the default (was {entry.previous or 'none'})")
    faults.reached("after-set-default")
    mirror_alias(site, env, entry)
    faults.reached("after-alias")
    entry.phase = "done"
    ledger.append(entry)
    faults.reached("after-outcome")
    retire(site, client, keep={entry.version, entry.previous})
    faults.reached("after-retire")
    return entry


# ---- reconcile ------------------------------------------------------------------------------------


def ensure_registered(
    site: Site, env: str, client: Client, version: str, state: State, archives: dict[str, Path]
) -> bool:
    """Register ``version`` again if the server lost it (a restart); False when there is no archive of it.

    From the environment's stored archive, or from ``archives`` (the archive a command holds).
    """
    if version in state.registered:
        return True
    url = client.stored_archive(site.name, version)
    if url is None and version in archives:
        url = client.install(archives[version], site.name, version)
    if url is None:
        return False
    site.progress(f"{env}: restoring {site.name} {version} from {url}")
    try:
        client.register(
            url, site.name, version, site.params.deploy.ready_timeout_s, site.params.serve.max_batch_delay_ms
        )
    except ServiceError as e:
        site.progress(f"{env}: could not restore {version}: {e}")
        return False
    state.registered.append(version)
    return True


def reconcile(
    site: Site,
    env: str,
    client: Client | None,
    options: Options | None = None,
    keep: frozenset[str] = frozenset(),
    archives: dict[str, Path] | None = None,
) -> State:
    """Bring ``env``'s server, ledger, tag and alias in line with its newest record; the state after.

    Finishes an interrupted switch (tag, set-default, alias, outcome, in that order), registers
    the recorded version (and the previous one, for rollback) again from their stored archives
    (or ``archives``) when the server lost them, and retires versions registered by a
    deployment that never finished (``keep`` spares the one being deployed now). What it cannot
    repair stays in the returned state's ``differences``.
    """
    options = options or Options()
    state = read_state(site, env, client)
    for problem in state.problems:
        site.progress(f"{env}: {problem}")
    record = state.record
    if record is None or client is None:
        return state
    for difference in state.differences:
        site.progress(f"{env}: differs: {difference}")
    archives = archives or {}
    finishing = record.phase == "intent"
    tagged = state.tag.deployment() if state.tag else None
    if (tagged is None or tagged.version != record.version) and (finishing or env == "production"):
        write_tag(site, env, record, options)
    switched = False
    if state.serving != record.version:
        if not ensure_registered(site, env, client, record.version, state, archives):
            site.progress(f"{env}: no archive of {record.version} to restore; left as it is")
            return read_state(site, env, client)
        client.set_default(site.name, record.version)
        site.progress(f"{env}: {site.name} {record.version} is the default again (was {state.serving or 'none'})")
        switched = True
    if record.previous and record.previous != record.version:
        ensure_registered(site, env, client, record.previous, state, archives)
    if finishing or switched or alias_archive(state.alias, env) != record.version:
        mirror_alias(site, env, record)
    behind = not record.same_move(state.ledger) and (state.ledger is None or state.ledger.version != record.version)
    if finishing or behind:
        done = Deployment.from_dict({**record.to_dict(), "phase": "done"})
        done.note = "finished by reconcile" if finishing else f"recorded from {state.source}"
        site.ledger(env).append(done)
        site.progress(f"{env}: ledger: {record.action} of {record.version} {done.note}")
    retire(site, client, keep={record.version, record.previous, *keep})
    after = read_state(site, env, client)
    after.finished = record if finishing else None
    return after


def converge(
    site: Site,
    env: str,
    client: Client | None,
    options: Options | None = None,
    archives: dict[str, Path] | None = None,
) -> State:
    """Reconcile, and raise ServiceError when the records still differ afterwards (``mlops reconcile``)."""
    state = reconcile(site, env, client, options, archives=archives)
    if state.differences:
        raise ServiceError(
            f"{env}: still differs after reconciling:\n" + "\n".join(f"  {d}" for d in state.differences)
        )
    return state


# ---- moves and views of an environment that need no archive ----------------------------------------


def rollback(site: Site, env: str, options: Options | None = None, to: str | None = None) -> Deployment:
    """Make the previous version (or ``to``) the default again: no retraining; recorded like any move.

    Run again after a crash, it finishes the interrupted rollback instead of rolling back twice;
    with ``to``, a version the environment already serves is success (recorded as unchanged).
    """
    options = options or Options()
    with site.lock(env):
        client = site.client(env, start=False)
        state = reconcile(site, env, client, options)
        current = state.serving
        if state.finished is not None and state.finished.action == "rollback" and to in (None, current):
            site.progress(f"{env}: finished the interrupted rollback to {current}; not rolling back again")
            return state.finished
        if to is not None and to == current and state.record is not None:
            entry = Deployment.from_dict({**state.record.to_dict(), "action": "unchanged", "time": records.now()})
            site.ledger(env).append(entry)
            site.progress(f"{env} already serves {site.name} {to}; recorded as unchanged")
            return entry

        def available(version: str) -> bool:
            return version in state.registered or client.stored_archive(site.name, version) is not None

        target = to or previous_version(site, env, current, available)
        before = record_of(site, env, target) if target else None
        if current is None or target is None or before is None:
            registered = sorted(state.registered) or "none"
            never = f"{to} never served in {env}; " if to and before is None else ""
            raise UserError(f"{env}: {never}nothing to roll back to (registered versions: {registered})")
        if not ensure_registered(site, env, client, target, state, {}):
            raise ServiceError(f"{env}: {target} is not registered and no archive of it is stored; cannot roll back")
        t0 = time.perf_counter()
        entry = Deployment(
            environment=env,
            action="rollback",
            version=target,
            sha256=before.sha256,
            model_sha256=before.model_sha256,
            git_commit=before.git_commit,
            metrics=before.metrics,
            checks={"rolled_back_from": current},
            previous=current,
            model=site.name,
        )
        switch(site, env, client, entry, options)
        site.progress(f"{env}: rolled back {site.name} {current} -> {target} in {time.perf_counter() - t0:.2f}s")
        return entry


def restore(site: Site, env: str) -> State:
    """After a server starts: serve what the records say (``mlops serve up``); the state after."""
    with site.lock(env):
        return reconcile(site, env, site.client(env, start=False))


def status(site: Site) -> list[dict[str, Any]]:
    """Per environment: what serves, from which commit, its metrics, when deployed, and what differs."""
    rows = []
    for env in ("staging", "production"):
        client = site.running(env)
        state = read_state(site, env, client)
        url = client.endpoint.inference_url if client else resolve(env, site.serve_dir, site.runtime_dir).inference_url
        row: dict[str, Any] = {"environment": env, "url": url, "state": "up" if client else "down"}
        if client is not None:
            entry = record_of(site, env, state.serving) if state.serving else None
            row |= {
                "version": state.serving or "none",
                "registered": state.registered,
                "commit": entry.git_commit[:12] if entry else "?",
                "dirty": entry.dirty if entry else False,
                "deployed": entry.time if entry else "?",
                "metrics": entry.metrics if entry else {},
            }
        rows.append(row | state.to_dict())
    return rows
