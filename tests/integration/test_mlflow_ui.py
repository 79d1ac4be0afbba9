"""`make mlflow-ui`: the UI of the store MLFLOW_TRACKING_URI names (the repository's mlflow.db without
it), on loopback; a tracking server's address is shown, not served again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from support import ROOT
from support.servers import free_ports

pytestmark = pytest.mark.integration

VENV = Path(sys.executable).parents[1]


def make_ui(cwd: Path, port: int, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "mlflow-ui", f"VENV={VENV}", "SKIP_SETUP=1",
         f"MLFLOW_UI_PORT={port}"],
        cwd=cwd, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: the server's workers stop with it
    )  # fmt: skip


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_healthy(proc: subprocess.Popen[str], port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"make mlflow-ui exited {proc.returncode}: {out}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the UI did not answer on port {port} in {timeout:.0f}s")


def test_the_ui_serves_the_store_the_tracking_uri_names_on_loopback(tmp_path, stop):
    store = f"sqlite:///{tmp_path / 'team.db'}"
    MlflowClient(store).create_experiment("shared-experiment", artifact_location=(tmp_path / "art").as_uri())
    [port] = free_ports(1)
    proc = make_ui(tmp_path, port, MLFLOW_TRACKING_URI=store)
    stop.append(proc)
    wait_healthy(proc, port)
    found = requests.get(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "shared-experiment"},
        timeout=10,
    )
    assert found.status_code == 200, found.text[:300]
    assert not (tmp_path / "mlflow.db").exists()  # the named store, not a default one
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert listening.strip(), "nothing listens on the port"
    assert all(" 127.0.0.1:" in f" {line.split()[3]}" for line in listening.splitlines()), listening


def test_without_a_tracking_uri_the_ui_serves_the_repositorys_mlflow_db(tmp_path):
    # which store and address make hands to `mlflow ui` (the server itself runs in the test above):
    # a venv whose `mlflow` prints its arguments stands in for it
    fake = tmp_path / "venv"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "mlflow").write_text('#!/bin/sh\necho "mlflow $*"\n')
    (fake / "bin" / "mlflow").chmod(0o755)
    repo = tmp_path / "repo"
    repo.mkdir()
    clean = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "mlflow-ui", f"VENV={fake}", "SKIP_SETUP=1"],
        cwd=repo, env=clean, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"mlflow ui --backend-store-uri sqlite:///{repo}/mlflow.db --host 127.0.0.1 --port 5000" in proc.stdout


def test_a_tracking_server_is_shown_not_served_again(tmp_path):
    [port] = free_ports(1)
    proc = make_ui(tmp_path, port, MLFLOW_TRACKING_URI="https://mlflow.example.com")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "open https://mlflow.example.com" in out
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
