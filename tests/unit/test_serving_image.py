"""serve/Dockerfile, checked where no Docker engine runs: hadolint finds nothing, the final stage runs
as a non-root user with a healthcheck and holds no build tools, and it installs the pinned requirements."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / "serve" / "Dockerfile"


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE.read_text(), flags=re.M)[1:]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_final_stage_is_non_root_has_a_healthcheck_and_no_build_tools() -> None:
    final = stages()[-1]
    assert re.search(r"^USER (?!0|root)\S+", final, re.M)
    assert re.search(r"^HEALTHCHECK .*CMD", final, re.M | re.S)
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "COPY --from=java /opt/java/openjdk" in final


def test_the_build_stage_installs_exactly_the_pinned_requirements() -> None:
    build = stages()[0]
    assert "-r requirements.txt" in build
    assert "--no-deps ." in build
