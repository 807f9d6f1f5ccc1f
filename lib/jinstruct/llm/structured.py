"""Structured replies: JSON that must match a schema, or one of fixed choices. Validated, never trusted."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a pydantic model in the strict form OpenAI's structured outputs accept
    (every property required, no additional properties), so that `ChatRequest(json_schema=...)` works
    with OpenAI, vLLM and the embedded backend alike."""
    try:
        from openai.lib._pydantic import to_strict_json_schema
    except ImportError:  # the helper moved: pydantic's own schema, closed by hand
        schema = model.model_json_schema()
        schema.setdefault("additionalProperties", False)
        schema["required"] = list(schema.get("properties", {}))
        return schema
    return to_strict_json_schema(model)


_validators: dict[str, Any] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """A cached jsonschema validator (imported on first use: its import takes seconds)."""
    key = json.dumps(schema, sort_keys=True)
    v = _validators.get(key)
    if v is None:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise ValueError(f"json_schema is not a valid JSON schema: {e.message}") from None
        v = _validators[key] = cls(schema)
    return v


def check_schema(schema: dict[str, Any]) -> None:
    """A clear ValueError for a schema that cannot validate anything (before any request is sent)."""
    _validator(schema)


def validate_reply(text: str, json_schema: dict[str, Any] | None, choices: list[str] | None) -> tuple[Any, str | None]:
    """(parsed value, None) for a valid reply, else (None, what is wrong). Plain requests are always valid."""
    if choices is not None:
        value = text.strip()
        if value in choices:
            return value, None
        return None, f"reply {_short(text)} is not one of {choices}"
    if json_schema is None:
        return text, None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"reply is not JSON ({e.msg} at char {e.pos}): {_short(text)}"
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(json_schema).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return None, f"reply does not match the schema at {where}: {error.message}"
    return obj, None


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
