"""Everything TorchServe-specific: local instances, the management and inference APIs.

The rest of the package talks to a serving runtime only through ``Endpoint``, ``Client``
and ``LocalServer``; replacing TorchServe means replacing this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psutil
import requests

from mlops.core.errors import ServiceError, UserError
from mlops.serving import loadgen
from mlops.serving.loadgen import LoadResult
from mlops.serving.traffic import TRAFFIC_HEADER

ENVIRONMENTS = ("staging", "production")
LOG_CONFIG = "log4j2.xml"  # TorchServe's logging, beside the environment configs


def read_properties(path: Path) -> dict[str, str]:
    """A Java .properties file as a dict (enough of the format for TorchServe configs)."""
    if not path.exists():
        raise UserError(f"{path}: no TorchServe config for this environment")
    props: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip().replace("\\\\", "\\")
    return props


ARCHIVE_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*\.mar"  # what install_archive names an archive, and no path


def archive_url_pattern(prefix: str, query: bool = False) -> str:
    """An ``allowed_urls`` entry (a Java regex) admitting archives directly under ``prefix`` only.

    For a local server the prefix is ``file://`` and its model store's absolute path; for a remote
    one, the HTTP(S) URL its archives are fetched from, and ``query`` admits a presigned URL's
    query string (TorchServe matches the whole URL, query included).
    """
    return "^" + re.escape(prefix.rstrip("/")) + "/" + ARCHIVE_NAME + (r"(\?.*)?" if query else "") + "$"


PRESIGNED_FOR_S = 3600  # a presigned archive URL is fetched once, at registration


def fetch_url(url: str) -> str:
    """The URL a server downloads ``url`` from: object-store URLs presigned, others as they are.

    ``s3://``, ``gs://``, ... are presigned with the deploying job's own credentials; HTTP(S) and
    file URLs are kept. The server then needs no credentials of the store, and only the one object is readable, for
    ``PRESIGNED_FOR_S`` seconds.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme in ("http", "https", "file"):
        return url
    import fsspec  # only remote deployments from an object store need it

    try:
        fs, path = fsspec.core.url_to_fs(url)
        return str(fs.sign(path, expiration=PRESIGNED_FOR_S))
    except NotImplementedError:
        raise UserError(
            f"{url[:80]!r}: {scheme}:// cannot be presigned; give the server an http(s) prefix it can fetch"
        ) from None
    except (ImportError, ValueError, OSError) as e:
        raise ServiceError(f"presigning {url[:80]!r} for the server failed: {e}") from None


@dataclass(frozen=True)
class Endpoint:
    """Where one environment's server answers and how to authenticate."""

    name: str
    inference_url: str
    management_url: str
    metrics_url: str | None
    inference_token: str | None
    management_token: str | None
    local: LocalServer | None  # None: a remote server, reached with URLs and tokens from the environment
    archive_url_prefix: str | None = None  # remote only: where the server fetches archives from


def _listening(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (empty if it is gone)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}


class LocalServer:
    """A TorchServe process for one environment, with its own directories under ``runtime``."""

    def __init__(self, name: str, config: Path, runtime: Path):
        self.name = name
        self.config = config.resolve()
        self.home = (runtime / name).resolve()
        self.store = self.home / "model-store"
        self.logs = self.home / "logs"
        self.tmp = self.home / "tmp"
        self.props = read_properties(self.config)

    def _env(self) -> dict[str, str]:
        # TorchServe keeps its pid file in the temp dir: one temp dir per environment lets two run at once
        env = dict(os.environ, TMPDIR=str(self.tmp), LOG_LOCATION=str(self.logs), METRICS_LOCATION=str(self.logs))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        # one compute thread per worker: workers are the parallelism, and OpenMP threads
        # spinning against each other on a small machine cost seconds per request
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        env["MLOPS_PREDICTION_LOG_DIR"] = str(self.home / "predictions")
        return env

    def pid(self) -> int | None:
        """The server's process id, or None when it is not running."""
        pid_file = self.tmp / ".model_server.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def tokens(self) -> dict[str, str]:
        """The inference and management tokens TorchServe wrote to its key file."""
        key_file = self.home / "key_file.json"
        try:
            keys = json.loads(key_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return {kind: keys[kind]["key"] for kind in ("inference", "management", "API") if kind in keys}

    def endpoint(self) -> Endpoint:
        """This server's endpoint with its current tokens."""
        tokens = self.tokens()
        return Endpoint(
            name=self.name,
            inference_url=self.props["inference_address"],
            management_url=self.props["management_address"],
            metrics_url=self.props.get("metrics_address"),
            inference_token=tokens.get("inference"),
            management_token=tokens.get("management"),
            local=self,
        )

    def _effective_config(self) -> Path:
        """The committed config plus this machine's paths.

        Worker sockets go to the environment's temp dir (two servers would otherwise share
        /tmp/.ts.sock.9000), the metrics and logging configs beside it are added (``metrics.yaml``,
        ``log4j2.xml``), and ``allowed_urls`` admits this
        environment's model store by its absolute path: the committed pattern (any folder ending
        in ``.serve/<env>/model-store/``) would admit a look-alike folder anywhere.
        """
        lines = self.config.read_text().splitlines()
        vmargs = f"{self.props.get('vmargs', '')} -Djava.io.tmpdir={self.tmp}".strip()
        logging_config = self.config.with_name(LOG_CONFIG)
        if logging_config.exists() and "log4j.configurationFile" not in vmargs:
            vmargs += f" -Dlog4j.configurationFile={logging_config}"
        others = [e for e in self.props.get("allowed_urls", "").split(",") if e and "model-store" not in e]
        allowed = ",".join([archive_url_pattern(f"file://{self.store}"), *others]).replace("\\", "\\\\")
        lines = [line for line in lines if not line.strip().startswith(("vmargs=", "allowed_urls="))]
        lines += [f"vmargs={vmargs}", f"allowed_urls={allowed}"]
        metrics = self.config.with_name("metrics.yaml")
        if metrics.exists() and "metrics_config" not in self.props:
            lines.append(f"metrics_config={metrics}")
        target = self.home / "config.properties"
        target.write_text("\n".join(lines) + "\n")
        return target

    def up(self, timeout: float = 60.0) -> Endpoint:
        """Start (if not running); wait until it holds every port its config gives it and the management API answers.

        A port another process holds stops TorchServe as it starts: that is a ``ServiceError`` naming the port.
        """
        for d in (self.store, self.logs, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        launcher = self.logs / "launcher.log"
        since = launcher.stat().st_size if launcher.exists() else 0
        if self.pid() is None:
            (self.home / "key_file.json").unlink(missing_ok=True)
            torchserve = shutil.which("torchserve", path=self._env()["PATH"]) or "torchserve"
            config = self._effective_config()
            cmd = [torchserve, "--start", "--ncs", "--ts-config", str(config), "--model-store", str(self.store)]
            with launcher.open("ab") as out:
                proc = subprocess.run(cmd, cwd=self.home, env=self._env(), stdout=out, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise ServiceError(f"{self.name}: torchserve did not start; see {launcher}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            endpoint = self.endpoint()
            pid = self.pid()
            if pid is None:
                raise ServiceError(
                    f"{self.name}: torchserve exited while starting: {self._start_failure(launcher, since)}"
                )
            # the REST APIs answer before the gRPC servers bind: a port taken by another process
            # stops TorchServe a moment later, so it is up when it holds every port it was given
            if endpoint.management_token and self.ports() <= _listening(pid) and Client(endpoint).alive():
                return endpoint
            time.sleep(0.3)
        raise ServiceError(f"{self.name}: torchserve not answering after {timeout:.0f}s; see {self.logs}")

    def ports(self) -> set[int]:
        """The TCP ports this environment's config gives TorchServe: its REST APIs and, if set, its gRPC ones."""
        rest = ("inference_address", "management_address", "metrics_address")
        ports = {urlsplit(self.props[k]).port for k in rest if k in self.props}
        ports |= {int(self.props[k]) for k in ("grpc_inference_port", "grpc_management_port") if k in self.props}
        return {p for p in ports if p}

    def _start_failure(self, launcher: Path, since: int) -> str:
        """What stopped a starting server, from what its launcher log gained since byte ``since``."""
        try:
            with launcher.open("rb") as f:
                f.seek(since)
                log = f.read().decode(errors="replace")
        except OSError:
            log = ""
        port = re.search(r"Failed to bind to address \S*?:(\d+)", log)
        if port:
            return f"port {port.group(1)} is in use by another process (see {launcher})"
        if "Address already in use" in log:
            return f"a port in {self.config.name} is in use by another process (see {launcher})"
        return f"see {self.logs}"

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the server and its workers; True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        os.kill(pid, signal.SIGTERM)
        _, alive = psutil.wait_procs([psutil.Process(pid)], timeout=timeout)
        for p in alive:
            p.kill()
        for child in children:
            if child.is_running():
                child.kill()
        (self.tmp / ".model_server.pid").unlink(missing_ok=True)
        return True


class Client:
    """The management and inference APIs of one environment.

    With ``traffic``, every prediction request carries it in the ``TRAFFIC_HEADER`` header: the
    deployment checks mark theirs so that monitoring leaves them out.
    """

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0, traffic: str | None = None):
        self.endpoint = endpoint
        self.timeout = timeout
        self.management = requests.Session()
        self.inference = requests.Session()
        self.marks = {TRAFFIC_HEADER: traffic} if traffic else {}
        if endpoint.management_token:
            self.management.headers["Authorization"] = f"Bearer {endpoint.management_token}"
        if endpoint.inference_token:
            self.inference.headers["Authorization"] = f"Bearer {endpoint.inference_token}"
        self.inference.headers.update(self.marks)

    def _manage(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = self.endpoint.management_url.rstrip("/") + path
        try:
            return self.management.request(method, url, timeout=kw.pop("timeout", self.timeout), **kw)
        except requests.RequestException as e:
            raise ServiceError(
                f"{self.endpoint.name}: management API at {self.endpoint.management_url} did not answer ({e}); "
                "is the server up? (`mlops serve status`)"
            ) from None

    @staticmethod
    def _check(resp: requests.Response, what: str) -> Any:
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("message", resp.text)
            except ValueError:
                detail = resp.text
            raise ServiceError(f"{what}: HTTP {resp.status_code}: {detail.strip()[:500]}")
        return resp.json() if resp.content else {}

    def alive(self) -> bool:
        """True when the management API answers with the token."""
        try:
            url = self.endpoint.management_url.rstrip("/") + "/models"
            return self.management.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def register(
        self, url: str, name: str, version: str, timeout_s: float, max_batch_delay_ms: int | None = None
    ) -> None:
        """Register an archive as ``name`` ``version`` and wait until its workers are READY.

        Asynchronously, then polled: with ``synchronous=true`` TorchServe holds a network thread
        for the whole worker start, and requests that thread also serves stall for as long
        (seconds). Workers start as the archive's model config says. A version whose workers do
        not get READY in time is unregistered again: nothing half-registered stays behind.
        ``max_batch_delay_ms`` is passed to the API as well: TorchServe 0.12 ignores a
        ``maxBatchDelay`` of 0 in the archive's model config and waits its default 100 ms instead.
        """
        query = f"/models?url={quote(url, safe='')}&synchronous=false"
        if max_batch_delay_ms is not None:
            query += f"&max_batch_delay={max_batch_delay_ms}"
        self._check(self._manage("POST", query), f"register {url}")
        try:
            self.wait_ready(name, version, timeout_s)
        except ServiceError as e:
            try:
                self.unregister(name, version)
            except ServiceError as cleanup:
                raise ServiceError(f"{e}; unregistering it failed too: {cleanup}") from None
            raise ServiceError(f"{e}; unregistered it again") from None

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every registered version of a model with its workers and whether it is the default."""
        resp = self._manage("GET", f"/models/{name}/all")
        if resp.status_code == 404:
            return []
        described = self._check(resp, f"describe {name}")
        models = self._check(self._manage("GET", "/models?limit=1000"), "list models").get("models", [])
        default = {m["modelUrl"] for m in models if m["modelName"] == name}
        return [
            {
                "version": d["modelVersion"],
                "url": d["modelUrl"],
                "default": d["modelUrl"] in default,
                "workers": [w["status"] for w in d.get("workers", [])],
                "min_workers": d.get("minWorkers", 1),
            }
            for d in described
        ]

    def default_version(self, name: str) -> str | None:
        """The version requests without a version go to, or None when none is registered."""
        resp = self._manage("GET", f"/models/{name}")
        if resp.status_code == 404:
            return None
        described = self._check(resp, f"describe {name}")
        return str(described[0]["modelVersion"]) if described else None

    def wait_ready(self, name: str, version: str, timeout_s: float) -> None:
        """Readiness: every worker of this version READY (not /ping, which ignores models)."""
        deadline = time.monotonic() + timeout_s
        status: list[str] = []
        while time.monotonic() < deadline:
            resp = self._manage("GET", f"/models/{name}/{version}")
            if resp.status_code == 200:
                d = resp.json()[0]
                status = [w["status"] for w in d.get("workers", [])]
                if status and len(status) >= d.get("minWorkers", 1) and all(s == "READY" for s in status):
                    return
            time.sleep(0.25)
        raise ServiceError(
            f"{name} {version}: workers not READY after {timeout_s:.0f}s (status: {status or 'none'}); "
            "see the server's model_log.log"
        )

    def set_default(self, name: str, version: str) -> None:
        """Make a registered version the default (a pointer swap in the frontend)."""
        self._check(self._manage("PUT", f"/models/{name}/{version}/set-default"), f"set-default {name} {version}")

    def unregister(self, name: str, version: str) -> None:
        """Remove a version and stop its workers."""
        self._check(self._manage("DELETE", f"/models/{name}/{version}", timeout=60), f"unregister {name} {version}")

    def install(self, archive: Path, name: str, version: str) -> str:
        """Make ``archive`` reachable by the server; return the URL to register."""
        return install_archive(self.endpoint, archive, name, version)

    def stored_archive(self, name: str, version: str) -> str | None:
        """The URL to register an earlier version again from, or None (see ``stored_archive``)."""
        return stored_archive(self.endpoint, name, version)

    def load(self, path: str, bodies: list[Any], users: int, seconds: float) -> LoadResult:
        """A burst of ``users`` concurrent clients POSTing ``bodies`` to ``path`` (a separate process)."""
        e = self.endpoint
        return loadgen.run(e.inference_url, path, e.inference_token, bodies, users, seconds, self.marks)

    def predict(self, name: str, body: Any, version: str | None = None) -> tuple[int, Any]:
        """POST a body to the model (or one version); returns the status and the decoded answer."""
        path = f"/predictions/{name}" + (f"/{version}" if version else "")
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            resp = self.inference.post(
                self.endpoint.inference_url.rstrip("/") + path,
                data=data,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as e:
            raise ServiceError(f"{self.endpoint.name}: inference API at {self.endpoint.inference_url}: {e}") from None
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text


def resolve(name: str, serve_dir: Path, runtime_dir: Path) -> Endpoint:
    """The endpoint of an environment: remote when MLOPS_<ENV>_MANAGEMENT_URL is set, else local."""
    if name not in ENVIRONMENTS:
        raise UserError(f"unknown environment {name!r}; choose from {', '.join(ENVIRONMENTS)}")
    prefix = f"MLOPS_{name.upper()}_"
    remote = os.environ.get(prefix + "MANAGEMENT_URL")
    if remote:
        missing = [k for k in ("INFERENCE_URL", "MANAGEMENT_TOKEN", "INFERENCE_TOKEN", "ARCHIVE_URL_PREFIX")
                   if not os.environ.get(prefix + k)]  # fmt: skip
        if missing:
            raise UserError(f"remote {name}: set {', '.join(prefix + k for k in missing)} as well")
        return Endpoint(
            name=name,
            inference_url=os.environ[prefix + "INFERENCE_URL"],
            management_url=remote,
            metrics_url=os.environ.get(prefix + "METRICS_URL"),
            inference_token=os.environ[prefix + "INFERENCE_TOKEN"],
            management_token=os.environ[prefix + "MANAGEMENT_TOKEN"],
            local=None,
            archive_url_prefix=os.environ[prefix + "ARCHIVE_URL_PREFIX"],
        )
    return LocalServer(name, serve_dir / f"{name}.properties", runtime_dir).endpoint()


def local_server(name: str, serve_dir: Path, runtime_dir: Path) -> LocalServer:
    """The local server of an environment (``serve/<env>.properties``)."""
    if name not in ENVIRONMENTS:
        raise UserError(f"unknown environment {name!r}; choose from {', '.join(ENVIRONMENTS)}")
    return LocalServer(name, serve_dir / f"{name}.properties", runtime_dir)


def archive_name(name: str, version: str) -> str:
    """The file name an archive version is stored and published under."""
    return f"{name}-{version}.mar"


def install_archive(endpoint: Endpoint, archive: Path, name: str, version: str) -> str:
    """Put the archive where the server can load it; return the URL to register.

    A local server gets a copy in its model store; a remote one fetches
    ``<archive_url_prefix>/<name>-<version>.mar``, which ``mlops publish`` uploads.
    """
    filename = archive_name(name, version)
    if endpoint.local is None:
        return stored_archive(endpoint, name, version) or filename
    target = endpoint.local.store / filename
    endpoint.local.store.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tmp = target.with_suffix(".part")
        shutil.copyfile(archive, tmp)
        tmp.replace(target)
    return filename


def stored_archive(endpoint: Endpoint, name: str, version: str) -> str | None:
    """The URL to register an earlier version again from (a restart, a rollback), or None if there is none.

    Local servers keep every installed archive in their model store; remote ones fetch from the
    archive URL prefix.
    """
    filename = archive_name(name, version)
    if endpoint.local is None:
        prefix = endpoint.archive_url_prefix
        return fetch_url(f"{prefix.rstrip('/')}/{filename}") if prefix else None
    return filename if (endpoint.local.store / filename).is_file() else None
