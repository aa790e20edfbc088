"""Swin Transformer (Liu et al., 2021) on timm's modules, with SSSegmentation's arguments, padding and weights.

Parameter names are timm's (``patch_embed.proj``, ``layers.i.downsample`` at the start of stage ``i >= 1``,
``layers.i.blocks.j.attn.qkv``, ``...mlp.fc1``) plus a LayerNorm ``norm{i}`` per output, as SSSegmentation adds.
What differs from timm's own forward, to match SSSegmentation (mmseg) at any input size:

* the image is padded on the right/bottom to a multiple of ``patch_size`` before the patch embedding;
* each window-attention block pads its input to a multiple of the window *before* the cyclic shift and builds the
  shift mask on the padded grid (timm shifts first, then pads), and windows are never shrunk to small feature maps
  (timm's ``always_partition``).

``pretrained = true`` loads the official Microsoft release SSSegmentation lists (``layers.i.downsample`` at the end of
stage ``i``; ``relative_position_index`` and ``attn_mask`` buffers), converted by :func:`convert_official_swin`.
The release's final ``norm`` is not loaded into ``norm3`` (neither does SSSegmentation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
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
    strip_prefix,
)

_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0"
_TYPES = {  # structure_type -> (pretrain_img_size, embed_dims, window_size, depths, num_heads)
    "swin_tiny_patch4_window7_224": (224, 96, 7, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin_small_patch4_window7_224": (224, 96, 7, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin_base_patch4_window7_224": (224, 128, 7, (2, 2, 18, 2), (4, 8, 16, 32)),
    "swin_base_patch4_window7_224_22k": (224, 128, 7, (2, 2, 18, 2), (4, 8, 16, 32)),
    "swin_base_patch4_window12_384": (384, 128, 12, (2, 2, 18, 2), (4, 8, 16, 32)),
    "swin_base_patch4_window12_384_22k": (384, 128, 12, (2, 2, 18, 2), (4, 8, 16, 32)),
    "swin_large_patch4_window12_384_22k": (384, 192, 12, (2, 2, 18, 2), (6, 12, 24, 48)),
    "swin_large_patch4_window12_384_22kto1k": (384, 192, 12, (2, 2, 18, 2), (6, 12, 24, 48)),
}
PRETRAINED_URLS: dict[str, str] = {name: f"{_RELEASE}/{name}.pth" for name in _TYPES}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for SwinTransformer (official release)."""

STRUCTURE_TYPES: dict[str, dict] = {
    name: {"pretrain_img_size": size, "embed_dims": dims, "patch_size": 4, "window_size": window, "mlp_ratio": 4,
           "depths": depths, "num_heads": heads}
    for name, (size, dims, window, depths, heads) in _TYPES.items()
}
"""structure_type -> the architecture it names (timm's model of the same name), as SSSegmentation asserts it."""

DEFAULTS = {"pretrain_img_size": 224, "embed_dims": 96, "patch_size": 4, "window_size": 7, "mlp_ratio": 4,
            "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)}


def _next_stage_downsample(match: Any) -> str:
    return f"layers.{int(match.group(1)) + 1}.downsample"


def convert_official_swin(state_dict: StateDict) -> StateDict:
    """Official Swin keys -> timm's: the patch merging moves to the next stage; buffers, head and final norm go.

    A state dict already in timm's layout (no patch merging in stage 0) keeps its names.
    """
    state_dict = strip_prefix(state_dict)
    official = "layers.0.downsample.reduction.weight" in state_dict
    rules = [(r"^layers\.(\d+)\.downsample", _next_stage_downsample)] if official else []
    return rename_keys(state_dict, rules, drop=(r"relative_position_index$", r"attn_mask$", r"^head\.", r"^norm\."))


def resize_relative_position_tables(state_dict: StateDict, module: nn.Module) -> StateDict:
    """Bicubic resize of relative-position bias tables for another window size (as SSSegmentation does)."""
    own = module.state_dict()
    resized = dict(state_dict)
    for key, table in state_dict.items():
        target = own.get(key)
        if key.endswith("relative_position_bias_table") and target is not None and target.shape != table.shape \
                and target.shape[1] == table.shape[1]:
            heads, old, new = table.shape[1], round(table.shape[0] ** 0.5), round(target.shape[0] ** 0.5)
            grid = table.permute(1, 0).reshape(1, heads, old, old)
            grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
            resized[key] = grid.reshape(heads, new * new).permute(1, 0).contiguous()
    return resized


class PadThenShiftSwinBlock(SwinTransformerBlock):
    """timm's Swin block with mmseg's window padding: pad to window multiples first, then shift and mask.

    The blocks of timm's model are given this class after construction (same parameters, only ``_attn`` differs).
    """

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, channels = x.shape
        window_h, window_w = self.window_size
        x = F.pad(x, (0, 0, 0, (-width) % window_w, 0, (-height) % window_h))
        padded_h, padded_w = x.shape[1:3]
        shift = tuple(self.shift_size)
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            mask = self.get_attn_mask(x)  # region ids on the padded grid: mmseg's mask
        windows = window_partition(x, self.window_size).view(-1, self.window_area, channels)
        windows = self.attn(windows, mask=mask).view(-1, window_h, window_w, channels)
        x = window_reverse(windows, self.window_size, padded_h, padded_w)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :height, :width, :].contiguous()


@BACKBONES.register("SwinTransformer")
class SwinTransformer(Backbone):
    """Swin Transformer returning the normalised stage outputs of ``out_indices`` (SSSegmentation's arguments).

    ``structure_type`` implies the architecture (``pretrain_img_size``, ``embed_dims``, ``patch_size``,
    ``window_size``, ``mlp_ratio``, ``depths``, ``num_heads``); explicit values must agree. SSSegmentation also asserts
    ``drop_path_rate == 0.3`` for every known structure type while defaulting to 0.1; here it is a free training
    setting. ``strides`` must be ``(patch_size, 2, 2, 2)`` (non-overlapping patches, as SSSegmentation asserts).
    ``use_abs_pos_embed`` adds a learned position embedding for the ``pretrain_img_size`` grid, resized bicubically
    for other grids (SSSegmentation's only works at that size). ``qk_scale`` overrides the attention scale.
    """

    ssseg_param_aliases = {"stages.0.downsample": "layers.1.downsample", "stages.1.downsample": "layers.2.downsample",
                           "stages.2.downsample": "layers.3.downsample", "stages.": "layers."}
    """SSSegmentation's (mmseg's) names in params_rules keys -> timm's: ``stages.i`` is ``layers.i``, and the patch
    merging at the end of stage i is timm's ``layers.{i+1}.downsample`` (Mask2Former's per-block norm rules)."""

    def __init__(
        self,
        structure_type: str | None = None,
        pretrain_img_size: int | None = None,
        in_channels: int = 3,
        embed_dims: int | None = None,
        patch_size: int | None = None,
        window_size: int | None = None,
        mlp_ratio: float | None = None,
        depths: tuple[int, int, int, int] | None = None,
        num_heads: tuple[int, int, int, int] | None = None,
        strides: tuple[int, int, int, int] = (4, 2, 2, 2),
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        patch_norm: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        use_abs_pos_embed: bool = False,
        act_cfg: dict | None = {"type": "GELU"},  # noqa: B006 (never mutated)
        norm_cfg: dict | None = {"type": "LayerNorm"},  # noqa: B006
        use_checkpoint: bool = False,
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        require_layer_norm(norm_cfg, "SwinTransformer", ("LayerNorm",))
        given = {"pretrain_img_size": pretrain_img_size, "embed_dims": embed_dims, "patch_size": patch_size,
                 "window_size": window_size, "mlp_ratio": mlp_ratio, "depths": depths, "num_heads": num_heads}
        arch = resolve_structure("SwinTransformer", structure_type, STRUCTURE_TYPES, given, DEFAULTS)
        if tuple(strides) != (arch["patch_size"], 2, 2, 2):
            raise ArgumentError("strides", f"strides must be (patch_size, 2, 2, 2) = ({arch['patch_size']}, 2, 2, 2), "
                                f"got {tuple(strides)}")
        self.structure_type = structure_type
        self.patch_size = arch["patch_size"]
        self.out_indices = select_out_indices(out_indices, len(arch["depths"]))
        model = _build_timm_swin(arch, in_channels, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate, norm_cfg)
        _adapt_blocks(model, act_cfg, qk_scale)
        model.set_grad_checkpointing(use_checkpoint)
        if not patch_norm:
            model.patch_embed.norm = nn.Identity()
            for stage in model.layers[1:]:
                stage.downsample.norm = nn.Identity()
        self.patch_embed = model.patch_embed
        grid = arch["pretrain_img_size"] // self.patch_size
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, arch["embed_dims"])) \
            if use_abs_pos_embed else None
        if self.absolute_pos_embed is not None and not self.absolute_pos_embed.is_meta:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.layers = model.layers[: max(self.out_indices) + 1]
        channels = [arch["embed_dims"] * 2**i for i in range(len(arch["depths"]))]
        for index in self.out_indices:
            self.add_module(f"norm{index}", build_norm(norm_cfg, channels[index]))
        self.feature_info = [feature(channels[i], self.patch_size * 2**i, f"norm{i}") for i in self.out_indices]
        if pretrained:
            load_published_weights(self, family="SwinTransformer", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path,
                         convert=lambda sd: resize_relative_position_tables(convert_official_swin(sd), self))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, (-width) % self.patch_size, 0, (-height) % self.patch_size))
        x = self.patch_embed(x)  # NHWC
        if self.absolute_pos_embed is not None:
            x = x + self._position_embedding(x.shape[1], x.shape[2])
        x = self.drop_after_pos(x)
        outputs = []
        for index, stage in enumerate(self.layers):
            x = stage(x)
            if index in self.out_indices:
                outputs.append(getattr(self, f"norm{index}")(x).permute(0, 3, 1, 2).contiguous())
        return outputs

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        embed = self.absolute_pos_embed
        grid = round(embed.shape[1] ** 0.5)
        embed = embed.reshape(1, grid, grid, -1)
        if (height, width) != (grid, grid):
            embed = F.interpolate(embed.permute(0, 3, 1, 2), size=(height, width), mode="bicubic",
                                  align_corners=False).permute(0, 2, 3, 1)
        return embed


def _build_timm_swin(arch: dict, in_channels: int, qkv_bias: bool, drop_rate: float, attn_drop_rate: float,
                     drop_path_rate: float, norm_cfg: dict | None) -> TimmSwin:
    return TimmSwin(
        img_size=arch["pretrain_img_size"], patch_size=arch["patch_size"], in_chans=in_channels, num_classes=0,
        embed_dim=arch["embed_dims"], depths=tuple(arch["depths"]), num_heads=tuple(arch["num_heads"]),
        window_size=arch["window_size"], always_partition=True, strict_img_size=False, mlp_ratio=arch["mlp_ratio"],
        qkv_bias=qkv_bias, proj_drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
        norm_layer=norm_factory(norm_cfg),
    )


def _adapt_blocks(model: TimmSwin, act_cfg: dict | None, qk_scale: float | None) -> None:
    """mmseg padding in every block; the MLP activation of ``act_cfg``; an explicit attention scale."""
    for stage in model.layers:
        for block in stage.blocks:
            block.__class__ = PadThenShiftSwinBlock
            block.mlp.act = build_act(act_cfg)
            if qk_scale is not None:
                block.attn.scale = qk_scale
                block.attn.fused_attn = False  # the fused kernel uses 1/sqrt(head_dim)
