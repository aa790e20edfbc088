"""Recipes: TOML files validated by pydantic, mirroring SSSegmentation's SEGMENTOR_CFG."""

from .load import load_recipe  # noqa: F401
from .schema import Recipe  # noqa: F401
from .toml_write import recipe_to_toml  # noqa: F401
