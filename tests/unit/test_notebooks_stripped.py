"""The repository's notebooks are committed without outputs (what the nbstripout hook guarantees)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

pytestmark = pytest.mark.unit


def test_the_committed_notebooks_carry_no_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in notebooks] == ["01-explore-data.ipynb", "02-compare-experiments.ipynb"]
    nbstripout = Path(sys.executable).parent / "nbstripout"
    proc = subprocess.run([str(nbstripout), "--verify", *map(str, notebooks)], capture_output=True, text=True)
    assert proc.returncode == 0, f"outputs to strip: {proc.stdout}{proc.stderr}"
