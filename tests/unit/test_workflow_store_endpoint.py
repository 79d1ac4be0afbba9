"""The workflows reach an S3-compatible store (MinIO, R2, moto) as well as AWS: every step that
reaches the object store (storage credentials, the DVC remote, an archive prefix) passes the
repository variable AWS_ENDPOINT_URL, and the clients those steps run (DVC's filesystem, s3fs for
`mlops publish` and the presigned URLs, boto3 for MLflow's artifacts) take their endpoint from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support import ROOT

pytestmark = pytest.mark.unit

ENDPOINT = "${{ vars.AWS_ENDPOINT_URL }}"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def store_steps() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, step name, env) of every step whose environment reaches the object store."""
    found = []
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job.get("steps", []):
                env = step.get("env") or {}
                if {"AWS_ACCESS_KEY_ID", "DVC_REMOTE_URL"} & set(env) or any(
                    k.endswith("ARCHIVE_URL_PREFIX") for k in env
                ):
                    found.append((path.name, step.get("name", step.get("run", "")[:60]), env))
    return found


def test_every_step_reaching_the_store_passes_its_endpoint() -> None:
    steps = store_steps()
    # the build, both deploys, the rollback, monitoring, the pull request's two, retraining's two
    assert len(steps) >= 9
    missing = [f"{file}: {name}" for file, name, env in steps if env.get("AWS_ENDPOINT_URL") != ENDPOINT]
    assert missing == []


def test_storage_credentials_and_the_endpoint_come_together() -> None:
    for file, name, env in store_steps():
        if "AWS_ENDPOINT_URL" in env:
            assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env), f"{file}: {name}"


def test_the_clients_the_steps_run_take_the_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import s3fs
    from dvc_s3 import S3FileSystem

    endpoint = "http://127.0.0.1:9"  # never contacted: creating a client opens no connection
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert boto3.client("s3").meta.endpoint_url == endpoint  # MLflow's S3 artifact client
    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # mlops publish, the deploy's presigned URLs
    fs.connect()
    assert fs.s3.meta.endpoint_url == endpoint
    dvc = S3FileSystem(url="s3://bucket/dvc").fs  # a DVC remote with no endpointurl in its config
    dvc.connect()
    assert dvc.s3.meta.endpoint_url == endpoint
    # an unset repository variable reaches the step as "": the clients talk to AWS then
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    assert boto3.client("s3").meta.endpoint_url.endswith(".amazonaws.com")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.connect()
    assert fs.s3.meta.endpoint_url.endswith(".amazonaws.com")


def test_the_team_setup_page_documents_the_variable() -> None:
    page = (ROOT / "docs" / "team-setup.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `AWS_ENDPOINT_URL`"))
    assert "variable" in row
    assert Path(ROOT / "docs" / "gitops.md").read_text().count("AWS_ENDPOINT_URL") >= 1
