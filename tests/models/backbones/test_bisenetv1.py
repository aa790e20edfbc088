"""BiSeNetV1: context path on an inner ResNet built through BACKBONES, size, output order, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.models.backbones import ResNet
from segkit.models.backbones.bisenetv1 import BiSeNetV1
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params

R18 = {"type": "ResNet", "structure_type": "resnet18conv3x3stem", "outstride": 32, "pretrained": False}
SLIM_R18 = {"type": "ResNet", "depth": 18, "base_channels": 8, "stem_channels": 8, "outstride": 32,
            "pretrained": False}
SMALL = {"spatial_channels_list": (8, 8, 8, 16), "context_channels_list": (16, 32, 64), "out_channels": 32,
         "backbone_cfg": SLIM_R18}


def bisenet(**kwargs) -> BiSeNetV1:
    return BiSeNetV1(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def expected_bisenet_parts() -> int:
    """Yu et al. 2018 with SSSegmentation's default widths: spatial path 7x7/3x3/3x3/1x1 conv-BN (64, 64, 64, 128);
    ARMs on 256 and 512 channels (3x3 conv-BN to 128, 1x1 attention conv-BN); two 3x3 heads; the global 1x1
    conv-BN 512 -> 128; the fusion module 256 -> 256 (1x1 conv-BN, 1x1 attention conv-BN)."""
    spatial = (conv_params(3, 64, 7) + 2 * conv_params(64, 64, 3) + conv_params(64, 128)
               + 3 * norm_params(64) + norm_params(128))
    arms = sum(conv_params(c, 128, 3) + conv_params(128, 128) + 2 * norm_params(128) for c in (256, 512))
    heads = 2 * (conv_params(128, 128, 3) + norm_params(128)) + conv_params(512, 128) + norm_params(128)
    fusion = 2 * (conv_params(256, 256) + norm_params(256))
    return spatial + arms + heads + fusion


def test_size_is_the_inner_resnet_plus_the_bisenet_modules():
    with torch.device("meta"):
        model = bisenet(backbone_cfg=R18)
        resnet18 = ResNet(structure_type="resnet18conv3x3stem", outstride=32, norm_cfg=BN, pretrained=False)
    assert count_parameters(model) == count_parameters(resnet18) + expected_bisenet_parts()
    assert count_parameters(model) == 12_699_552


def test_outputs_come_by_stride_with_ssseg_numbering_in_out_indices():
    model = bisenet(**SMALL).eval()
    assert [i["module"] for i in model.feature_info] == ["context_path.conv_head16", "ffm",
                                                         "context_path.conv_head32"]
    assert model.strides == [8, 8, 16] and model.out_channels == [16, 32, 16]
    x = images(2, 64)
    with torch.no_grad():
        outputs = model(x)
        fused_only = bisenet(**SMALL, out_indices=(2,)).eval()
        fused_only.load_state_dict(model.state_dict())
        assert torch.equal(fused_only(x)[0], outputs[1])
    assert [tuple(o.shape[1:]) for o in outputs] == [(16, 8, 8), (32, 8, 8), (16, 4, 4)]


def test_inner_backbone_gets_the_norm_unless_it_sets_its_own_and_keeps_sssegs_keys():
    model = bisenet(**SMALL, norm_cfg={"type": "GroupNorm", "num_groups": 2})
    assert isinstance(model.context_path.backbone_net.stem[1], nn.GroupNorm)
    own = bisenet(**{**SMALL, "backbone_cfg": {**SLIM_R18, "norm_cfg": BN}},
                  norm_cfg={"type": "GroupNorm", "num_groups": 2})
    assert isinstance(own.context_path.backbone_net.stem[1], nn.BatchNorm2d)
    keys = set(bisenet(**SMALL).state_dict())
    assert {"context_path.backbone_net.stem.0.weight", "context_path.backbone_net.layer4.1.bn2.weight",
            "context_path.arm16.conv_layer.0.weight", "context_path.arm32.atten_conv_layer.2.weight",
            "context_path.gap_conv.1.weight", "context_path.conv_head32.1.weight", "spatial_path.layer1.0.weight",
            "spatial_path.layer4.1.running_mean", "ffm.conv1.0.weight", "ffm.conv_atten.1.bias"} <= keys


def test_inner_backbone_errors_name_the_nested_key():
    with pytest.raises(ArgumentError, match="ResNet takes no 'depht'") as info:
        bisenet(**{**SMALL, "backbone_cfg": {**SLIM_R18, "depht": 18}})
    assert str(info.value.at("backbone")).startswith("backbone.backbone_cfg.depht:")
    with pytest.raises(ArgumentError) as info:
        bisenet(**{**SMALL, "backbone_cfg": {**SLIM_R18, "depth": 34, "structure_type": "resnet18"}})
    assert info.value.argument == "backbone_cfg.depth"


def test_context_channels_must_match_the_inner_backbone():
    with pytest.raises(ArgumentError, match=r"context_channels_list: .* \[32, 64\], got \[16, 256, 512\]"):
        bisenet(**{**SMALL, "context_channels_list": (16, 256, 512)})


def test_the_context_backbone_needs_stride_32_outputs():
    with pytest.raises(ArgumentError, match="backbone_cfg: the context path needs"):
        bisenet(**{**SMALL, "backbone_cfg": {**SLIM_R18, "out_indices": (2, 3)}})
