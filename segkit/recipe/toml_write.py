"""Writing a resolved recipe back as TOML (``work_dir/recipe.toml``), so a run dir is self-describing.

TOML has no null: ``None`` values are left out (their default is ``None``), except for the top-level
``norm_cfg``/``act_cfg`` whose ``None`` is written as the string ``"none"``, which the schema reads back as None.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value != value:
            return "nan"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _emit(table: dict, prefix: str, lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict) and not _is_table_array(v)}
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        if isinstance(value, dict):
            lines.extend(["", f"[{name}]"])
            _emit(value, name, lines)
        elif _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{name}]]"])
                _emit(item, name, lines)


def dumps(data: dict) -> str:
    """Serialise nested dicts/lists/scalars as TOML."""
    lines: list[str] = []
    _emit(data, "", lines)
    return "\n".join(lines).strip() + "\n"


def recipe_to_toml(recipe: Any) -> str:
    """The fully resolved recipe as TOML text."""
    data = recipe.model_dump(mode="json")
    for key in ("norm_cfg", "act_cfg"):
        if data.get(key) is None:
            data[key] = "none"
    return f"# resolved by segkit from {getattr(recipe, '_source', '?')}\n" + dumps(data)
