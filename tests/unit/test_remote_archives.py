"""Archives a remote server fetches from the object store: presigned URLs, and the allowed_urls entry
that admits them under one prefix only (a presigned URL carries a query string)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from mlops.core.errors import UserError
from mlops.serving.torchserve import archive_url_pattern, fetch_url

pytestmark = pytest.mark.unit


def test_object_store_urls_are_presigned_and_http_or_file_ones_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    store = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in {**store, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    assert fetch_url("https://a.example/x/m-1.mar") == "https://a.example/x/m-1.mar"
    assert fetch_url("file:///srv/m-1.mar") == "file:///srv/m-1.mar"
    signed = fetch_url("s3://team-models/archives/staging/loan-default-1a2b.mar")  # signing is local: no request
    parts = urlsplit(signed)
    assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:9")
    assert parts.path == "/team-models/archives/staging/loan-default-1a2b.mar"
    assert "Signature" in parts.query
    pattern = archive_url_pattern("http://127.0.0.1:9/team-models/archives/staging", query=True)
    assert re.fullmatch(pattern, signed, re.I)


def test_the_presigned_pattern_admits_only_archives_directly_under_the_prefix() -> None:
    pattern = archive_url_pattern("http://127.0.0.1:9/team-models/archives/staging", query=True)
    assert re.fullmatch(pattern, "http://127.0.0.1:9/team-models/archives/staging/m-1.mar?X-Amz-Signature=abc")
    for outside in (
        "http://127.0.0.1:9/team-models/archives/production/m-1.mar?X-Amz-Signature=abc",
        "http://127.0.0.1:9/other/archives/staging/m-1.mar",
        "http://127.0.0.1:9/team-models/archives/staging/sub/m-1.mar",
        "http://127.0.0.1:99/team-models/archives/staging/m-1.mar",
        "http://127.0.0.1:9/team-models/archives/staging/m-1.mar.exe",
    ):
        assert not re.fullmatch(pattern, outside), outside


def test_a_store_that_cannot_presign_is_refused_with_what_to_do() -> None:
    with pytest.raises(UserError, match=r"cannot be presigned.*http\(s\) prefix"):
        fetch_url("memory://bucket/m-1.mar")
