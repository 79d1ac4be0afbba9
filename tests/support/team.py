"""A team's stack on loopback, started by session fixtures: an S3 server, PostgreSQL, an MLflow server.

moto's S3 server stands in for the object store (S3, or anything S3-compatible); PostgreSQL and
MLflow are the real programs. Each runs in its own process group on a free 127.0.0.1 port and
is stopped with its whole group; a fixture skips (with the reason) only when the machine lacks
the program it needs. Tests isolate themselves by unique names (bucket, experiment, model),
never by resetting a shared server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import free_ports

BIN = Path(sys.executable).parent  # the venv's bin: moto_server, mlflow
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Poll ``url`` until it answers below 500; fail fast (with the log's tail) if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode} before {url} answered:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:  # answering, if only to refuse (a token is required)
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout:.0f}s:\n{tail(log)}")
        time.sleep(0.1)


def tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a process started with ``start_new_session`` and every child of it (server workers)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def start(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a process group of its own (stopped with ``stop_group``), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def start_ready(
    cmd: list[str], log: Path, url: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``start`` then ``wait_http``; the process group is stopped if it never answers."""
    proc = start(cmd, log, env)
    try:
        wait_http(url, proc, log, timeout=timeout)
    except BaseException:
        stop_group(proc)
        raise
    return proc


class ObjectStore:
    """``moto_server`` (S3 API) in its own process; clients find it through ``env()``."""

    def __init__(self, workdir: Path):
        (self.port,) = free_ports(1)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"

    def env(self) -> dict[str, str]:
        """What every client (DVC, s3fs, boto3, the MLflow server) needs: the endpoint and credentials."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def bucket(self) -> str:
        """A new bucket of a unique name."""
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> ObjectStore:
        t0 = time.perf_counter()
        cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = start_ready(cmd, self.log, f"{self.endpoint}/moto-api/")
        self.startup_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc)


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server programs (Debian's layout, else PATH), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3].zfill(4))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A throwaway cluster: ``initdb`` + ``pg_ctl`` in a fresh temp dir, fsync off, one database.

    PostgreSQL refuses to run as root: as root, its programs run as the ``postgres`` system user
    (``runuser``), in a directory under the system temp dir that user owns (pytest's own temp
    dirs are private to root).
    """

    def __init__(self, bindir: Path, dbname: str = "mlflow"):
        self.bindir = bindir
        self.dbname = dbname
        (self.port,) = free_ports(1)

    def _run(self, *cmd: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        proc = subprocess.run([*as_postgres, *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")

    def url(self) -> str:
        """The SQLAlchemy URL (``postgresql://`` is psycopg 3 in SQLAlchemy 2.1)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def __enter__(self) -> Postgres:
        t0 = time.perf_counter()
        self.dir = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        data = self.dir / "data"
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
                      "-E", "UTF8", "--locale=C.UTF-8")  # fmt: skip
            options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-o", options,
                      "-w", "-t", "60", "start")  # fmt: skip
            self._run(str(self.bindir / "createdb"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                      self.dbname)  # fmt: skip
        except BaseException:
            self.__exit__()
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if (self.dir / "data" / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class TrackingServer:
    """``mlflow server`` on PostgreSQL, artifacts proxied to a bucket of the object store.

    Clients need only ``MLFLOW_TRACKING_URI``: artifacts go through the server
    (``mlflow-artifacts:``), so they hold no object-store credentials.
    """

    def __init__(self, store: ObjectStore, database: Postgres, workdir: Path, workers: int = 2):
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = store
        self.database = database
        self.workers = workers
        self.log = workdir / "mlflow-server.log"

    def __enter__(self) -> TrackingServer:
        t0 = time.perf_counter()
        self.bucket = self.store.bucket()
        # the job runner (huey consumers, each importing mlflow) serves only GenAI server-side jobs:
        # off, the server answers in seconds instead of tens of seconds on a small machine
        env = {**os.environ, **self.store.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.database.url(), "--artifacts-destination", f"s3://{self.bucket}/mlflow",
               "--serve-artifacts", "--workers", str(self.workers)]  # fmt: skip
        self.proc = start_ready(cmd, self.log, f"{self.url}/health", timeout=240, env=env)
        self.startup_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc)


# ---- fixtures (a pytest plugin: tests/conftest.py lists it in pytest_plugins) -----------------------


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """The session's S3 server (moto, a pinned dependency: never skipped)."""
    with ObjectStore(tmp_path_factory.mktemp("object-store")) as store:
        yield store


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """The session's PostgreSQL cluster; skipped only where PostgreSQL is not installed."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' system user to run PostgreSQL as")
    with Postgres(bindir) as database:
        yield database


@pytest.fixture(scope="session")
def tracking_server(
    object_store: ObjectStore, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """The session's MLflow tracking server on PostgreSQL with artifacts in the object store."""
    with TrackingServer(object_store, postgres, tmp_path_factory.mktemp("tracking")) as server:
        yield server


class TorchServeService:
    """TorchServe run as a service: its own directory (working dir, logs, temp, model store), not a checkout.

    ``config`` is the service's config.properties; ``TS_*`` variables in ``settings`` override
    it (the config must say ``enable_envvars_config=true``). Ports are free loopback ones.
    """

    def __init__(self, home: Path, config: Path, store: Path, settings: dict[str, str] | None = None):
        self.home = home
        self.config = config
        self.store = store
        inference, management, metrics, grpc_i, grpc_m = free_ports(5)
        self.inference_url = f"http://127.0.0.1:{inference}"
        self.management_url = f"http://127.0.0.1:{management}"
        self.ports = {"inference": inference, "management": management, "metrics": metrics,
                      "grpc_inference": grpc_i, "grpc_management": grpc_m}  # fmt: skip
        self.settings = settings or {}
        self.log = home / "service.log"

    def env(self) -> dict[str, str]:
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "LOG_LOCATION": str(self.home / "logs"),
            "METRICS_LOCATION": str(self.home / "logs"),
            "TMPDIR": str(tmp),
            # worker sockets and the pid file go to this service's temp dir, not a shared /tmp
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={tmp}",
            "OMP_NUM_THREADS": "1",
            "MLOPS_PREDICTION_LOG_DIR": str(self.home / "predictions"),
            **self.settings,
        }

    @classmethod
    def remote(cls, home: Path, archive_prefix: str) -> TorchServeService:
        """A service that registers archives only from HTTP URLs directly under ``archive_prefix``, tokens on."""
        from mlops.serving.torchserve import archive_url_pattern

        store = home / "model-store"
        store.mkdir(parents=True)
        service = cls(home, home / "config.properties", store)
        p = service.ports
        allowed = archive_url_pattern(archive_prefix, query=True).replace("\\", "\\\\")  # .properties escaping
        service.config.write_text(
            "\n".join([
                f"inference_address={service.inference_url}",
                f"management_address={service.management_url}",
                f"metrics_address=http://127.0.0.1:{p['metrics']}",
                "grpc_inference_address=127.0.0.1",
                "grpc_management_address=127.0.0.1",
                f"grpc_inference_port={p['grpc_inference']}",
                f"grpc_management_port={p['grpc_management']}",
                "enable_model_api=true",
                "disable_token_authorization=false",
                f"allowed_urls={allowed}",
                "install_py_dep_per_model=false",
                "decode_input_request=false",
                "job_queue_size=1000",
            ]) + "\n"
        )  # fmt: skip
        return service

    def ping(self) -> str:
        import requests

        try:
            return requests.get(self.inference_url + "/ping", timeout=2).text
        except requests.RequestException:
            return ""

    def __enter__(self) -> TorchServeService:
        t0 = time.perf_counter()
        cmd = [str(BIN / "torchserve"), "--start", "--foreground", "--ncs", "--ts-config", str(self.config),
               "--model-store", str(self.store)]  # fmt: skip
        self.proc = start(cmd, self.log, self.env(), cwd=self.home)
        try:
            wait_http(self.inference_url + "/ping", self.proc, self.log, timeout=120)
            if "disable_token_authorization=false" in self.config.read_text():
                deadline = time.monotonic() + 30
                while not (self.home / "key_file.json").exists():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no key_file.json in {self.home}:\n{tail(self.log)}")
                    time.sleep(0.1)
        except BaseException:
            stop_group(self.proc)
            raise
        self.startup_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc, timeout=30)

    def key(self, kind: str) -> str:
        """A token from the key file TorchServe wrote in its working directory."""
        import json

        return str(json.loads((self.home / "key_file.json").read_text())[kind]["key"])
