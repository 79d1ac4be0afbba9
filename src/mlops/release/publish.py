"""Publish the archive where remote servers fetch it: ``<prefix>/<name>-<version>.mar`` on any fsspec URL.

The prefix is ``MLOPS_<ENV>_ARCHIVE_URL_PREFIX`` (``file://``, ``s3://``, ... whatever fsspec
and the installed filesystem packages reach). The upload goes to a temporary name and is
moved into place, then read back and its sha256 compared: a published name only ever holds
the archive it names. Publishing again is a no-op; a different file under the same name is
refused, never overwritten (a server may have registered it).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.core.config import ServeParams
from mlops.core.errors import ServiceError, UserError
from mlops.release.packaging import model_config
from mlops.serving.torchserve import archive_name


@dataclass(frozen=True)
class Published:
    """Where an archive is published and whether this call uploaded it."""

    url: str
    sha256: str
    uploaded: bool


def prefix_variable(env: str) -> str:
    """The environment variable that holds ``env``'s archive URL prefix."""
    return f"MLOPS_{env.upper()}_ARCHIVE_URL_PREFIX"


def archive_prefix(env: str) -> str:
    """``MLOPS_<ENV>_ARCHIVE_URL_PREFIX``; UserError when it is not set."""
    prefix = os.environ.get(prefix_variable(env), "").strip()
    if not prefix:
        raise UserError(f"set {prefix_variable(env)} to where {env}'s server fetches archives (an fsspec URL)")
    return prefix


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec  # only publishing needs it

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise UserError(f"archive URL {url[:80]!r}: {e}") from None
    return fs, path


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _upload(source: Path, sha256: str, url: str) -> bool:
    """Put ``source`` at ``url`` (a temporary name, moved into place, read back); False if already there.

    Raises UserError when a different file holds that name, ServiceError when storage fails or
    the copy read back differs.
    """
    fs, path = _filesystem(url)
    try:
        if fs.exists(path):
            there = _sha256(fs, path)
            if there != sha256:
                raise UserError(
                    f"{url} already holds another file (sha256 {there[:12]}..., expected {sha256[:12]}...); "
                    "a server may have registered it: remove it by hand if it is wrong"
                )
            return False
        parent = path.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        partial = f"{path}.part-{uuid.uuid4().hex[:8]}"
        fs.put_file(str(source), partial)
        fs.mv(partial, path)
        back = _sha256(fs, path)
    except (OSError, RuntimeError) as e:
        raise ServiceError(f"publishing {source} to {url}: {e}") from None
    if back != sha256:
        fs.rm(path)
        raise ServiceError(f"{url}: read back sha256 {back[:12]}..., uploaded {sha256[:12]}...; removed it, try again")
    return True


def publish(archive: Path, sha256: str, prefix: str, name: str, version: str) -> Published:
    """Upload ``archive`` as ``<prefix>/<name>-<version>.mar``, verified by reading it back.

    Idempotent: an identical file already there is left as it is. Raises UserError when a
    different file holds that name, ServiceError when storage fails or the copy read back differs.
    """
    url = f"{prefix.rstrip('/')}/{archive_name(name, version)}"
    return Published(url, sha256, uploaded=_upload(archive, sha256, url))


# TorchServe started from the layout alone (a KServe predictor, a pod): the model is loaded at
# start and never changes (a new model is a new layout, rolled out), so the model API is off;
# the ports are KServe's TorchServe runtime's, and TS_* variables may override any setting.
LAYOUT_CONFIG = """\
# TorchServe for one published model version: started with
#   torchserve --start --ts-config config/config.properties --model-store model-store
inference_address=http://0.0.0.0:8085
management_address=http://127.0.0.1:8081
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_envvars_config=true
enable_model_api=false
# a pod's random tokens could not be shared by its replicas: authenticate in front of the Service
disable_token_authorization=true
allowed_urls=file://.*/model-store/[A-Za-z0-9_.-]+\\.mar
install_py_dep_per_model=false
# request bodies reach the handler as bytes: it decodes them itself
decode_input_request=false
metrics_mode=prometheus
job_queue_size=1000
max_request_size=6553500
max_response_size=6553500
"""

# The settings a model starts with, as the archive's model-config.yaml has them
SNAPSHOT_SETTINGS = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")


def layout_config(name: str, version: str, serve: ServeParams) -> str:
    """The layout's ``config.properties``: the pod settings and the model's, from ``serve`` (params.yaml).

    The model is loaded by ``model_snapshot`` (KServe's TorchServe convention) rather than
    ``load_models``: TorchServe 0.12 reads a ``maxBatchDelay`` of 0 from an archive's model config,
    or from the ``models`` setting, as "unset" and waits its default 100 ms, while a snapshot's
    values are taken as they are. The settings are ``model_config``'s, the archive's own, so a pod
    batches as the local environments, which pass the delay when they register, do.
    """
    settings = model_config(serve)
    model = {"defaultVersion": True, "marName": f"{name}.mar", **{k: settings[k] for k in SNAPSHOT_SETTINGS}}
    snapshot = {"name": "startup.cfg", "modelCount": 1, "models": {name: {version: model}}}
    return (
        LAYOUT_CONFIG
        + "# the model, with the serving settings of params.yaml\n"
        + (f"model_snapshot={json.dumps(snapshot, sort_keys=True)}\n")
    )


def layout_url(prefix: str, name: str, version: str) -> str:
    """The storage URI of a version's layout: ``<prefix>/<name>-<version>``."""
    return f"{prefix.rstrip('/')}/{name}-{version}"


def publish_layout(
    archive: Path, sha256: str, prefix: str, name: str, version: str, serve: ServeParams, workdir: Path
) -> Published:
    """Upload the layout KServe's storage initializer expects, each file verified by reading it back.

    ``<prefix>/<name>-<version>/config/config.properties`` and ``.../model-store/<name>.mar``:
    a KServe ``storageUri`` (or a pod's init container) fetches that folder, and TorchServe starts
    from it alone, with the serving settings of ``serve`` (``layout_config``). Idempotent like
    ``publish``; ``workdir`` holds the config while it uploads.
    """
    url = layout_url(prefix, name, version)
    config = workdir / "config.properties"
    config.write_text(layout_config(name, version, serve))
    config_sha = hashlib.sha256(config.read_bytes()).hexdigest()
    # the archive last: a layout whose archive is there is complete
    uploaded = _upload(config, config_sha, f"{url}/config/config.properties")
    uploaded = _upload(archive, sha256, f"{url}/model-store/{name}.mar") or uploaded
    return Published(url, sha256, uploaded=uploaded)
