"""Strict YAML-backed config models: the shared base and the error format.

A YAML file is read into plain data (a key twice in one mapping is an error naming its dotted
key), and a pydantic validation error becomes one line per problem naming its dotted key.
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


def _duplicate_keys(node: yaml.Node, path: tuple[str, ...] = (), seen: set[int] | None = None) -> list[str]:
    """Dotted keys that appear twice in one mapping, with the line of the second one."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias to a node already walked
        return []
    seen.add(id(node))
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == "<<":  # a merge key: its mapping's keys are defaults, not duplicates
                continue
            if key in keys:
                found.append(f"{'.'.join((*path, key))} (line {key_node.start_mark.line + 1})")
            keys.add(key)
            found += _duplicate_keys(value_node, (*path, key), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicate_keys(item, (*path, str(i)), seen)
    return found


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing file, a syntax error or a duplicate key is a UserError naming the file.

    PyYAML keeps the last of two equal keys without a word; a duplicate column or param would then
    silently replace the first, so every mapping is checked for them (by dotted key) first.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise UserError(f"{path}: duplicate key {', '.join(duplicates)}; each key may appear once")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def parse(model: type[BaseModel], raw: Any, source: str) -> Any:
    """Validate ``raw`` as ``model``; a UserError lists every problem with its dotted key."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(source, e)) from None
