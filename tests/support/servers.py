"""Local TorchServe environments for tests: free loopback ports and a handle to drive them."""

from __future__ import annotations

import json
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from mlops.core.contract import load_contract
from mlops.release.records import production_tags
from mlops.serving.inference import records
from mlops.serving.torchserve import read_properties
from support.project import sh


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (the ports it hands to clients and to ``bind(0)``)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1, below the kernel's ephemeral range.

    A port that ``bind(0)`` hands out is an ephemeral one: until the server binds it, any
    outgoing connection on the machine (another test worker's HTTP client) may take it as its
    source port, and a TorchServe then fails to bind its gRPC port and stops. Ports drawn at
    random below that range are never handed to clients; each is checked free here.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(10_000, low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def write_env_configs(project: Path, extra_allowed: str) -> None:
    """Give both environments of ``project`` free ports (so test servers never clash), and admit
    ``extra_allowed`` archive URLs."""
    for env in ("staging", "production"):
        path = project / "serve" / f"{env}.properties"
        http, mgmt, metrics, grpc_i, grpc_m = free_ports(5)
        replacements = {
            "inference_address": f"http://127.0.0.1:{http}",
            "management_address": f"http://127.0.0.1:{mgmt}",
            "metrics_address": f"http://127.0.0.1:{metrics}",
            "grpc_inference_port": str(grpc_i),
            "grpc_management_port": str(grpc_m),
        }
        lines = []
        for line in path.read_text().splitlines():
            key = line.split("=", 1)[0]
            if key in replacements:
                line = f"{key}={replacements[key]}"
            elif key == "allowed_urls":
                line = f"{line},{extra_allowed}"  # TorchServe splits allowed_urls on commas
            lines.append(line)
        path.write_text("\n".join(lines) + "\n")


@dataclass
class Site:
    """A project whose environments run locally: the `mlops` CLI and raw HTTP to its servers."""

    root: Path
    model: str = "loan-default"

    def mlops(self, *args: str, check: bool = True):
        return sh("mlops", *args, cwd=self.root, check=check)

    def keys(self, env: str) -> dict[str, Any]:
        return json.loads((self.root / ".serve" / env / "key_file.json").read_text())

    def props(self, env: str) -> dict[str, str]:
        return read_properties(self.root / "serve" / f"{env}.properties")

    def management(self, env: str, path: str) -> requests.Response:
        token = self.keys(env)["management"]["key"]
        return requests.get(self.props(env)["management_address"] + path, headers={"Authorization": f"Bearer {token}"})

    def predict(self, env: str, body: Any, version: str | None = None) -> requests.Response:
        token = self.keys(env)["inference"]["key"]
        url = self.props(env)["inference_address"] + f"/predictions/{self.model}" + (f"/{version}" if version else "")
        return requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"})

    def default_version(self, env: str) -> str:
        return self.management(env, f"/models/{self.model}").json()[0]["modelVersion"]

    def registered(self, env: str) -> set[str]:
        return {m["modelVersion"] for m in self.management(env, f"/models/{self.model}/all").json()}

    def status(self) -> dict[str, dict[str, Any]]:
        return {row["environment"]: row for row in json.loads(self.mlops("status", "--json").stdout)}

    def tags(self) -> list[str]:
        """Production's record tags (GTO assignments, and legacy ones), oldest first."""
        return [t.name for t in production_tags(self.root)]

    def tag_record(self, tag: str) -> dict[str, Any]:
        message = sh("git", "tag", "-l", "--format=%(contents)", tag, cwd=self.root).stdout
        return json.loads(message[message.index("{") :])

    def package(self) -> dict[str, Any]:
        return json.loads((self.root / "models/package.json").read_text())

    def holdout_rows(self, n: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        frame = pd.read_parquet(self.root / "data/split/holdout.parquet").head(n)
        features = load_contract(self.root / "data/contract.yaml").features
        return frame, records(frame, features)
