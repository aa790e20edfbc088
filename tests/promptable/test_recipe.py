"""A training recipe naming a SAM-family type exits 2 and says how to use the promptable model instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segkit.errors import RecipeError
from segkit.promptable.registry import FAMILIES

REPO = Path(__file__).resolve().parents[2]


def write_recipe(tmp_path: Path, type_name: str) -> Path:
    recipe = tmp_path / f"{type_name.lower()}.toml"
    recipe.write_text(f'extends = ["{REPO}/recipes/_base/datasets/synthetic.toml"]\ntype = "{type_name}"\n'
                      'num_classes = 2\n[backbone]\ntype = "SAMViT"\n')
    return recipe


@pytest.mark.parametrize("type_name", sorted(FAMILIES))
def test_promptable_type_in_a_recipe_is_a_recipe_error(tmp_path, type_name):
    from segkit import load_recipe
    from segkit.models.build import build_segmentor

    with pytest.raises(RecipeError) as info:
        build_segmentor(load_recipe(write_recipe(tmp_path, type_name)), pretrained=False)
    assert info.value.path == "type"
    assert "promptable" in info.value.message and "segkit infer --model" in info.value.message
    assert "load_promptable" in info.value.message


def test_segkit_train_exits_2_for_sam(tmp_path):
    result = subprocess.run([sys.executable, "-m", "segkit", "train", str(write_recipe(tmp_path, "SAM")),
                             "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "sam_vit_b" in result.stderr and "Traceback" not in result.stderr
