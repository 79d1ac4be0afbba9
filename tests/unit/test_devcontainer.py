"""The development image: exactly requirements.txt, the tools CI has, a non-root user, a tag that
follows what it installs, and a devcontainer.json whose commands the Makefile has. (No Docker
engine here: the Dockerfile is checked by hadolint and read, not built.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / ".devcontainer" / "Dockerfile"
DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M)]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_the_image_installs_exactly_requirements_txt_with_makes_pip():
    runs = " && ".join(args for kind, args in instructions() if kind == "RUN")
    installs = [c.strip() for c in runs.split("&&") if re.search(r"\bpip install\b", c)]
    assert installs == [
        "/opt/venv/bin/pip install --no-cache-dir pip==26.3",
        "/opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt",
    ]
    assert ("COPY", "requirements.txt /tmp/requirements.txt") in instructions()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip==26.3" in makefile  # the same pip as make setup


def test_the_image_has_python_311_java_17_node_20_and_a_non_root_user():
    froms = [args for kind, args in instructions() if kind == "FROM"]
    assert froms[-1] == "python:3.11-slim-bookworm"
    assert "eclipse-temurin:17-jre-jammy AS java" in froms
    assert "node:20-bookworm-slim AS node" in froms
    [user] = [args for kind, args in instructions() if kind == "USER"]
    assert user.split(":")[0] not in ("0", "root")


def test_the_devcontainers_commands_are_make_targets():
    config = json.loads(DEVCONTAINER.read_text())
    assert config["build"] == {"dockerfile": "Dockerfile", "context": ".."}
    commands = " && ".join(
        str(config[k]) for k in ("onCreateCommand", "postCreateCommand", "postStartCommand", "updateContentCommand")
        if k in config
    )  # fmt: skip
    used = re.findall(r"\bmake ([a-z][a-z0-9-]*)", commands)
    assert "setup" in used
    assert set(used) <= make_targets()


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_tag_changes_with_what_the_image_installs_and_the_workflow_runs_on_those_changes(tmp_path):
    (tmp_path / ".devcontainer").mkdir()
    shutil.copy(ROOT / "requirements.txt", tmp_path)
    shutil.copy(DOCKERFILE, tmp_path / ".devcontainer")

    def tag() -> str:
        out = subprocess.run(
            ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "devcontainer-tag", "SKIP_SETUP=1"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return dict(line.split("=", 1) for line in out.split())["tag"]

    before = tag()
    assert re.fullmatch(r"[0-9a-f]{16}", before)
    assert tag() == before
    with (tmp_path / "requirements.txt").open("a") as f:
        f.write("rich==14.0.0\n")
    assert tag() != before
    on = yaml.safe_load((ROOT / ".github/workflows/devcontainer.yml").read_text())[True]
    assert {"requirements.txt", ".devcontainer/**"} <= set(on["push"]["paths"])
    assert on["push"]["branches"] == ["main"]
