"""A local TorchServe is up only when it holds every port its config gives it.

TorchServe answers on its REST APIs before it binds its gRPC ports; when another process holds
one of those, it stops a moment later. `LocalServer.up` used to return in that moment, and the
next call found nothing listening (a workflow test's production server, on a busy machine).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from mlops.core.errors import ServiceError
from mlops.serving.torchserve import LocalServer, _listening
from support import ROOT
from support.servers import write_env_configs

pytestmark = pytest.mark.integration


def _server(root: Path) -> LocalServer:
    shutil.copytree(ROOT / "serve", root / "serve")
    write_env_configs(root, extra_allowed="file:///nowhere/.*")
    return LocalServer("production", root / "serve" / "production.properties", root / "runtime")


def test_a_taken_grpc_port_is_an_error_naming_it_and_a_free_one_serves_on_all_five(short_tmp):
    server = _server(short_tmp)
    grpc = int(server.props["grpc_management_port"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grpc))
        taken.listen()
        with pytest.raises(ServiceError, match=rf"production: torchserve exited while starting: port {grpc} is in use"):
            server.up(timeout=120)
    assert server.pid() is None

    endpoint = server.up(timeout=120)  # the same server, the port free again
    try:
        pid = server.pid()
        assert pid is not None
        assert len(server.ports()) == 5
        assert server.ports() <= _listening(pid)
        assert endpoint.management_token
    finally:
        server.down()
