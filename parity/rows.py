"""What the parity check compares: recipes with their SSSegmentation configs, and SSSeg's distinct backbone tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import ssseg_side

HEADER = re.compile(r"SSSegmentation's\s+([A-Za-z0-9_.\-]+?)[:,\s]")
"""A recipe that lives outside ``recipes/<ssseg dir>/`` names its config in a comment (``# SSSegmentation's
fcn_resnet50os8_voc: ...``)."""

SKIPPED_RECIPE_DIRS = {"_base"}


@dataclass
class RecipeRow:
    recipe: str  # "recipes/fcn/fcn_resnet50os8_voc.toml", relative to the repository root
    config: str | None  # "fcn/fcn_resnet50os8_voc"


@dataclass
class BackboneRow:
    name: str  # "ResNet:resnet50conv3x3stem(outstride=8)"
    config: str  # the first config that uses the table
    used_by: int  # how many configs use it
    table: dict


def recipe_rows(repo: Path, configs: list[str]) -> list[RecipeRow]:
    """Every recipe file; ``config`` is its SSSegmentation config (``None`` when it has none)."""
    by_stem: dict[str, list[str]] = {}
    for name in configs:
        by_stem.setdefault(name.split("/")[1], []).append(name)
    rows = []
    for path in sorted((repo / "recipes").rglob("*.toml")):
        rel = path.relative_to(repo)
        if SKIPPED_RECIPE_DIRS & set(rel.parts):
            continue
        config = None
        if len(rel.parts) == 3 and f"{rel.parts[1]}/{path.stem}" in configs:
            config = f"{rel.parts[1]}/{path.stem}"
        else:
            match = HEADER.search(path.read_text(encoding="utf-8")[:2000])
            if match and len(by_stem.get(match.group(1).removesuffix(".py"), [])) == 1:
                config = by_stem[match.group(1).removesuffix(".py")][0]
        rows.append(RecipeRow(rel.as_posix(), config))
    return rows


def backbone_rows(configs: list[str]) -> list[BackboneRow]:
    """One row per distinct backbone table among ``configs`` (loaded with SSSegmentation's config files)."""
    tables: dict[str, tuple[dict, list[str]]] = {}
    for name in configs:
        cfg = ssseg_side.load_config(name)
        if "backbone" not in cfg:
            continue
        table = ssseg_side.backbone_table(cfg)
        key = ssseg_side.backbone_key(table)
        tables.setdefault(key, (table, []))[1].append(name)
    groups: dict[str, list[str]] = {}
    for key, (table, _) in tables.items():
        groups.setdefault(_base_name(table), []).append(key)
    rows = []
    for base, keys in groups.items():
        for key in keys:
            table, users = tables[key]
            name = base
            if len(keys) > 1:
                differing = _differing({k: tables[k][0] for k in keys}, key)
                name = f"{base}({differing[0]})"
            rows.append(BackboneRow(name, users[0], len(users), table))
    return sorted(rows, key=lambda r: r.name)


def _base_name(table: dict) -> str:
    return f"{table.get('type')}:{table.get('structure_type', '')}"


def _differing(tables: dict[str, dict], key: str) -> list[str]:
    """``k=v`` for the keys of ``tables[key]`` whose values are not the same in all ``tables``."""
    mine = tables[key]
    names = sorted({k for t in tables.values() for k in t} - set(ssseg_side.EVAL_IRRELEVANT))
    out = []
    for k in names:
        values = {repr(t.get(k)) for t in tables.values()}
        if len(values) > 1:
            out.append(f"{k}={_short(mine.get(k))}")
    return out


def _short(value) -> str:
    if isinstance(value, dict) and "structure_type" in value:
        return str(value["structure_type"])
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)
