"""Reading YAML configs into typed models: overrides, validation, errors that name the file, the key and the line.

A wrong type or an unknown key is a `ConfigError` that names the file, the dotted key and, where it can, the line.
Overrides are dotted keys (`generate.self_instruct.target=5000`); their values are read as YAML scalars.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file, the key and the line when known."""


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", value read as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted KEY, e.g. generate.self_instruct.target=5000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key, value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """Return a copy of `data` with each dotted key set; intermediate mappings are created."""
    data = copy.deepcopy(data)
    if not overrides:
        return data
    items = [parse_override(o) for o in overrides] if isinstance(overrides, list) else list(overrides.items())
    for key, value in items:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def reference_error(key: str, problem: str) -> PydanticCustomError:
    """An error of a model validator about the value at dotted `key` (not at the model itself): `validate` reports
    it with that key and its line."""
    return PydanticCustomError("config_reference", "{problem}", {"key": key, "problem": problem})


def _loc(err: Any) -> tuple[Any, ...]:
    key = (err.get("ctx") or {}).get("key") if err["type"] == "config_reference" else None
    if key is None:
        return tuple(err["loc"])
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of a dotted location in a composed YAML document, as deep as it exists."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def validate(model: type[BaseModel], data: dict[str, Any], source: str, yaml_root: yaml.Node | None = None,
             overridden: set[str] | None = None) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = _loc(err)
            key = ".".join(str(p) for p in loc)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            origin = source
            if overridden and any(key == o or key.startswith(o + ".") for o in overridden):
                origin = f"{source} (override)"
            else:
                line = _line_of(yaml_root, loc) if len(loc) else None
                if line is not None:
                    origin = f"{source}, line {line}"
            problems.append(f"{origin}: key '{key}': {msg}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems)) from None


def read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data, root


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
