"""The TorchServe-specific module without a server: configs, environments, failures as ServiceError."""

from __future__ import annotations

import pytest

from mlops.core.errors import ServiceError, UserError
from mlops.serving.torchserve import Client, Endpoint, read_properties, resolve
from support.servers import free_ports

pytestmark = pytest.mark.unit


def test_properties_are_read_with_escapes_and_comments(tmp_path):
    path = tmp_path / "x.properties"
    path.write_text("# comment\n! also\ninference_address=http://127.0.0.1:1\nallowed_urls=file://.*/a\\\\.mar\n\n")
    assert read_properties(path) == {"inference_address": "http://127.0.0.1:1", "allowed_urls": "file://.*/a\\.mar"}
    with pytest.raises(UserError, match="no TorchServe config"):
        read_properties(tmp_path / "missing.properties")


def test_a_remote_environment_needs_every_variable_and_names_the_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_STAGING_MANAGEMENT_URL", "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"MLOPS_STAGING_INFERENCE_URL.*MLOPS_STAGING_ARCHIVE_URL_PREFIX"):
        resolve("staging", tmp_path, tmp_path)
    with pytest.raises(UserError, match="unknown environment 'qa'"):
        resolve("qa", tmp_path, tmp_path)


def test_a_server_that_does_not_answer_is_a_service_error_saying_what_to_try():
    [port] = free_ports(1)  # nothing listens there: the connection is refused at once
    url = f"http://127.0.0.1:{port}"
    client = Client(Endpoint("staging", url, url, None, "t", "t", None), timeout=2)
    assert not client.alive()
    with pytest.raises(ServiceError, match=r"management API .* did not answer .*mlops serve status"):
        client.versions("m")
    with pytest.raises(ServiceError, match="inference API"):
        client.predict("m", {"a": 1})
