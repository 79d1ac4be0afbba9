"""An in-memory stand-in for a TorchServe environment, for fast unit tests of the release logic.

It keeps TorchServe's rules that deployments rely on (the first registered version becomes the
default; registering a registered version is a conflict and an unknown archive is not found;
set-default needs a registered version; the default cannot be unregistered while other
versions exist; a restart forgets every registration but keeps the model store) and answers
predictions with the real ``Predictor``, so parity, quality and contract checks run for real.
What it leaves out (HTTP, workers, their start-up) is covered by the integration tests against
real TorchServe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.core.errors import ServiceError, UserError
from mlops.release.deploy import Context, Site
from mlops.serving.inference import Predictor, RequestError
from mlops.serving.loadgen import LoadResult
from mlops.serving.torchserve import Endpoint


@dataclass
class FakeServer:
    """One environment: the archives it can fetch (version -> predictor) and what is registered."""

    name: str
    archives: dict[str, Predictor]
    registered: dict[str, Predictor] = field(default_factory=dict)
    default: str | None = None
    store: set[str] = field(default_factory=set)  # versions whose archive was installed (the model store)
    up: bool = True
    calls: list[str] = field(default_factory=list)

    def restart(self) -> None:
        """`serve down` then `serve up`: every registration is gone, the model store stays."""
        self.registered.clear()
        self.default = None


class FakeClient:
    """The subset of ``mlops.serving.torchserve.Client`` the release room uses."""

    def __init__(self, server: FakeServer):
        self.server = server
        url = f"http://fake-{server.name}.invalid"
        self.endpoint = Endpoint(server.name, url, url, None, "token", "token", None)

    def install(self, archive: Path, name: str, version: str) -> str:
        self.server.store.add(version)
        return f"{name}-{version}.mar"

    def stored_archive(self, name: str, version: str) -> str | None:
        return f"{name}-{version}.mar" if version in self.server.store else None

    def register(
        self, url: str, name: str, version: str, timeout_s: float, max_batch_delay_ms: int | None = None
    ) -> None:
        self.server.calls.append(f"register {url}")
        if url.rsplit("-", 1)[1].removesuffix(".mar") != version or version not in self.server.archives:
            raise ServiceError(f"register {url}: HTTP 404: no such archive")
        if version in self.server.registered:
            raise ServiceError(f"register {url}: HTTP 409: already registered")
        self.server.registered[version] = self.server.archives[version]
        self.server.default = self.server.default or version

    def wait_ready(self, name: str, version: str, timeout_s: float) -> None:
        if version not in self.server.registered:
            raise ServiceError(f"{name} {version}: not registered")

    def versions(self, name: str) -> list[dict[str, Any]]:
        return [
            {"version": v, "url": f"{name}-{v}.mar", "default": v == self.server.default, "workers": ["READY"] * 2}
            for v in self.server.registered
        ]

    def default_version(self, name: str) -> str | None:
        return self.server.default

    def set_default(self, name: str, version: str) -> None:
        self.server.calls.append(f"set-default {version}")
        if version not in self.server.registered:
            raise ServiceError(f"set-default {name} {version}: HTTP 404")
        self.server.default = version

    def unregister(self, name: str, version: str) -> None:
        self.server.calls.append(f"unregister {version}")
        if version not in self.server.registered:
            raise ServiceError(f"unregister {name} {version}: HTTP 404")
        if version == self.server.default and len(self.server.registered) > 1:
            raise ServiceError(f"unregister {name} {version}: HTTP 400: cannot remove the default version")
        self.server.registered.pop(version)
        if version == self.server.default:
            self.server.default = None

    def predict(self, name: str, body: Any, version: str | None = None) -> tuple[int, Any]:
        predictor = self.server.registered.get(version or self.server.default or "")
        if predictor is None:
            return 404, {"message": f"model {name} {version} not found"}
        try:
            rows = predictor.parse(body)
        except RequestError as e:
            return 400, e.to_dict()
        try:
            return 200, predictor.respond(predictor.predict(rows))
        except Exception as e:  # a broken model answers 500, as the handler does
            return 500, {"error": f"prediction failed: {type(e).__name__}"}

    def load(self, path: str, bodies: list[Any], users: int, seconds: float) -> LoadResult:
        version = path.rsplit("/", 1)[1]
        times, failures = [], 0
        for body in bodies[:50]:
            t0 = time.perf_counter()
            status, _ = self.predict(self.server.name, [body] if isinstance(body, dict) else body, version)
            times.append((time.perf_counter() - t0) * 1000)
            failures += status != 200
        times.sort()
        return LoadResult(len(times), failures, len(times) / (sum(times) / 1000), times[len(times) // 2],
                          times[int(len(times) * 0.99)], sum(times) / len(times))  # fmt: skip


class _Fake:
    servers: dict[str, FakeServer]

    def client(self, env: str, start: bool = True) -> FakeClient:
        server = self.servers[env]
        if not server.up:
            if not start:
                raise UserError(f"{env}: local TorchServe is not running (`mlops serve up {env}`)")
            server.up = True
        return FakeClient(server)

    def running(self, env: str) -> FakeClient | None:
        return FakeClient(self.servers[env]) if self.servers[env].up else None


@dataclass
class FakeSite(_Fake, Site):
    """A ``Site`` whose environments are fake servers."""

    servers: dict[str, FakeServer] = field(default_factory=dict)


@dataclass
class FakeContext(_Fake, Context):
    """A release ``Context`` on fake servers."""

    servers: dict[str, FakeServer] = field(default_factory=dict)
