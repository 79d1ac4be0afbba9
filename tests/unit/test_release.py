"""Deploy, promote, roll back, records and status against fake TorchServe environments.

The fake (tests/support/fake_torchserve.py) keeps TorchServe's version rules and predicts with the
real Predictor, so the checks run for real; the integration tests repeat the moves on real servers.
"""

from __future__ import annotations

import pytest

from mlops.core.errors import MlopsError, UserError
from mlops.release import deploy, records
from mlops.release.environments import Options
from support import release_world as rw
from support.project import sh

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path, parts) -> rw.World:
    return rw.make_world(tmp_path, *parts)


def test_a_deployment_checks_the_version_then_makes_it_the_default_and_records_it(world):
    entry = deploy.deploy_staging(world.release("good"))
    staging = world.servers["staging"]
    assert staging.default == "good"
    assert entry.action == "deploy"
    assert {name for name, c in entry.checks.items() if isinstance(c, dict) and c["passed"]} == {
        "smoke", "contract", "parity", "quality", "latency"
    }  # fmt: skip
    assert entry.checks["parity"]["mismatched"] == 0
    ledger = world.ledger("staging")
    assert [(e.version, e.phase) for e in ledger.entries()] == [("good", "intent"), ("good", "done")]
    assert ledger.passed("sha-good")
    assert entry.git_commit == world.head()


def test_a_second_deployment_switches_only_after_its_checks_and_keeps_the_previous_version(world):
    deploy.deploy_staging(world.release("good"))
    world.commit("retrain")
    deploy.deploy_staging(world.release("other"))
    staging = world.servers["staging"]
    assert staging.default == "other"
    assert set(staging.registered) == {"good", "other"}
    assert staging.calls.index("register loan-default-other.mar") < staging.calls.index("set-default other")


def test_a_third_deployment_retires_the_oldest_version(world):
    for name in ("good", "other", "third"):
        world.commit(f"retrain: {name}")
        deploy.deploy_staging(world.release(name))
    assert set(world.servers["staging"].registered) == {"other", "third"}


@pytest.mark.parametrize(("model", "failed"), [("skewed", "parity"), ("raising", "smoke")])
def test_a_broken_version_is_rejected_unregistered_and_the_old_default_keeps_serving(world, model, failed):
    deploy.deploy_staging(world.release("good"))
    with pytest.raises(deploy.DeployError, match=rf"rejected \(.*{failed}.*\); good keeps serving") as info:
        deploy.deploy_staging(world.release(model))
    assert info.value.exit_code == 1
    staging = world.servers["staging"]
    assert staging.default == "good"
    assert model not in staging.registered
    assert world.ledger("staging").entries()[-1].action == "rejected"
    assert not world.ledger("staging").passed(f"sha-{model}")


def test_redeploying_what_an_environment_serves_switches_nothing_and_records_it_unchanged(world):
    deploy.deploy_staging(world.release("good"))
    calls = list(world.servers["staging"].calls)
    entry = deploy.deploy_staging(world.release("good"))
    assert entry.action == "unchanged"
    assert world.servers["staging"].calls == calls
    assert world.ledger("staging").entries()[-1].action == "unchanged"


def test_promotion_needs_the_same_archive_to_have_passed_staging(world):
    with pytest.raises(UserError, match="has not passed staging"):
        deploy.promote_production(world.release("good"))
    assert world.servers["production"].default is None


def test_promotion_serves_in_production_and_records_it_in_gto_tags(world):
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    assert world.servers["production"].default == "good"
    assert sorted(world.tag_names()) == ["loan-default#production#2", "loan-default#staging#1", "loan-default@v0.0.1"]
    [tag] = records.production_tags(world.root)
    assert tag.name == "loan-default#production#2"
    assert tag.record["version"] == "good"
    assert tag.record["action"] == "promote"
    assert tag.record["registry_version"] == "v0.0.1"
    assert tag.commit == world.head()
    assert records.production_record(world.root) == (tag.name, tag.record)
    assert records.production_record(world.root, "loan-default") == (tag.name, tag.record)


def test_an_older_commit_is_refused_unless_forced(world):
    first = world.head()
    deploy.deploy_staging(world.release("good"))
    world.commit("second")
    deploy.deploy_staging(world.release("other"))
    deploy.promote_production(world.release("other"))
    sh("git", "checkout", "-q", "--detach", first, cwd=world.root)
    with pytest.raises(UserError, match="does not descend"):
        deploy.promote_production(world.release("good"))
    assert world.servers["production"].default == "other"
    deploy.promote_production(world.release("good"), Options(force=True))
    assert world.servers["production"].default == "good"


def test_rollback_restores_the_previous_version_and_records_it(world):
    for name in ("good", "other"):
        world.commit(f"retrain: {name}")
        deploy.deploy_staging(world.release(name))
        deploy.promote_production(world.release(name))
    entry = deploy.rollback(world.site, "production")
    assert world.servers["production"].default == "good"
    assert entry.action == "rollback"
    assert entry.checks["rolled_back_from"] == "other"
    assert [t.record["action"] for t in records.production_tags(world.root)] == ["promote", "promote", "rollback"]
    assert world.tag("production").record["version"] == "good"


def test_rollback_with_nothing_to_roll_back_to_is_a_clear_error(world):
    deploy.deploy_staging(world.release("good"))
    with pytest.raises(UserError, match="nothing to roll back to"):
        deploy.rollback(world.site, "staging")


def test_status_shows_version_commit_and_metrics_per_environment(world):
    deploy.deploy_staging(world.release("good"))
    rows = {r["environment"]: r for r in deploy.status(world.site)}
    assert rows["staging"]["version"] == "good"
    assert rows["staging"]["registered"] == ["good"]
    assert rows["staging"]["commit"] == world.head()[:12]
    assert rows["staging"]["differences"] == []
    assert rows["production"]["version"] == "none"


def test_service_failures_are_not_user_errors():
    assert issubclass(deploy.DeployError, MlopsError)
    assert not issubclass(deploy.DeployError, UserError)
