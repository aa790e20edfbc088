"""MobileNetV2: SSSegmentation's layers, dilation rule and outputs; published size; timm and mmcls checkpoints."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import mobilenetv2 as mnv2_module
from segkit.models.backbones.mobilenetv2 import ARCH, MobileNetV2, convert_mmcls_mobilenetv2
from segkit.models.layers import ArgumentError

from ..helpers import BN, images
from .test_timm_adapter import (
    build_on_meta,
    check_contract,
    check_conversion,
    conv_bn_shapes,
    count_parameters,
    save_state,
)

# torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 documents 3,504,872 parameters for the 1.0 network with its
# 1280-channel head convolution and classifier (Sandler et al., CVPR 2018, Table 4, rounds it to 3.4M).
PUBLISHED_WITH_HEAD = 3_504_872
HEAD = 320 * 1280 + 2 * 1280 + 1280 * 1000 + 1000  # conv2 (1x1 + BN) and Linear(1280, 1000)


def test_structure_type_url_and_published_size():
    assert mnv2_module.PRETRAINED_URLS == {"mobilenetv2": "https://download.openmmlab.com/mmclassification/v0/"
                                                          "mobilenet_v2/mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth"}
    backbone = build_on_meta(MobileNetV2, structure_type="mobilenetv2", out_indices=tuple(range(7)))
    assert count_parameters(backbone) + HEAD == PUBLISHED_WITH_HEAD


@pytest.mark.parametrize(("outstride", "strides"), [(8, [4, 8, 8, 8]), (16, [4, 8, 16, 16]), (32, [4, 8, 16, 32])])
def test_default_outputs_and_outstride(outstride, strides):
    backbone = MobileNetV2(structure_type="mobilenetv2", outstride=outstride, norm_cfg=BN, pretrained=False)
    assert backbone.out_channels == [24, 32, 96, 320] and backbone.strides == strides
    check_contract(backbone, size=64)


def test_only_the_first_block_of_a_layer_is_dilated_as_in_ssseg():
    backbone = MobileNetV2(outstride=8, norm_cfg=BN, pretrained=False, out_indices=(6,))
    firsts = [(layer[0].conv_dw.stride[0], layer[0].conv_dw.dilation[0]) for layer in backbone.blocks]
    assert firsts == [(1, 1), (2, 1), (2, 1), (1, 2), (1, 2), (1, 4), (1, 4)]
    assert all(block.conv_dw.dilation == (1, 1) for layer in backbone.blocks for block in layer[1:])
    assert backbone.blocks[5][0].conv_dw.padding == (4, 4)


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("mobilenetv2_100").eval()
    backbone = MobileNetV2(outstride=32, out_indices=(1, 2, 4, 6), norm_cfg=BN, pretrained=True,
                           pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)[1:]  # timm's stage taps 1, 2, 4, 6
        for output, feature in zip(backbone(x), expected, strict=True):
            assert torch.equal(output, feature)


def mmcls_shapes() -> dict[str, tuple[int, ...]]:
    """mmcls MobileNetV2 checkpoint (``backbone.`` prefix): InvertedResidual ``conv.k`` ConvModules, conv2, head."""
    shapes, inputs = conv_bn_shapes("backbone.conv1", 32, 3, 3), 32
    for layer, (expand, channels, blocks) in enumerate(ARCH, start=1):
        for block in range(blocks):
            prefix, hidden = f"backbone.layer{layer}.{block}.conv", inputs * expand
            if expand == 1:
                shapes |= conv_bn_shapes(f"{prefix}.0", hidden, 1, 3) | conv_bn_shapes(f"{prefix}.1", channels, hidden, 1)
            else:
                shapes |= conv_bn_shapes(f"{prefix}.0", hidden, inputs, 1) | conv_bn_shapes(f"{prefix}.1", hidden, 1, 3)
                shapes |= conv_bn_shapes(f"{prefix}.2", channels, hidden, 1)
            inputs = channels
    return shapes | conv_bn_shapes("backbone.conv2", 1280, 320, 1) | {"head.fc.weight": (1000, 1280),
                                                                      "head.fc.bias": (1000,)}


def test_mmcls_checkpoint_layout_converts_to_timm_names():
    backbone = build_on_meta(MobileNetV2, structure_type="mobilenetv2", out_indices=tuple(range(7)))
    check_conversion(backbone, mmcls_shapes(), convert_mmcls_mobilenetv2)


def test_widen_factor_and_norm_cfg():
    backbone = MobileNetV2(widen_factor=0.5, norm_cfg=BN, pretrained=False)
    assert backbone.out_channels == [16, 16, 48, 160] and backbone.conv_stem.out_channels == 16
    check_contract(backbone, size=32)
    with pytest.raises(ArgumentError, match="MobileNetV2 supports norm_cfg types"):
        MobileNetV2(norm_cfg={"type": "GroupNorm", "num_groups": 4}, pretrained=False)
    with pytest.raises(ArgumentError, match="widen_factor=0.5 conflicts with structure_type 'mobilenetv2'"):
        MobileNetV2(structure_type="mobilenetv2", widen_factor=0.5, pretrained=False)
