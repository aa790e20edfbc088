"""ConvNeXt: SSSegmentation's structure types and URLs, published sizes, timm and mmcls checkpoints, options."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import convnext as convnext_module
from segkit.models.backbones.convnext import ARCH_SETTINGS, ConvNeXt, convert_mmcls_convnext
from segkit.models.layers import ArgumentError

from ..helpers import images
from .test_timm_adapter import (
    build_on_meta,
    check_contract,
    check_conversion,
    check_published_count,
    count_parameters,
    save_state,
)

# Published parameter counts (millions, ImageNet-1k classifier included): Liu et al., "A ConvNet for the 2020s",
# CVPR 2022, Table 1 / github.com/facebookresearch/ConvNeXt README (T 28M, S 50M, B 89M, L 198M, XL 350M).
PUBLISHED = {"tiny": 28, "small": 50, "base": 89, "large": 198, "xlarge": 350}
NORMS = ("norm0", "norm1", "norm2", "norm3")
LN = {"type": "LayerNorm2d", "eps": 1e-6}


def classifier_parameters(channels: int) -> int:
    return 2 * channels + channels * 1000 + 1000  # final LayerNorm + Linear(C, 1000)


def test_structure_types_and_urls_are_ssseg_s():
    assert list(convnext_module.PRETRAINED_URLS) == [
        "convnext_tiny", "convnext_small", "convnext_base", "convnext_base_21k", "convnext_large_21k",
        "convnext_xlarge_21k"]
    assert convnext_module.PRETRAINED_URLS["convnext_base_21k"].endswith(
        "convnext/downstream/convnext-base_3rdparty_in21k_20220301-262fd037.pth")
    assert {t: a["arch"] for t, a in convnext_module.STRUCTURE_TYPES.items()}["convnext_xlarge_21k"] == "xlarge"


@pytest.mark.parametrize("structure_type", list(convnext_module.PRETRAINED_URLS))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build_on_meta(ConvNeXt, structure_type=structure_type)
    arch = convnext_module.STRUCTURE_TYPES[structure_type]["arch"]
    dims = ARCH_SETTINGS[arch][1]
    assert backbone.out_channels == list(dims) and backbone.strides == [4, 8, 16, 32]
    total = count_parameters(backbone, skip=NORMS) + classifier_parameters(dims[-1])
    check_published_count(total, PUBLISHED[arch], unit=1)


@pytest.mark.parametrize("arch", [
    "tiny", *(pytest.param(a, marks=pytest.mark.slow) for a in ("small", "base", "large", "xlarge"))])
def test_published_architectures_forward_as_declared(arch):
    check_contract(ConvNeXt(arch=arch, pretrained=False), size=32)


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("convnext_atto").eval()  # timm's atto uses 1x1 convolutions for the MLP
    backbone = ConvNeXt(arch="atto", pretrained=True, pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        ours = backbone(x)
        expected = reference.forward_intermediates(x, intermediates_only=True)
    for index, (output, feature) in enumerate(zip(ours, expected, strict=True)):
        assert torch.allclose(output, getattr(backbone, f"norm{index}")(feature), atol=1e-5)


def mmcls_convnext_shapes(depths, dims) -> dict[str, tuple[int, ...]]:
    """mmcls ConvNeXt classification checkpoint: names and shapes (``backbone.`` prefix, only the last norm)."""
    shapes = {"backbone.downsample_layers.0.0.weight": (dims[0], 3, 4, 4), "backbone.downsample_layers.0.0.bias":
              (dims[0],), "backbone.downsample_layers.0.1.weight": (dims[0],),
              "backbone.downsample_layers.0.1.bias": (dims[0],)}
    for i in range(1, 4):
        shapes |= {f"backbone.downsample_layers.{i}.0.weight": (dims[i - 1],),
                   f"backbone.downsample_layers.{i}.0.bias": (dims[i - 1],),
                   f"backbone.downsample_layers.{i}.1.weight": (dims[i], dims[i - 1], 2, 2),
                   f"backbone.downsample_layers.{i}.1.bias": (dims[i],)}
    for i, (depth, c) in enumerate(zip(depths, dims, strict=True)):
        for j in range(depth):
            block = f"backbone.stages.{i}.{j}"
            shapes |= {f"{block}.gamma": (c,), f"{block}.depthwise_conv.weight": (c, 1, 7, 7),
                       f"{block}.depthwise_conv.bias": (c,), f"{block}.norm.weight": (c,), f"{block}.norm.bias": (c,),
                       f"{block}.pointwise_conv1.weight": (4 * c, c), f"{block}.pointwise_conv1.bias": (4 * c,),
                       f"{block}.pointwise_conv2.weight": (c, 4 * c), f"{block}.pointwise_conv2.bias": (c,)}
    return shapes | {"backbone.norm3.weight": (dims[3],), "backbone.norm3.bias": (dims[3],),
                     "head.fc.weight": (1000, dims[3]), "head.fc.bias": (1000,)}


@pytest.mark.parametrize("structure_type", ["convnext_tiny", "convnext_xlarge_21k"])
def test_mmcls_checkpoint_layout_converts_to_timm_names(structure_type):
    backbone = build_on_meta(ConvNeXt, structure_type=structure_type)
    shapes = mmcls_convnext_shapes(*ARCH_SETTINGS[convnext_module.STRUCTURE_TYPES[structure_type]["arch"]])
    missing = [f"norm{i}.{p}" for i in range(3) for p in ("weight", "bias")]  # the checkpoint has norm3 only
    check_conversion(backbone, shapes, convert_mmcls_convnext, missing)


def test_ssseg_arguments_that_cannot_work_are_clear_errors():
    with pytest.raises(ArgumentError, match="gap_before_final_norm = false"):
        ConvNeXt(arch="atto", gap_before_final_norm=True, pretrained=False)
    with pytest.raises(ArgumentError, match="arch='base' conflicts with structure_type 'convnext_tiny'"):
        ConvNeXt(structure_type="convnext_tiny", arch="base", pretrained=False)
    with pytest.raises(ArgumentError, match="needs a channel LayerNorm"):
        ConvNeXt(arch="atto", norm_cfg={"type": "SyncBatchNorm"}, pretrained=False)


def test_out_indices_keep_only_the_stages_and_norms_they_need():
    backbone = ConvNeXt(arch="atto", out_indices=(-3,), pretrained=False)
    assert len(backbone.stages) == 2 and not hasattr(backbone, "norm0") and hasattr(backbone, "norm1")
    assert backbone.feature_info == [{"num_chs": 80, "reduction": 8, "module": "norm1"}]
    check_contract(backbone, size=32)


def test_block_options_reach_timm_blocks():
    backbone = ConvNeXt(arch="atto", linear_pw_conv=False, use_grn=True, layer_scale_init_value=0,
                        drop_path_rate=0.1, stem_patch_size=2, act_cfg={"type": "ReLU"}, pretrained=False)
    block = backbone.stages[0].blocks[0]
    assert block.mlp.fc1.weight.ndim == 4 and block.gamma is None and hasattr(block.mlp, "grn")
    assert isinstance(block.mlp.act, torch.nn.ReLU) and backbone.stages[3].blocks[1].drop_path.drop_prob > 0
    assert backbone.strides == [2, 4, 8, 16]
    check_contract(backbone, size=32)
