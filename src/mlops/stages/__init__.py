"""Thin DVC stage adapters: parse arguments, load params, call the library, write outputs.

Each module has ``main(argv) -> int`` (callable from tests) and runs as
``python -m mlops.stages.<name>`` (errors handled by ``mlops.cli.run``); the path defaults
come from ``mlops.core.paths`` and match dvc.yaml. Stages sit above the rooms, like the CLI:
``package`` wires the release room.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlops.core import paths


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"mlops {name}", description=(doc or "").strip().splitlines()[0])
    p.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: %(default)s)")
    p.add_argument("--contract", type=Path, default=paths.CONTRACT, help="data contract (default: %(default)s)")
    return p
