"""Which file set each key: the resolved recipe as TOML with the source of every value beside it.

``segkit train RECIPE --print-recipe`` shows it, so a reader of a chain of ``extends`` never hunts for where a
value came from. A key no file sets is marked ``default`` (the schema's or a component's default, or derived).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .load import has_path, load_recipe, resolve_raw
from .toml_write import recipe_to_toml

_ARRAY_TABLE = re.compile(r"^\[\[(.+)\]\]$")
_TABLE = re.compile(r"^\[(.+)\]$")
_KEY = re.compile(r'^("(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+) = ')
_PART = re.compile(r'"(?:[^"\\]|\\.)*"|[^.]+')


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(json.loads(p) if p.startswith('"') else p for p in _PART.findall(dotted.strip()))


def source_of(path: tuple, layers: list[tuple[str, dict]]) -> str | None:
    """The last layer that sets ``path``: a file or ``--set`` (an override of a table or array sets what is in
    it); inside an array of tables, the layer that set the array. ``None`` if no layer sets it."""
    first_index = next((i for i, part in enumerate(path) if isinstance(part, int)), None)
    holder = path[:first_index] if first_index is not None else path
    for name, data in reversed(layers):
        if name == "--set":
            if any(path[: len(p)] == p for p in data["__paths__"]):
                return "--set"
        elif has_path(data, holder):
            return name
    return None


def _short(name: str) -> str:
    if name in ("--set", "--work-dir"):
        return name
    try:
        return os.path.relpath(name)
    except ValueError:  # another drive (Windows)
        return name


def annotated_recipe(path: str | Path, overrides: list[str] = (), work_dir: str | None = None) -> str:
    """The resolved recipe's TOML with ``# <source>`` after every key."""
    recipe = load_recipe(path, list(overrides), work_dir=work_dir)
    _, layers = resolve_raw(Path(path), list(overrides))
    if work_dir is not None:
        layers.append(("--work-dir", {"work_dir": work_dir}))
    lines = recipe_to_toml(recipe).splitlines()
    width = min(max((len(line) for line in lines), default=0), 70) + 2
    table: tuple = ()
    counters: dict[tuple, int] = {}
    out = []
    for line in lines:
        if match := _ARRAY_TABLE.match(line):
            parts = _parts(match.group(1))
            counters[parts] = counters.get(parts, -1) + 1
            table = (*parts, counters[parts])
            out.append(line)
            continue
        if match := _TABLE.match(line):
            table = _parts(match.group(1))
            out.append(line)
            continue
        if match := _KEY.match(line):
            key = match.group(1)
            key = json.loads(key) if key.startswith('"') else key
            source = source_of((*table, key), layers)
            out.append(f"{line.ljust(width)}# {_short(source) if source else 'default'}")
            continue
        out.append(line)
    return "\n".join(out) + "\n"
