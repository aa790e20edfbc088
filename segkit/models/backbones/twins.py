"""Twins PCPVT and SVT (Chu et al., 2021) on timm's modules, with SSSegmentation's arguments, padding and weights.

Parameter names are timm's, which are the official release's (``patch_embeds.i.proj``, ``pos_block.i.proj.0``,
``blocks.i.j.attn.q/kv/sr`` for global sub-sampled attention, ``blocks.i.j.attn.qkv`` for locally-grouped attention),
so the checkpoints SSSegmentation publishes (the official files) load after dropping the classifier and the final
norm; ``norm_list.i`` (``norm_after_stage``) is SSSegmentation's per-stage LayerNorm. As in SSSegmentation (mmseg):

* the input of every patch embedding is padded on the right/bottom to a multiple of its patch size;
* locally-grouped attention pads to whole windows and masks attention between real and padded positions (timm's
  attends over the zero padding). SSSegmentation's mask marks every position when only the right side is padded
  (``mask[:, -0:, :]`` selects all rows), which disables it for such inputs; here exactly the padded positions are
  masked (the same for square inputs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models.twins import LocallyGroupedAttn
from timm.models.twins import Twins as TimmTwins
from torch import nn

from ...registry import BACKBONES
from ..layers import ArgumentError, build_act, build_norm
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    feature,
    norm_factory,
    rename_keys,
    require_layer_norm,
    resolve_structure,
    select_out_indices,
)

_STORE = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_twins"
PRETRAINED_URLS: dict[str, str] = {
    "pcpvt_small": f"{_STORE}/pcpvt_small.pth",
    "pcpvt_base": f"{_STORE}/pcpvt_base.pth",
    "pcpvt_large": f"{_STORE}/pcpvt_large.pth",
    "svt_small": f"{_STORE}/alt_gvt_small.pth",
    "svt_base": f"{_STORE}/alt_gvt_base.pth",
    "svt_large": f"{_STORE}/alt_gvt_large.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for Twins (the official checkpoints; SVT is the paper's ALT-GVT)."""

PCPVT_TYPES: dict[str, dict] = {
    "pcpvt_small": {"depths": (3, 4, 6, 3)},
    "pcpvt_base": {"depths": (3, 4, 18, 3)},
    "pcpvt_large": {"depths": (3, 8, 27, 3)},
}
"""structure_type -> architecture (timm's ``twins_pcpvt_*``); the other arguments are shared defaults."""

_SVT_SHARED = {"mlp_ratios": (4, 4, 4, 4), "windiow_sizes": (7, 7, 7, 7)}
SVT_TYPES: dict[str, dict] = {
    "svt_small": {"embed_dims": (64, 128, 256, 512), "num_heads": (2, 4, 8, 16), "depths": (2, 2, 10, 4),
                  **_SVT_SHARED},
    "svt_base": {"embed_dims": (96, 192, 384, 768), "num_heads": (3, 6, 12, 24), "depths": (2, 2, 18, 2),
                 **_SVT_SHARED},
    "svt_large": {"embed_dims": (128, 256, 512, 1024), "num_heads": (4, 8, 16, 32), "depths": (2, 2, 18, 2),
                  **_SVT_SHARED},
}
"""structure_type -> architecture (timm's ``twins_svt_*``), the values SSSegmentation asserts."""

PCPVT_DEFAULTS = {"embed_dims": (64, 128, 320, 512), "num_heads": (1, 2, 5, 8), "mlp_ratios": (8, 8, 4, 4),
                  "depths": (3, 4, 6, 3)}


def convert_official_twins(state_dict: StateDict) -> StateDict:
    """Official Twins keys are timm's; the classifier and the final norm (not used for segmentation) go."""
    return rename_keys(state_dict, [], drop=(r"^head\.", r"^norm\."))


class MaskedLocallyGroupedAttn(LocallyGroupedAttn):
    """timm's locally-grouped attention with mmseg's padding mask (same parameters; given to timm's blocks)."""

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        batch, tokens, channels = x.shape
        height, width = size
        ws = self.ws
        pad_r, pad_b = (-width) % ws, (-height) % ws
        x = F.pad(x.view(batch, height, width, channels), (0, 0, 0, pad_r, 0, pad_b))
        groups_h, groups_w = (height + pad_b) // ws, (width + pad_r) // ws
        x = x.reshape(batch, groups_h, ws, groups_w, ws, channels).transpose(2, 3)
        qkv = self.qkv(x).reshape(batch, groups_h * groups_w, ws * ws, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # batch, groups, heads, ws*ws, head_dim
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if pad_r or pad_b:
            padded = x.new_zeros(height + pad_b, width + pad_r)
            padded[height:, :] = 1
            padded[:, width:] = 1
            padded = padded.reshape(groups_h, ws, groups_w, ws).transpose(1, 2).reshape(groups_h * groups_w, -1)
            attn = attn + ((padded[:, None, :] != padded[:, :, None]) * -1000.0)[None, :, None]
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(2, 3).reshape(batch, groups_h, groups_w, ws, ws, channels)
        x = x.transpose(2, 3).reshape(batch, groups_h * ws, groups_w * ws, channels)[:, :height, :width]
        return self.proj_drop(self.proj(x.reshape(batch, tokens, channels)))


class TwinsFeatures(Backbone):
    """timm's Twins stages with SSSegmentation's forward: what PCPVT and SVT share."""

    ssseg_param_aliases = {"position_encodings": "pos_block"}
    """SSSegmentation names timm's ``pos_block`` ``position_encodings`` (its Twins configs key params_rules on it)."""

    def __init__(self, *, in_channels: int, arch: dict, patch_sizes: Sequence[int], strides: Sequence[int],
                 window_sizes: Sequence[int] | None, sr_ratios: Sequence[int], out_indices: Sequence[int],
                 drop_rate: float, attn_drop_rate: float, drop_path_rate: float, qkv_bias: bool,
                 norm_after_stage: bool, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        require_layer_norm(norm_cfg, type(self).__name__, ("LayerNorm",))
        num_stages = len(arch["depths"])
        if list(patch_sizes) != list(strides) or list(patch_sizes[1:]) != [2] * (num_stages - 1):
            raise ArgumentError("patch_sizes", "Twins uses non-overlapping patch embeddings: patch_sizes == strides "
                                f"== (p, 2, 2, 2), got {tuple(patch_sizes)} and {tuple(strides)}")
        if not qkv_bias:
            raise ArgumentError("qkv_bias", "the Twins attention (and its published weights) has qkv biases")
        self.patch_sizes = tuple(patch_sizes)
        self.out_indices = select_out_indices(out_indices, num_stages)
        model = TimmTwins(
            patch_size=patch_sizes[0], in_chans=in_channels, num_classes=0, embed_dims=tuple(arch["embed_dims"]),
            num_heads=tuple(arch["num_heads"]), mlp_ratios=tuple(arch["mlp_ratios"]), depths=tuple(arch["depths"]),
            sr_ratios=tuple(sr_ratios), wss=tuple(window_sizes) if window_sizes else None, pos_drop_rate=drop_rate,
            proj_drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
            norm_layer=norm_factory(norm_cfg),
        )
        for stage in model.blocks:
            for block in stage:
                if isinstance(block.attn, LocallyGroupedAttn):
                    block.attn.__class__ = MaskedLocallyGroupedAttn
                block.mlp.act = build_act(act_cfg)
        last = max(self.out_indices) + 1
        self.patch_embeds, self.pos_drops = model.patch_embeds[:last], model.pos_drops[:last]
        self.blocks, self.pos_block = model.blocks[:last], model.pos_block[:last]
        dims = arch["embed_dims"]
        self.norm_list = nn.ModuleList([build_norm(norm_cfg, d) for d in dims[:last]]) if norm_after_stage else None
        self.feature_info = [feature(dims[i], patch_sizes[0] * 2**i, f"blocks.{i}") for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, (embed, drop, blocks, position) in enumerate(
                zip(self.patch_embeds, self.pos_drops, self.blocks, self.pos_block, strict=True)):
            patch = self.patch_sizes[index]
            x = F.pad(x, (0, (-x.shape[-1]) % patch, 0, (-x.shape[-2]) % patch))
            x, size = embed(x)
            x = drop(x)
            for number, block in enumerate(blocks):
                x = block(x, size)
                if number == 0:
                    x = position(x, size)  # conditional position encoding after the first block
            if self.norm_list is not None:
                x = self.norm_list[index](x)
            x = x.reshape(x.shape[0], *size, -1).permute(0, 3, 1, 2).contiguous()
            if index in self.out_indices:
                outputs.append(x)
        return outputs

    def load(self, structure_type: str | None, pretrained_model_path: str) -> None:
        load_published_weights(self, family=type(self).__name__, structure_type=structure_type, urls=PRETRAINED_URLS,
                     pretrained_model_path=pretrained_model_path, convert=convert_official_twins)


@BACKBONES.register("PCPVT")
class PCPVT(TwinsFeatures):
    """Twins-PCPVT (global sub-sampled attention, conditional position encoding), SSSegmentation's arguments.

    ``structure_type`` (``pcpvt_small``/``base``/``large``) implies ``depths``; the other architecture arguments
    default to the shared PCPVT values (embed_dims 64/128/320/512, heads 1/2/5/8, mlp ratios 8/8/4/4).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        embed_dims: tuple[int, ...] | None = None,
        patch_sizes: tuple[int, ...] = (4, 2, 2, 2),
        strides: tuple[int, ...] = (4, 2, 2, 2),
        num_heads: tuple[int, ...] | None = None,
        mlp_ratios: tuple[float, ...] | None = None,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        depths: tuple[int, ...] | None = None,
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        norm_after_stage: bool = False,
        norm_cfg: dict | None = {"type": "LayerNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "GELU"},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        given = {"embed_dims": embed_dims, "num_heads": num_heads, "mlp_ratios": mlp_ratios, "depths": depths}
        arch = resolve_structure("PCPVT", structure_type, PCPVT_TYPES, given, PCPVT_DEFAULTS)
        super().__init__(
            in_channels=in_channels, arch=arch, patch_sizes=patch_sizes, strides=strides, window_sizes=None,
            sr_ratios=sr_ratios, out_indices=out_indices, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate, qkv_bias=qkv_bias, norm_after_stage=norm_after_stage,
            norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        self.structure_type = structure_type
        if pretrained:
            self.load(structure_type, pretrained_model_path)


@BACKBONES.register("SVT")
class SVT(TwinsFeatures):
    """Twins-SVT (alternating locally-grouped and global sub-sampled attention), SSSegmentation's arguments.

    ``structure_type`` (``svt_small``/``base``/``large``) implies ``embed_dims``, ``num_heads``, ``mlp_ratios``,
    ``depths`` and the window sizes. ``windiow_sizes`` is SSSegmentation's (misspelt) argument; ``window_sizes`` is
    accepted too. Without ``structure_type`` the defaults are ``svt_small``'s (SSSegmentation's own defaults are
    three-stage lists that do not fit its four patch sizes).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        embed_dims: tuple[int, ...] | None = None,
        patch_sizes: tuple[int, ...] = (4, 2, 2, 2),
        strides: tuple[int, ...] = (4, 2, 2, 2),
        num_heads: tuple[int, ...] | None = None,
        mlp_ratios: tuple[float, ...] | None = None,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        depths: tuple[int, ...] | None = None,
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        windiow_sizes: tuple[int, ...] | None = None,
        window_sizes: tuple[int, ...] | None = None,
        norm_after_stage: bool = True,
        norm_cfg: dict | None = {"type": "LayerNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "GELU"},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        if windiow_sizes is not None and window_sizes is not None and tuple(windiow_sizes) != tuple(window_sizes):
            raise ArgumentError("window_sizes", "window_sizes and windiow_sizes (SSSegmentation's spelling) disagree")
        given = {"embed_dims": embed_dims, "num_heads": num_heads, "mlp_ratios": mlp_ratios, "depths": depths,
                 "windiow_sizes": windiow_sizes if windiow_sizes is not None else window_sizes}
        arch = resolve_structure("SVT", structure_type, SVT_TYPES, given, SVT_TYPES["svt_small"])
        super().__init__(
            in_channels=in_channels, arch=arch, patch_sizes=patch_sizes, strides=strides,
            window_sizes=arch["windiow_sizes"], sr_ratios=sr_ratios, out_indices=out_indices, drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate, qkv_bias=qkv_bias,
            norm_after_stage=norm_after_stage, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        self.structure_type = structure_type
        if pretrained:
            self.load(structure_type, pretrained_model_path)
