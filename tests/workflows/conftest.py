"""One GitHub world for the workflow tier, and the story its scenarios are steps of.

Building the world costs the most (the example repository's first ``dvc repro``, TorchServe), so
there is one per session, and each scenario is a session fixture that runs its workflows once and
returns what happened (``Step``: the runs and what the fake GitHub, the origin and the servers
showed right after). A scenario's fixture names the earlier steps it builds on, so any test can
run alone and the order is explicit: (d) first merge -> (a, c, b) pull requests -> (f) a merge to
servers that persist -> (h) monitor -> (i) retrain -> (f) its merge -> (e) a docs-only push -> (g)
rollback.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_github import Identity
from harness import BOT, Run, Sandbox, Settings, git
from world import Developer, build_template

from mlops.serving.torchserve import Client, LocalServer
from support.project import sh
from support.servers import free_ports, write_env_configs

RETRAIN_TOKEN = "github_pat_retrain"
RETRAIN_BOT = "retrain-bot"
FORK = "someone/fork"
DEAD_METRICS = f"http://127.0.0.1:{free_ports(1)[0]}"  # the production server's metrics API, down


@dataclass
class Step:
    """What one scenario did: its runs, and the state a reviewer would see right after."""

    runs: list[Run]
    github: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return round(sum(r.seconds for r in self.runs), 1)


class World:
    """The origin, the fake GitHub, the DVC remote, a developer's clone and (later) two servers."""

    def __init__(self, base: Path, template: Path):
        self.base = base
        self.sandbox = Sandbox(base / "github", template, pats={
            RETRAIN_TOKEN: Identity(RETRAIN_BOT, {"contents": "write", "pull-requests": "write", "metadata": "read"}),
        })  # fmt: skip
        self.slug = self.sandbox.slug
        self.dvc_remote = base / "dvc-remote"
        # what the template's author pushed once: its DVC cache is the remote's layout
        shutil.copytree(template / ".dvc" / "cache", self.dvc_remote)
        self.landing = base / "landing"
        self.landing.mkdir()
        self.settings = Settings()
        remote = {"DVC_REMOTE_URL": str(self.dvc_remote)}
        self.settings.environment("dvc-read", vars=remote)
        self.settings.environment("dvc-push", vars=remote)
        self.settings.environment("monitoring", vars=remote)
        self.settings.environment("retrain", vars={**remote, "LANDING_URL": str(self.landing)},
                                  secrets={"RETRAIN_TOKEN": RETRAIN_TOKEN})  # fmt: skip
        self.dev = Developer(self.sandbox.bare, base / "dev", self.dvc_remote)
        self.next_run = 100
        self.times: dict[str, float] = {}
        self.servers: Servers | None = None

    def act(self, workflow: str, event: str, payload: dict[str, Any], sha: str, **kw: Any) -> Run:
        self.next_run += 1
        settings = kw.pop("settings", self.settings)
        return self.sandbox.act(event, payload, workflow, self.next_run, settings, sha, **kw)

    def github(self) -> dict[str, Any]:
        return self.sandbox.github.snapshot(self.slug)

    def origin(self, *args: str) -> str:
        return git(*args, cwd=self.sandbox.bare)

    # ---- what GitHub does around pull requests ------------------------------------------------

    def open_pull(self, number: int, head: str, branch: str, head_repo: str | None = None) -> str:
        """refs/pull/N/head and the test merge refs/pull/N/merge, as GitHub makes them; the merge sha."""
        self.dev.sh("git", "fetch", "-q", "origin")  # a head pushed by a workflow (retraining) comes from there
        self.dev.sh("git", "push", "-q", "-f", "origin", f"{head}:refs/pull/{number}/head")
        self.dev.sh("git", "checkout", "-q", "--detach", "origin/main")
        self.dev.sh("git", "merge", "-q", "--no-ff", "--no-edit", "-m", f"Merge pull request #{number}", head)
        merge = self.dev.sh("git", "rev-parse", "HEAD").stdout.strip()
        self.dev.sh("git", "push", "-q", "origin", f"HEAD:refs/pull/{number}/merge", "-f")
        author = (head_repo or self.slug).split("/")[0] if head_repo else "developer"
        self.sandbox.github.open_pull(self.slug, number, branch, head, head_repo or self.slug, author)
        return merge

    def pull_request(self, number: int, head: str, branch: str, head_repo: str | None = None) -> Run:
        merge = self.open_pull(number, head, branch, head_repo)
        payload = self.sandbox.pull_request_event(number, head, branch, head_repo or self.slug)
        # the comment job's needs chain: reproduce, then comment (checks and the test tiers are
        # the unit tier's and the static tests' business: minutes each, not run here)
        return self.act("pr.yml", "pull_request", payload, merge, job="comment", fork=head_repo is not None)

    def merge(self, number: int) -> tuple[str, str]:
        """Merge the pull request as GitHub's merge button does (its test merge becomes main)."""
        before = self.sandbox.sha()
        merge = self.sandbox.sha(f"refs/pull/{number}/merge")
        assert self.origin("merge-base", "--is-ancestor", before, merge) == ""
        self.origin("update-ref", "refs/heads/main", merge, before)
        return before, merge

    def deploy(self, before: str, after: str, settings: Settings | None = None) -> Run:
        payload = self.sandbox.push_event(before, after)
        return self.act("deploy.yml", "push", payload, after, settings=settings or self.settings)

    # ---- the records -----------------------------------------------------------------------------

    def tags_at(self, sha: str) -> dict[str, str]:
        """Tags on ``sha`` in the origin, with their messages (the records a job pushed)."""
        names = self.origin("tag", "--points-at", sha).split()
        return {n: self.origin("tag", "-l", "--format=%(contents)", n) for n in names}

    def commits_of_main(self) -> set[str]:
        return set(self.origin("rev-list", "main").split())

    def all_tags(self) -> list[str]:
        return self.origin("tag").split()

    def tag_records(self, names: set[str]) -> dict[str, tuple[str, str]]:
        """Each tag in the origin: the commit it points at and its message (the record a job pushed)."""
        return {n: (self.origin("rev-list", "-n", "1", n).strip(), self.origin("tag", "-l", "--format=%(contents)", n))
                for n in names}  # fmt: skip

    def artifact(self, run: Run, name: str) -> Path:
        folder = self.sandbox.store / self.slug / str(run.run_id) / name / "files"
        assert folder.is_dir(), f"no artifact {name} in run {run.run_id} ({run.workflow})"
        return folder

    def ledger(self, run: Run) -> list[dict[str, Any]]:
        """Staging's finished moves (each move writes an intent line, then its outcome)."""
        path = self.artifact(run, "staging-record") / "deployments.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        return [e for e in entries if e.get("phase", "done") == "done"]


@dataclass
class Servers:
    """A staging and a production TorchServe that outlive the jobs, reached by URL and token only."""

    root: Path
    staging: LocalServer
    production: LocalServer

    def settings(self, base: Settings) -> Settings:
        out = Settings(dict(base.vars), dict(base.secrets), json.loads(json.dumps(base.environments)))
        for server in (self.staging, self.production):
            ep = server.endpoint()
            url = {"MANAGEMENT_URL": ep.management_url, "INFERENCE_URL": ep.inference_url}
            archives = {"ARCHIVE_URL_PREFIX": (self.root / "archives" / server.name).as_uri()}
            tokens = {"MANAGEMENT_TOKEN": str(ep.management_token), "INFERENCE_TOKEN": str(ep.inference_token)}
            out.environment(server.name, vars=url | archives, secrets=tokens)
        return out

    def default(self, env: str, model: str = "loan-default") -> str | None:
        return Client(getattr(self, env).endpoint()).default_version(model)

    def registered(self, env: str, model: str = "loan-default") -> set[str]:
        return {v["version"] for v in Client(getattr(self, env).endpoint()).versions(model)}


def start_servers(root: Path, template: Path) -> Servers:
    serve = root / "serve"
    shutil.copytree(template / "serve", serve)
    for env in ("staging", "production"):
        (root / "archives" / env).mkdir(parents=True)
    write_env_configs(root, extra_allowed=f"{(root / 'archives').as_uri()}/.*")
    servers = {
        env: LocalServer(env, serve / f"{env}.properties", root / "runtime") for env in ("staging", "production")
    }
    for server in servers.values():
        server.up(timeout=120)
    return Servers(root, servers["staging"], servers["production"])


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("template") / "repo")


@pytest.fixture(scope="session")
def world(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("world"), template)
    yield w
    w.sandbox.close()
    if w.servers:
        w.servers.staging.down()
        w.servers.production.down()
    print("\nworkflow tier: " + ", ".join(f"{k} {v:.0f}s" for k, v in w.times.items()))


@pytest.fixture(scope="session")
def servers(world: World, template: Path) -> Servers:
    world.servers = start_servers(world.base / "servers", template)
    return world.servers


def timed(world: World, name: str, started: float) -> None:
    world.times[name] = time.monotonic() - started


# ---- the story ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def first_merge(world: World) -> Step:
    """(d) main's first model, no servers configured: ephemeral staging and production."""
    t0 = time.monotonic()
    sha = world.sandbox.sha()
    run = world.deploy("0" * 40, sha)
    step = Step([run], world.github(), {"sha": sha, "tags": world.tags_at(sha)})
    timed(world, "d first merge", t0)
    return step


@pytest.fixture(scope="session")
def param_pr(world: World, first_merge: Step) -> Step:
    """(a) a same-repository PR changing a param, then a second push to it."""
    t0 = time.monotonic()
    dev = world.dev
    dev.branch("regularise")
    dev.params({"train": {"linear": {"C": 0.3}}})
    head = dev.commit("Regularise a little more", repro=True, push_data=True)
    dev.push("regularise")
    first = world.pull_request(7, head, "regularise")
    after_first = world.github()
    dev.branch("regularise", "origin/regularise")
    (dev.root / "README.md").write_text((dev.root / "README.md").read_text() + "\nRegularised a little more.\n")
    head2 = dev.commit("Say so in the README")
    dev.push("regularise")
    second = world.pull_request(7, head2, "regularise")
    step = Step([first, second], world.github(), {"after_first": after_first, "head": head2})
    timed(world, "a param PR", t0)
    return step


@pytest.fixture(scope="session")
def failing_prs(world: World, first_merge: Step) -> Step:
    """(c) a PR with invalid data and one worse than the regression budget."""
    t0 = time.monotonic()
    dev = world.dev
    dev.branch("bad-data")
    dev.sh("mlops", "data", "--fault", "unknown_category")
    dev.sh("dvc", "add", "-q", "data/raw")
    invalid = dev.commit("A new batch", push_data=True)
    dev.push("bad-data")
    bad = world.pull_request(8, invalid, "bad-data")
    dev.branch("worse")
    dev.params({"train": {"linear": {"C": 0.001}}})  # log loss well beyond the budget
    worse_head = dev.commit("Regularise a lot", repro=True, push_data=True)
    dev.push("worse")
    worse = world.pull_request(9, worse_head, "worse")
    timed(world, "c failing PRs", t0)
    return Step([bad, worse], world.github())


@pytest.fixture(scope="session")
def fork_pr(world: World, first_merge: Step) -> Step:
    """(b) a fork's PR: pr.yml with no variables or secrets, then pr-comment.yml; forged artifacts."""
    t0 = time.monotonic()
    dev = world.dev
    dev.branch("fork-docs")
    (dev.root / "README.md").write_text((dev.root / "README.md").read_text() + "\nA typo fixed by a stranger.\n")
    head = dev.commit("Fix a typo")
    pr_run = world.pull_request(10, head, "fork-docs", head_repo=FORK)
    pr_run_id = pr_run.run_id
    payload = world.sandbox.workflow_run_event(pr_run_id, head, "fork-docs", FORK)
    main = world.sandbox.sha()
    comment = world.act("pr-comment.yml", "workflow_run", payload, main)
    # the same fork, forging: an artifact that names another PR, and one that links a local file
    forged = {}
    for label, files in {
        "number": {"pr-number": "7\n", "pr-report.md": "# All good\n"},
        "passwd": {"pr-number": "10\n", "pr-report.md": "# Report\n\n![x](/etc/passwd)\n[y]:\n  ../../etc/hostname\n"},
    }.items():  # fmt: skip
        fake_id = 900 + len(forged)
        folder = world.sandbox.store / world.slug / str(fake_id) / "pr-report" / "files"
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        event = world.sandbox.workflow_run_event(fake_id, head, "fork-docs", FORK)
        forged[label] = world.act("pr-comment.yml", "workflow_run", event, main)
    step = Step([pr_run, comment, *forged.values()], world.github(), {"forged": forged, "pr_run": pr_run})
    timed(world, "b fork PR", t0)
    return step


@pytest.fixture(scope="session")
def second_merge(world: World, servers: Servers, param_pr: Step, failing_prs: Step, fork_pr: Step) -> Step:
    """(f, first of two) merge the param PR: deployed to servers that persist between runs."""
    t0 = time.monotonic()
    before, after = world.merge(7)
    run = world.deploy(before, after, servers.settings(world.settings))
    step = Step([run], world.github(), {"sha": after, "tags": world.tags_at(after),
                                        "production": servers.default("production")})  # fmt: skip
    timed(world, "f merge to servers", t0)
    return step


@pytest.fixture(scope="session")
def monitored(world: World, servers: Servers, second_merge: Step, template: Path) -> Step:
    """(h) drifted traffic to production; monitor.yml twice on a breach, once with the server unreachable."""
    t0 = time.monotonic()
    batch_dir = world.base / "drifted"
    # enough drifted rows to outweigh the undrifted ones the deployment checks sent within the window
    sh("mlops", "data", "--next", "--landing", str(batch_dir), "--out", str(batch_dir), "--rows", "2500",
       "--drift", "3", "--drift-start", "1", cwd=world.dev.root)  # fmt: skip
    [batch] = batch_dir.glob("*.csv")
    sh("mlops", "serve", "replay", "production", "--batch", str(batch), "--rows-per-request", "100",
       "--serve-dir", str(servers.root / "serve"), "--runtime-dir", str(servers.root / "runtime"),
       cwd=world.dev.root)  # fmt: skip
    settings = servers.settings(world.settings)
    ep = servers.production.endpoint()
    log = servers.production.home / "predictions"
    settings.environment("monitoring", vars={"PREDICTION_LOG_URL": str(log), "METRICS_URL": str(ep.metrics_url)})
    main = world.sandbox.sha()
    event = world.sandbox.schedule_event("17 * * * *")
    breach = world.act("monitor.yml", "schedule", event, main, settings=settings)
    after_first = world.github()
    again = world.act("monitor.yml", "schedule", event, main, settings=settings)
    after_second = world.github()
    down = Settings(settings.vars, settings.secrets, json.loads(json.dumps(settings.environments)))
    down.environment("monitoring", vars={"METRICS_URL": DEAD_METRICS})
    unobservable = world.act("monitor.yml", "schedule", event, main, settings=down)
    step = Step([breach, again, unobservable], world.github(),
                {"after_first": after_first, "after_second": after_second})  # fmt: skip
    timed(world, "h monitor", t0)
    return step


@pytest.fixture(scope="session")
def retrained(world: World, monitored: Step) -> Step:
    """(i) retrain.yml as the monitor's dispatch starts it, with a new batch landed."""
    t0 = time.monotonic()
    sh("mlops", "data", "--next", "--landing", str(world.landing), cwd=world.dev.root)
    main = world.sandbox.sha()
    run = world.act("retrain.yml", "workflow_dispatch", world.sandbox.dispatch_event(), main)
    branch = f"retrain/{run.run_id}"
    head = world.origin("rev-parse", "--verify", "-q", f"refs/heads/{branch}") if run.returncode == 0 else ""
    step = Step([run], world.github(), {
        "branch": branch, "main": main, "main_after": world.sandbox.sha(), "head": head,
        "commit": world.origin("log", "-1", "--format=%an <%ae>|%s", head) if head else "",
        "changed": world.origin("diff", "--name-only", main, head).split() if head else [],
    })  # fmt: skip
    timed(world, "i retrain", t0)
    return step


@pytest.fixture(scope="session")
def third_merge(world: World, servers: Servers, retrained: Step) -> Step:
    """(f, second of two) merge the retraining PR: production moves on, the previous version stays."""
    t0 = time.monotonic()
    github = retrained.github
    [pr] = [p for p in github["pulls"].values() if p["head"]["ref"].startswith("retrain/")]
    world.open_pull(pr["number"], pr["head"]["sha"], pr["head"]["ref"])
    before, after = world.merge(pr["number"])
    run = world.deploy(before, after, servers.settings(world.settings))
    step = Step([run], world.github(), {
        "sha": after, "tags": world.tags_at(after), "production": servers.default("production"),
        "registered": servers.registered("production"),
    })  # fmt: skip
    timed(world, "f second merge", t0)
    return step


@pytest.fixture(scope="session")
def docs_push(world: World, servers: Servers, third_merge: Step) -> Step:
    """(e) a docs-only push to main after the two merges."""
    t0 = time.monotonic()
    dev = world.dev
    dev.branch("main")
    tags_before = world.all_tags()
    (dev.root / "README.md").write_text((dev.root / "README.md").read_text() + "\nDocs only.\n")
    sha = dev.commit("Docs only")
    before = world.sandbox.sha()
    dev.push("main")
    run = world.deploy(before, sha, servers.settings(world.settings))
    step = Step([run], world.github(), {"tags_before": tags_before, "tags_after": world.all_tags(),
                                        "production": servers.default("production")})  # fmt: skip
    timed(world, "e docs-only push", t0)
    return step


@pytest.fixture(scope="session")
def rolled_back(world: World, servers: Servers, docs_push: Step) -> Step:
    """(g) rollback.yml: production serves the version before."""
    t0 = time.monotonic()
    tags_before = world.all_tags()
    main = world.sandbox.sha()
    event = world.sandbox.dispatch_event({"reason": "the new model answers slowly"})
    run = world.act("rollback.yml", "workflow_dispatch", event, main, settings=servers.settings(world.settings))
    new = set(world.all_tags()) - set(tags_before)
    step = Step([run], world.github(), {"tags_before": tags_before, "tags_after": world.all_tags(),
                                        "production": servers.default("production"), "main": main,
                                        "new_tags": world.tag_records(new)})  # fmt: skip
    timed(world, "g rollback", t0)
    return step


__all__ = ["BOT", "FORK", "RETRAIN_BOT", "Servers", "Step", "World"]
