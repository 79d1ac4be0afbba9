"""devcontainer.yml under act: the development image is built and pushed from main only."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.workflows


def test_the_development_image_is_built_from_main_only(world):
    main = world.origin("rev-parse", "main")
    elsewhere = world.act(
        "devcontainer.yml", "workflow_dispatch", world.sandbox.dispatch_event(ref="refs/heads/topic"), main
    )
    assert elsewhere.job("image") == "skipped"
    on_main = world.act("devcontainer.yml", "workflow_dispatch", world.sandbox.dispatch_event(), main)
    assert on_main.job("image") != "skipped"
    # it runs `make ci-push-devcontainer`, which needs a Docker engine (none here): it gets as far as the login
    assert "docker" in on_main.log
