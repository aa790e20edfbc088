"""BiSeNetV2: size from the paper's layer table, output order, key layout, errors."""

from __future__ import annotations

import pytest
import torch

from segkit.models.backbones.bisenetv2 import BiSeNetV2
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params

SMALL = {"detail_channels": (8, 8, 16), "semantic_channels": (4, 8, 16, 16), "semantic_expansion_ratio": 2,
         "bga_channels": 16}


def bisenet(**kwargs) -> BiSeNetV2:
    return BiSeNetV2(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def conv_bn(i: int, o: int, k: int = 3, groups: int = 1) -> int:
    return conv_params(i, o, k, groups=groups) + norm_params(o)


def gather_expansion(i: int, o: int, stride: int, expand: int = 6) -> int:
    mid = i * expand
    total = conv_bn(i, i) + conv_bn(i, mid, groups=i) + conv_bn(mid, o, 1)
    if stride == 2:
        total += conv_bn(mid, mid, groups=mid) + conv_bn(i, i, groups=i) + conv_bn(i, o, 1)  # + shortcut
    return total


def expected_bisenetv2_parameters() -> int:
    """Yu et al. 2020, Tables 1-2: detail branch 64/64/128 (2, 3, 3 convs), stem 16, GE stages 32/64/128 (2, 2, 4
    layers, expansion 6), context embedding, guided aggregation at 128 channels."""
    detail = conv_bn(3, 64) + conv_bn(64, 64) + 3 * conv_bn(64, 64) + conv_bn(64, 128) + 2 * conv_bn(128, 128)
    stem = conv_bn(3, 16) + conv_bn(16, 8, 1) + conv_bn(8, 16) + conv_bn(32, 16)
    stages = (gather_expansion(16, 32, 2) + gather_expansion(32, 32, 1) + gather_expansion(32, 64, 2)
              + gather_expansion(64, 64, 1) + gather_expansion(64, 128, 2) + 3 * gather_expansion(128, 128, 1))
    context = norm_params(128) + conv_bn(128, 128, 1) + conv_bn(128, 128)
    aggregation = 2 * (conv_bn(128, 128, groups=128) + conv_params(128, 128)) + 3 * conv_bn(128, 128)
    return detail + stem + stages + context + aggregation


def test_default_size_matches_the_layer_table():
    assert count_parameters(bisenet()) == expected_bisenetv2_parameters() == 2_157_456


def test_outputs_come_by_stride_with_ssseg_numbering_in_out_indices():
    model = bisenet(**SMALL).eval()
    assert [i["module"] for i in model.feature_info] == ["semantic.stage1", "semantic.stage2", "bga",
                                                         "semantic.stage3", "semantic.stage4"]
    assert model.strides == [4, 8, 8, 16, 32] and model.out_channels == [4, 8, 16, 16, 16]
    x = images(2, 64)
    with torch.no_grad():
        outputs = model(x)
        bga_only = bisenet(**SMALL, out_indices=(4,)).eval()
        bga_only.load_state_dict(model.state_dict())
        assert torch.equal(bga_only(x)[0], outputs[2])  # SSSegmentation's output 4 (the head's input)
    assert [tuple(o.shape[1:]) for o in outputs] == [(4, 16, 16), (8, 8, 8), (16, 8, 8), (16, 4, 4), (16, 2, 2)]


def test_key_layout_is_sssegmentations():
    keys = set(bisenet(**SMALL).state_dict())
    assert {"detail.detail_branch.0.0.weight", "detail.detail_branch.2.7.running_var",
            "semantic.stage1.conv_first.0.weight", "semantic.stage1.convs.4.weight",
            "semantic.stage1.fuse_last.1.bias", "semantic.stage2.0.dwconv.3.weight",
            "semantic.stage2.0.shortcut.0.pointwise_bn.weight", "semantic.stage4.3.conv2.1.weight",
            "semantic.stage4_CEBlock.gap.1.weight", "semantic.stage4_CEBlock.conv_last.0.weight",
            "bga.detail_dwconv.0.depthwise_bn.weight", "bga.detail_down.1.weight", "bga.semantic_conv.0.weight",
            "bga.semantic_dwconv.0.pointwise_conv.weight", "bga.conv.1.weight"} <= keys
    assert "bga.detail_dwconv.0.pointwise_bn.weight" not in keys


def test_bga_channels_must_match_both_branches():
    with pytest.raises(ArgumentError, match="bga_channels: must equal"):
        bisenet(**{**SMALL, "bga_channels": 32})
