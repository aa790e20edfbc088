"""Every shipped recipe loads; those of registered segmentor types validate and build (on the meta device).

``recipes/<dir>/<name>.toml`` are SSSegmentation 1.7.0's 444 configs, converted by ``scripts/ssseg_recipes.py``;
their headers give SSSegmentation's published result and the command that trains them. A recipe whose segmentor
type segkit does not have yet only has to load (TOML, extends, the recipe schema).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from segkit import SEGMENTORS
from segkit.models.build import build_segmentor
from segkit.models.pretrained import skip_loading
from segkit.recipe import load_recipe
from segkit.recipe.load import resolve_raw

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
ALL = sorted(p for p in RECIPES.rglob("*.toml") if "_base" not in p.relative_to(RECIPES).parts)
CONVERTED = [p for p in ALL if p.parent != RECIPES]  # recipes/<ssseg dir>/<config>.toml

# SSSegmentation 1.7.0: 444 configs in 48 dirs. Its model zoo has no row for one of them (mcibiplusplus R-50 VSPW)
# and a blank metric cell for 15: 12 UNet rows (DRIVE and the CE+Dice variants) and the 3 MobileViT(V2) VOC+COCO rows.
N_CONFIGS, N_DIRS, N_WITHOUT_RESULT = 444, 48, 16
REPORTED = re.compile(r"^# Reported: (?P<text>.+)$", re.M)
# the tables that make the model; recipes equal in these build the same model but for the classifiers' width
MODEL_KEYS = ("type", "align_corners", "norm_cfg", "act_cfg", "backbone", "neck", "head", "auxiliary", "losses",
              "criterion", "is_freeze_norm")
BUILT: set[str] = set()
RESULT = re.compile(r"\b(mIoU|mDice)[^,]* \d+(\.\d+)?%?")  # two of SSSeg's rows give no '%'


def rel(path: Path) -> str:
    return str(path.relative_to(RECIPES))


@pytest.mark.parametrize("path", ALL, ids=rel)
def test_recipe_loads_and_registered_models_build(path: Path) -> None:
    merged, _ = resolve_raw(path)
    if merged["type"] not in SEGMENTORS:
        recipe = load_recipe(path, check_components=False)  # the segmentor type is not implemented yet
        assert recipe.type == merged["type"]
        return
    recipe = load_recipe(path)  # the schema and every component table (dataset, pipelines, optimizer, model)
    key = json.dumps({k: merged.get(k) for k in MODEL_KEYS}, sort_keys=True)
    if key in BUILT:  # the same model but for num_classes (VOC / ADE20k / Cityscapes variants): built already
        return
    # build_segmentor runs validate_model(recipe, pretrained=False) first, then builds; nested backbones
    # (BiSeNetV1's backbone_cfg) may still say pretrained, hence skip_loading
    with torch.device("meta"), skip_loading():
        model = build_segmentor(recipe, pretrained=False)
    assert sum(p.numel() for p in model.parameters()) > 0
    BUILT.add(key)


@pytest.mark.parametrize("path", CONVERTED, ids=rel)
def test_converted_recipe_header_names_result_and_command(path: Path) -> None:
    text = path.read_text()
    header = text.split("\n\n", 1)[0]
    match = REPORTED.search(header)
    assert match, f"{rel(path)}: no '# Reported:' line in the header"
    reported = match.group("text")
    assert RESULT.search(reported) or reported.startswith("none: "), reported
    command = re.search(r"segkit train (\S+) --gpus (\d+)", header)
    assert command and command.group(1) == f"recipes/{rel(path)}", f"{rel(path)}: no matching train command"
    assert "segkit prepare-data " in header and 1 <= int(command.group(2)) <= 8
    assert f'work_dir = "runs/{path.stem}"' in text


def test_every_ssseg_config_has_a_recipe() -> None:
    assert len(CONVERTED) == N_CONFIGS
    assert len({p.parent for p in CONVERTED}) == N_DIRS
    without = [rel(p) for p in CONVERTED if "# Reported: none: " in p.read_text()]
    assert len(without) == N_WITHOUT_RESULT, without


def test_fcn_family_is_registered_and_complete() -> None:
    """The FCN family (types FCN and DepthwiseSeparableFCN) is the first that must validate in full."""
    fcn = [p for p in CONVERTED if resolve_raw(p)[0]["type"] in ("FCN", "DepthwiseSeparableFCN")]
    assert len(fcn) == 35
    assert "FCN" in SEGMENTORS
