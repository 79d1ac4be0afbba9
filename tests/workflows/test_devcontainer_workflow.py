"""devcontainer.yml under act: the development image is built and pushed from main only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.workflows


def test_the_development_image_is_built_from_main_only(world):
    main = world.origin("rev-parse", "main")
    topic = world.sandbox.dispatch_event(ref="refs/heads/topic")
    elsewhere = world.act("devcontainer.yml", "workflow_dispatch", topic, main)
    assert elsewhere.job("image") == "skipped"
    # from main the job runs its build step: here it stops before any registry is contacted, as
    # this machine has no Docker engine (a hosted runner has one)
    on_main = world.act("devcontainer.yml", "workflow_dispatch", world.sandbox.dispatch_event(), main)
    assert on_main.job("image") == "failure"
    assert "no Docker engine answers (docker info)" in on_main.log
    assert "ghcr.io/v2" not in on_main.log  # no login was tried
