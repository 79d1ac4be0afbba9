from pathlib import Path

import pytest
import yaml

from mlops.core.contract import load_contract
from mlops.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.unit


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def raw_contract() -> dict:
    return yaml.safe_load((FIXTURES / "contract.yaml").read_text())


def test_contract_gives_the_feature_column_lists():
    c = load_contract(FIXTURES / "contract.yaml")
    assert c.task == "binary"
    assert c.target not in c.features
    assert c.id not in c.features
    assert c.time not in c.features
    assert set(c.numeric_features) | set(c.categorical_features) == set(c.features)
    assert "credit_score" in c.numeric_features
    assert "purpose" in c.categorical_features
    assert c.classes == [0, 1]


def test_undeclared_target_is_rejected(tmp_path):
    raw = raw_contract()
    raw["target"] = "charged_off"
    with pytest.raises(UserError, match="target column 'charged_off' is not declared"):
        load_contract(write(tmp_path, raw))


def test_binary_target_needs_two_classes(tmp_path):
    raw = raw_contract()
    raw["columns"]["defaulted"]["categories"] = [0, 1, 2]
    with pytest.raises(UserError, match="exactly 2"):
        load_contract(write(tmp_path, raw))


def test_category_column_needs_categories(tmp_path):
    raw = raw_contract()
    del raw["columns"]["purpose"]["categories"]
    with pytest.raises(UserError, match=r"columns\.purpose: .*categories"):
        load_contract(write(tmp_path, raw))


def test_unknown_column_property_is_named(tmp_path):
    raw = raw_contract()
    raw["columns"]["age"]["maximum"] = 3
    with pytest.raises(UserError, match=r"columns\.age\.maximum: unknown key"):
        load_contract(write(tmp_path, raw))


SHIPPED = sorted((ROOT / "examples").glob("contract-*.yaml"))  # what the template ships, while it does


@pytest.mark.parametrize(
    "path", [FIXTURES / "contract-multiclass.yaml", FIXTURES / "contract-regression.yaml", *SHIPPED]
)
def test_contracts_for_other_tasks_load(path):
    c = load_contract(path)
    assert c.task in ("multiclass", "regression")
    assert c.features == load_contract(FIXTURES / "contract.yaml").features
