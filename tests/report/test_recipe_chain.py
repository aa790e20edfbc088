"""extends chains (a user recipe on a recipe on bases), cycles refused, --print-recipe naming each key's file,
and recipes/folder_example.toml on a small folder dataset."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from segkit import api
from segkit.errors import RecipeError
from segkit.recipe import load_recipe
from segkit.recipe.sources import annotated_recipe
from tests.conftest import REPO


def write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


def test_chain_merges_in_order_and_names_sources(tiny_recipe, tmp_path):
    write(tmp_path, "middle.toml", f'extends = ["{tiny_recipe}"]\n[scheduler]\nmax_epochs = 7\n'
                                      "[head]\nfeats_channels = 24\n")
    top = write(tmp_path, "top.toml", 'extends = ["middle.toml"]\n[head]\nfeats_channels = 32\n')
    recipe = load_recipe(top, ["scheduler.optimizer.lr=0.5"])
    assert recipe.scheduler.max_epochs == 7 and recipe.head["feats_channels"] == 32
    assert recipe.backbone["base_channels"] == 16  # from the tiny recipe, two levels down
    text = annotated_recipe(top, ["scheduler.optimizer.lr=0.5"])

    def source(key_line: str) -> str:
        return re.search(rf"^{re.escape(key_line)}\s+# (.+)$", text, re.M).group(1)

    assert source("max_epochs = 7").endswith("middle.toml")
    assert source("feats_channels = 32").endswith("top.toml")
    assert source("lr = 0.5") == "--set"
    assert source('type = "FCN"').endswith("_base/segmentors/fcn.toml")
    assert source("base_channels = 16").endswith("tiny.toml")
    assert source("vis_samples = 4") == "default"


def test_cycles_are_refused(tmp_path):
    write(tmp_path, "a.toml", 'extends = ["b.toml"]\n')
    write(tmp_path, "b.toml", 'extends = ["c.toml"]\n')
    write(tmp_path, "c.toml", 'extends = ["a.toml"]\n')
    with pytest.raises(RecipeError, match=r"cycle: a\.toml -> b\.toml -> c\.toml -> a\.toml"):
        load_recipe(tmp_path / "a.toml")
    write(tmp_path, "self.toml", 'extends = ["self.toml"]\n')
    with pytest.raises(RecipeError, match=r"cycle: self\.toml -> self\.toml"):
        load_recipe(tmp_path / "self.toml")


def test_a_shared_base_is_merged_once(tiny_recipe, tmp_path):
    write(tmp_path, "left.toml", f'extends = ["{tiny_recipe}"]\n[scheduler]\nmax_epochs = 5\n')
    write(tmp_path, "right.toml", f'extends = ["{tiny_recipe}"]\n[scheduler.optimizer]\nlr = 0.3\n')
    top = write(tmp_path, "top.toml", 'extends = ["left.toml", "right.toml"]\n')
    recipe = load_recipe(top)
    # the tiny recipe (max_epochs = 2) is not merged again after left.toml
    assert recipe.scheduler.max_epochs == 5 and recipe.scheduler.optimizer.lr == 0.3


@pytest.fixture
def my_dataset(tmp_path):
    """Two train and one val image (JPEG) with label maps holding 0..2 and 255 (void)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "my_dataset"
    for split, ids in {"train": ["a", "b"], "val": ["c"]}.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for name in ids:
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), rng.integers(0, 255, (40, 56, 3), np.uint8))
            labels = rng.integers(0, 3, (40, 56)).astype(np.uint8)
            labels[:4] = 255
            cv2.imwrite(str(root / "annotations" / split / f"{name}.png"), labels)
    return root


def test_folder_example_recipe(my_dataset):
    recipe_path = REPO / "recipes" / "folder_example.toml"
    overrides = [f'dataset.rootdir="{my_dataset}"']
    recipe = load_recipe(recipe_path, overrides)
    assert recipe.dataset.type == "FolderDataset" and recipe.num_classes == 3
    assert recipe.backbone["structure_type"] == "resnet50conv3x3stem"  # from fcn_r50_voc.toml
    report = api.check_data(recipe_path, overrides)
    assert report["num_problems"] == 0 and report["splits"]["train"]["checked"] == 2
    from segkit.data.datasets.build import build_dataset

    val = build_dataset(recipe.dataset.model_dump(), mode="TEST", seed=0)
    target = val[0]["seg_target"].numpy()
    assert set(np.unique(target[:4])) == {-100} and set(np.unique(target[4:])) <= {0, 1, 2}
    sources = set(re.findall(r"# (\S+\.toml)$", annotated_recipe(recipe_path, overrides), re.M))
    assert {s.rsplit("recipes/", 1)[-1] for s in sources} >= {
        "folder_example.toml", "fcn_r50_voc.toml", "_base/segmentors/fcn.toml", "_base/dataloaders/bs16.toml"}
