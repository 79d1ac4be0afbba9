"""Argument helpers the command adapters share: the site, the release context, path defaults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.release.environments import Site

if TYPE_CHECKING:
    from mlops.release.deploy import Context


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options every environment command takes."""
    p = argparse.ArgumentParser(prog=f"mlops {prog}", description=description)
    p.add_argument("--params", type=Path, default=paths.PARAMS)
    p.add_argument("--root", type=Path, default=Path(), help="repository root (git tags, MLflow default)")
    p.add_argument(
        "--serve-dir", type=Path, default=paths.serve_dir(), help="environment configs (default: %(default)s)"
    )
    p.add_argument(
        "--runtime-dir", type=Path, default=paths.runtime_dir(), help="model stores, logs, keys (default: %(default)s)"
    )
    return p


def contract_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", type=Path, default=paths.CONTRACT)


def release_args(p: argparse.ArgumentParser) -> None:
    """The files a release reads: contract, the archive's record, the offline model, the holdout."""
    contract_arg(p)
    p.add_argument("--package", type=Path, default=paths.PACKAGE, help="the archive's record")
    p.add_argument("--model", type=Path, default=paths.PIPELINE, help="offline model for parity")
    p.add_argument("--holdout", type=Path, default=paths.HOLDOUT)


def site(args: argparse.Namespace, stage: str) -> Site:
    return Site(args.root, load_params(args.params), args.serve_dir, args.runtime_dir, Progress(stage))


def context(args: argparse.Namespace, stage: str) -> Context:
    from mlops.release.deploy import Context  # pandas and scikit-learn: only moves with an archive need them

    return Context.load(site(args, stage), load_contract(args.contract), args.package, args.model, args.holdout)
