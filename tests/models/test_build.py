"""models/build.py: path-qualified recipe errors, derived channels, injection, pretrained handling."""

from __future__ import annotations

import time

import pytest
from torch import nn

from segkit.errors import DownloadError, RecipeError
from segkit.models import build_segmentor, validate_model

from .helpers import CE, TINY_BACKBONE, make_recipe


def _error(recipe) -> str:
    with pytest.raises(RecipeError) as info:
        validate_model(recipe)
    return str(info.value)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"backbone": {**TINY_BACKBONE, "depht": 50}}, "backbone.depht: ResNet takes no 'depht'; did you mean 'depth'?"),
    ({"head": {"feats_channel": 16}}, "head.feats_channel: FCNHead takes no 'feats_channel'; did you mean "
                                      "'feats_channels'?"),
    ({"auxiliary": [{"out_channels": 8}, {"dropout": "high"}],
      "backbone": {**TINY_BACKBONE, "selected_indices": [1, 2, 3]}}, "auxiliary[1].dropout: "),
    ({"losses": {"loss_cls": CE, "loss_aux": {**CE, "scale_factr": 0.4}}},
     "losses.loss_aux.scale_factr: CrossEntropyLoss takes no 'scale_factr'; did you mean 'scale_factor'?"),
    ({"losses": {"loss_cls": [CE, {"type": "CrossEntropyLos"}], "loss_aux": CE}},
     "losses.loss_cls[1].type: unknown loss 'CrossEntropyLos'; did you mean 'CrossEntropyLoss'?"),
    ({"backbone": {**TINY_BACKBONE, "type": "ResNt"}}, "backbone.type: unknown backbone 'ResNt'; did you mean"),
    ({"type": "FCM"}, "type: unknown segmentor 'FCM'; did you mean 'FCN'?"),
    ({"backbone": {**TINY_BACKBONE, "outstride": 4}}, "backbone.outstride: "),
    ({"backbone": {**TINY_BACKBONE, "base_channels": "wide"}}, "backbone.base_channels: "),
    ({"backbone": {**TINY_BACKBONE, "depth": 50}}, "backbone.depth: depth=50 conflicts with structure_type"),
    ({"norm_cfg": {"type": "BatchNorm2d", "momentun": 0.1}}, "norm_cfg.momentun: BatchNorm2d takes no 'momentun'"),
    ({"backbone": {**TINY_BACKBONE, "norm_cfg": {"type": "GroupNorm"}}}, "backbone.norm_cfg.num_groups: "),
    ({"head": {"act_cfg": {"type": "ReLU7"}}}, "head.act_cfg.type: unknown activation 'ReLU7'; did you mean"),
    ({"head": {"type": "FCNHeat"}}, "head.type: unknown head 'FCNHeat'; did you mean 'FCNHead'?"),
    ({"head": {"in_index": [0, 9]}}, "head.in_index: 9 is out of range for 2 features"),
    ({"backbone": {**TINY_BACKBONE, "selected_indices": [2, 4]}}, "backbone.selected_indices: 4 is out of range"),
    ({"auxiliary": [{}, {}]}, "auxiliary: 2 auxiliary head(s) need as many features before the last one"),
    ({"head": {"num_convs": -1}}, "head.num_convs: num_convs must be >= 0"),
])
def test_recipe_errors_name_their_toml_path(overrides, expected):
    assert expected in _error(make_recipe(**overrides))


def test_in_channels_are_derived_and_checked():
    plan = validate_model(make_recipe())
    segmentor = build_segmentor(make_recipe())
    assert segmentor.head.convs[0].conv.in_channels == 64 and segmentor.aux_heads[0].convs[0].conv.in_channels == 32
    assert plan.feature_info.channels == [32, 64] and plan.output_names == ["out", "aux"]
    message = _error(make_recipe(head={"in_channels": 32}))
    assert message == "head.in_channels: 32 does not match the features it reads (in_index -1: 64 channels)"
    message = _error(make_recipe(auxiliary={"in_channels": 64}))
    assert message == "auxiliary.in_channels: 64 does not match the features it reads (in_index -2: 32 channels)"
    message = _error(make_recipe(head={"in_index": 5}))
    assert message.startswith("head.in_index: 5 is out of range for 2 features")


def test_fcn_r50_voc_mismatch_message():
    from .helpers import fcn_r50_voc_recipe

    recipe = fcn_r50_voc_recipe()
    recipe.head["in_channels"] = 1024
    assert _error(recipe) == "head.in_channels: 1024 does not match the features it reads (in_index -1: 2048 channels)"


def test_loss_keys_must_match_the_outputs():
    assert "losses: no loss supervises the output 'aux' of FCN" in _error(make_recipe(losses={"loss_cls": CE}))
    extra = _error(make_recipe(auxiliary=None))
    assert extra.startswith("losses.loss_aux: the FCN segmentor has no output 'aux' (its training outputs: out)")
    assert "losses.aux: loss names look like" in _error(make_recipe(losses={"loss_cls": CE, "aux": CE}))


def test_timm_model_name_typo_is_reported_at_its_path():
    recipe = make_recipe(backbone={"type": "TIMMBackbone", "model_name": "resnet81"})
    assert _error(recipe).startswith("backbone.model_name: unknown timm model 'resnet81'; did you mean 'resnet18'")


def test_recipe_norm_cfg_is_injected_into_the_backbone_and_heads():
    segmentor = build_segmentor(make_recipe(norm_cfg={"type": "GroupNorm", "num_groups": 4}))
    assert isinstance(segmentor.backbone.layer1[0].bn1, nn.GroupNorm)
    assert isinstance(segmentor.head.convs[0].norm, nn.GroupNorm)
    explicit = build_segmentor(make_recipe(backbone={**TINY_BACKBONE, "norm_cfg": {"type": "BatchNorm2d"}},
                                           norm_cfg={"type": "GroupNorm", "num_groups": 4}))
    assert isinstance(explicit.backbone.layer1[0].bn1, nn.BatchNorm2d)


def test_validation_downloads_nothing_and_pretrained_false_skips_the_weights(no_network, hub_dir):
    recipe = make_recipe(backbone={**TINY_BACKBONE, "pretrained": True})
    validate_model(recipe)  # no DownloadError: validation never loads weights
    assert build_segmentor(recipe, pretrained=False) is not None
    start = time.monotonic()
    with pytest.raises(DownloadError, match="resnet18-5c106cde.pth"):
        build_segmentor(recipe)
    assert time.monotonic() - start < 5


def test_unknown_pretrained_structure_is_caught_when_building():
    recipe = make_recipe(backbone={**TINY_BACKBONE, "structure_type": "resnet34conv3x3stem", "pretrained": True})
    with pytest.raises(RecipeError, match="backbone.pretrained: no official weights for structure_type "
                                          "'resnet34conv3x3stem'"):
        build_segmentor(recipe)


def test_auxiliary_tables_only_name_auxiliary_heads():
    message = _error(make_recipe(auxiliary={"type": "FCNHead"}))
    assert message == "auxiliary.type: FCNHead is not an auxiliary head (use AuxiliaryHead)"


def test_missing_pretrained_file_is_reported_at_validation(tmp_path):
    recipe = make_recipe(backbone={**TINY_BACKBONE, "pretrained": True,
                                   "pretrained_model_path": str(tmp_path / "r18.pth")})
    assert _error(recipe) == f"backbone.pretrained_model_path: no such file: {tmp_path / 'r18.pth'}"


def test_pretrained_false_ignores_an_absent_pretrained_file(tmp_path, no_network):
    recipe = make_recipe(backbone={**TINY_BACKBONE, "pretrained": True,
                                   "pretrained_model_path": str(tmp_path / "elsewhere.pth")})
    validate_model(recipe, pretrained=False)
    assert build_segmentor(recipe, pretrained=False) is not None


def test_ssseg_in_channels_list_is_a_check_for_heads_that_take_in_channels():
    ok = make_recipe(head={"in_channels_list": 64, "feats_channels": 8})
    assert build_segmentor(ok).head.convs[0].conv.in_channels == 64
    message = _error(make_recipe(head={"in_channels_list": 32}))
    assert message.startswith("head.in_channels_list: 32 does not match the features it reads (64 channels)")


def test_pretrained_false_reaches_nested_backbone_tables(no_network):
    recipe = make_recipe(backbone={"type": "BiSeNetV1", "pretrained": False,
                                   "backbone_cfg": {"type": "ResNet", "structure_type": "resnet18conv3x3stem",
                                                    "outstride": 32, "pretrained": True},
                                   "selected_indices": [0, 1, 2]},
                         auxiliary=None, losses={"loss_cls": CE})
    assert build_segmentor(recipe, pretrained=False) is not None  # no DownloadError for the context path
