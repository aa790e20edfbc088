"""The resolved recipe is written by tomli-w: it reads back equal, whatever the characters; None is listed."""

from __future__ import annotations

import sys

from segkit.recipe import load_recipe, recipe_to_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_round_trip_with_characters_outside_the_bmp(tiny_recipe, tmp_path):
    tricky = str(tmp_path / 'runs/背景 🟢 "quoted" back\\slash\ttab \U0001F48D')
    recipe = load_recipe(tiny_recipe, work_dir=tricky)
    text = recipe_to_toml(recipe)
    assert tomllib.loads(text)["work_dir"] == tricky
    written = tmp_path / "recipe.toml"
    written.write_text(text, encoding="utf-8")
    again = load_recipe(written)
    assert again.model_dump(mode="json") == recipe.model_dump(mode="json")


def test_none_values_are_listed(tiny_recipe):
    text = recipe_to_toml(load_recipe(tiny_recipe))
    header = [line for line in text.splitlines() if line.startswith("# left out")]
    assert header and "neck" in header[0] and "ema_cfg.momentum" in header[0]
    assert "neck" not in tomllib.loads(text)
