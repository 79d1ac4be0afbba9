"""Deploy, promote and roll back killed at every step boundary, then run again: the records converge.

The fault hook (``MLOPS_FAULT=<step>``) kills the process at that boundary; here ``faults.kill``
stops the command in-process instead (no finally block of ours writes records, the fake server
keeps its state as a real one would, and a flock is released with its file, as on a real death).
The integration tests kill real `mlops` processes with SIGKILL against real TorchServe.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops.core.errors import ServiceError, UserError
from mlops.release import deploy, environments, faults, records
from mlops.release.environments import Options
from support import release_world as rw
from support.project import sh

pytestmark = pytest.mark.unit

SWITCH_STEPS = faults.STEPS[faults.STEPS.index("after-intent") :]  # the steps of a rollback


class Killed(BaseException):
    """The process died (a BaseException: no `except Exception` of the code under test catches it)."""


def kill() -> None:
    raise Killed


@pytest.fixture(autouse=True)
def _in_process_faults(monkeypatch):
    monkeypatch.setattr(faults, "kill", kill)
    # GTO orders assignments by tag time (seconds); these tests read the records by counter and
    # make many moves a second, so they skip the wait (test_records checks `gto show` with it)
    monkeypatch.setattr(records, "wait_past", lambda second: None)


@pytest.fixture
def world(tmp_path, parts) -> rw.World:
    w = rw.make_world(tmp_path, *parts)
    w.quick = True
    return w


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, parts) -> dict[str, rw.World]:
    """For each command, a world just before it (built once; each test works on a copy)."""
    worlds = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "wait_past", lambda second: None)
        for command in ("deploy", "promote", "rollback"):
            w = rw.make_world(tmp_path_factory.mktemp(command), *parts)
            w.quick = True
            setup(w, command)
            worlds[command] = w
    return worlds


def before(prepared: dict[str, rw.World], command: str, tmp_path) -> tuple[rw.World, str, str, str]:
    """A copy of the world just before ``command``, its environment, and the versions before and after."""
    env, old, new = {"deploy": ("staging", "good", "other"), "promote": ("production", "good", "other"),
                     "rollback": ("production", "other", "good")}[command]  # fmt: skip
    return prepared[command].clone(tmp_path / "copy"), env, old, new


def converged(world: rw.World, env: str, version: str) -> None:
    """Server, ledger, git and every difference agree that ``env`` serves ``version``."""
    assert world.servers[env].default == version
    last = world.ledger(env).serving()
    assert last is not None
    assert (last.version, last.phase) == (version, "done")
    assert world.tag(env).record["version"] == version
    [row] = [r for r in deploy.status(world.site) if r["environment"] == env]
    assert row["differences"] == []
    assert row["record"]["version"] == version


def production_serves_good_and_staging_other(world: rw.World) -> None:
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    world.commit("retrain")
    deploy.deploy_staging(world.release("other"))


def run(world: rw.World, command: str, step: str | None, monkeypatch, to: str | None = None) -> None:
    if step:
        monkeypatch.setenv(faults.VARIABLE, step)
    else:
        monkeypatch.delenv(faults.VARIABLE, raising=False)
    if command == "deploy":
        deploy.deploy_staging(world.release("other"))
    elif command == "promote":
        deploy.promote_production(world.release("other"))
    else:
        deploy.rollback(world.site, "production", to=to)


def setup(world: rw.World, command: str) -> tuple[str, str, str]:
    """Get to just before ``command``; (environment, version before, version after)."""
    if command == "deploy":
        deploy.deploy_staging(world.release("good"))
        world.commit("retrain")
        return "staging", "good", "other"
    production_serves_good_and_staging_other(world)
    if command == "promote":
        return "production", "good", "other"
    deploy.promote_production(world.release("other"))
    return "production", "other", "good"


CASES = [(c, s) for c in ("deploy", "promote") for s in faults.STEPS] + [("rollback", s) for s in SWITCH_STEPS]


@pytest.mark.parametrize(("command", "step"), CASES)
def test_killed_at_a_step_then_run_again_serves_the_new_version_with_every_record(
    prepared, tmp_path, monkeypatch, command, step
):
    world, env, _, after = before(prepared, command, tmp_path)
    with pytest.raises(Killed):
        run(world, command, step, monkeypatch)
    run(world, command, None, monkeypatch, to=after)  # a retried rollback names its target: idempotent
    converged(world, env, after)


@pytest.mark.parametrize("step", SWITCH_STEPS[: SWITCH_STEPS.index("after-outcome")])
def test_a_rollback_killed_mid_switch_and_run_again_finishes_it_and_does_not_roll_back_twice(
    prepared, tmp_path, monkeypatch, step
):
    world, env, _, after = before(prepared, "rollback", tmp_path)
    with pytest.raises(Killed):
        run(world, "rollback", step, monkeypatch)
    run(world, "rollback", None, monkeypatch)
    converged(world, env, after)
    assert [t.record["action"] for t in records.production_tags(world.root)] == ["promote", "promote", "rollback"]


@pytest.mark.parametrize(("command", "step"), CASES)
def test_killed_at_a_step_then_reconciled_serves_what_the_records_say(prepared, tmp_path, monkeypatch, command, step):
    world, env, old, new = before(prepared, command, tmp_path)
    with pytest.raises(Killed):
        run(world, command, step, monkeypatch)
    monkeypatch.delenv(faults.VARIABLE)
    recorded = faults.STEPS.index(step) >= faults.STEPS.index("after-intent")  # the intent is the record
    environments.converge(world.site, env, world.site.client(env))
    converged(world, env, new if recorded else old)
    assert set(world.servers[env].registered) <= {old, new}  # a half-deployed version is gone


def test_the_reported_kill_after_set_default_no_longer_leaves_an_unrecorded_version(world, monkeypatch):
    """Issue: killed right after set-default, staging served a version no ledger line named, a rerun said
    "nothing to do", and promote refused it as "not passed staging"."""
    deploy.deploy_staging(world.release("good"))
    world.commit("retrain")
    with pytest.raises(Killed):
        run(world, "deploy", "after-set-default", monkeypatch)
    assert world.servers["staging"].default == "other"
    rows = {r["environment"]: r for r in deploy.status(world.site)}
    assert rows["staging"]["differences"] == [
        "an interrupted deploy of other (intent at " + rows["staging"]["record"]["time"] + ", no outcome)"
    ]
    run(world, "deploy", None, monkeypatch)
    assert world.ledger("staging").passed("sha-other")
    deploy.promote_production(world.release("other"))
    converged(world, "production", "other")


def test_status_says_what_differs_and_reconcile_repairs_it(world):
    production_serves_good_and_staging_other(world)
    world.servers["production"].default = None
    world.servers["production"].registered.clear()  # somebody unregistered it by hand
    row = next(r for r in deploy.status(world.site) if r["environment"] == "production")
    assert row["differences"] == ["the server serves nothing; the record (ledger) says good"]
    environments.converge(world.site, "production", world.site.client("production"))
    converged(world, "production", "good")


def test_serve_up_after_a_restart_restores_what_each_environment_served_and_rollback_still_works(world):
    """Issue: after `mlops serve down/up production` production served nothing (404) while its tag named a
    version, and rollback said "nothing to roll back to"."""
    production_serves_good_and_staging_other(world)
    deploy.promote_production(world.release("other"))
    for server in world.servers.values():
        server.restart()
    for env in ("staging", "production"):
        deploy.restore(world.site, env)
    assert world.servers["production"].default == "other"
    assert set(world.servers["production"].registered) == {"good", "other"}
    assert world.servers["staging"].default == "other"
    deploy.rollback(world.site, "production")
    converged(world, "production", "good")


def test_a_job_on_a_fresh_machine_restores_production_from_the_archive_it_holds(world):
    """An ephemeral server in CI (no server configured): the record in git names the version, and the
    job holds that very archive; production is served again without a new promotion."""
    production_serves_good_and_staging_other(world)
    tags = len(records.production_tags(world.root))
    world.servers["production"].restart()
    world.servers["production"].store.clear()
    world.ledger("production").path.unlink()  # a fresh runner has no ledger
    entry = deploy.promote_production(world.release("good"))
    assert entry.action == "unchanged"
    assert world.servers["production"].default == "good"
    assert len(records.production_tags(world.root)) == tags


def test_a_docs_only_merge_leaves_the_staging_record_the_production_job_downloads(world):
    """Issue 9 finding 4: when staging already served the archive, release() wrote no ledger line, so the
    production job's download of the staging record failed on a fresh runner."""
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    world.commit("docs only")
    world.ledger("staging").path.unlink()  # the staging job of this merge runs on a fresh machine
    entry = deploy.deploy_staging(world.release("good"))
    assert entry.action == "unchanged"
    assert world.ledger("staging").passed("sha-good")
    assert entry.git_commit == world.head()


def merge_commit_of_a_pr(world: rw.World, squash: bool) -> tuple[str, str]:
    """A PR branch that builds the archive (the build commit), merged to main: (build commit, main commit)."""

    def change(name: str, message: str) -> str:
        (world.root / name).write_text(message)
        sh("git", "add", name, cwd=world.root)
        sh("git", "commit", "-q", "-m", message, cwd=world.root)
        return world.head()

    sh("git", "checkout", "-q", "-b", "pr", cwd=world.root)
    build = change("params.yaml", "retrain on the branch (dvc repro runs here)")
    change("dvc.lock", "commit dvc.lock and models/package.json after the build")
    sh("git", "checkout", "-q", "main", cwd=world.root)
    change("README.md", "meanwhile on main")
    if squash:
        sh("git", "merge", "-q", "--squash", "pr", cwd=world.root)
        sh("git", "commit", "-q", "-m", "Squash-merge the PR", cwd=world.root)
    else:
        sh("git", "merge", "-q", "--no-ff", "pr", "-m", "Merge the PR", cwd=world.root)
    return build, world.head()


@pytest.mark.parametrize("squash", [False, True], ids=["merge", "squash-merge"])
def test_production_takes_the_merged_commit_and_later_pushes_that_do_not_retrain(world, squash):
    """Issue 9 finding 7: the guard compared the archive's build commit (before dvc.lock was committed, or
    not on main at all after a squash) with production's tag, so every later push to main failed."""
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    build, merged = merge_commit_of_a_pr(world, squash)
    release = world.release("other")
    release.package["git_commit"] = build  # what package.json recorded before: the build commit
    deploy.deploy_staging(release)
    assert deploy.promote_production(release).git_commit == merged
    world.commit("docs only")
    deploy.deploy_staging(release)
    entry = deploy.promote_production(release)  # production already serves this sha256: success
    assert entry.action == "unchanged"
    converged(world, "production", "other")


def test_an_older_commit_is_still_refused_after_a_squash_merge(world):
    deploy.deploy_staging(world.release("good"))
    old = world.head()
    _, merged = merge_commit_of_a_pr(world, squash=True)
    deploy.deploy_staging(world.release("other"))
    deploy.promote_production(world.release("other"))
    with pytest.raises(UserError, match=f"commit {old[:12]} does not descend from {merged[:12]}"):
        deploy.promote_production(world.release("good"), Options(commit=old))
    assert world.servers["production"].default == "other"


def test_a_promotion_pushes_its_record_before_it_switches(world, tmp_path):
    origin = tmp_path / "origin.git"
    sh("git", "init", "-q", "--bare", str(origin), cwd=tmp_path)
    sh("git", "remote", "add", "origin", str(origin), cwd=world.root)
    deploy.deploy_staging(world.release("good"))
    at_switch: list[str] = []
    release = world.release("good")
    fake_client = release.client

    def client(env: str, start: bool = True):
        c = fake_client(env, start)
        set_default = c.set_default

        def watched(name: str, version: str) -> None:
            at_switch.append(sh("git", "ls-remote", "--tags", str(origin), cwd=tmp_path).stdout)
            set_default(name, version)

        c.set_default = watched  # type: ignore[method-assign]
        return c

    release.client = client  # type: ignore[method-assign]
    deploy.promote_production(release, Options(push="origin"))
    assert len(at_switch) == 1
    assert "refs/tags/loan-default#production#2" in at_switch[0]
    assert "refs/tags/loan-default@v0.0.1" in at_switch[0]


def test_a_record_the_remote_refuses_abandons_the_promotion_before_anything_switches(world, tmp_path):
    production_serves_good_and_staging_other(world)
    sh("git", "remote", "add", "origin", str(tmp_path / "no-such-origin.git"), cwd=world.root)
    with pytest.raises(ServiceError, match="git push origin") as info:
        deploy.promote_production(world.release("other"), Options(push="origin"))
    assert info.value.exit_code == 3
    production = world.servers["production"]
    assert production.default == "good"
    assert "other" not in production.registered
    assert [t.record["version"] for t in records.production_tags(world.root)] == ["good"]
    assert world.ledger("production").entries()[-1].phase == "abandoned"
    converged(world, "production", "good")  # and the next command does not finish it


def test_a_rollback_whose_record_the_remote_refuses_switches_nothing(world, tmp_path):
    production_serves_good_and_staging_other(world)
    deploy.promote_production(world.release("other"))
    sh("git", "remote", "add", "origin", str(tmp_path / "no-such-origin.git"), cwd=world.root)
    with pytest.raises(ServiceError, match="git push origin"):
        environments.rollback(world.site, "production", Options(push="origin"))
    assert world.servers["production"].default == "other"  # the record could not be pushed: nothing moved
    assert world.ledger("production").entries()[-1].phase == "abandoned"
    bare = tmp_path / "origin.git"
    sh("git", "init", "-q", "--bare", str(bare), cwd=tmp_path)
    sh("git", "remote", "set-url", "origin", str(bare), cwd=world.root)
    environments.rollback(world.site, "production", Options(push="origin"))
    assert world.servers["production"].default == "good"
    pushed = sh("git", "tag", "-l", "loan-default#production#*", cwd=bare).stdout.split()
    assert world.tag("production").name in pushed  # the record that says "good" is at the origin


def test_the_fault_hook_kills_the_process_at_the_named_step():
    code = (
        "from mlops.release import faults\nfaults.reached('after-intent')\nfaults.reached('after-tag')\nprint('lived')"
    )
    survived = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MLOPS_FAULT": "x"})
    assert survived.stdout.strip() == "lived"
    killed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"MLOPS_FAULT": "after-intent"}
    )
    assert killed.returncode == -9
    assert killed.stdout == ""
