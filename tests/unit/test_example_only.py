"""params.yaml's `data:` section (the example generator) is optional; what drives the example says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops.cli import main as mlops
from mlops.core.config import load_params
from mlops.core.errors import UserError
from mlops.example.cycle import play
from mlops.release.deploy import Site
from support import FIXTURES

pytestmark = pytest.mark.unit


@pytest.fixture
def own_params(tmp_path: Path) -> Path:
    """A user's params.yaml: the fixture's, without the example generator's section."""
    raw = yaml.safe_load((FIXTURES / "params.yaml").read_text())
    del raw["data"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_params_without_a_data_section_load(own_params):
    assert load_params(own_params).data is None


@pytest.mark.parametrize("args", [[], ["--next"]], ids=["data", "data --next"])
def test_mlops_data_says_it_drives_the_example_only(own_params, tmp_path, capsys, args):
    out = tmp_path / "raw"
    code = mlops(["data", "--params", str(own_params), "--out", str(out), "--landing", str(tmp_path / "in"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert "example" in err
    assert "no `data:` section" in err
    assert not out.exists()


def test_the_training_round_says_it_drives_the_example_only(own_params, tmp_path):
    site = Site(tmp_path, load_params(own_params), tmp_path / "serve", tmp_path / ".serve", lambda _: None)
    with pytest.raises(UserError, match=r"example data only .*no `data:` section"):
        play(site, periods=1, drift=1.0)
