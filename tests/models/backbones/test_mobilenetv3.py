"""MobileNetV3: SSSegmentation's layers, outstride conversion, TF padding; published sizes; timm / mmseg weights."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame

from segkit.models.backbones import mobilenetv3 as mnv3_module
from segkit.models.backbones.mobilenetv3 import ARCH, LAST_CHANNELS, MobileNetV3, convert_mmseg_mobilenetv3
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

# torchvision's MobileNet_V3_{Large,Small}_Weights.IMAGENET1K_V1 document 5,483,032 / 2,542,856 parameters with
# their heads (Howard et al., ICCV 2019, Table 1/2: 5.4M / 2.5M): Linear(960, 1280) + Linear(1280, 1000), resp.
# Linear(576, 1024) + Linear(1024, 1000) -- timm's head 1x1 convolution has the same size.
PUBLISHED_WITH_HEAD = {"large": (5_483_032, 960 * 1280 + 1280 + 1280 * 1000 + 1000),
                       "small": (2_542_856, 576 * 1024 + 1024 + 1024 * 1000 + 1000)}


@pytest.mark.parametrize("arch_type", ["large", "small"])
def test_structure_types_urls_and_published_sizes(arch_type):
    assert mnv3_module.PRETRAINED_URLS[f"mobilenetv3_{arch_type}"].startswith(
        "https://download.openmmlab.com/pretrain/third_party/mobilenet_v3_")
    backbone = build_on_meta(MobileNetV3, structure_type=f"mobilenetv3_{arch_type}", norm_cfg=BN)
    published, head = PUBLISHED_WITH_HEAD[arch_type]
    assert count_parameters(backbone) + head == published


@pytest.mark.parametrize(("arch_type", "channels"), [("large", [16, 24, 960]), ("small", [16, 16, 576])])
def test_default_outputs(arch_type, channels):
    backbone = MobileNetV3(arch_type=arch_type, norm_cfg=BN, pretrained=False)
    assert backbone.out_channels == channels and backbone.strides == [2, 4, 8]
    check_contract(backbone, size=64)


@pytest.mark.parametrize(("arch_type", "outstride", "expected"), [
    ("large", 8, {7: (1, 2), 12: (1, 2), 13: (1, 4), 15: (1, 4)}),
    ("large", 16, {7: (1, 2), 13: (2, 2), 15: (1, 2)}),
    ("large", 32, {7: (2, 1), 13: (2, 1)}),
    ("small", 8, {4: (1, 2), 8: (1, 2), 9: (1, 4), 11: (1, 4)}),
])
def test_outstride_conversion_is_ssseg_s(arch_type, outstride, expected):
    backbone = MobileNetV3(arch_type=arch_type, outstride=outstride, norm_cfg=BN, pretrained=False,
                           out_indices=(-1,))
    layers = backbone._layers()
    for index, (stride, dilation) in expected.items():
        conv = layers[index - 1].conv_dw
        assert (conv.stride[0], conv.dilation[0]) == (stride, dilation), index
    assert backbone.strides == [outstride]


def test_stride_two_convolutions_use_tf_same_padding():
    backbone = MobileNetV3(arch_type="large", norm_cfg=BN, pretrained=False, outstride=32)
    layers = backbone._layers()
    assert isinstance(backbone.conv_stem, Conv2dSame)
    assert [i for i, layer in enumerate(layers[:-1], 1) if isinstance(layer.conv_dw, Conv2dSame)] == [2, 4, 7, 13]
    x = images(1, 64)  # TF "same": no padding on the left/top, one on the right/bottom (mmseg's adaptive padding)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), backbone.conv_stem.weight, stride=2)
    assert torch.allclose(backbone.conv_stem(x), expected, atol=1e-6)


@pytest.mark.parametrize("arch_type", ["large", "small"])
def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path, arch_type):
    reference = timm.create_model(f"mobilenetv3_{arch_type}_100", pad_type="same").eval()
    backbone = MobileNetV3(arch_type=arch_type, outstride=32, out_indices=(-1,), norm_cfg=BN, pretrained=True,
                           pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x)[0], reference.forward_features(x))


def make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mmseg_shapes(arch_type: str) -> dict[str, tuple[int, ...]]:
    """mmseg MobileNetV3 layout: ``layer0`` stem, ``layerN.{expand,depthwise,linear}_conv``, ``se.conv1/2``."""
    shapes, inputs, layer = conv_bn_shapes("layer0", 16, 3, 3), 16, 0
    for kernel, mid, out, se, _, _ in (block for stage in ARCH[arch_type] for block in stage):
        layer += 1
        prefix = f"layer{layer}"
        if mid != inputs:
            shapes |= conv_bn_shapes(f"{prefix}.expand_conv", mid, inputs, 1)
        shapes |= conv_bn_shapes(f"{prefix}.depthwise_conv", mid, 1, kernel)
        if se:
            squeeze = make_divisible(mid // 4)
            shapes |= {f"{prefix}.se.conv1.conv.weight": (squeeze, mid, 1, 1), f"{prefix}.se.conv1.conv.bias":
                       (squeeze,), f"{prefix}.se.conv2.conv.weight": (mid, squeeze, 1, 1),
                       f"{prefix}.se.conv2.conv.bias": (mid,)}
        shapes |= conv_bn_shapes(f"{prefix}.linear_conv", out, mid, 1)
        inputs = out
    return shapes | conv_bn_shapes(f"layer{layer + 1}", LAST_CHANNELS[arch_type], inputs, 1)


@pytest.mark.parametrize("arch_type", ["large", "small"])
def test_mmseg_checkpoint_layout_converts_to_timm_names(arch_type):
    backbone = build_on_meta(MobileNetV3, arch_type=arch_type, norm_cfg=BN, out_indices=(-1,))
    check_conversion(backbone, mmseg_shapes(arch_type), lambda sd: convert_mmseg_mobilenetv3(sd, arch_type))


def test_reduction_factor_and_defaults():
    reduced = MobileNetV3(arch_type="large", reduction_factor=2, out_indices=(13, 15, 16), norm_cfg=BN,
                          pretrained=False)
    assert reduced.out_channels == [80, 80, 960] and reduced._layers()[12].conv_pwl.out_channels == 80
    check_contract(reduced, size=32)
    assert MobileNetV3(arch_type="small", reduction_factor=3, out_indices=(11,), norm_cfg=BN,
                       pretrained=False).out_channels == [32]  # 96 // 3, no rounding needed
    with pytest.raises(ArgumentError, match=r"round expanded channels to multiples of 8"):
        MobileNetV3(arch_type="large", reduction_factor=5, norm_cfg=BN, pretrained=False)  # 672 // 5 = 134
    with pytest.raises(ArgumentError, match="arch_type='small' conflicts with structure_type 'mobilenetv3_large'"):
        MobileNetV3(structure_type="mobilenetv3_large", arch_type="small", norm_cfg=BN, pretrained=False)
