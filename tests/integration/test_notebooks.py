"""notebooks/01-explore-data.ipynb runs on a trained project: the contract, each batch's statistics,
the validation report and the drift between periods, through the library; under a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.notebooks import execute, text

pytestmark = pytest.mark.integration


def test_the_explore_notebook_runs_on_a_project_and_reports_validation_and_drift(
    trained_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("JUPYTER_PATH", "")  # execute() points it at this test's kernel spec
    nb, seconds = execute("01-explore-data.ipynb", trained_project, tmp_path / "jupyter")
    printed = text(nb)
    print(f"01-explore-data: {seconds:.1f}s")
    assert "task binary, target 'defaulted', 13 features" in printed  # the tests' contract, not the repository's
    assert "expectations, 0 failed: PASS" in printed
    assert "against 2025-01:" in printed
    assert "inputs drifted" in printed
    assert seconds < 60
