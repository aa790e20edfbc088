"""Recipes: extends, --set, strict path-qualified errors, derived values, the resolved TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.errors import RecipeError
from segkit.recipe import load_recipe, recipe_to_toml
from segkit.recipe.load import deep_merge, parse_override

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_extends_merges_tables_and_replaces_arrays(tiny_recipe):
    rec = load_recipe(tiny_recipe)
    assert rec.type == "FCN"                                   # from the base
    assert rec.backbone["depth"] == 18                         # the file overrides the base
    assert rec.backbone["selected_indices"] == [2, 3]          # kept from the base (deep merge)
    assert rec.losses["loss_aux"]["scale_factor"] == 0.4
    assert [p["type"] for p in rec.dataset.test["data_pipelines"]] == ["Normalize", "ToTensor"]


def test_deep_merge_rules():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    out = deep_merge(base, {"a": {"y": [3]}, "c": 2})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base["a"]["y"] == [1, 2]  # inputs are not mutated
    swapped = deep_merge({"b": {"type": "ResNet", "depth": 50}}, {"b": {"type": "Other", "width": 2}})
    assert swapped == {"b": {"type": "Other", "width": 2}}  # a new type replaces the table whole


def test_set_overrides_are_toml_values(tiny_recipe):
    rec = load_recipe(tiny_recipe, ["scheduler.max_epochs=7", "backbone.outstride=16", "work_dir=runs/x",
                                    "inference.tta.multiscale=[0.5, 1.0]"])
    assert rec.scheduler.max_epochs == 7 and rec.backbone["outstride"] == 16
    assert rec.work_dir == "runs/x" and rec.inference.tta.multiscale == [0.5, 1.0]
    assert parse_override("auxiliary[0].dropout=0.2") == (["auxiliary", 0, "dropout"], 0.2)


def test_unknown_key_names_path_and_suggestion(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ["scheduler.max_epoch=3"])
    assert exc.value.path == "scheduler.max_epoch"
    assert "did you mean 'max_epochs'" in str(exc.value)
    assert "--set" in str(exc.value)  # the layer that introduced the key


def test_unknown_component_argument(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ["backbone.depht=50"])
    assert exc.value.path == "backbone.depht"
    assert "did you mean 'depth'" in str(exc.value)


def test_wrong_type_names_path(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ['scheduler.max_epochs="ten"'])
    assert exc.value.path == "scheduler.max_epochs"
    assert "ten" in str(exc.value)


def test_unknown_component_type_lists_close_match(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ['backbone.type="ResNett"'])
    assert exc.value.path == "backbone.type" and "did you mean 'ResNet'" in str(exc.value)


def test_pipeline_argument_error_path(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ["dataset.train.data_pipelines[0].prb=0.5"])
    assert exc.value.path == "dataset.train.data_pipelines[0].prb"


def test_in_channels_checked_against_backbone(tiny_recipe):
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ["head.in_channels=2048"])
    assert exc.value.path == "head.in_channels"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(write(tmp_path, "type = \n"))


def test_bases_may_extend_but_not_in_a_cycle(tmp_path):  # chains: tests/report/test_recipe_chain.py
    write(tmp_path, 'extends = ["r.toml"]\n', "b.toml")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(write(tmp_path, 'extends = ["b.toml"]\n'))


def test_resolved_toml_round_trips(tiny_recipe, tmp_path):
    rec = load_recipe(tiny_recipe, ["norm_cfg=\"none\""])
    assert rec.norm_cfg is None
    text = recipe_to_toml(rec)
    again = load_recipe(write(tmp_path, text, "resolved.toml"), check_components=False)
    assert again.model_dump() == rec.model_dump()


def test_shipped_recipes_validate():
    for path in ["recipes/quickstart.toml", "recipes/fcn_r50_voc.toml"]:
        rec = load_recipe(REPO / path)
        assert rec.type == "FCN"


def test_unknown_metric_name_is_a_recipe_error(tiny_recipe):
    assert load_recipe(tiny_recipe, ['inference.evaluate.metric_list=["dice", "mdice", "all_accuracy"]'])
    with pytest.raises(RecipeError) as exc:
        load_recipe(tiny_recipe, ['inference.evaluate.metric_list=["iou", "mious"]'])
    assert exc.value.path == "inference.evaluate.metric_list" and "did you mean 'miou'" in str(exc.value)
