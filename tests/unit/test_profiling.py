"""`mlops init`'s profiling: a table becomes a contract (a comment per choice), task params and batches."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.core.config import parse_params
from mlops.core.contract import Contract
from mlops.core.errors import UserError
from mlops.core.schema import parse
from mlops.pipeline.onboarding import apply_settings
from mlops.pipeline.profiling import InitParams, batches, profile, render_contract, task_params
from support import FIXTURES

pytestmark = pytest.mark.unit


def table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.integers(0, 9, rows).astype(float)
    visits[:8] = np.nan  # 2% missing whole numbers
    colour = rng.choice(["red", "green", "blue"], rows, p=[0.6, 0.395, 0.005]).astype(object)
    colour[0] = "mauve"  # seen once
    return pd.DataFrame(
        {
            "customer": [f"C{i:05d}" for i in range(rows)],
            "month": [f"2024-{m:02d}" for m in rng.integers(1, 13, rows)],
            "age": rng.integers(18, 90, rows),
            "visits": visits,
            "spend": rng.gamma(2.0, 50.0, rows).round(2),
            "colour": colour,
            "note": [f"free text {i}" for i in range(rows)],
            "member": rng.random(rows) < 0.3,
            "churned": rng.choice(["yes", "no"], rows),
        }
    )


def frames(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """As `read_source` gives them: inferred, and as text."""
    text = df.to_csv(index=False)
    return pd.read_csv(io.StringIO(text)), pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


SPEC = InitParams("shop/customers.csv", "churned", time="month", id="customer")


@pytest.fixture(scope="module")
def found():
    typed, _ = frames(table())
    return profile(typed, SPEC)


def test_columns_get_their_types_ranges_with_a_margin_categories_and_missing_rates(found):
    c = found.contract
    assert (c.name, c.task, c.target, c.id, c.time) == ("customers", "binary", "churned", "customer", "month")
    cols = c.columns
    assert cols["customer"].type == "string"
    assert (cols["month"].type, cols["month"].format) == ("period", "%Y-%m")
    assert cols["age"].type == "integer"
    assert cols["age"].min < 18
    assert cols["age"].max > 89
    assert cols["age"].min >= 0  # non-negative data stays non-negative
    assert (cols["visits"].type, cols["visits"].max_missing) == ("integer", 0.04)  # 2% seen: 1.5 times and a point
    assert cols["spend"].type == "float"
    assert cols["spend"].max_missing == 0
    assert cols["colour"].type == "category"
    assert set(cols["colour"].categories or []) == {"red", "green", "blue", "mauve"}
    assert cols["note"].type == "string"  # every value distinct: text, not a category
    assert cols["member"].categories == ["False", "True"]
    assert cols["churned"].categories == ["no", "yes"]


def test_the_contract_file_has_a_comment_per_inferred_choice_and_reads_back(found):
    text = render_contract(found, SPEC.data)
    assert parse(Contract, yaml.safe_load(text), "rendered") == found.contract
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if line.startswith(("  ", "task"))}
    for name in found.contract.columns:
        assert "  # " in lines[name], lines[name]
    assert "observed 18.." in lines["age"]
    assert "2.0% missing, up to 4% allowed" in lines["visits"]
    assert "min: 0, max: 9" in lines["visits"]
    assert "'mauve'" in lines["colour"]  # a rare category is pointed out
    assert "# inferred from the target" in lines["task"]


def test_what_a_person_should_check_names_rare_categories_and_free_text(found):
    checks = "\n".join(found.checks)
    assert "'colour'" in checks
    assert "mauve" in checks
    assert "'note'" in checks
    assert "identifier" in checks


@pytest.mark.parametrize(
    ("target", "values", "task", "gates"),
    [
        ("churned", None, "binary", {"minimum": ["roc_auc"], "maximum": ["log_loss"]}),
        ("tier", ["gold", "silver", "bronze"], "multiclass",
         {"minimum": ["accuracy", "roc_auc"], "maximum": ["log_loss"]}),
        ("spend", None, "regression", {"minimum": ["r2"], "maximum": ["rmse"]}),
    ],
)  # fmt: skip
def test_the_task_is_inferred_and_params_get_its_names_split_and_gates(target, values, task, gates):
    df = table()
    if values:
        df[target] = np.random.default_rng(1).choice(values, len(df))
    typed, _ = frames(df)
    found = profile(typed, InitParams("x.csv", target, time="month", name="my-model"))
    assert found.contract.task == task
    settings = {s.key: s for s in task_params(found, periods=12)}
    assert {k: list(settings[f"gates.{k}"].value) for k in ("minimum", "maximum")} == gates
    assert settings["split.method"].value == "time"
    assert settings["split.holdout_periods"].value == 2
    assert settings["serve.model_name"].value == settings["mlflow.registered_model"].value == "my-model"
    text = apply_settings((FIXTURES / "params.yaml").read_text(), list(settings.values()))
    params = parse_params(yaml.safe_load(text))
    assert params.data is None  # the example generator's section is gone
    assert list(params.gates.minimum) == gates["minimum"]
    assert "# hold out the latest periods of 'month'" in text  # each setting says why
    assert "# Every tunable of the pipeline" in text  # the file's own comments stay


def test_baseline_gates_come_from_the_data():
    df = table()
    df["churned"] = ["yes"] * 100 + ["no"] * 300
    typed, _ = frames(df)
    settings = {s.key: s.value for s in task_params(profile(typed, InitParams("x.csv", "churned")), periods=0)}
    prior = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    assert settings["gates.maximum"] == {"log_loss": np.ceil(prior * 100) / 100}
    assert settings["split.method"] == "random"


def test_batches_follow_the_time_column_in_calendar_order():
    df = table(120)
    df["month"] = [["Nov", "Feb", "Dec", "Jan"][i % 4] for i in range(len(df))]
    typed, text = frames(df)
    spec = InitParams("x.csv", "churned", time="month", time_format="%b")
    found = profile(typed, spec)
    out = list(batches(typed, text, found.contract))
    assert [name for name, _ in out] == ["1900-01.csv", "1900-02.csv", "1900-11.csv", "1900-12.csv"]
    assert [set(rows["month"]) for _, rows in out] == [{"Jan"}, {"Feb"}, {"Nov"}, {"Dec"}]
    assert sum(len(rows) for _, rows in out) == len(df)
    assert out[0][1].iloc[0]["spend"] == text[text["month"] == "Jan"].iloc[0]["spend"]  # values as written


def test_dates_are_batched_by_month_and_a_table_without_time_in_row_chunks():
    df = table(90)
    df["month"] = pd.date_range("2024-01-30", periods=len(df), freq="D").strftime("%d/%m/%Y")
    typed, text = frames(df)
    found = profile(typed, InitParams("x.csv", "churned", time="month", time_format="%d/%m/%Y"))
    assert found.contract.columns["month"].type == "date"
    assert [n for n, _ in batches(typed, text, found.contract)] == [
        "2024-01.csv",
        "2024-02.csv",
        "2024-03.csv",
        "2024-04.csv",
    ]
    plain = profile(typed, InitParams("x.csv", "churned"))
    assert [n for n, _ in batches(typed, text, plain.contract)] == ["batch-0001.csv"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (InitParams("x.csv", "charged_off"), r"\['charged_off'\] are not in the table"),
        (InitParams("x.csv", "churned", task="multiclass"), "at least 3 classes; the table has 2"),
        (InitParams("x.csv", "colour", task="regression"), "regression needs numbers"),
        (InitParams("x.csv", "churned", id="colour"), "ids must be unique"),
        (InitParams("x.csv", "churned", time="note"), r"cannot tell how to read values like 'free text 0'.*format"),
        (InitParams("x.csv", "churned", time="month", time_format="%b"), r"--time-format '%b'.*'2024-"),
    ],
)  # fmt: skip
def test_a_table_that_does_not_fit_is_a_clear_error(spec, words):
    typed, _ = frames(table())
    with pytest.raises(UserError, match=words):
        profile(typed, spec)


def test_a_time_column_with_gaps_is_a_clear_error():
    df = table()
    df.loc[[3, 7], "month"] = None
    typed, _ = frames(df)
    with pytest.raises(UserError, match=r"--time month: 2 row\(s\) have no value"):
        profile(typed, InitParams("x.csv", "churned", time="month"))


def test_rows_without_a_target_are_left_out_and_said_so():
    df = table()
    df.loc[:9, "churned"] = None
    typed, text = frames(df)
    found = profile(typed, InitParams("x.csv", "churned"))
    assert (found.rows, found.dropped) == (390, 10)
    assert "10 row(s) with an empty 'churned' were left out of data/raw" in found.checks
    assert sum(len(rows) for _, rows in batches(typed, text, found.contract)) == 390


def test_the_model_name_comes_from_the_file_and_is_safe_everywhere():
    assert InitParams("s3://bucket/2024 sales (final).csv", "y").model_name == "2024-sales-final"
    assert InitParams("data.csv", "y", name="_x").model_name == "x"
