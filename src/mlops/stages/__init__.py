"""Thin DVC stage adapters: parse arguments, load params, call the library, write outputs.

Each module has ``main(argv) -> int`` (callable from tests) and runs as
``python -m mlops.stages.<name>``; the path defaults match dvc.yaml.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlops.errors import UserError


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"mlops {name}", description=(doc or "").strip().splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--contract", default="data/contract.yaml", help="data contract (default: %(default)s)")
    return p


def run(stage: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a stage; bad input becomes one 'error:' message and exit code 1."""
    try:
        return stage(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
