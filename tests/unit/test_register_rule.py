"""Which training registers a model version: main in CI, or MLOPS_REGISTER=1; never an experiment."""

from __future__ import annotations

import pytest

from mlops.core.errors import UserError
from mlops.core.lineage import registers_here

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),  # a laptop, `dvc exp run`, a notebook
        ({"CI": "true", "GITHUB_REF": "refs/heads/main"}, True),  # CI on main: what the deploy workflow builds
        ({"CI": "true", "GITHUB_REF": "refs/pull/7/merge"}, False),  # a pull request's CI
        ({"CI": "true", "GITHUB_REF": "refs/heads/feature"}, False),  # another branch
        ({"GITHUB_REF": "refs/heads/main"}, False),  # main checked out, but not CI
        ({"MLOPS_REGISTER": "1"}, True),
        ({"MLOPS_REGISTER": "0", "CI": "true", "GITHUB_REF": "refs/heads/main"}, False),
    ],
)
def test_only_main_in_ci_or_an_explicit_request_registers(environ, expected):
    assert registers_here(environ) is expected


def test_a_bad_register_value_names_the_variable():
    with pytest.raises(UserError, match=r"MLOPS_REGISTER must be 1 or 0; got 'maybe'"):
        registers_here({"MLOPS_REGISTER": "maybe"})
