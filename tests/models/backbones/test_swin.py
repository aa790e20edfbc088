"""SwinTransformer: structure types, published sizes, timm / official checkpoints, mmseg padding, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.swin_transformer import SwinTransformerBlock

from segkit.models.backbones import swin as swin_module
from segkit.models.backbones.swin import (
    PadThenShiftSwinBlock,
    SwinTransformer,
    convert_official_swin,
    resize_relative_position_tables,
)
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

# Published parameter counts (millions, ImageNet classifier included): Liu et al., "Swin Transformer", ICCV 2021,
# Table 1(a): Swin-T 28M, Swin-S 50M, Swin-B 88M (224 and 384), Swin-L 197M (Table 1(b)).
PUBLISHED = {96: {(2, 2, 6, 2): 28, (2, 2, 18, 2): 50}, 128: {(2, 2, 18, 2): 88}, 192: {(2, 2, 18, 2): 197}}
NORMS = ("norm0", "norm1", "norm2", "norm3")
SMALL = {"embed_dims": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 2, 2), "window_size": 4,
         "pretrain_img_size": 128}


def test_structure_types_and_urls_are_ssseg_s():
    assert len(swin_module.PRETRAINED_URLS) == 8
    assert swin_module.PRETRAINED_URLS["swin_large_patch4_window12_384_22kto1k"] == (
        "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
        "swin_large_patch4_window12_384_22kto1k.pth")


@pytest.mark.parametrize("structure_type", list(swin_module.PRETRAINED_URLS))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build_on_meta(SwinTransformer, structure_type=structure_type)
    arch = swin_module.STRUCTURE_TYPES[structure_type]
    channels = [arch["embed_dims"] * 2**i for i in range(4)]
    assert backbone.out_channels == channels and backbone.strides == [4, 8, 16, 32]
    assert backbone.layers[0].blocks[0].window_size == (arch["window_size"],) * 2
    total = count_parameters(backbone, skip=NORMS) + 2 * channels[-1] + channels[-1] * 1000 + 1000
    check_published_count(total, PUBLISHED[arch["embed_dims"]][arch["depths"]], unit=1)


@pytest.mark.parametrize("structure_type", [
    "swin_tiny_patch4_window7_224",
    *(pytest.param(t, marks=pytest.mark.slow) for t in ("swin_small_patch4_window7_224",
                                                         "swin_base_patch4_window12_384",
                                                         "swin_large_patch4_window12_384_22k"))])
def test_published_architectures_forward_as_declared(structure_type):
    check_contract(SwinTransformer(structure_type=structure_type, pretrained=False), size=32)


def test_loads_a_plain_timm_checkpoint_and_matches_timm_where_no_padding_is_needed(tmp_path):
    reference = TimmSwin(img_size=128, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4,
                         always_partition=True, strict_img_size=False).eval()
    path = save_state(reference, tmp_path)
    backbone = SwinTransformer(**SMALL, pretrained=True, pretrained_model_path=path).eval()
    x = images(1, 128)  # 32/16/8/4 tokens a side: whole windows, where timm and mmseg agree
    with torch.no_grad():
        ours = backbone(x)
        expected = reference.forward_intermediates(x, intermediates_only=True, norm=False)
    for index, (output, feature) in enumerate(zip(ours, expected, strict=True)):
        normed = getattr(backbone, f"norm{index}")(feature.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert torch.allclose(output, normed, atol=1e-5)


def test_window_attention_pads_to_whole_windows_before_shifting():
    """mmseg's semantics: a block on a 6x7 map equals the block on that map zero-padded to 8x8, cropped."""
    torch.manual_seed(0)
    block = SwinTransformer(**SMALL, pretrained=False).layers[0].blocks[1]
    assert isinstance(block, PadThenShiftSwinBlock) and any(block.shift_size)
    x = torch.randn(1, 6, 7, 16)
    expected = block._attn(F.pad(x, (0, 0, 0, 1, 0, 2)))[:, :6, :7]
    assert torch.allclose(block._attn(x), expected, atol=1e-5)
    assert not torch.allclose(SwinTransformerBlock._attn(block, x), expected, atol=1e-3)  # timm shifts, then pads


def official_shapes(arch: dict, image: int = 224) -> dict[str, tuple[int, ...]]:
    """The official Swin release: names and shapes (patch merging at the end of a stage, buffers, head)."""
    window, dims = arch["window_size"], arch["embed_dims"]
    shapes = {"patch_embed.proj.weight": (dims, 3, 4, 4), "patch_embed.proj.bias": (dims,),
              "patch_embed.norm.weight": (dims,), "patch_embed.norm.bias": (dims,)}
    for i, (depth, heads) in enumerate(zip(arch["depths"], arch["num_heads"], strict=True)):
        c, resolution = dims * 2**i, image // 4 // 2**i
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}"
            shapes |= {f"{block}.{n}.{p}": (c,) for n in ("norm1", "norm2") for p in ("weight", "bias")}
            shapes |= {f"{block}.attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
                       f"{block}.attn.relative_position_index": (window**2, window**2),
                       f"{block}.attn.qkv.weight": (3 * c, c), f"{block}.attn.qkv.bias": (3 * c,),
                       f"{block}.attn.proj.weight": (c, c), f"{block}.attn.proj.bias": (c,),
                       f"{block}.mlp.fc1.weight": (4 * c, c), f"{block}.mlp.fc1.bias": (4 * c,),
                       f"{block}.mlp.fc2.weight": (c, 4 * c), f"{block}.mlp.fc2.bias": (c,)}
            if j % 2 and resolution > window:
                shapes[f"{block}.attn_mask"] = ((resolution // window) ** 2, window**2, window**2)
        if i < 3:
            shapes |= {f"layers.{i}.downsample.reduction.weight": (2 * c, 4 * c),
                       f"layers.{i}.downsample.norm.weight": (4 * c,), f"layers.{i}.downsample.norm.bias": (4 * c,)}
    last = dims * 8
    return shapes | {"norm.weight": (last,), "norm.bias": (last,), "head.weight": (1000, last), "head.bias": (1000,)}


@pytest.mark.parametrize("structure_type", ["swin_tiny_patch4_window7_224", "swin_large_patch4_window12_384_22k"])
def test_official_layout_converts_to_timm_names(structure_type):
    backbone = build_on_meta(SwinTransformer, structure_type=structure_type)
    arch = swin_module.STRUCTURE_TYPES[structure_type]
    check_conversion(backbone, official_shapes(arch, arch["pretrain_img_size"]), convert_official_swin,
                     missing=[f"{n}.{p}" for n in NORMS for p in ("weight", "bias")])


def test_relative_position_tables_are_resized_for_another_window():
    backbone = build_on_meta(SwinTransformer, structure_type=None, window_size=12)
    table = torch.randn(13 * 13, 3)
    resized = resize_relative_position_tables({"layers.0.blocks.0.attn.relative_position_bias_table": table},
                                              backbone)
    assert resized["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (23 * 23, 3)


def test_any_input_size_and_options():
    backbone = SwinTransformer(**SMALL, use_abs_pos_embed=True, patch_norm=False, qk_scale=0.5, act_cfg=None,
                               out_indices=(1, 3), pretrained=False).eval()
    assert backbone.layers[1].blocks[0].attn.scale == 0.5 and isinstance(backbone.patch_embed.norm, torch.nn.Identity)
    assert isinstance(backbone.layers[0].blocks[0].mlp.act, torch.nn.Identity)
    with torch.no_grad():
        outputs = backbone(images(1, 70)[..., :50])  # 70 x 50: padded to patches and to windows inside
    assert [o.shape[-2:] for o in outputs] == [(9, 7), (3, 2)]
    check_contract(backbone, size=64)


def test_structure_type_fixes_the_architecture():
    with pytest.raises(ArgumentError, match="window_size=7 conflicts with structure_type"):
        SwinTransformer(structure_type="swin_base_patch4_window12_384", window_size=7, pretrained=False)
    with pytest.raises(ArgumentError, match="SwinTransformer needs a channel LayerNorm"):  # a recipe's SyncBatchNorm
        SwinTransformer(**SMALL, norm_cfg={"type": "SyncBatchNorm"}, pretrained=False)
    with pytest.raises(ArgumentError, match=r"strides must be \(patch_size, 2, 2, 2\)"):
        SwinTransformer(**SMALL, strides=(4, 2, 2, 1), pretrained=False)
