"""The published layout's config.properties carries the project's serving settings (params.yaml's
`serve`), the ones the archive and the local environments use, and loads the model by a snapshot:
TorchServe 0.12 takes a batch delay of 0 from an archive's model config or from `models=` as
"unset" (100 ms), and from a snapshot as it is."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlops.core.config import ServeParams
from mlops.release.packaging import model_config
from mlops.release.publish import publish_layout

pytestmark = pytest.mark.unit

NAME = "loan-default"


def properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize(("batch_size", "delay_ms", "workers"), [(16, 0, 2), (4, 7, 1)])
def test_the_published_config_has_the_serving_settings_of_params(
    tmp_path: Path, batch_size: int, delay_ms: int, workers: int
) -> None:
    serve = ServeParams(model_name=NAME, workers=workers, batch_size=batch_size, max_batch_delay_ms=delay_ms,
                        response_timeout_s=30, max_rows=1000, unknown_category="reject")  # fmt: skip
    archive = tmp_path / "a.mar"
    archive.write_bytes(b"an archive")
    work = tmp_path / "work"
    work.mkdir()
    published = publish_layout(archive, hashlib.sha256(b"an archive").hexdigest(), f"file://{tmp_path}/store", NAME,
                               "0123456789ab", serve, work)  # fmt: skip
    layout = Path(published.url.removeprefix("file://"))
    props = properties(layout / "config/config.properties")
    assert "load_models" not in props  # the snapshot loads the model, with its settings as they are
    snapshot = json.loads(props["model_snapshot"])
    assert snapshot["modelCount"] == 1
    (version,) = snapshot["models"][NAME].values()
    assert version["marName"] == f"{NAME}.mar"
    assert (layout / "model-store" / version["marName"]).read_bytes() == b"an archive"
    assert version["defaultVersion"] is True
    assert version["batchSize"] == batch_size
    assert version["maxBatchDelay"] == delay_ms
    assert version["minWorkers"] == version["maxWorkers"] == workers
    # the archive's own model config says the same: one source for both
    archived = model_config(serve)
    assert {k: archived[k] for k in version if k in archived} == {k: v for k, v in version.items() if k in archived}
