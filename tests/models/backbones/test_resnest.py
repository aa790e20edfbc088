"""ResNeSt: structure types, published sizes, SSSegmentation's dilation, timm and mmseg checkpoints."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from segkit.models.backbones import resnest as resnest_module
from segkit.models.backbones.resnest import BLOCKS, ResNeSt, convert_mmseg_resnest
from segkit.models.layers import ArgumentError

from ..helpers import BN, images
from .test_timm_adapter import (
    batch_norm_shapes,
    build_on_meta,
    check_contract,
    check_conversion,
    check_published_count,
    count_parameters,
    save_state,
)

# Published parameter counts (millions, classifier included): Zhang et al., "ResNeSt: Split-Attention Networks",
# CVPRW 2022, Table 7 / github.com/zhanghang1989/ResNeSt README: ResNeSt-50 27.5M, -101 48.3M, -200 70.2M.
PUBLISHED = {"resnest50": 27.5, "resnest101": 48.3, "resnest200": 70.2}


def test_structure_types_and_urls_are_ssseg_s():
    assert resnest_module.PRETRAINED_URLS["resnest101"] == \
        "https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth"
    assert set(resnest_module.PRETRAINED_URLS) == set(PUBLISHED)


@pytest.mark.parametrize("structure_type", list(PUBLISHED))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build_on_meta(ResNeSt, structure_type=structure_type, norm_cfg=BN, outstride=32)
    assert backbone.out_channels == [256, 512, 1024, 2048] and backbone.strides == [4, 8, 16, 32]
    check_published_count(count_parameters(backbone) + 2048 * 1000 + 1000, PUBLISHED[structure_type], unit=0.1)


@pytest.mark.parametrize("structure_type", [
    "resnest50", *(pytest.param(t, marks=pytest.mark.slow) for t in ("resnest101", "resnest200"))])
def test_published_architectures_forward_as_declared(structure_type):
    backbone = ResNeSt(structure_type=structure_type, norm_cfg=BN, pretrained=False)
    assert backbone.strides == [4, 8, 8, 8]
    check_contract(backbone, size=32)


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("resnest50d").eval()
    backbone = ResNeSt(structure_type="resnest50", outstride=32, norm_cfg=BN, pretrained=True,
                       pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)[1:]  # after layer1..layer4
        for output, feature in zip(backbone(x), expected, strict=True):
            assert torch.allclose(output, feature, atol=1e-5)


def test_dilated_stages_follow_ssseg():
    backbone = ResNeSt(depth=50, stem_channels=64, outstride=8, norm_cfg=BN, pretrained=False)
    assert [b.conv2.conv.dilation[0] for b in backbone.layer3][:2] == [1, 2]
    assert [b.conv2.conv.dilation[0] for b in backbone.layer4] == [2, 4, 4]
    assert isinstance(backbone.layer3[0].downsample[0], nn.Identity) and backbone.layer3[0].avd_last is None
    assert isinstance(backbone.layer2[0].downsample[0], nn.AvgPool2d) and backbone.layer2[0].avd_last is not None
    plain = ResNeSt(depth=50, stem_channels=64, outstride=16, contract_dilation=False, norm_cfg=BN, pretrained=False)
    assert [b.conv2.conv.dilation[0] for b in plain.layer4] == [2, 2, 2]


def mmseg_shapes(depth: int, stem: int) -> dict[str, tuple[int, ...]]:
    """mmseg ResNeSt: deep stem ``stem.0..7``, split-attention ``conv2.{conv,bn0,fc1,bn1,fc2}``, avg-down shortcut."""
    half = stem // 2
    shapes = {"stem.0.weight": (half, 3, 3, 3), "stem.3.weight": (half, half, 3, 3), "stem.6.weight": (stem, half, 3, 3)}
    shapes |= batch_norm_shapes("stem.1", half) | batch_norm_shapes("stem.4", half) | batch_norm_shapes("stem.7", stem)
    inputs = stem
    for i, blocks in enumerate(BLOCKS[depth]):
        width, out = 64 * 2**i, 256 * 2**i
        attention = max(width * 2 // 4, 32)
        for b in range(blocks):
            block = f"layer{i + 1}.{b}"
            shapes |= {f"{block}.conv1.weight": (width, inputs, 1, 1), f"{block}.conv2.conv.weight": (2 * width,
                       width // 2, 3, 3), f"{block}.conv2.fc1.weight": (attention, width, 1, 1),
                       f"{block}.conv2.fc1.bias": (attention,), f"{block}.conv2.fc2.weight": (2 * width, attention,
                       1, 1), f"{block}.conv2.fc2.bias": (2 * width,), f"{block}.conv3.weight": (out, width, 1, 1)}
            shapes |= batch_norm_shapes(f"{block}.bn1", width) | batch_norm_shapes(f"{block}.conv2.bn0", 2 * width)
            shapes |= batch_norm_shapes(f"{block}.conv2.bn1", attention) | batch_norm_shapes(f"{block}.bn3", out)
            if b == 0:
                shapes |= {f"{block}.downsample.1.weight": (out, inputs, 1, 1)}
                shapes |= batch_norm_shapes(f"{block}.downsample.2", out)
            inputs = out
    return shapes | {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


@pytest.mark.parametrize("structure_type", list(PUBLISHED))
def test_mmseg_checkpoint_layout_converts_to_timm_names(structure_type):
    arch = resnest_module.STRUCTURE_TYPES[structure_type]
    backbone = build_on_meta(ResNeSt, structure_type=structure_type, norm_cfg=BN)
    check_conversion(backbone, mmseg_shapes(arch["depth"], arch["stem_channels"]), convert_mmseg_resnest)


def test_arguments_the_weights_fix_are_checked():
    with pytest.raises(ArgumentError, match="stem_channels=128 conflicts with structure_type 'resnest50'"):
        ResNeSt(structure_type="resnest50", stem_channels=128, pretrained=False)
    with pytest.raises(ArgumentError, match="reduces by 4"):
        ResNeSt(depth=50, reduction_factor=2, norm_cfg=BN, pretrained=False)
    small = ResNeSt(depth=50, base_channels=8, stem_channels=16, out_indices=(0, 1), use_checkpoint=True,
                    norm_cfg=BN, pretrained=False)
    assert small.out_channels == [32, 64] and not hasattr(small, "layer3")
    check_contract(small, size=32)
