"""``python -m mlops.serving.ready [NAME]``: exit 0 when TorchServe serves ``NAME`` with its workers READY.

A pod's readiness probe. TorchServe's ``/ping`` answers "Healthy" even when the model failed to
load at start (no model, so nothing unhealthy): a pod with a broken archive would take traffic
and answer 404. This asks the management API, on localhost, about the model itself: ready when
it is registered and at least its minimum number of workers are READY. Standard library only,
so that a probe every few seconds costs little.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_MANAGEMENT = "http://127.0.0.1:8081"


def check(management_url: str, name: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether ``name`` is registered with its minimum of workers READY, and what was seen."""
    url = f"{management_url.rstrip('/')}/models/{name}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            described = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return False, f"{url}: HTTP {e.code}"
    except (OSError, ValueError) as e:
        return False, f"{url}: {e}"
    if not described:
        return False, f"{name}: not registered"
    model = described[0]
    statuses = [w.get("status") for w in model.get("workers", [])]
    needed = max(1, int(model.get("minWorkers", 1)))
    ready = statuses.count("READY")
    return ready >= needed, f"{name} {model.get('modelVersion')}: {ready}/{needed} workers READY"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when ready, 1 when not (the reason on stderr)."""
    p = argparse.ArgumentParser(prog="python -m mlops.serving.ready", description=__doc__.splitlines()[0])
    p.add_argument("name", nargs="?", default=os.environ.get("MLOPS_MODEL_NAME"), help="the model (MLOPS_MODEL_NAME)")
    # TorchServe's own override of its management address, when the pod sets one
    default = os.environ.get("TS_MANAGEMENT_ADDRESS", DEFAULT_MANAGEMENT)
    p.add_argument(
        "--url", default=default, help=f"the management API (default: $TS_MANAGEMENT_ADDRESS or {DEFAULT_MANAGEMENT})"
    )
    args = p.parse_args(argv)
    if not args.name:
        p.error("name the model (or set MLOPS_MODEL_NAME)")
    ok, said = check(args.url, args.name)
    print(said, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
