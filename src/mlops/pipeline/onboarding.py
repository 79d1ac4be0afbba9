"""``mlops init``: a user's table becomes the repository's contract, params and raw batches.

Everything is computed and checked first (the contract loads, the params validate); then the
batches, the contract and params.yaml replace the example's, ``dvc add`` tracks the batches and
git commits what changed, so the first build is not a build from uncommitted changes. The
example repository is recognised by params.yaml's ``data:`` section (the example generator):
once that is gone, the repository holds the user's data and ``init`` refuses to replace it
without ``force``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from mlops.core import paths
from mlops.core.config import parse_params
from mlops.core.contract import load_contract
from mlops.core.errors import ServiceError, UserError
from mlops.core.lineage import git
from mlops.core.schema import read_yaml
from mlops.pipeline.datasets import parse_time
from mlops.pipeline.profiling import InitParams, Profile, Setting, batches, profile, read_source, render_contract
from mlops.pipeline.profiling import task_params as settings_for

COMMENT_COLUMN = 27  # where params.yaml's end-of-line comments start


@dataclass
class InitResult:
    """What ``init_project`` wrote and what a person should check."""

    profile: Profile
    batches: list[str]
    settings: list[Setting]
    checks: list[str] = field(default_factory=list)
    commit: str | None = None  # the commit holding the new contract, params and data/raw.dvc


def _round_trip() -> YAML:
    yaml = YAML()  # round-trip mode: params.yaml keeps its comments and order
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def apply_settings(text: str, settings: list[Setting]) -> str:
    """params.yaml with the example generator's section removed and ``settings`` set, each with its reason."""
    yaml = _round_trip()
    doc = yaml.load(text)
    if not isinstance(doc, CommentedMap):
        raise UserError("params.yaml: expected a mapping at the top level")
    doc.pop("data", None)
    for s in settings:
        *parents, key = s.key.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[key] = CommentedMap(s.value) if isinstance(s.value, dict) else s.value
        node.ca.items.pop(key, None)  # the old comment described the old value
        node.yaml_add_eol_comment(s.why, key, column=COMMENT_COLUMN)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def is_example(params_file: Path) -> bool:
    """True while params.yaml configures the example data generator (a ``data:`` section)."""
    raw = read_yaml(params_file)
    return isinstance(raw, dict) and "data" in raw


def _periods(profile_: Profile, text_time: Any) -> int:
    c = profile_.contract
    if not c.time:
        return 0
    return int(parse_time(text_time, c.time, c.columns[c.time]).nunique())


def _replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target`` by renames, so a failure leaves one or the other whole."""
    old = target.with_name(f".{target.name}.replaced")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    new.rename(target)
    if old.exists():
        shutil.rmtree(old)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _dvc_add(root: Path, raw: Path) -> None:
    try:
        proc = subprocess.run(
            ["dvc", "add", "-q", str(raw.relative_to(root))], cwd=root, capture_output=True, text=True
        )
    except OSError as e:
        raise ServiceError(f"dvc is not available ({e}); data/raw is written: run `dvc add data/raw`") from None
    if proc.returncode != 0:
        raise ServiceError(
            f"`dvc add data/raw` failed: {(proc.stderr or proc.stdout).strip()[:500]}\n"
            "data/raw, the contract and params.yaml are written; fix the cause and run `dvc add data/raw`"
        )


def _commit(root: Path, files: list[Path], message: str) -> str | None:
    """Commit exactly ``files``; None (and nothing committed) when git cannot (not a repository, no identity)."""
    names = [str(f.relative_to(root)) for f in files if f.exists()]
    if git(root, "add", "--", *names, check=False).returncode != 0:
        return None
    if git(root, "commit", "-q", "-m", message, "--", *names, check=False).returncode != 0:
        return None
    return git(root, "rev-parse", "HEAD").stdout.strip()


def init_project(
    root: Path, spec: InitParams, *, force: bool = False, commit: bool = True, progress: Callable[[str], None] = print
) -> InitResult:
    """Profile ``spec.data`` and make it this repository's data: contract, params, batches, DVC, a commit.

    Raises UserError (nothing written) when the repository already holds a user's data and
    ``force`` is not set, or when the table, its target or its roles do not fit.
    """
    params_file, contract_file, raw = root / paths.PARAMS, root / paths.CONTRACT, root / paths.RAW
    if not params_file.exists():
        raise UserError(f"{params_file}: not found; run `mlops init` at the root of the template repository")
    if not force and not is_example(params_file):
        raise UserError(
            f"this repository already holds your own data ({params_file} has no `data:` section, the example "
            f"generator's); `mlops init --force` replaces {contract_file}, {raw} and the task's params"
        )
    typed, text = read_source(spec.data)
    found = profile(typed, spec)
    progress(
        f"profiled {found.rows:,} rows x {len(found.contract.columns)} columns: {found.contract.task}, "
        f"target '{found.contract.target}', {len(found.contract.features)} features"
    )
    periods = _periods(found, text[found.contract.time].replace("", None)) if found.contract.time else 0
    settings = settings_for(found, periods)
    contract_text = render_contract(found, spec.data)
    params_text = apply_settings(params_file.read_text(), settings)
    parse_params(YAML(typ="safe").load(params_text), str(params_file))  # must validate before anything is written

    with tempfile.TemporaryDirectory(dir=raw.parent if raw.parent.exists() else root) as tmp:
        staged = Path(tmp) / "raw"
        staged.mkdir()
        names = []
        for name, rows in batches(typed, text, found.contract):
            rows.to_csv(staged / name, index=False, lineterminator="\n")
            names.append(name)
        (Path(tmp) / "contract.yaml").write_text(contract_text)
        if load_contract(Path(tmp) / "contract.yaml") != found.contract:  # what we write is what we inferred
            raise UserError("the rendered contract does not read back as inferred; please report this")
        contract_file.parent.mkdir(parents=True, exist_ok=True)
        _replace_dir(staged, raw)
    _write_text(contract_file, contract_text)
    _write_text(params_file, params_text)
    progress(f"wrote {contract_file}, {params_file} and {len(names)} batch(es) under {raw}")
    _dvc_add(root, raw)
    progress(f"dvc add {raw}")
    result = InitResult(found, names, settings, list(found.checks))
    if commit:
        written = [contract_file, params_file, root / paths.RAW_DVC, raw.parent / ".gitignore"]
        result.commit = _commit(root, written, f"Bring your own data: {found.contract.name} (mlops init)")
        if result.commit is None:
            result.checks.append(f"git could not commit; commit {', '.join(map(str, written))} yourself")
    return result
