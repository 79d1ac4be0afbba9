"""Strict YAML-backed config models: the shared base and the error format.

A YAML file is read into plain data, and a pydantic validation error becomes one line per
problem naming its dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mlops.core.errors import UserError


class Section(BaseModel):
    """A params section: unknown keys, missing keys and wrong types are errors; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem, each naming its dotted key and, for wrong values, the value."""
    lines = [f"{source}: {err.error_count()} problem(s)"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (misspelled?)")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required key is missing")
        else:
            shown = repr(e.get("input"))
            shown = shown if len(shown) <= 80 else shown[:80] + f"... ({len(shown)} characters)"
            lines.append(f"  {where}: {e['msg']} (got {shown})")
    return "\n".join(lines)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a UserError naming the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None


def parse(model: type[BaseModel], raw: Any, source: str) -> Any:
    """Validate ``raw`` as ``model``; a UserError lists every problem with its dotted key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(source, e)) from None
