"""The example data set: consumer loans, one CSV batch per month, offline and deterministic.

The generating process (documented in the README):

* Applicants have an age, income, employment, home ownership, a credit score, open
  accounts and recent delinquencies; they ask for an amount over 36 or 60 months for a
  purpose. Debt-to-income follows from income and existing debt.
* A latent risk score combines these (credit score and debt-to-income weigh most, with
  a U-shape in age and an interaction between unemployment and loan size). The targets
  derive from it: ``defaulted`` (binary, about one loan in seven), ``risk_grade``
  (multiclass A-D, an underwriter's noisy grading) or ``interest_rate`` (regression,
  risk-based pricing).
* A few percent of values are missing: income (2%), months employed (more often for
  the self-employed), debt-to-income and home ownership (about 1% each).
* Drift: from period ``drift_start`` on, a downturn of size ``drift`` (in standard
  deviations) lowers credit scores and incomes, raises debt-to-income, moves the purpose
  mix towards small business and medical loans, and raises default risk.
* Faults (``--fault KIND[:COLUMN]``) break the newest batch on purpose, for tests and
  drills: see ``FAULTS``.

Every period has its own random stream seeded by ``(seed, period index)``, so the same
seed always gives the same bytes, and period N is identical whether generated alone or
with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.core.config import DataParams
from mlops.core.errors import UserError

PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical", "small_business", "other"]
PURPOSE_P = np.array([0.38, 0.22, 0.12, 0.12, 0.06, 0.04, 0.06])
PURPOSE_RISK = np.array([0.0, -0.1, -0.25, -0.2, 0.35, 0.6, 0.15])
PURPOSE_DRIFT = np.array([-0.04, -0.03, -0.02, -0.01, 0.04, 0.05, 0.01])
HOME = ["RENT", "MORTGAGE", "OWN", "OTHER"]
EMPLOYMENT = ["salaried", "self_employed", "unemployed", "retired"]
REGIONS = ["north", "south", "east", "west"]
GRADES = ["A", "B", "C", "D"]
TARGETS = {"binary": "defaulted", "multiclass": "risk_grade", "regression": "interest_rate"}


def period_label(start: str, index: int) -> str:
    """The ``YYYY-MM`` label of the period ``index`` months after ``start``."""
    year, month = (int(x) for x in start.split("-"))
    month0 = year * 12 + month - 1 + index
    return f"{month0 // 12:04d}-{month0 % 12 + 1:02d}"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_period(params: DataParams, index: int) -> pd.DataFrame:
    """One month of loan applications and outcomes (``index`` counts from 0)."""
    rng = np.random.default_rng([params.seed, index])
    n = params.rows_per_period
    shift = params.drift if index + 1 >= params.drift_start else 0.0

    age = np.clip(rng.normal(42, 12, n), 18, 80).round().astype(int)
    employment = rng.choice(EMPLOYMENT, n, p=[0.72, 0.16, 0.05, 0.07])
    region = rng.choice(REGIONS, n, p=[0.3, 0.25, 0.25, 0.2])
    income = np.exp(rng.normal(np.log(58_000) - 0.15 * shift, 0.45, n))
    income = np.where(employment == "unemployed", income * 0.35, income)
    income = np.where(employment == "retired", income * 0.7, income)
    home_p = np.array([0.42, 0.4, 0.15, 0.03])
    home = rng.choice(HOME, n, p=home_p)
    credit = np.clip(rng.normal(690 - 25 * shift, 55, n) + (age - 42) * 0.8, 300, 850).round().astype(int)
    accounts = rng.poisson(6, n)
    delinquencies = rng.poisson(np.where(credit < 620, 0.9, 0.15))
    months_employed = np.where(employment == "unemployed", 0, np.clip(rng.exponential(70, n), 0, 480)).round()
    purpose_p = np.clip(PURPOSE_P + PURPOSE_DRIFT * shift, 0.005, None)
    purpose_idx = rng.choice(len(PURPOSES), n, p=purpose_p / purpose_p.sum())
    purpose = np.array(PURPOSES)[purpose_idx]
    term = rng.choice([36, 60], n, p=[0.65, 0.35])
    amount = np.clip(np.exp(rng.normal(np.log(14_000), 0.6, n)), 1_000, 50_000).round(-2)
    dti = np.clip(rng.beta(2.2, 5, n) + 0.04 * shift + amount / income / term * 6, 0, 1.5)

    z = (
        -3.0
        + 0.55 * shift
        - 1.15 * (credit - 690) / 55
        + 0.85 * (dti - 0.32) / 0.16
        + 0.45 * delinquencies
        + 0.35 * (term == 60)
        + 0.25 * ((age - 45) / 15) ** 2
        + PURPOSE_RISK[purpose_idx]
        + 0.3 * (employment == "self_employed")
        + 0.7 * (employment == "unemployed") * (1 + amount / 20_000)
        + 0.2 * (home == "RENT")
        - 0.12 * np.minimum(months_employed, 120) / 24
        + 0.02 * (accounts - 6)
    )
    frame = pd.DataFrame(
        {
            "loan_id": [f"L{index:03d}-{i:06d}" for i in range(n)],
            "period": period_label(params.start, index),
            "age": age,
            "annual_income": income.round(0),
            "employment_type": employment,
            "months_employed": months_employed,
            "home_ownership": home,
            "region": region,
            "credit_score": credit,
            "open_accounts": accounts,
            "delinquencies_2y": delinquencies,
            "loan_amount": amount,
            "term_months": term,
            "purpose": purpose,
            "debt_to_income": dti.round(4),
        }
    )
    if params.task == "binary":
        frame["defaulted"] = (rng.random(n) < _sigmoid(z)).astype(int)
    elif params.task == "multiclass":
        graded = z + rng.normal(0, 0.6, n)
        frame["risk_grade"] = np.array(GRADES)[np.searchsorted([-3.9, -3.0, -2.1], graded)]
    else:
        frame["interest_rate"] = np.clip(7.5 + 2.4 * (z + 3.0) + rng.normal(0, 0.8, n), 3, 36).round(2)

    self_emp = employment == "self_employed"
    _blank(frame, "annual_income", rng.random(n) < 0.02)
    _blank(frame, "months_employed", rng.random(n) < np.where(self_emp, 0.15, 0.03))
    _blank(frame, "debt_to_income", rng.random(n) < 0.01)
    _blank(frame, "home_ownership", rng.random(n) < 0.012)
    return frame


def _blank(frame: pd.DataFrame, column: str, mask: np.ndarray) -> None:
    frame[column] = frame[column].astype(object if frame[column].dtype == object else float)
    frame.loc[mask, column] = np.nan


def _missing_burst(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    _blank(df, col, rng.random(len(df)) < 0.6)
    return df


def _missing_column(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    return df.drop(columns=[col])


def _wrong_dtype(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    df[col] = df[col].astype(object)
    df.loc[rng.random(len(df)) < 0.05, col] = "unknown"
    return df


def _out_of_range(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    df.loc[rng.random(len(df)) < 0.03, col] = 9_999
    return df


def _unknown_category(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    df.loc[rng.random(len(df)) < 0.05, col] = "crypto"
    return df


def _empty(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    return df.iloc[0:0]


def _missing_target(df: pd.DataFrame, col: str, rng: np.random.Generator) -> pd.DataFrame:
    _blank(df, col, rng.random(len(df)) < 0.1)
    return df


# kind -> (default column, how it breaks a batch); "target" means the task's target column
FAULTS: dict[str, tuple[str, Callable[[pd.DataFrame, str, np.random.Generator], pd.DataFrame]]] = {
    "missing_burst": ("annual_income", _missing_burst),
    "missing_column": ("credit_score", _missing_column),
    "wrong_dtype": ("age", _wrong_dtype),
    "out_of_range": ("credit_score", _out_of_range),
    "unknown_category": ("purpose", _unknown_category),
    "empty": ("", _empty),
    "missing_target": ("target", _missing_target),
}


def apply_fault(frame: pd.DataFrame, spec: str, task: str, seed: int = 0) -> pd.DataFrame:
    """Break a batch on purpose: ``spec`` is ``KIND`` or ``KIND:COLUMN`` (see ``FAULTS``)."""
    kind, _, column = spec.partition(":")
    if kind not in FAULTS:
        raise UserError(f"unknown fault {kind!r}; choose from {', '.join(FAULTS)}")
    default, breaker = FAULTS[kind]
    column = column or default
    if column == "target":
        column = TARGETS[task]
    if column and column not in frame.columns:
        raise UserError(f"fault {kind!r}: no column {column!r} in the batch")
    return breaker(frame.copy(), column, np.random.default_rng([seed, 99]))


def next_period(start: str, folders: list[Path]) -> int:
    """The index of the period after the newest ``YYYY-MM.csv`` in any of ``folders``."""
    y0, m0 = (int(x) for x in start.split("-"))
    newest = -1
    for folder in folders:
        for path in folder.glob("*.csv") if folder.is_dir() else []:
            try:
                y, m = (int(x) for x in path.stem.split("-"))
            except ValueError:
                continue
            newest = max(newest, (y - y0) * 12 + (m - m0))
    return newest + 1


def write_batch(frame: pd.DataFrame, path: Path) -> None:
    """Write one batch as CSV with a fixed float format, so bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    tmp.replace(path)


def generate(
    params: DataParams,
    out_dir: Path,
    periods: range | None = None,
    faults: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the example batches (all ``params.periods`` by default) as ``<out_dir>/<YYYY-MM>.csv``.

    Faults, if any, are applied to the last period written.
    """
    periods = periods if periods is not None else range(params.periods)
    written = []
    for index in periods:
        frame = generate_period(params, index)
        if faults and index == periods[-1]:
            for spec in faults:
                frame = apply_fault(frame, spec, params.task, params.seed)
        path = out_dir / f"{period_label(params.start, index)}.csv"
        write_batch(frame, path)
        written.append(path)
        if progress:
            progress(f"{path} ({len(frame):,} rows)")
    return written


def land_next(
    params: DataParams,
    raw_dir: Path,
    landing: Path,
    faults: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the period after the newest one in ``raw_dir`` or ``landing`` into ``landing``."""
    index = next_period(params.start, [raw_dir, landing])
    return generate(params, landing, range(index, index + 1), faults, progress)[0]
