"""A standard MLflow client can use the registered model: a signature built from the contract, and a
pyfunc whose ``predict`` returns what the signature says (labels; probabilities on request)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.types import DataType
from mlflow.types.schema import AnyType

from conftest import sh

pytestmark = pytest.mark.integration


def model_uri(project: Path) -> str:
    """The registry version trained as this project's model file."""
    sha = sh("sha256sum", "models/pipeline.joblib", cwd=project).stdout.split()[0]
    client = MlflowClient()
    runs = client.search_runs(  # the same model file may have been trained again, unregistered (other tests)
        [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.model_sha256 = '{sha}'"
    )
    versions = [v for r in runs for v in client.search_model_versions(f"run_id = '{r.info.run_id}'")]
    assert versions, f"no registered version of {sha[:12]} among {len(runs)} run(s)"
    return f"models:/{versions[0].name}/{versions[0].version}"


@pytest.fixture(scope="module")
def user_csv(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Holdout rows as a user has them: a CSV with every column (id, time, target too), read back by pandas."""
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    pd.read_parquet(trained_project / "data/split/holdout.parquet").head(40).to_csv(path, index=False)
    return path


def test_the_signature_follows_the_contract(trained_project):
    import mlflow

    schema = mlflow.models.get_model_info(model_uri(trained_project)).signature
    inputs = {c.name: c for c in schema.inputs.inputs}
    assert list(inputs) == [
        "age", "annual_income", "employment_type", "months_employed", "home_ownership", "region", "credit_score",
        "open_accounts", "delinquencies_2y", "loan_amount", "term_months", "purpose", "debt_to_income",
    ]  # fmt: skip
    assert inputs["age"].type == DataType.long
    assert isinstance(inputs["annual_income"].type, AnyType)  # float64, or int64 when all whole
    assert inputs["purpose"].type == DataType.string
    assert inputs["region"].required is False  # optional in the contract
    assert inputs["age"].required is True
    [output] = schema.outputs.inputs
    assert (output.name, output.type) == ("prediction", DataType.long)  # the class labels 0/1
    assert {p.name: p.default for p in schema.params.params} == {"output": "label"}


def test_pyfunc_predicts_labels_and_probabilities_on_a_frame_read_from_csv(trained_project, user_csv):
    import mlflow

    frame = pd.read_csv(user_csv)
    assert frame["age"].dtype == np.int64  # what broke a signature that declared every number double
    model = mlflow.pyfunc.load_model(model_uri(trained_project))
    offline = joblib.load(trained_project / "models/pipeline.joblib")
    labels = model.predict(frame)
    assert list(labels.columns) == ["prediction"]
    np.testing.assert_array_equal(labels["prediction"].to_numpy(), offline.predict(frame))
    probabilities = model.predict(frame, params={"output": "probabilities"})
    assert list(probabilities.columns) == ["0", "1"]
    np.testing.assert_array_equal(probabilities.to_numpy(), offline.predict_proba(frame))


def test_pyfunc_accepts_rows_without_an_optional_column(trained_project, user_csv):
    import mlflow

    frame = pd.read_csv(user_csv).drop(columns=["region"])
    out = mlflow.pyfunc.load_model(model_uri(trained_project)).predict(frame)
    assert len(out) == len(frame)


def test_pyfunc_names_a_column_whose_values_are_not_numbers(trained_project, user_csv):
    import mlflow
    from mlflow.exceptions import MlflowException

    frame = pd.read_csv(user_csv).astype({"credit_score": object})
    frame.loc[3, "credit_score"] = "high"
    with pytest.raises(MlflowException, match="credit_score"):
        mlflow.pyfunc.load_model(model_uri(trained_project)).predict(frame)


def test_mlflow_models_predict_scores_the_users_csv(trained_project, user_csv, tmp_path):
    out = tmp_path / "predictions.json"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_cli), "models", "predict", "-m", model_uri(trained_project), "-i", str(user_csv)]
    cmd += ["-t", "csv", "-o", str(out), "--env-manager", "local"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(out.read_text())["predictions"]
    offline = joblib.load(trained_project / "models/pipeline.joblib").predict(pd.read_csv(user_csv))
    assert [row["prediction"] for row in served] == offline.tolist()
