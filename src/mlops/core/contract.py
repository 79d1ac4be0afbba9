"""The data contract (data/contract.yaml): one source for validation, features and serving."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops.core.schema import parse, read_yaml

TaskKind = Literal["binary", "multiclass", "regression"]
NUMERIC_TYPES = ("float", "integer")
TIME_TYPES = ("date", "datetime", "period")
# How a time column's text reads when the contract gives no ``format`` (strftime codes; None: ISO 8601).
DEFAULT_TIME_FORMATS: dict[str, str | None] = {"date": "%Y-%m-%d", "datetime": None, "period": "%Y-%m"}


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "integer", "category", "string", "date", "datetime", "period"]
    description: str = ""
    required: bool = True
    max_missing: float = Field(default=0.0, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    categories: list[str | int] | None = None
    format: str | None = Field(default=None, min_length=1)  # time types: strftime codes, e.g. "%b" or "%d/%m/%Y"

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        numeric = self.type in NUMERIC_TYPES
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to numeric columns, not to type {self.type!r}")
        if self.type == "category" and not self.categories:
            raise ValueError("a category column needs a non-empty 'categories' list")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.format is not None and not self.is_time:
            raise ValueError(f"'format' applies to the time types {list(TIME_TYPES)}, not to type {self.type!r}")
        if self.is_time and self.categories:
            raise ValueError(f"a {self.type} column takes a 'format', not 'categories'")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    @property
    def allowed_missing(self) -> float:
        """The share of rows that may be empty: ``max_missing``, or any for an optional column left at 0.

        A column that may be absent may be empty too.
        """
        return self.max_missing if self.required or self.max_missing > 0 else 1.0

    @property
    def is_time(self) -> bool:
        """A date, datetime or period written as text (read with ``time_format``)."""
        return self.type in TIME_TYPES

    @property
    def time_format(self) -> str | None:
        """The strftime format of a time column's text (None: ISO 8601 of any precision)."""
        return self.format or DEFAULT_TIME_FORMATS.get(self.type)

    @property
    def integer_categories(self) -> bool:
        """A category column whose categories are all numbers: its values must be numbers too."""
        return self.type == "category" and all(isinstance(c, int) for c in self.categories or [])

    @property
    def is_text(self) -> bool:
        """Read as text from a CSV: strings, time columns, and categories named by text."""
        return self.type in ("string", *TIME_TYPES) or (self.type == "category" and not self.integer_categories)


class Contract(BaseModel):
    """What the data must look like, and what the model predicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    task: TaskKind
    target: str
    id: str | None = None
    time: str | None = None
    columns: dict[str, Column]

    @model_validator(mode="after")
    def _roles_exist(self) -> Contract:
        for role in ("target", "id", "time"):
            col = getattr(self, role)
            if col is not None and col not in self.columns:
                raise ValueError(f"{role} column {col!r} is not declared under 'columns'")
        if self.time is not None and not (self.columns[self.time].is_time or self.columns[self.time].is_numeric):
            raise ValueError(
                f"time column {self.time!r} is {self.columns[self.time].type}, which has no order: declare its type "
                f"as one of {list(TIME_TYPES)} with a 'format' (strftime, e.g. '%Y-%m' or '%b'), or a number"
            )
        misplaced = [name for name, c in self.columns.items() if c.is_time and name != self.time]
        if misplaced:
            raise ValueError(
                f"only the time column may have a time type; {misplaced} are not 'time' (declare them as string)"
            )
        target = self.columns[self.target]
        if self.task == "regression" and not target.is_numeric:
            raise ValueError(f"regression needs a numeric target; {self.target!r} is {target.type}")
        if self.task != "regression":
            n = len(target.categories or [])
            want = 2 if self.task == "binary" else 3
            if (self.task == "binary" and n != 2) or (self.task == "multiclass" and n < want):
                raise ValueError(
                    f"a {self.task} target needs {'exactly 2' if want == 2 else 'at least 3'} "
                    f"'categories'; {self.target!r} has {n}"
                )
        if not self.features:
            raise ValueError("the contract declares no feature columns")
        return self

    @cached_property
    def features(self) -> list[str]:
        """Feature columns in contract order (everything but target, id and time)."""
        roles = {self.target, self.id, self.time}
        return [c for c in self.columns if c not in roles]

    @cached_property
    def numeric_features(self) -> list[str]:
        return [c for c in self.features if self.columns[c].is_numeric]

    @cached_property
    def categorical_features(self) -> list[str]:
        return [c for c in self.features if not self.columns[c].is_numeric]

    @property
    def classes(self) -> list[str | int]:
        """Target classes in contract order (classification only)."""
        return list(self.columns[self.target].categories or [])


def load_contract(path: Path | str = "data/contract.yaml") -> Contract:
    """Read and check the contract; raise UserError naming every problem."""
    path = Path(path)
    contract: Contract = parse(Contract, read_yaml(path), str(path))
    return contract
