"""The archive is byte-reproducible, and `mlops publish` puts it where remote servers fetch it, verified."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import joblib
import pytest

from mlops.commands import release as release_command
from mlops.core.config import load_params
from mlops.core.errors import ServiceError, UserError
from mlops.release import publish as publishing
from mlops.release.packaging import archive_info, build_archive
from support import FIXTURES, ROOT
from support import release_world as rw

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A fitted pipeline, the tests' contract and the template's handler."""
    d = tmp_path_factory.mktemp("inputs")
    frame, contract, params = rw.frame(), rw.contract(), rw.params()
    joblib.dump(rw.models(frame, contract, params)["good"], d / "pipeline.joblib")
    return {
        "pipeline": d / "pipeline.joblib",
        "contract": FIXTURES / "contract.yaml",
        "handler": ROOT / "serve/handler.py",
    }


def build(inputs: dict[str, Path], out: Path) -> tuple[Path, str]:
    params = load_params(FIXTURES / "params.yaml").serve
    return build_archive(inputs["pipeline"], inputs["contract"], inputs["handler"], params, out, [0.1, 0.5, 0.9])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_in_different_places_and_times_give_the_same_bytes(inputs, tmp_path, monkeypatch):
    first, version = build(inputs, tmp_path / "one")
    time.sleep(1.1)  # the wall clock moved on: the old archive's manifest and zip times changed with it
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    old_umask = os.umask(0o077)
    try:
        os.utime(inputs["pipeline"])  # a newer modification time: not part of the archive
        second, again = build(inputs, tmp_path / "two" / "deeper")
    finally:
        os.umask(old_umask)
    assert again == version
    assert sha256(first) == sha256(second)


def test_the_archive_has_sorted_entries_one_fixed_time_fixed_modes_and_a_fixed_manifest_date(inputs, tmp_path):
    archive, version = build(inputs, tmp_path)
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {"MAR-INF/MANIFEST.json", "handler.py", "model-config.yaml", "pipeline.joblib", "contract.yaml"} <= set(
        names
    )
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    assert manifest["createdOn"] == "01/01/1980 00:00:00"
    assert manifest["model"]["modelVersion"] == version


def test_source_date_epoch_sets_the_time_and_is_itself_reproducible(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, _ = build(inputs, tmp_path / "a")
    b, _ = build(inputs, tmp_path / "b")
    assert sha256(a) == sha256(b)
    with zipfile.ZipFile(a) as z:
        assert z.infolist()[0].date_time == (2023, 11, 14, 22, 13, 20)
        assert json.loads(z.read("MAR-INF/MANIFEST.json"))["createdOn"] == "14/11/2023 22:13:20"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UserError, match="SOURCE_DATE_EPOCH must be a whole number of seconds, got 'yesterday'"):
        build(inputs, tmp_path / "c")


def test_the_archive_record_names_no_commit_so_it_changes_only_with_the_archive(inputs, tmp_path):
    archive, version = build(inputs, tmp_path)
    info = archive_info(archive, version, "loan-default", inputs["pipeline"], {"roc_auc": 0.8}).to_dict()
    assert set(info) == {"name", "version", "archive", "sha256", "model_sha256", "metrics"}


# ---- publish ----------------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "loan-default.mar"
    path.write_bytes(b"an archive's bytes")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("scheme", ["file://", ""])
def test_publishing_uploads_the_archive_under_its_version_and_verifies_it(archive, tmp_path, scheme):
    path, digest = archive
    bucket = tmp_path / "bucket" / "archives"
    done = publishing.publish(path, digest, f"{scheme}{bucket}", "loan-default", "abc123")
    assert done.uploaded
    assert done.url == f"{scheme}{bucket}/loan-default-abc123.mar"
    assert (bucket / "loan-default-abc123.mar").read_bytes() == path.read_bytes()
    assert [p.name for p in bucket.iterdir()] == ["loan-default-abc123.mar"]  # no partial upload left behind
    again = publishing.publish(path, digest, f"{scheme}{bucket}", "loan-default", "abc123")
    assert not again.uploaded


def test_publishing_never_overwrites_another_file_under_the_same_name(archive, tmp_path):
    path, digest = archive
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "loan-default-abc123.mar").write_bytes(b"something else")
    with pytest.raises(UserError, match=r"already holds another file \(sha256 .*\); a server may have registered it"):
        publishing.publish(path, digest, f"file://{bucket}", "loan-default", "abc123")
    assert (bucket / "loan-default-abc123.mar").read_bytes() == b"something else"


def test_a_copy_that_reads_back_different_is_removed_and_reported(archive, tmp_path, monkeypatch):
    path, digest = archive
    bucket = tmp_path / "bucket"
    monkeypatch.setattr(publishing, "_sha256", lambda fs, p: "0" * 64)  # storage returned other bytes
    with pytest.raises(ServiceError, match="read back sha256 000000000000"):
        publishing.publish(path, digest, f"file://{bucket}", "loan-default", "abc123")
    assert not (bucket / "loan-default-abc123.mar").exists()


def test_mlops_publish_uploads_to_the_environments_prefix_and_names_the_variable_when_unset(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "loan-default.mar").write_bytes(b"archive")
    digest = hashlib.sha256(b"archive").hexdigest()
    package = {"name": "loan-default", "version": "v1", "archive": "loan-default.mar", "sha256": digest}
    (models / "package.json").write_text(json.dumps(package))
    args = ["production", "--package", str(models / "package.json")]
    monkeypatch.delenv("MLOPS_PRODUCTION_ARCHIVE_URL_PREFIX", raising=False)
    with pytest.raises(UserError, match="set MLOPS_PRODUCTION_ARCHIVE_URL_PREFIX"):
        release_command.publish_main(args)
    monkeypatch.setenv("MLOPS_PRODUCTION_ARCHIVE_URL_PREFIX", f"file://{tmp_path / 'bucket'}")
    assert release_command.publish_main(args) == 0
    assert (tmp_path / "bucket/loan-default-v1.mar").read_bytes() == b"archive"
    (models / "loan-default.mar").write_bytes(b"tampered")
    with pytest.raises(UserError, match="sha256 differs from"):
        release_command.publish_main(args)
