"""MobileViT: structure types, published sizes, timm and mmcls checkpoints, stage outputs."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import mobilevit as mobilevit_module
from segkit.models.backbones.mobilevit import MobileViT, convert_mmcls_mobilevit
from segkit.models.layers import ArgumentError, Swish

from ..helpers import BN, images
from .test_timm_adapter import (
    build_on_meta,
    check_contract,
    check_conversion,
    check_published_count,
    conv_bn_shapes,
    count_parameters,
    save_state,
)

# Published parameter counts (millions, classifier included): Mehta & Rastegari, "MobileViT", ICLR 2022, Table 1 /
# Figure 6: MobileViT-XXS 1.3M, -XS 2.3M, -S 5.6M.
PUBLISHED = {"mobilevit-xxsmall": 1.3, "mobilevit-xsmall": 2.3, "mobilevit-small": 5.6}
# arch -> (stem, [(kind, out, stride, blocks or (transformer, ffn, layers), expand)]), mmcls' arch_settings
LAYERS = {
    "small": [("ir", 32, 1, 1, 4), ("ir", 64, 2, 3, 4), ("vit", 96, 2, (144, 288, 2), 4),
              ("vit", 128, 2, (192, 384, 4), 4), ("vit", 160, 2, (240, 480, 3), 4)],
    "x_small": [("ir", 32, 1, 1, 4), ("ir", 48, 2, 3, 4), ("vit", 64, 2, (96, 192, 2), 4),
                ("vit", 80, 2, (120, 240, 4), 4), ("vit", 96, 2, (144, 288, 3), 4)],
    "xx_small": [("ir", 16, 1, 1, 2), ("ir", 24, 2, 3, 2), ("vit", 48, 2, (64, 128, 2), 2),
                 ("vit", 64, 2, (80, 160, 4), 2), ("vit", 80, 2, (96, 192, 3), 2)],
}


def test_structure_types_and_urls_are_ssseg_s():
    assert mobilevit_module.PRETRAINED_URLS["mobilevit-xxsmall"] == (
        "https://download.openmmlab.com/mmclassification/v0/mobilevit/"
        "mobilevit-xxsmall_3rdparty_in1k_20221018-77835605.pth")
    assert mobilevit_module.STRUCTURE_TYPES["mobilevit-xsmall"] == {"arch": "x_small"}


@pytest.mark.parametrize("structure_type", list(PUBLISHED))
def test_every_structure_type_builds_forwards_and_has_the_published_size(structure_type):
    backbone = MobileViT(structure_type=structure_type, norm_cfg=BN, pretrained=False)
    last = backbone.out_channels[-1]
    assert backbone.strides == [2, 4, 8, 16, 32] and last == 4 * LAYERS[backbone.arch][-1][1]
    check_published_count(count_parameters(backbone) + last * 1000 + 1000, PUBLISHED[structure_type], unit=0.1)
    check_contract(backbone, size=64)


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("mobilevit_xxs").eval()
    backbone = MobileViT(arch="xx_small", norm_cfg=BN, pretrained=True, conv_proj_activation=True,
                         pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        for output, feature in zip(backbone(x), reference.forward_intermediates(x, intermediates_only=True),
                                   strict=True):
            assert torch.equal(output, feature)


def mmcls_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """mmcls MobileViT: InvertedResidual ``conv.k``, MobileVitBlock ``local_rep``/``global_rep``/``conv_proj``/
    ``conv_fusion``, ``conv_1x1_exp`` and the classifier (``backbone.`` prefix)."""
    shapes, inputs = conv_bn_shapes("backbone.stem", 16, 3, 3), 16
    for i, (kind, out, _, blocks, expand) in enumerate(LAYERS[arch]):
        for j in range(blocks if kind == "ir" else 1):
            prefix, hidden = f"backbone.layers.{i}.{j}.conv", inputs * expand
            shapes |= conv_bn_shapes(f"{prefix}.0", hidden, inputs, 1) | conv_bn_shapes(f"{prefix}.1", hidden, 1, 3)
            shapes |= conv_bn_shapes(f"{prefix}.2", out, hidden, 1)
            inputs = out
        if kind == "vit":
            dim, ffn, layers = blocks
            block = f"backbone.layers.{i}.1"
            shapes |= conv_bn_shapes(f"{block}.local_rep.0", out, out, 3)
            shapes |= {f"{block}.local_rep.1.conv.weight": (dim, out, 1, 1), f"{block}.global_rep.{layers}.weight":
                       (dim,), f"{block}.global_rep.{layers}.bias": (dim,)}
            for k in range(layers):
                layer = f"{block}.global_rep.{k}"
                shapes |= {f"{layer}.{n}.{p}": (dim,) for n in ("ln1", "ln2") for p in ("weight", "bias")}
                shapes |= {f"{layer}.attn.qkv.weight": (3 * dim, dim), f"{layer}.attn.qkv.bias": (3 * dim,),
                           f"{layer}.attn.proj.weight": (dim, dim), f"{layer}.attn.proj.bias": (dim,),
                           f"{layer}.ffn.layers.0.0.weight": (ffn, dim), f"{layer}.ffn.layers.0.0.bias": (ffn,),
                           f"{layer}.ffn.layers.1.weight": (dim, ffn), f"{layer}.ffn.layers.1.bias": (dim,)}
            shapes |= conv_bn_shapes(f"{block}.conv_proj", out, dim, 1)
            shapes |= conv_bn_shapes(f"{block}.conv_fusion", out, 2 * out, 3)
    shapes |= conv_bn_shapes("backbone.conv_1x1_exp", 4 * inputs, inputs, 1)
    return shapes | {"head.fc.weight": (1000, 4 * inputs), "head.fc.bias": (1000,)}


@pytest.mark.parametrize("arch", list(LAYERS))
def test_mmcls_checkpoint_layout_converts_to_timm_names(arch):
    backbone = build_on_meta(MobileViT, arch=arch, norm_cfg=BN)
    check_conversion(backbone, mmcls_shapes(arch), convert_mmcls_mobilevit)


def test_projection_has_no_activation_unless_asked_and_out_indices_prune():
    backbone = MobileViT(arch="xx_small", out_indices=(1, 2), norm_cfg=BN, pretrained=False)
    assert isinstance(backbone.stages[2][1].conv_proj.bn.act, torch.nn.Identity)  # as SSSegmentation 1.7.0
    assert isinstance(backbone.stages[2][1].conv_fusion.bn.act, Swish)
    timm_block = MobileViT(arch="xx_small", out_indices=(1, 2), norm_cfg=BN, pretrained=False,
                           conv_proj_activation=True)
    assert isinstance(timm_block.stages[2][1].conv_proj.bn.act, Swish)  # the paper's, mmcls' and timm's block
    assert len(backbone.stages) == 3 and backbone.final_conv is None and backbone.out_channels == [24, 48]
    check_contract(backbone, size=32)
    with pytest.raises(ArgumentError, match="unknown MobileViT structure_type 'mobilevit-tiny'"):
        MobileViT(structure_type="mobilevit-tiny", pretrained=False)
