"""``MobileSAMTinyViT``: TinyViT as MobileSAM's image encoder (the last stage keeps stride 16; SAM's conv neck to 256).

Written here rather than wrapped from timm because the weights need the official TinyViT/MobileSAM layout
(``patch_embed.seq.0.c``, ``layers.{i}.blocks.{j}.attn.attention_biases``, ``layers.{i}.downsample.conv2``) that
SSSegmentation's ``tiny_vit_*`` files and MobileSAM's checkpoint (``image_encoder.*``) use, and timm's ``tiny_vit``
has another layout, keeps stride 32 and has no neck. Token grids are computed from the input, so any input size
divisible by 32 works (SSSegmentation hard-codes the 64x64 grid of a 1024 input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_levit
from torch import nn

from ...registry import BACKBONES
from ..layers import ArgumentError, LayerNorm2d
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone
from .vit import check_structure, drop_path_rates, official_url, run_layer

_STORE = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mobilesam/"
PRETRAINED_URLS: dict[str, str] = {name: f"{_STORE}{name}.pth" for name in (
    "tiny_vit_5m_1k", "tiny_vit_11m_1k", "tiny_vit_21m_1k", "tiny_vit_5m_22k_distill", "tiny_vit_11m_22k_distill",
    "tiny_vit_21m_22k_distill", "tiny_vit_5m_22kto1k_distill", "tiny_vit_11m_22kto1k_distill",
    "tiny_vit_21m_22kto1k_distill", "tiny_vit_21m_22kto1k_384_distill", "tiny_vit_21m_22kto1k_512_distill")}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MobileSAMTinyViT (official TinyViT releases)."""

_SIZES: dict[str, dict] = {
    "5m": {"embed_dims": (64, 128, 160, 320), "depths": (2, 2, 6, 2), "num_heads": (2, 4, 5, 10)},
    "11m": {"embed_dims": (64, 128, 256, 448), "depths": (2, 2, 6, 2), "num_heads": (2, 4, 8, 14)},
    "21m": {"embed_dims": (96, 192, 384, 576), "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 18)},
}
_WINDOWS = {"": (7, 7, 14, 7), "384": (12, 12, 24, 12), "512": (16, 16, 32, 16)}
STRUCTURE_ARGUMENTS: dict[str, dict] = {
    name: {**_SIZES[name.split("_")[2]],
           "window_sizes": _WINDOWS["384" if "_384_" in name else "512" if "_512_" in name else ""]}
    for name in PRETRAINED_URLS
}
"""The arguments each structure type fixes: SSSegmentation asserts them for the ``22kto1k`` variants; segkit checks
every variant (TinyViT-5M/11M/21M of the TinyViT paper), so a mismatch is reported before loading fails."""

NECK_CHANNELS = 256


class Conv2dBN(nn.Sequential):
    """Conv (no bias) + BatchNorm, children ``c`` and ``bn`` (the BN weight starts at ``bn_weight_init``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                                       bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_channels))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (GELU), residual, GELU."""

    def __init__(self, channels: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(channels * expand_ratio)
        self.conv1, self.act1 = Conv2dBN(channels, hidden), nn.GELU()
        self.conv2, self.act2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU()
        self.conv3, self.act3 = Conv2dBN(hidden, channels, bn_weight_init=0.0), nn.GELU()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + self.drop_path(y))


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depthwise conv with ``stride``, 1x1 conv (GELU between): a map -> ``out_dim`` channels."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


class Attention(nn.Module):
    """Window self-attention with a learned bias per head and absolute offset inside the window (LeViT style)."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # TinyViT numbers the offsets (|dy|, |dx|) by first appearance over point pairs in row-major order; the
        # first point (0, 0) already meets every offset, in the order dy * window + dx.
        rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        indices = (rows[:, None] - rows[None, :]).abs() * window_size + (cols[:, None] - cols[None, :]).abs()
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", indices, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, -1)
        q, k, v = (t.transpose(1, 2) for t in qkv.split([self.key_dim] * 3, dim=3))
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj(x)


class MLP(nn.Module):
    """LayerNorm, fc1, GELU, fc2 (with dropout)."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), \
            nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm(x))))))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded windows), a 3x3 depthwise conv on the map, then the MLP; on NCHW maps."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, drop: float, drop_path: float,
                 local_conv_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = MLP(dim, int(dim * mlp_ratio), drop)
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        size = self.window_size
        tokens = x.permute(0, 2, 3, 1)
        pad_b, pad_r = (-height) % size, (-width) % size
        padded = F.pad(tokens, (0, 0, 0, pad_r, 0, pad_b))
        rows, cols = (height + pad_b) // size, (width + pad_r) // size
        windows = padded.view(batch, rows, size, cols, size, channels).transpose(2, 3).reshape(-1, size * size,
                                                                                            channels)
        attended = self.attn(windows).view(batch, rows, cols, size, size, channels).transpose(2, 3)
        attended = attended.reshape(batch, rows * size, cols * size, channels)[:, :height, :width]
        tokens = tokens + self.drop_path(attended)
        tokens = self.local_conv(tokens.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        tokens = tokens + self.drop_path(self.mlp(tokens))
        return tokens.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """``blocks`` then an optional ``downsample`` (PatchMerging), as TinyViT's ConvLayer/BasicLayer."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None, use_checkpoint: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = run_layer(block, x, self.use_checkpoint, self.training)
        return x if self.downsample is None else self.downsample(x)


@BACKBONES.register("MobileSAMTinyViT")
class MobileSAMTinyViT(Backbone):
    """TinyViT + SAM neck: one 256-channel map at stride 16 (SSSegmentation's ``MobileSAMTinyViT`` arguments).

    The stem (two stride-2 3x3 convs) gives stride 4; stage 0 is MBConvs, stages 1-3 TinyViT blocks; each stage but
    the last ends with a PatchMerging, of stride 2 except into the last stage (stride 1; MobileSAM keys this on the
    channel count 320/448/576, which is the last stage's in all its configurations).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        img_size: int = 224,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        use_checkpoint: bool = False,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        check_structure(structure_type, PRETRAINED_URLS, STRUCTURE_ARGUMENTS, locals())
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes):
            raise ArgumentError("depths", "embed_dims, depths, num_heads and window_sizes need one entry per stage")
        self.structure_type, self.img_size = structure_type, img_size
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(Conv2dBN(in_chans, embed_dims[0] // 2, 3, 2, 1), nn.GELU(),
                                             Conv2dBN(embed_dims[0] // 2, embed_dims[0], 3, 2, 1))
        rates = drop_path_rates(drop_path_rate, sum(depths))
        self.layers = nn.ModuleList()
        for index, dim in enumerate(embed_dims):
            stage_rates = rates[sum(depths[:index]):sum(depths[:index + 1])]
            if index == 0:
                blocks = [MBConv(dim, mbconv_expand_ratio, rate) for rate in stage_rates]
            else:
                blocks = [TinyViTBlock(dim, num_heads[index], window_sizes[index], mlp_ratio, drop_rate, rate,
                                       local_conv_size) for rate in stage_rates]
            last = index == len(embed_dims) - 1
            downsample = None if last else PatchMerging(dim, embed_dims[index + 1],
                                                        1 if index == len(embed_dims) - 2 else 2)
            self.layers.append(Stage(blocks, downsample, use_checkpoint))
        self.neck = nn.Sequential(nn.Conv2d(embed_dims[-1], NECK_CHANNELS, 1, bias=False), LayerNorm2d(NECK_CHANNELS),
                                  nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 3, padding=1, bias=False),
                                  LayerNorm2d(NECK_CHANNELS))
        reduction = 4 * 2 ** max(len(embed_dims) - 2, 0)
        self.feature_info = [{"num_chs": NECK_CHANNELS, "reduction": reduction, "module": "neck"}]
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load ``pretrained_model_path`` (a TinyViT or MobileSAM checkpoint) or the weights of ``structure_type``."""
        url = official_url(self.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None, convert=self.convert_checkpoint)

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep a MobileSAM checkpoint's ``image_encoder.*``; drop TinyViT's classifier (``head``, ``norm_head``);
        resize attention biases of another window size (timm's LeViT-style resize)."""
        prefix = "image_encoder."
        if any(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        own = self.state_dict()
        converted = {}
        for key, value in state_dict.items():
            if key.startswith(("head.", "norm_head.")) or key.endswith("attention_bias_idxs"):
                continue
            if key.endswith("attention_biases") and key in own and own[key].shape != value.shape:
                value = resize_rel_pos_bias_table_levit(value.T, own[key].shape[::-1]).T
            converted[key] = value
        return converted

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed.seq(x)
        for stage in self.layers:
            x = stage(x)
        return [self.neck(x)]
