"""Writing a resolved recipe back as TOML (``work_dir/recipe.toml``), so a run dir is self-describing.

The TOML text is written by ``tomli-w`` (the writer that pairs with ``tomllib``): it escapes every character
correctly, including those outside the Basic Multilingual Plane, which a hand-written writer got wrong. tomli-w is
a core dependency because every training run writes its recipe; it is small and pure Python.

TOML has no null. ``None`` values are left out, and the header lists them, because leaving one out only
round-trips when ``None`` is that key's default; the top-level ``norm_cfg``/``act_cfg`` are written as ``"none"``,
which the schema reads back as ``None``.
"""

from __future__ import annotations

from typing import Any

import tomli_w


def without_none(value: Any, path: str = "", dropped: list[str] | None = None) -> Any:
    """``value`` with ``None`` entries removed (from tables and arrays); their dotted paths go to ``dropped``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if item is None:
                if dropped is not None:
                    dropped.append(where)
                continue
            out[str(key)] = without_none(item, where, dropped)
        return out
    if isinstance(value, (list, tuple)):
        kept = []
        for index, item in enumerate(value):
            if item is None:
                if dropped is not None:
                    dropped.append(f"{path}[{index}]")
                continue
            kept.append(without_none(item, f"{path}[{index}]", dropped))
        return kept
    return value


def dumps(data: dict) -> str:
    """Serialise nested dicts/lists/scalars as TOML (``None`` left out)."""
    return tomli_w.dumps(without_none(data))


def recipe_to_toml(recipe: Any) -> str:
    """The fully resolved recipe as TOML text."""
    data = recipe.model_dump(mode="json")
    for key in ("norm_cfg", "act_cfg"):
        if data.get(key) is None:
            data[key] = "none"
    dropped: list[str] = []
    body = tomli_w.dumps(without_none(data, dropped=dropped))
    header = f"# resolved by segkit from {getattr(recipe, '_source', '?')}\n"
    if dropped:
        header += "# left out (None; TOML has no null): " + ", ".join(dropped) + "\n"
    return header + body
