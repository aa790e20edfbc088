"""Loading recipes: TOML files, ``extends`` chains (cycles refused), ``--set`` overrides, validation."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import pydantic

from ..errors import RecipeError
from .errors import translate_validation_error
from .schema import Recipe

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def read_toml(path: Path) -> dict[str, Any]:
    """Read one TOML file; syntax errors name the file and line."""
    if not path.is_file():
        raise RecipeError("", f"recipe file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError("", f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError("", f"{path}: not a UTF-8 text file (byte {exc.start} cannot be decoded); a recipe is "
                              "TOML text") from None
    except OSError as exc:
        raise RecipeError("", f"cannot read recipe {path}: {exc.strerror}") from None


def deep_merge(base: dict, update: dict) -> dict:
    """Tables are merged key by key; arrays and scalars of ``update`` replace those of ``base``.

    A component table whose ``type`` changes replaces the base's table whole: the base's arguments belong to
    the other component (a ``ResNet``'s ``outstride`` means nothing to another backbone).
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("type", old.get("type")) == old.get("type"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def split_path(dotted: str) -> list[str | int]:
    """``auxiliary[1].dropout`` -> ``['auxiliary', 1, 'dropout']``."""
    parts: list[str | int] = []
    for name, index in _SEGMENT.findall(dotted):
        parts.append(int(index) if index else name)
    if not parts or "".join(str(p) for p in parts) == "":
        raise RecipeError("", f"--set: '{dotted}' is not a key path")
    return parts


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``scheduler.max_epochs=60`` -> (path, 60). Values are TOML; bare words are strings."""
    if "=" not in text:
        raise RecipeError("", f"--set '{text}': expected KEY.PATH=VALUE, e.g. --set scheduler.max_epochs=60")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return split_path(key.strip()), value


def set_in(data: dict, path: list[str | int], value: Any) -> None:
    """Set a nested value, creating tables on the way."""
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise RecipeError(_join(path[: i + 1]), "no such array element to override")
            node = node[part]
            continue
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise RecipeError(_join(path), "no such array element to override")
    node[last] = value


def _join(path: list[str | int] | tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def has_path(data: Any, path: tuple) -> bool:
    node = data
    for part in path:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def read_layers(path: Path, chain: tuple[Path, ...] = (), seen: set[Path] | None = None) -> list[tuple[str, dict]]:
    """``(file, table)`` for ``path`` and everything it extends, bases first (depth first, in ``extends`` order).

    A base may extend others (a user recipe on top of ``fcn_r50_voc.toml``, which extends its ``_base`` files);
    a file reached twice (two bases sharing a base) is merged once, at its first place; a cycle is an error that
    shows it.
    """
    seen = set() if seen is None else seen
    path = path.resolve()
    chain = (*chain, path)
    own = read_toml(path)
    extends = own.pop("extends", [])
    if isinstance(extends, str):
        extends = [extends]
    if not isinstance(extends, list):
        raise RecipeError("extends", "expected an array of recipe paths", source=str(path))
    layers: list[tuple[str, dict]] = []
    for i, base_name in enumerate(extends):
        if not isinstance(base_name, str) or not base_name:
            raise RecipeError(f"extends[{i}]", f"expected a recipe path (a string), got {base_name!r}",
                              source=str(path))
        base_path = (path.parent / base_name).resolve()
        if not base_path.is_file():
            raise RecipeError("extends", f"base recipe not found: {base_name} (looked at {base_path})", str(path))
        if base_path in chain:
            cycle = " -> ".join(p.name for p in (*chain[chain.index(base_path):], base_path))
            raise RecipeError("extends", f"recipes extend each other in a cycle: {cycle}", str(path))
        if base_path in seen:
            continue
        layers += read_layers(base_path, chain, seen)
    seen.add(path)
    layers.append((str(path), own))
    return layers


def resolve_raw(path: Path, overrides: list[str] = ()) -> tuple[dict, list[tuple[str, dict]]]:
    """Merge bases, the file and overrides; return the merged dict and the layers (name, data) in order."""
    layers = read_layers(path)
    layers[-1] = (str(path), layers[-1][1])  # the recipe as the user named it
    merged: dict = {}
    for _, data in layers:
        merged = deep_merge(merged, data)
    override_paths = []
    for text in overrides:
        key, value = parse_override(text)
        set_in(merged, key, value)
        override_paths.append(tuple(key))
    if override_paths:
        layers.append(("--set", {"__paths__": override_paths}))
    if "work_dir" not in merged:
        merged["work_dir"] = f"runs/{path.stem}"
    return merged, layers


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), work_dir: str | None = None,
                check_components: bool = True) -> Recipe:
    """Load, merge and validate a recipe. ``check_components`` also checks every component table."""
    path = Path(path)
    merged, layers = resolve_raw(path, list(overrides))
    if work_dir is not None:
        merged["work_dir"] = str(work_dir)
    try:
        recipe = Recipe.model_validate(merged)
    except pydantic.ValidationError as exc:
        raise translate_validation_error(exc, layers, Recipe) from None
    recipe._source = str(path)  # type: ignore[attr-defined]
    if check_components:
        from .check import check_components as _check

        try:
            _check(recipe)
        except RecipeError as exc:
            if exc.source is None:
                raise RecipeError(exc.path, exc.message, source=origin_of(exc.path, layers)) from None
            raise
    return recipe


def origin_of(dotted: str, layers: list[tuple[str, dict]]) -> str:
    """The last layer (file or ``--set``) that sets ``dotted``, for error messages."""
    path = tuple(split_path(dotted)) if dotted else ()
    for name, data in reversed(layers):
        if name == "--set":
            if any(path[: len(p)] == p or p[: len(path)] == path for p in data["__paths__"]):
                return name
            continue
        for cut in range(len(path), 0, -1):
            if has_path(data, path[:cut]):
                return name
    return layers[-1][0] if layers else ""
