"""Choosing among DVC experiments: the best one by a metric, from the rows `dvc exp show` gives."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops.core.errors import UserError, quoted


@dataclass(frozen=True)
class Experiment:
    """A finished DVC experiment and its value of the metric it was chosen by."""

    name: str
    rev: str
    value: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def best_experiment(rows: Iterable[Mapping[str, Any]], metric: str, higher_is_better: bool = True) -> Experiment:
    """The finished experiment with the best ``metric`` among ``rows`` (``dvc.api.exp_show()``'s records).

    Baselines (the workspace, the commit) are not candidates: an experiment is what a pull request
    would take in. Raises UserError when there is no finished experiment, or none has the metric.
    """
    done = [r for r in rows if r.get("Experiment") and r.get("State") in (None, "Success")]
    if not done:
        raise UserError("no finished experiment on this commit: run `dvc exp run` (or queue a sweep) first")
    scored = [(value, r) for r in done if (value := _number(r.get(metric))) is not None]
    if not scored:
        known = sorted(k for r in done for k, v in r.items() if _number(v) is not None and "." not in k)
        raise UserError(
            f"no experiment has the metric {quoted(metric)}; metrics: {', '.join(dict.fromkeys(known)) or 'none'}"
        )
    value, row = (max if higher_is_better else min)(scored, key=lambda pair: pair[0])
    return Experiment(str(row["Experiment"]), str(row.get("rev", "")), value)
