"""The object store as a team's DVC remote and archive store: moto's S3 server on loopback stands in for S3.

Credentials and the endpoint come from the environment (``AWS_*``), as on a CI runner; nothing
about the store but its ``s3://`` URL is committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from support.project import sh, stages_run
from support.team import ObjectStore

pytestmark = pytest.mark.integration


def test_a_second_clone_pulls_the_run_cache_and_reproduces_with_zero_stages(
    trained_project: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    env = {**os.environ, **object_store.env()}
    bucket = object_store.bucket()
    origin = tmp_path / "origin.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    first = tmp_path / "first"
    shutil.copytree(trained_project, first, symlinks=True)
    sh("dvc", "remote", "add", "-d", "team", f"s3://{bucket}/dvc", cwd=first)
    sh("git", "add", "-A", cwd=first)
    sh("git", "commit", "-qm", "trained, remote on the object store", cwd=first)
    sh("git", "push", "-q", str(origin), "main", cwd=first)
    sh("dvc", "push", "--run-cache", cwd=first, env=env)
    keys = [o["Key"] for o in object_store.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("dvc/runs/") for k in keys), "the run cache was not pushed"

    second = tmp_path / "second"
    sh("git", "clone", "-q", str(origin), str(second), cwd=tmp_path)
    sh("dvc", "pull", "--run-cache", cwd=second, env=env)
    proc = sh("dvc", "repro", cwd=second, env=env)
    assert stages_run(proc) == [], proc.stdout
    assert (second / "models/package.json").read_bytes() == (first / "models/package.json").read_bytes()
    assert "up to date" in sh("dvc", "status", cwd=second, env=env).stdout


def test_publish_uploads_the_archive_to_the_object_store_verified(
    trained_project: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    env = {**os.environ, **object_store.env()}
    bucket = object_store.bucket()
    package = json.loads((trained_project / "models/package.json").read_text())
    prefix = f"s3://{bucket}/archives/production"
    out = sh("mlops", "publish", "production", "--prefix", prefix, cwd=trained_project, env=env).stdout
    key = f"archives/production/{package['name']}-{package['version']}.mar"
    assert f"published s3://{bucket}/{key}" in out
    body = object_store.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == package["sha256"]
    again = sh("mlops", "publish", "production", "--prefix", prefix, cwd=trained_project, env=env).stdout
    assert "already published" in again
