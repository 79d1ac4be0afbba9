"""The harness itself: its doubles cover every pinned action, it scopes settings as GitHub does,
and the fake GitHub and the CML/gh doubles keep the rules the workflows are tested against."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from fake_github import FakeGitHub, Identity, effective_permissions
from harness import BOT, DOUBLES, PINS, RUN_TOKEN, load_workflow, scope_to_environments

from support import ROOT

pytestmark = pytest.mark.workflows

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_every_pinned_action_has_a_double_and_every_double_is_used():
    files = [*WORKFLOWS, ROOT / ".github/actions/setup/action.yml"]
    used = {m for f in files for m in re.findall(r"uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40})", f.read_text())}
    assert used == set(PINS)
    for folder in PINS.values():
        assert (DOUBLES / "actions" / folder / "action.yml").is_file(), folder


def test_environment_scoping_reads_the_environment_first_and_leaves_other_jobs_alone():
    workflow = {
        "on": {"push": None},
        "jobs": {
            "deploy": {"environment": "production", "if": "vars.URL != ''",
                       "steps": [{"run": "x", "env": {"U": "${{ vars.URL }}", "T": "${{ secrets.TOKEN }}",
                                                      "G": "${{ secrets.GITHUB_TOKEN }}"}}]},
            "build": {"steps": [{"run": "x", "env": {"U": "${{ vars.URL }}"}}]},
        },
    }  # fmt: skip
    scoped = scope_to_environments(workflow)["jobs"]
    env = scoped["deploy"]["steps"][0]["env"]
    assert env["U"] == "${{ (vars.production__URL || vars.URL) }}"
    assert env["T"] == "${{ (secrets.production__TOKEN || secrets.TOKEN) }}"
    assert env["G"] == "${{ secrets.GITHUB_TOKEN }}"
    assert scoped["deploy"]["if"] == "(vars.production__URL || vars.URL) != ''"
    assert scoped["build"] == workflow["jobs"]["build"]


def test_job_permissions_are_computed_as_github_does():
    workflow = load_workflow(ROOT / ".github/workflows/monitor.yml")
    perms = effective_permissions(workflow, workflow["jobs"]["monitor"])
    assert perms["issues"] == "write"
    assert perms.get("pull-requests", "none") == "none"
    assert effective_permissions({}, {}) == {"contents": "read", "metadata": "read", "packages": "read"}


@pytest.fixture
def github(tmp_path: Path):
    fake = FakeGitHub(tmp_path / "git", tmp_path / "store").start()
    fake.add_token(RUN_TOKEN, Identity(BOT, run_token=True))
    fake.add_token("pat", Identity("someone", {"issues": "write", "metadata": "read"}))
    fake.repo("acme/mlops")
    yield fake
    fake.stop()


def call(fake: FakeGitHub, method: str, path: str, token: str, run: str = "1", job: str = "j", body=None):
    request = urllib.request.Request(fake.url + path, method=method, data=json.dumps(body or {}).encode())
    for k, v in (("Authorization", f"token {token}"), ("X-Act-Run", run), ("X-Act-Job", job)):
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_the_fake_github_grants_each_job_its_permissions_and_a_fork_read_only(github):
    github.register_run(1, {"j": {"issues": "write", "metadata": "read"}, "r": {"issues": "read"}})
    github.register_run(2, {"j": {"issues": "write"}}, read_only=True)
    issue = {"title": "t", "body": "b"}
    assert call(github, "POST", "/repos/acme/mlops/issues", RUN_TOKEN, body=issue)[0] == 201
    assert call(github, "POST", "/repos/acme/mlops/issues", RUN_TOKEN, job="r", body=issue) == (
        403, {"message": "Resource not accessible by integration"})  # fmt: skip
    assert call(github, "POST", "/repos/acme/mlops/issues", RUN_TOKEN, run="2", body=issue)[0] == 403
    assert call(github, "GET", "/repos/acme/mlops/issues", RUN_TOKEN, run="2")[0] == 200
    assert call(github, "POST", "/repos/acme/mlops/issues", "nope", body=issue) == (401, {"message": "Bad credentials"})
    status, created = call(github, "POST", "/repos/acme/mlops/issues", "pat", body=issue)
    assert (status, created["user"]["login"]) == (201, "someone")


def run_double(name: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GH_", "CML_", "REPO_TOKEN"))}
    return subprocess.run([sys.executable, str(DOUBLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean, **env})  # fmt: skip


def test_cml_finds_the_repository_through_git_unless_told_and_wants_a_url(tmp_path):
    (tmp_path / "r.md").write_text("# r\n")
    outside = run_double("cml.py", "comment", "update", "--target=pr/1", "r.md", cwd=tmp_path, REPO_TOKEN="t")
    assert outside.returncode == 1
    assert "Command failed: git config --get remote.origin.url" in outside.stderr
    slug = run_double("cml.py", "comment", "update", "--repo=acme/mlops", "r.md", cwd=tmp_path, REPO_TOKEN="t")
    assert "Invalid URL: acme/mlops" in slug.stderr
    unknown = run_double("cml.py", "comment", "update", "--no-such-option", "r.md", cwd=tmp_path, REPO_TOKEN="t")
    assert "Unknown argument: no-such-option" in unknown.stderr


def test_cml_squash_merges_a_new_pull_request_at_once_when_auto_merge_is_refused(github, tmp_path):
    """What retrain.yml's old `cml pr create --squash` did on a repository without branch protection."""
    origin = github.git_root / "acme" / "mlops.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = tmp_path / "work"
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(work), *args], check=True, env={**os.environ, **env})

    work.mkdir()
    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "x")
    git("remote", "add", "origin", f"{github.url}/acme/mlops")
    github.add_token("pat-write", Identity("bot", {"contents": "write", "pull-requests": "write"}))
    basic = "AUTHORIZATION: basic " + base64.b64encode(b"x:pat-write").decode()
    git("-c", f"http.extraheader={basic}", "push", "-q", "origin", "main")
    (work / "dvc.lock").write_text("new\n")
    ci = {"REPO_TOKEN": "pat-write", "GITHUB_API_URL": github.url, "GITHUB_REF": "refs/heads/main"}
    proc = run_double("cml.py", "pr", "create", "--squash", "dvc.lock", cwd=work, GIT_TERMINAL_PROMPT="0", **ci, **env)
    assert proc.returncode == 0, proc.stderr
    state = github.snapshot("acme/mlops")
    assert [m["merge_method"] for m in state["merges"]] == ["squash"]
    assert state["pulls"]["1"]["merged"] is True


def test_gh_needs_a_token_and_a_repository(tmp_path):
    proc = run_double("gh.py", "issue", "list", "--json", "number", cwd=tmp_path)
    assert proc.returncode == 4
    assert "set the GH_TOKEN environment variable" in proc.stderr
    proc = run_double("gh.py", "issue", "list", "--json", "number", cwd=tmp_path, GH_TOKEN="t")
    assert "failed to run git" in proc.stderr or "none of the git remotes" in proc.stderr


def test_the_workflow_files_parse_as_act_reads_them():
    for path in WORKFLOWS:
        data = load_workflow(path)
        assert yaml.safe_load(yaml.safe_dump(scope_to_environments(data))), path.name
