"""The PR report's production model: fetched by DVC at production's tag, or, when that commit does
not hold it (a build deployed before it was committed: `make demo` right after `mlops init`), this
checkout's build when it is the very archive production serves, and never another one."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from mlops.core import paths
from mlops.release import deploy, report
from support import release_world as rw

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path, parts) -> rw.World:
    world = rw.make_world(tmp_path, *parts)
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))  # tagged on a commit with no dvc.lock and no model
    return world


def build_here(world: rw.World, version: str) -> None:
    (world.root / paths.MODELS).mkdir(exist_ok=True)
    (world.root / paths.PACKAGE).write_text(json.dumps({"version": version}))
    joblib.dump(world.models[version], world.root / paths.PIPELINE)


def test_the_checkouts_build_stands_for_production_when_it_is_the_archive_production_serves(world, parts):
    build_here(world, "good")
    production = report.production_model(world.root)
    assert production is not None
    assert production.record["version"] == "good"
    assert production.problem == ""
    assert "not yet committed" in production.source
    X = parts[0].drop(columns=[parts[1].target])
    np.testing.assert_array_equal(production.pipeline.predict_proba(X), world.models["good"].predict_proba(X))
    assert "Production serves `good` (" in "".join(report._production(facts(production)))


@pytest.mark.parametrize("here", [None, "other"])
def test_without_the_same_build_here_the_report_says_production_could_not_be_fetched(world, here):
    if here:
        build_here(world, here)  # another model: comparing with it would be comparing with the wrong model
    production = report.production_model(world.root)
    assert production is not None
    assert production.pipeline is None
    assert production.problem.startswith("could not fetch its model with DVC at ")


def facts(production: report.Production) -> report.Facts:
    return report.Facts(base="main", repro=None, validation={}, candidate={}, params=[], metrics=[],
                        production=production, vs_production=[], data=report.DataDiff(), images={})  # fmt: skip
