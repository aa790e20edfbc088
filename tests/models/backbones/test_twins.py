"""Twins PCPVT and SVT: structure types, published sizes, timm / official checkpoints, masked local attention."""

from __future__ import annotations

import pytest
import torch
from timm.models.twins import Twins as TimmTwins

from segkit.models.backbones import twins as twins_module
from segkit.models.backbones.twins import PCPVT, SVT, MaskedLocallyGroupedAttn, convert_official_twins
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

# Published parameter counts (millions, ImageNet classifier included): Chu et al., "Twins", NeurIPS 2021,
# Tables 1 and 2: Twins-PCPVT-S/B/L 24.1/43.8/60.9M, Twins-SVT-S/B/L 24/56/99.2M -> (value, unit of last digit).
PUBLISHED = {"pcpvt_small": (24.1, 0.1), "pcpvt_base": (43.8, 0.1), "pcpvt_large": (60.9, 0.1),
             "svt_small": (24, 1), "svt_base": (56, 1), "svt_large": (99.2, 0.1)}
CLASSES = {"pcpvt": PCPVT, "svt": SVT}
SMALL = {"embed_dims": (16, 32, 48, 64), "num_heads": (1, 1, 2, 2), "mlp_ratios": (2, 2, 2, 2),
         "depths": (2, 2, 2, 2), "sr_ratios": (8, 4, 2, 1)}


def build(structure_type: str, **kwargs):
    return build_on_meta(CLASSES[structure_type.split("_")[0]], structure_type=structure_type, **kwargs)


def test_structure_types_and_urls_are_ssseg_s():
    assert list(twins_module.PRETRAINED_URLS) == list(PUBLISHED)
    assert twins_module.PRETRAINED_URLS["svt_base"] == \
        "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_twins/alt_gvt_base.pth"


@pytest.mark.parametrize("structure_type", list(PUBLISHED))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build(structure_type)
    last = backbone.out_channels[-1]
    assert backbone.strides == [4, 8, 16, 32] and len(backbone.feature_info) == 4
    total = count_parameters(backbone, skip=("norm_list",)) + 2 * last + last * 1000 + 1000
    check_published_count(total, *PUBLISHED[structure_type])


@pytest.mark.parametrize("structure_type", [
    "pcpvt_small", "svt_small",
    *(pytest.param(t, marks=pytest.mark.slow) for t in ("pcpvt_base", "pcpvt_large", "svt_base", "svt_large"))])
def test_published_architectures_forward_as_declared(structure_type):
    check_contract(CLASSES[structure_type.split("_")[0]](structure_type=structure_type, pretrained=False), size=32)


@pytest.mark.parametrize(("cls", "window_sizes"), [(PCPVT, None), (SVT, (4, 4, 4, 4))])
def test_loads_a_plain_timm_checkpoint_and_matches_timm_where_no_padding_is_needed(tmp_path, cls, window_sizes):
    reference = TimmTwins(wss=window_sizes, num_classes=10, **SMALL).eval()
    extra = {"window_sizes": window_sizes} if window_sizes else {}
    backbone = cls(**SMALL, **extra, norm_after_stage=False, norm_cfg={"type": "LayerNorm", "eps": 1e-6},
                   pretrained=True, pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 128)  # 32/16/8/4 tokens a side: whole windows
    with torch.no_grad():
        for output, expected in zip(backbone(x), reference.forward_intermediates(x, intermediates_only=True),
                                    strict=True):
            assert torch.allclose(output, expected, atol=1e-5)


def official_shapes(structure_type: str) -> dict[str, tuple[int, ...]]:
    """The official Twins release: names and shapes (``attn.q/kv/sr/norm`` global, ``attn.qkv`` local)."""
    arch = {**twins_module.PCPVT_DEFAULTS, **twins_module.PCPVT_TYPES.get(structure_type, {}),
            **twins_module.SVT_TYPES.get(structure_type, {})}
    dims, local, shapes, previous = arch["embed_dims"], structure_type.startswith("svt"), {}, 3
    for i, (c, depth, ratio, sr) in enumerate(zip(dims, arch["depths"], arch["mlp_ratios"], (8, 4, 2, 1),
                                                  strict=True)):
        patch = 4 if i == 0 else 2
        shapes |= {f"patch_embeds.{i}.proj.weight": (c, previous, patch, patch), f"patch_embeds.{i}.proj.bias": (c,),
                   f"patch_embeds.{i}.norm.weight": (c,), f"patch_embeds.{i}.norm.bias": (c,),
                   f"pos_block.{i}.proj.0.weight": (c, 1, 3, 3), f"pos_block.{i}.proj.0.bias": (c,)}
        for j in range(depth):
            block = f"blocks.{i}.{j}"
            shapes |= {f"{block}.{n}.{p}": (c,) for n in ("norm1", "norm2") for p in ("weight", "bias")}
            shapes |= {f"{block}.attn.proj.weight": (c, c), f"{block}.attn.proj.bias": (c,),
                       f"{block}.mlp.fc1.weight": (int(c * ratio), c), f"{block}.mlp.fc1.bias": (int(c * ratio),),
                       f"{block}.mlp.fc2.weight": (c, int(c * ratio)), f"{block}.mlp.fc2.bias": (c,)}
            if local and j % 2 == 0:
                shapes |= {f"{block}.attn.qkv.weight": (3 * c, c), f"{block}.attn.qkv.bias": (3 * c,)}
                continue
            shapes |= {f"{block}.attn.q.weight": (c, c), f"{block}.attn.q.bias": (c,),
                       f"{block}.attn.kv.weight": (2 * c, c), f"{block}.attn.kv.bias": (2 * c,)}
            if sr > 1:
                shapes |= {f"{block}.attn.sr.weight": (c, c, sr, sr), f"{block}.attn.sr.bias": (c,),
                           f"{block}.attn.norm.weight": (c,), f"{block}.attn.norm.bias": (c,)}
        previous = c
    return shapes | {"norm.weight": (dims[-1],), "norm.bias": (dims[-1],), "head.weight": (1000, dims[-1]),
                     "head.bias": (1000,)}


@pytest.mark.parametrize("structure_type", ["pcpvt_small", "pcpvt_large", "svt_small", "svt_large"])
def test_official_layout_loads(structure_type):
    backbone = build(structure_type)
    norms = [f"norm_list.{i}.{p}" for i in range(4) for p in ("weight", "bias")] if backbone.norm_list else []
    check_conversion(backbone, official_shapes(structure_type), convert_official_twins, missing=norms)


def brute_force_local_attention(attn: MaskedLocallyGroupedAttn, x: torch.Tensor, size) -> torch.Tensor:
    """Each real token attends to the real tokens of its window only (what the mask means)."""
    height, width = size
    tokens = x.view(height, width, -1)
    heads, ws, out = attn.num_heads, attn.ws, torch.empty_like(tokens)
    for top in range(0, height, ws):
        for left in range(0, width, ws):
            window = tokens[top:top + ws, left:left + ws]
            flat = window.reshape(-1, window.shape[-1])
            q, k, v = attn.qkv(flat).reshape(-1, 3, heads, flat.shape[-1] // heads).permute(1, 2, 0, 3)
            mixed = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1) @ v
            out[top:top + ws, left:left + ws] = mixed.transpose(0, 1).reshape(window.shape)
    return attn.proj(out.reshape(1, height * width, -1))


@pytest.mark.parametrize("size", [(6, 7), (4, 6), (8, 8)])  # padded below+right, right only (SSSeg unmasked), none
def test_locally_grouped_attention_masks_exactly_the_padding(size):
    torch.manual_seed(0)
    backbone = SVT(**SMALL, window_sizes=(4, 4, 4, 4), pretrained=False).eval()
    attn = backbone.blocks[0][0].attn
    assert isinstance(attn, MaskedLocallyGroupedAttn)
    x = torch.randn(1, size[0] * size[1], 16)
    with torch.no_grad():
        assert torch.allclose(attn(x, size), brute_force_local_attention(attn, x, size), atol=1e-5)


def test_any_input_size_and_errors():
    backbone = SVT(**SMALL, windiow_sizes=(4, 4, 4, 4), out_indices=(0, 2), pretrained=False)
    assert len(backbone.blocks) == 3 and backbone.norm_list is not None
    with torch.no_grad():
        assert [o.shape[-2:] for o in backbone(images(1, 50)[..., :37])] == [(13, 10), (4, 3)]
    check_contract(backbone, size=64)
    with pytest.raises(ArgumentError, match="window_sizes and windiow_sizes"):
        SVT(**SMALL, windiow_sizes=(4, 4, 4, 4), window_sizes=(7, 7, 7, 7), pretrained=False)
    with pytest.raises(ArgumentError, match="PCPVT needs a channel LayerNorm"):
        PCPVT(norm_cfg={"type": "SyncBatchNorm"}, pretrained=False)
    with pytest.raises(ArgumentError, match="non-overlapping patch embeddings"):
        PCPVT(patch_sizes=(7, 3, 3, 3), pretrained=False)
    with pytest.raises(ArgumentError, match="depths=.* conflicts with structure_type 'pcpvt_base'"):
        PCPVT(structure_type="pcpvt_base", depths=(3, 4, 6, 3), pretrained=False)
