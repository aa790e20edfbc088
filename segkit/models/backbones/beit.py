"""``BEiT`` and ``MAE``: ViTs with layer scale and a relative position bias per layer, in SSSegmentation's layout.

Parameter names (``layers.{i}.ln1``, ``layers.{i}.attn.{q_bias,v_bias,qkv,relative_position_bias_table,proj}``,
``layers.{i}.ffn.layers.0.0``, ``layers.{i}.gamma_1``) are SSSegmentation's/mmseg's. The official BEiT and MAE
releases (``blocks.{i}.norm1``, ``mlp.fc1``, ...) are converted on load; relative position bias tables are resized
with torch (bicubic on the ``(2h-1) x (2w-1)`` grid, as mmpretrain and timm do): SSSegmentation uses
``scipy.interpolate.interp2d``, removed in SciPy 1.14, so its BEiT cannot load weights on a current SciPy.
A forward pass at another token grid than ``img_size // patch_size`` resizes the tables (and MAE's position
embedding) on the fly, where SSSegmentation would fail with a shape error.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from ...registry import BACKBONES
from ..layers import build_norm
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone
from .vit import (
    FFN,
    GELU_CFG,
    LN_CFG,
    PatchEmbed,
    check_structure,
    drop_path_rates,
    official_url,
    rename_official_key,
    resize_pos_embed,
    resolve_out_indices,
    square_grid,
    tokens_to_map,
)

logger = logging.getLogger("segkit.models")

PRETRAINED_URLS: dict[str, str] = {
    "beit_base_patch16_224_pt22k_ft22k": "https://github.com/SegmentationBLWX/modelstore/releases/download/"
                                         "ssseg_beit/beit_base_patch16_224_pt22k_ft22k.pth",
    "beit_large_patch16_224_pt22k_ft22k": "https://github.com/SegmentationBLWX/modelstore/releases/download/"
                                          "ssseg_beit/beit_large_patch16_224_pt22k_ft22k.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for BEiT (official BEiT releases, key layout ``blocks.{i}...``)."""

STRUCTURE_ARGUMENTS: dict[str, dict] = {
    "beit_base_patch16_224_pt22k_ft22k": {},
    "beit_large_patch16_224_pt22k_ft22k": {
        "embed_dims": 1024, "num_layers": 24, "num_heads": 16, "mlp_ratio": 4, "qv_bias": True, "init_values": 1e-6,
        "drop_path_rate": 0.2, "out_indices": (7, 11, 15, 23),
    },
}
"""The arguments each BEiT structure type fixes (SSSegmentation's ``AUTO_ASSERT_STRUCTURE_TYPES``)."""

MAE_PRETRAINED_URLS: dict[str, str] = {
    "mae_pretrain_vit_base": "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MAE (the official MAE encoder, timm ViT key layout)."""

NUM_EXTRA_DISTANCES = 3  # cls->token, token->cls, cls->cls


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """``(h*w + 1, h*w + 1)`` indices into a table of ``(2h-1)(2w-1) + 3`` relative positions (BEiT's layout:
    token pairs by their offset, then the three class-token relations)."""
    h, w = window
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    offsets = (relative[..., 0] + h - 1) * (2 * w - 1) + (relative[..., 1] + w - 1)
    num_distances = (2 * h - 1) * (2 * w - 1) + NUM_EXTRA_DISTANCES
    index = torch.zeros(h * w + 1, h * w + 1, dtype=torch.long)
    index[1:, 1:] = offsets
    index[0, :] = num_distances - 3
    index[:, 0] = num_distances - 2
    index[0, 0] = num_distances - 1
    return index


def resize_relative_position_table(table: torch.Tensor, dst_window: tuple[int, int],
                                   src_window: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize a ``((2h-1)(2w-1) + 3, heads)`` table to ``dst_window`` (bicubic, torch); the 3 class-token entries
    are kept. ``src_window`` defaults to the square window the table's size implies."""
    if src_window is None:
        side = square_grid(table.shape[0] - NUM_EXTRA_DISTANCES, "relative_position_bias_table")[0]
        src_window = ((side + 1) // 2, (side + 1) // 2)
    if tuple(src_window) == tuple(dst_window):
        return table
    src = (2 * src_window[0] - 1, 2 * src_window[1] - 1)
    dst = (2 * dst_window[0] - 1, 2 * dst_window[1] - 1)
    grid, extra = table[:-NUM_EXTRA_DISTANCES], table[-NUM_EXTRA_DISTANCES:]
    grid = grid.T.reshape(1, -1, *src)
    grid = F.interpolate(grid.float(), size=dst, mode="bicubic", align_corners=False).to(table.dtype)
    return torch.cat([grid.reshape(-1, dst[0] * dst[1]).T, extra], dim=0)


class BEiTAttention(nn.Module):
    """Multi-head self-attention with a learned relative position bias (and BEiT's q/v-only biases with
    ``bias="qv_bias"``; ``True``: a full qkv bias as MAE; ``False``: none)."""

    def __init__(self, embed_dims: int, num_heads: int, window_size: tuple[int, int], bias: str | bool = "qv_bias",
                 attn_drop_rate: float = 0.0, proj_drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (embed_dims // num_heads) ** -0.5
        self.window_size = tuple(window_size)
        self.qv_bias = bias == "qv_bias"
        if self.qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        num_distances = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) + NUM_EXTRA_DISTANCES
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_distances, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(self.window_size), persistent=False)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=bool(bias) and not self.qv_bias)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def relative_position_bias(self, hw: tuple[int, int]) -> torch.Tensor:
        """``(heads, h*w + 1, h*w + 1)`` bias for a token grid ``hw`` (the table resized when it is not the window)."""
        table, index = self.relative_position_bias_table, self.relative_position_index
        if tuple(hw) != self.window_size:
            table = resize_relative_position_table(table, hw, self.window_size)
            index = relative_position_index(hw).to(table.device)
        tokens = hw[0] * hw[1] + 1
        return table[index.reshape(-1)].reshape(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        batch, num_tokens, channels = x.shape
        bias = self.qkv.bias
        if self.qv_bias:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, num_tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.relative_position_bias(hw).unsqueeze(0)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(batch, num_tokens, channels)
        return self.proj_drop(self.proj(x))


class BEiTTransformerEncoderLayer(nn.Module):
    """``x + drop_path(gamma_1 * attn(ln1(x)))``, then ``x + drop_path(gamma_2 * ffn(ln2(x)))``."""

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int, window_size: tuple[int, int],
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_fcs: int = 2,
                 bias: str | bool = "qv_bias", act_cfg: dict | None = GELU_CFG, norm_cfg: dict | None = LN_CFG,
                 init_values: float = 0.1) -> None:
        super().__init__()
        self.ln1 = build_norm(norm_cfg, embed_dims)
        self.attn = BEiTAttention(embed_dims, num_heads, window_size, bias, attn_drop_rate)
        self.ln2 = build_norm(norm_cfg, embed_dims)
        self.ffn = FFN(embed_dims, feedforward_channels, num_fcs, act_cfg)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.gamma_1 = nn.Parameter(init_values * torch.ones(embed_dims))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(embed_dims))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.ln1(x), hw))
        return x + self.drop_path(self.gamma_2 * self.ffn(self.ln2(x)))


@BACKBONES.register("BEiT")
class BEiT(Backbone):
    """BEiT returning the maps of the layers in ``out_indices`` at stride ``patch_size`` (SSSegmentation's ``BEiT``
    arguments), for UPerNet through :class:`~segkit.models.layers.feature2pyramid.Feature2Pyramid`.

    ``pretrained=True`` loads ``pretrained_model_path`` or the official weights of ``structure_type``: keys are
    converted, relative position tables resized to ``img_size // patch_size``. ``final_norm`` normalises the last
    layer (``norm1``).
    """

    qkv_bias_mode: str | bool = "qv_bias"
    urls = PRETRAINED_URLS

    def __init__(
        self,
        structure_type: str | None = None,
        img_size: int | tuple[int, int] = (640, 640),
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4,
        out_indices: int | tuple[int, ...] = (3, 5, 7, 11),
        qv_bias: bool = True,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_cfg: dict | None = LN_CFG,
        act_cfg: dict | None = GELU_CFG,
        patch_norm: bool = False,
        final_norm: bool = False,
        num_fcs: int = 2,
        init_values: float = 0.1,
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        check_structure(structure_type, self.urls, STRUCTURE_ARGUMENTS, locals())
        self.structure_type = structure_type
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = patch_size
        self.window_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.final_norm = final_norm
        self.init_values = init_values
        self.out_indices = resolve_out_indices(out_indices, num_layers)
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size, 0, True, norm_cfg if patch_norm else None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self._build_position_embedding(embed_dims)
        bias = self.qkv_bias_mode if qv_bias else False
        self.layers = nn.ModuleList(
            BEiTTransformerEncoderLayer(embed_dims, num_heads, int(mlp_ratio * embed_dims), self.window_size,
                                        attn_drop_rate, rate, num_fcs, bias, act_cfg, norm_cfg, init_values)
            for rate in drop_path_rates(drop_path_rate, num_layers))
        if final_norm:
            self.norm1 = build_norm(norm_cfg, embed_dims)
        self.feature_info = [{"num_chs": embed_dims, "reduction": patch_size, "module": f"layers.{i}"}
                             for i in self.out_indices]
        self._init_weights()
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def _build_position_embedding(self, embed_dims: int) -> None:
        """BEiT has no absolute position embedding (MAE adds one)."""

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for layer in self.layers:
            nn.init.trunc_normal_(layer.attn.relative_position_bias_table, std=0.02)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load ``pretrained_model_path`` or the official weights of ``structure_type`` (converted, resized)."""
        url = official_url(self.structure_type, self.urls, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None, convert=self.convert_official)

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official release's state dict -> this layout, relative position tables resized to the window."""
        final = "norm1" if self.final_norm else None
        renamed = {new: v for k, v in state_dict.items() if (new := rename_official_key(k, final)) is not None}
        for key, value in renamed.items():
            if key.endswith("relative_position_bias_table"):
                renamed[key] = resize_relative_position_table(value, self.window_size)
        return renamed

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with the class token in front, and the token grid."""
        tokens, hw = self.patch_embed(x)
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1), hw

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens, hw = self.embed(x)
        outputs = []
        for index, layer in enumerate(self.layers):
            tokens = layer(tokens, hw)
            if self.final_norm and index == len(self.layers) - 1:
                tokens = self.norm1(tokens)
            if index in self.out_indices:
                outputs.append(tokens_to_map(tokens, hw, 1))
        return outputs


@BACKBONES.register("MAE")
class MAE(BEiT):
    """The MAE-pretrained ViT as SSSegmentation fine-tunes it: BEiT's layers with a full qkv bias, layer scale
    (``init_values=1.0``), a relative position bias per layer and an absolute position embedding.

    The official MAE encoder has neither layer scale nor relative position bias: on load these keep their initial
    values (gammas ``init_values``, tables zero, so the pretrained function is unchanged), which the load report
    does not count as missing. Unlike SSSegmentation (truncated-normal tables) the tables start at zero, as in MAE's
    and mmseg's fine-tuning code. ``pos_embed`` is resized (bicubic) to ``img_size // patch_size``.
    """

    structure_types = tuple(MAE_PRETRAINED_URLS)

    qkv_bias_mode = True
    urls = MAE_PRETRAINED_URLS

    def __init__(
        self,
        structure_type: str | None = None,
        img_size: int | tuple[int, int] = (640, 640),
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4,
        out_indices: int | tuple[int, ...] = (3, 5, 7, 11),
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_cfg: dict | None = LN_CFG,
        act_cfg: dict | None = GELU_CFG,
        patch_norm: bool = False,
        final_norm: bool = False,
        num_fcs: int = 2,
        init_values: float = 1.0,
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__(
            structure_type, img_size, patch_size, in_channels, embed_dims, num_layers, num_heads, mlp_ratio,
            out_indices, True, attn_drop_rate, drop_path_rate, norm_cfg, act_cfg, patch_norm, final_norm, num_fcs,
            init_values, pretrained, pretrained_model_path,
        )

    def _build_position_embedding(self, embed_dims: int) -> None:
        num_tokens = self.window_size[0] * self.window_size[1] + 1
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dims))

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The official MAE encoder -> this layout: ``pos_embed`` resized, and the layer-scale gammas and relative
        position tables it lacks taken from this model's initial values."""
        renamed = super().convert_official(state_dict)
        if "pos_embed" in renamed and renamed["pos_embed"].shape != self.pos_embed.shape:
            source_grid = square_grid(renamed["pos_embed"].shape[1] - 1, "pos_embed")
            renamed["pos_embed"] = resize_pos_embed(renamed["pos_embed"], source_grid, self.window_size, "bicubic")
        kept = [k for k in self.state_dict() if k.endswith(("gamma_1", "gamma_2", "relative_position_bias_table"))
                and k not in renamed]
        if kept:
            logger.info("MAE: %d layer-scale/relative-position parameters are not in the checkpoint and keep their "
                        "initial values", len(kept))
        own = self.state_dict()
        return {**{k: own[k] for k in kept}, **renamed}

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        tokens, hw = super().embed(x)
        return tokens + resize_pos_embed(self.pos_embed, self.window_size, hw, "bicubic"), hw
