"""Locust user for `mlops.serving.loadgen`: POSTs prepared JSON bodies to one prediction endpoint.

Run by locust in its own process (gevent patches the interpreter); never imported by the package.
Configured through MLOPS_LOAD_PATH, MLOPS_LOAD_TOKEN, MLOPS_LOAD_BODIES (a JSON-lines file) and
MLOPS_LOAD_HEADERS (a JSON object of extra headers).
"""

import itertools
import json
import os
from pathlib import Path

from locust import FastHttpUser, constant, task

PATH = os.environ["MLOPS_LOAD_PATH"]
HEADERS = {"Content-Type": "application/json", **json.loads(os.environ.get("MLOPS_LOAD_HEADERS") or "{}")}
if os.environ.get("MLOPS_LOAD_TOKEN"):
    HEADERS["Authorization"] = f"Bearer {os.environ['MLOPS_LOAD_TOKEN']}"
BODIES = [line.encode() for line in Path(os.environ["MLOPS_LOAD_BODIES"]).read_text().splitlines() if line]


class Predict(FastHttpUser):
    """A client that POSTs the prepared bodies in turn, with no pause between requests."""

    wait_time = constant(0)

    def on_start(self) -> None:
        """Start each simulated user at a different body."""
        offset = id(self) % len(BODIES)
        self.bodies = itertools.islice(itertools.cycle(BODIES), offset, None)

    @task
    def predict(self) -> None:
        """One request; anything but 200 counts as a failure."""
        body = next(self.bodies)
        with self.client.post(PATH, data=body, headers=HEADERS, catch_response=True, name="predict") as r:  # type: ignore[arg-type]
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
