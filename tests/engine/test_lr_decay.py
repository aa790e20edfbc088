"""Layer-wise LR decay (SSSegmentation's LearningRateDecayParamsConstructor): layer ids from parameter names for
ViT/BEiT/MAE and ConvNeXt naming, multipliers d ** (L + 2 - id - 1), no weight decay for 1-D params, biases,
pos_embed and cls_token (which SSSegmentation gets wrong, facts §12.2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.engine.lr_decay import convnext_layer_id, convnext_stage_id, lr_decay_param_groups, vit_layer_id
from segkit.models.backbones.beit import MAE


class Segmentor(nn.Module):
    """A backbone and a head, named as segkit's segmentors name them."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(16, 3, 1)


def by_name(groups: list[dict]) -> dict[str, dict]:
    return {name: group for group in groups for name in group["param_names"]}


def test_vit_layer_ids_multipliers_and_weight_decay():
    model = Segmentor(MAE(img_size=32, patch_size=16, embed_dims=16, num_layers=4, num_heads=2, out_indices=3,
                          pretrained=False))
    groups = lr_decay_param_groups(model, lr=1e-4, weight_decay=0.05, num_layers=4, decay_rate=0.65,
                                   decay_type="layer_wise_vit")
    named = by_name(groups)
    assert {n for n, p in model.named_parameters()} == set(named)
    expected_ids = {"backbone.cls_token": 0, "backbone.pos_embed": 0, "backbone.patch_embed.projection.weight": 0,
                    "backbone.layers.0.attn.qkv.weight": 1, "backbone.layers.3.ffn.layers.1.weight": 4,
                    "head.weight": 5, "head.bias": 5}
    for name, layer_id in expected_ids.items():
        group = named[name]
        assert group["layer_id"] == layer_id, name
        assert group["lr_multiplier"] == pytest.approx(0.65 ** (4 + 2 - layer_id - 1))
        assert group["lr"] == pytest.approx(1e-4 * group["lr_multiplier"])
    assert named["backbone.pos_embed"]["weight_decay"] == named["backbone.cls_token"]["weight_decay"] == 0.0
    assert named["backbone.layers.0.ln1.weight"]["weight_decay"] == 0.0  # 1-D
    assert named["head.bias"]["weight_decay"] == 0.0
    assert named["backbone.layers.0.attn.qkv.weight"]["weight_decay"] == 0.05
    assert named["backbone.layers.0.attn.relative_position_bias_table"]["weight_decay"] == 0.05  # 2-D, as SSSeg
    assert named["head.weight"]["lr_multiplier"] == 1.0
    assert {g["group_name"] for g in groups} >= {"layer_0_no_decay", "layer_0_decay", "layer_5_decay"}


def test_groups_work_with_a_torch_optimizer_and_skip_frozen_parameters():
    model = Segmentor(nn.Module())
    model.backbone.patch_embed = nn.Linear(4, 4)
    model.backbone.patch_embed.bias.requires_grad_(False)
    groups = lr_decay_param_groups(model, lr=0.1, weight_decay=0.01, num_layers=2, decay_rate=0.5)
    optimizer = torch.optim.AdamW(groups, lr=0.1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1 * 0.5 ** 3, 0.1, 0.1]
    assert sum(len(g["params"]) for g in groups) == 3  # the frozen bias is left out


def test_bare_backbone_and_timm_block_names():
    assert vit_layer_id("blocks.7.attn.qkv.weight", 12) == 8
    assert vit_layer_id("neck.0.weight", 12) == 13
    assert vit_layer_id(None, 12) == 13
    backbone = nn.Module()
    backbone.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
    backbone.blocks = nn.ModuleList([nn.Linear(8, 8)])
    named = by_name(lr_decay_param_groups(backbone, 1.0, 0.1, num_layers=1, decay_rate=0.5))
    assert named["pos_embed"]["layer_id"] == 0 and named["pos_embed"]["weight_decay"] == 0.0
    assert named["blocks.0.weight"]["lr_multiplier"] == 0.5


@pytest.mark.parametrize(("name", "layer_id", "stage_id"), [
    ("downsample_layers.0.0.weight", 0, 0), ("downsample_layers.1.1.weight", 2, 0),
    ("downsample_layers.2.1.weight", 3, 0), ("downsample_layers.3.1.weight", 12, 0),
    ("stages.0.2.pwconv1.weight", 1, 1), ("stages.1.0.gamma", 2, 2), ("stages.2.0.dwconv.weight", 3, 3),
    ("stages.2.26.dwconv.weight", 3 + 26 // 3, 3), ("stages.3.1.pwconv2.weight", 12, 4), ("norm3.weight", 13, 13),
    # timm's names
    ("stem.0.weight", 0, 0), ("stages.2.downsample.1.weight", 3, 0), ("stages.2.blocks.7.conv_dw.weight", 5, 3),
])
def test_convnext_layer_and_stage_ids(name, layer_id, stage_id):
    assert convnext_layer_id(name, 12) == layer_id
    assert convnext_stage_id(name, 12) == stage_id


def test_convnext_decay_types_pick_the_convnext_rules():
    backbone = nn.Module()
    backbone.downsample_layers = nn.ModuleList([nn.Conv2d(3, 4, 4)])
    backbone.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 1))])
    model = Segmentor(backbone)
    layer_wise = by_name(lr_decay_param_groups(model, 1.0, 0.05, num_layers=12, decay_rate=0.9,
                                               decay_type="layer_wise"))
    assert layer_wise["backbone.stages.0.0.weight"]["lr_multiplier"] == pytest.approx(0.9 ** 12)
    stage_wise = by_name(lr_decay_param_groups(model, 1.0, 0.05, num_layers=12, decay_rate=0.9,
                                               decay_type="stage_wise"))
    assert stage_wise["backbone.downsample_layers.0.weight"]["lr_multiplier"] == pytest.approx(0.9 ** 13)
    assert stage_wise["backbone.stages.0.0.weight"]["lr_multiplier"] == pytest.approx(0.9 ** 12)
    assert stage_wise["head.weight"]["lr_multiplier"] == 1.0
    with pytest.raises(ValueError, match="stage_wise"):
        lr_decay_param_groups(Segmentor(nn.Linear(2, 2)), 1.0, 0.0, 12, 0.9, decay_type="stage_wise")
    with pytest.raises(ValueError, match="decay_type"):
        lr_decay_param_groups(model, 1.0, 0.0, 12, 0.9, decay_type="block_wise")
