"""JSON Schema (2020-12) validation against the schemas shipped in ``vvctl/schemas``.

Validators are built once per schema and cached. Errors name the failing field as a JSON path.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from vvctl.core.errors import InputError, VVError


class SchemaViolation(InputError):
    """A document does not match its schema. ``field`` is the JSON path of the first failing field."""

    def __init__(self, schema: str, field: str, reason: str) -> None:
        self.schema = schema
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason} (schema {schema})")


def schemas_dir() -> Traversable:
    """The schema folder: inside the installed wheel, or the repo's top-level ``schemas/``."""
    packaged = resources.files("vvctl") / "schemas"
    if packaged.is_dir():
        return packaged
    # Editable installs and source checkouts keep schemas/ at the repo top level.
    source_tree = Path(__file__).resolve().parents[3] / "schemas"
    if source_tree.is_dir():
        return source_tree
    raise VVError("vvctl's schemas are missing from this installation; reinstall vvctl")


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    path = schemas_dir() / name
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VVError(f"schema {name} cannot be loaded: {exc}") from exc
    return document


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema  # deferred: not needed by `vvctl --help`

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate(document: Any, name: str) -> None:
    """Raise :class:`SchemaViolation` naming the first failing field (the deepest, most specific one)."""
    validator = _validator(name)
    errors = list(validator.iter_errors(document))
    if not errors:
        return
    import jsonschema

    best = jsonschema.exceptions.best_match(errors)
    field = json_path(best.absolute_path)
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        allowed = set(best.schema.get("properties", {}))
        extra = sorted(k for k in best.instance if k not in allowed)
        if extra:
            field = json_path([*best.absolute_path, extra[0]])
            raise SchemaViolation(name, field, "unknown key")
    if best.validator == "required" and isinstance(best.instance, dict):
        missing = [k for k in best.validator_value if k not in best.instance]
        if missing:
            raise SchemaViolation(name, json_path([*best.absolute_path, missing[0]]), "required key missing")
    raise SchemaViolation(name, field, _short(best.message))


def is_valid(document: Any, name: str) -> bool:
    return bool(_validator(name).is_valid(document))


def _short(message: str, limit: int = 160) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
