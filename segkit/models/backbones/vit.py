"""``VisionTransformer`` in the parameter layout of SSSegmentation's (and mmseg's) ViT, plus what BEiT/MAE share.

Parameter names (``patch_embed.projection``, ``layers.{i}.ln1``, ``layers.{i}.attn.attn.in_proj_weight``,
``layers.{i}.ffn.layers.0.0``, ``ln1``) are SSSegmentation's, so its segmentation checkpoints load after renaming the
segmentor prefix (``backbone_net.`` -> ``backbone.``) only. Official ViT releases (timm/JAX layout: ``blocks.{i}.norm1``,
``attn.qkv``, ``mlp.fc1``, ...) are converted on load, and their position embedding is interpolated (torch) to the
configured ``img_size``; at run time it is interpolated again when the input's token grid differs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...registry import BACKBONES
from ..layers import ArgumentError, build_act, build_norm
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone

LN_CFG: dict = {"type": "LayerNorm", "eps": 1e-6}
GELU_CFG: dict = {"type": "GELU"}

PRETRAINED_URLS: dict[str, str] = {
    "jx_vit_large_p16_384": "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"
                            "jx_vit_large_p16_384-b3be5167.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for ViT (the official ViT-L/16 at 384, timm/JAX key layout)."""

STRUCTURE_ARGUMENTS: dict[str, dict] = {
    "jx_vit_large_p16_384": {
        "patch_size": 16, "embed_dims": 1024, "num_layers": 24, "num_heads": 16, "mlp_ratio": 4, "qkv_bias": True,
        "drop_rate": 0.1, "attn_drop_rate": 0.0, "drop_path_rate": 0.0, "with_cls_token": True,
        "output_cls_token": False, "patch_norm": False, "final_norm": False, "num_fcs": 2,
    },
}
"""The arguments each structure type fixes (SSSegmentation's ``AUTO_ASSERT_STRUCTURE_TYPES``)."""


# ----------------------------------------------------------------------------------------------- shared helpers


def check_structure(structure_type: str | None, known: Iterable[str], fixed: dict[str, dict],
                    given: dict[str, object]) -> None:
    """Reject an unknown ``structure_type`` and arguments that contradict the ones it fixes (SSSeg asserts them)."""
    if structure_type is None:
        return
    known = sorted(set(known))
    if structure_type not in known:
        raise ArgumentError("structure_type", f"unknown structure_type '{structure_type}' (known: {', '.join(known)})")
    for name, expected in fixed.get(structure_type, {}).items():
        value = given[name]
        as_tuple = tuple(value) if isinstance(value, list | tuple) else value
        if as_tuple != (tuple(expected) if isinstance(expected, list | tuple) else expected):
            raise ArgumentError(name, f"{name}={value!r} does not match structure_type '{structure_type}', "
                                f"which has {name}={expected!r}")


def official_url(structure_type: str | None, urls: dict[str, str], pretrained_model_path: str) -> str | None:
    """The URL to load when ``pretrained`` is set: ``None`` with a local file, else the structure type's URL."""
    if pretrained_model_path:
        if not os.path.isfile(pretrained_model_path):
            raise ArgumentError("pretrained_model_path", f"no such file: {pretrained_model_path}")
        return None
    if structure_type not in urls:
        raise ArgumentError("pretrained", f"no official weights for structure_type {structure_type!r} (available: "
                            f"{', '.join(sorted(urls))}); set pretrained = false or give pretrained_model_path")
    return urls[structure_type]


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth growing linearly from 0 to ``rate`` over ``depth`` layers (``torch.linspace``, in Python so
    that a meta-device build works)."""
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


def resolve_out_indices(out_indices: int | tuple[int, ...], num_layers: int) -> tuple[int, ...]:
    """SSSeg's ``out_indices``: an int (``-1``: the last layer) or a sequence; returned sorted, unique, checked."""
    indices = (num_layers - 1 if out_indices == -1 else out_indices,) if isinstance(out_indices, int) else out_indices
    if not indices or any(not 0 <= i < num_layers for i in indices):
        raise ArgumentError("out_indices", f"expected layer indices in 0..{num_layers - 1} (or -1), got {out_indices}")
    return tuple(sorted(set(indices)))


def resize_pos_embed(pos_embed: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int],
                     mode: str = "bicubic", num_extra_tokens: int = 1) -> torch.Tensor:
    """Interpolate a ``(1, extra + h*w, C)`` position embedding from grid ``src_hw`` to ``dst_hw`` (torch; the first
    ``num_extra_tokens`` entries, the class token's, are kept as they are)."""
    if tuple(src_hw) == tuple(dst_hw):
        return pos_embed
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    grid = grid.reshape(1, src_hw[0], src_hw[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_hw), mode=mode, align_corners=False).to(pos_embed.dtype)
    return torch.cat([extra, grid.flatten(2).transpose(1, 2)], dim=1)


def square_grid(num_tokens: int, what: str) -> tuple[int, int]:
    """``(side, side)`` of the square grid of ``num_tokens`` tokens (official checkpoints are square)."""
    side = round(num_tokens ** 0.5)
    if side * side != num_tokens:
        raise ArgumentError("pretrained_model_path", f"{what}: {num_tokens} tokens do not form a square grid")
    return side, side


def tokens_to_map(tokens: torch.Tensor, hw: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """``(B, prefix + h*w, C)`` tokens -> ``(B, C, h, w)`` map (prefix tokens dropped)."""
    tokens = tokens[:, num_prefix_tokens:]
    return tokens.reshape(tokens.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2).contiguous()


_OFFICIAL_BLOCK_RENAMES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^blocks\.(\d+)\.norm([12])\.", r"layers.\1.ln\2."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."),
]
_VIT_ATTENTION_RENAMES: list[tuple[str, str]] = [
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"layers.\1.attn.attn.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj."),
]
CLASSIFIER_PREFIXES = ("head.", "fc_norm.", "pre_logits.")


def rename_official_key(key: str, final_norm_name: str | None,
                        attention_renames: list[tuple[str, str]] = ()) -> str | None:
    """Official (timm/BEiT/MAE release) key -> this layout; ``None`` drops it (classifier, an unused final norm,
    derived ``relative_position_index`` buffers). Keys already in this layout pass unchanged."""
    if key.startswith(CLASSIFIER_PREFIXES) or key.endswith("relative_position_index"):
        return None
    if key.startswith("norm."):
        return None if final_norm_name is None else final_norm_name + key[len("norm"):]
    for pattern, replacement in [*_OFFICIAL_BLOCK_RENAMES, *attention_renames]:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return re.sub(r"^blocks\.", "layers.", key)


# ----------------------------------------------------------------------------------------------- blocks


class PatchEmbed(nn.Module):
    """Non-overlapping conv patch embedding -> tokens ``(B, h*w, C)`` and the grid ``(h, w)``.

    ``padding="corner"`` pads the input at the bottom/right (``"same"``: evenly) up to a multiple of the patch size
    (mmseg's adaptive padding); an int pads the convolution instead.
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, padding: str | int = "corner",
                 bias: bool = True, norm_cfg: dict | None = None) -> None:
        super().__init__()
        if isinstance(padding, str) and padding not in ("corner", "same"):
            raise ArgumentError("patch_pad", f"expected 'corner', 'same' or an int, got {padding!r}")
        self.patch_size = patch_size
        self.adaptive_padding = padding if isinstance(padding, str) else None
        conv_padding = 0 if isinstance(padding, str) else padding
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size, padding=conv_padding,
                                    bias=bias)
        self.norm = build_norm(norm_cfg, embed_dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.adaptive_padding is not None:
            pad_h, pad_w = (-x.shape[-2]) % self.patch_size, (-x.shape[-1]) % self.patch_size
            if pad_h or pad_w:
                if self.adaptive_padding == "corner":
                    x = F.pad(x, [0, pad_w, 0, pad_h])
                else:
                    x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class FFN(nn.Module):
    """``num_fcs`` linear layers with an activation between them (``layers.0.0``, ..., ``layers.{n-1}``)."""

    def __init__(self, embed_dims: int, feedforward_channels: int, num_fcs: int = 2, act_cfg: dict | None = GELU_CFG,
                 ffn_drop: float = 0.0) -> None:
        super().__init__()
        if num_fcs < 2:
            raise ArgumentError("num_fcs", f"must be at least 2, got {num_fcs}")
        hidden: list[nn.Module] = []
        channels = embed_dims
        for _ in range(num_fcs - 1):
            hidden.append(nn.Sequential(nn.Linear(channels, feedforward_channels), build_act(act_cfg),
                                        nn.Dropout(ffn_drop)))
            channels = feedforward_channels
        self.layers = nn.Sequential(*hidden, nn.Linear(channels, embed_dims), nn.Dropout(ffn_drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` on batch-first tokens (child ``attn``), then dropout."""

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float, proj_drop: float, bias: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=attn_drop, bias=bias, batch_first=True)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.attn(x, x, x, need_weights=False)[0])


class TransformerEncoderLayer(nn.Module):
    """Pre-norm transformer layer: ``x + drop_path(attn(ln1(x)))``, then ``x + drop_path(ffn(ln2(x)))``."""

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_fcs: int = 2, qkv_bias: bool = True,
                 act_cfg: dict | None = GELU_CFG, norm_cfg: dict | None = LN_CFG) -> None:
        super().__init__()
        self.ln1 = build_norm(norm_cfg, embed_dims)
        self.attn = SelfAttention(embed_dims, num_heads, attn_drop_rate, drop_rate, qkv_bias)
        self.ln2 = build_norm(norm_cfg, embed_dims)
        self.ffn = FFN(embed_dims, feedforward_channels, num_fcs, act_cfg, drop_rate)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return x + self.drop_path(self.ffn(self.ln2(x)))


def run_layer(layer: nn.Module, x: torch.Tensor, use_checkpoint: bool, training: bool) -> torch.Tensor:
    """Run ``layer``, recomputing it in the backward pass when ``use_checkpoint`` and training with gradients."""
    if use_checkpoint and training and torch.is_grad_enabled():
        return checkpoint(layer, x, use_reentrant=False)
    return layer(x)


# ----------------------------------------------------------------------------------------------- backbone


@BACKBONES.register("VisionTransformer")
class VisionTransformer(Backbone):
    """ViT returning the token maps of the layers in ``out_indices`` as NCHW maps at stride ``patch_size``
    (SSSegmentation's ``VisionTransformer`` arguments; SETR uses these maps as they are, UPerNet through
    :class:`~segkit.models.layers.feature2pyramid.Feature2Pyramid`).

    ``out_origin`` prepends the patch embedding's map; ``pre_norm`` adds a LayerNorm (``pre_ln``) before the layers;
    ``final_norm`` normalises the last layer's tokens (``ln1``). ``output_cls_token`` is accepted for recipe
    compatibility: the backbone contract returns tensors, so ``forward`` gives the maps and
    :meth:`forward_with_cls_tokens` gives ``(map, cls_token)`` pairs. ``structure_type`` names the official weights
    and fixes the arguments listed in ``STRUCTURE_ARGUMENTS`` (a contradicting argument is an error).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        patch_pad: str | int = "corner",
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4,
        out_origin: bool = False,
        out_indices: int | tuple[int, ...] = (9, 14, 19, 23),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        with_cls_token: bool = True,
        output_cls_token: bool = False,
        norm_cfg: dict | None = LN_CFG,
        act_cfg: dict | None = GELU_CFG,
        patch_norm: bool = False,
        patch_bias: bool = True,
        pre_norm: bool = False,
        final_norm: bool = False,
        interpolate_mode: Literal["bilinear", "bicubic"] = "bilinear",
        num_fcs: int = 2,
        use_checkpoint: bool = False,
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        check_structure(structure_type, PRETRAINED_URLS, STRUCTURE_ARGUMENTS, locals())
        if output_cls_token and not with_cls_token:
            raise ArgumentError("output_cls_token", "output_cls_token needs with_cls_token = true")
        self.structure_type = structure_type
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = patch_size
        self.pos_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.with_cls_token, self.output_cls_token = with_cls_token, output_cls_token
        self.out_origin, self.final_norm = out_origin, final_norm
        self.interpolate_mode = interpolate_mode
        self.use_checkpoint = use_checkpoint
        self.out_indices = resolve_out_indices(out_indices, num_layers)
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size, patch_pad, patch_bias,
                                      norm_cfg if patch_norm else None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1] + 1, embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)
        self.pre_ln = build_norm(norm_cfg, embed_dims) if pre_norm else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dims, num_heads, int(mlp_ratio * embed_dims), drop_rate, attn_drop_rate,
                                    rate, num_fcs, qkv_bias, act_cfg, norm_cfg)
            for rate in drop_path_rates(drop_path_rate, num_layers))
        if final_norm:
            self.ln1 = build_norm(norm_cfg, embed_dims)
        modules = (["patch_embed"] if out_origin else []) + [f"layers.{i}" for i in self.out_indices]
        self.feature_info = [{"num_chs": embed_dims, "reduction": patch_size, "module": m} for m in modules]
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load ``pretrained_model_path`` or the official weights of ``structure_type`` (converted, resized)."""
        url = official_url(self.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None, convert=self.convert_official)

    def convert_official(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An official ViT state dict (timm/JAX layout) -> this layout, ``pos_embed`` resized to ``img_size``."""
        final = "ln1" if self.final_norm else None
        renamed = {new: v for k, v in state_dict.items()
                   if (new := rename_official_key(k, final, _VIT_ATTENTION_RENAMES)) is not None}
        if "pos_embed" in renamed and renamed["pos_embed"].shape != self.pos_embed.shape:
            source_grid = square_grid(renamed["pos_embed"].shape[1] - 1, "pos_embed")
            renamed["pos_embed"] = resize_pos_embed(renamed["pos_embed"], source_grid, self.pos_grid,
                                                    self.interpolate_mode)
        return renamed

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [feature for feature, _ in self._forward(x)]

    def forward_with_cls_tokens(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(map, cls_token)`` per output (SSSegmentation's ``output_cls_token=True`` outputs)."""
        if not self.with_cls_token:
            raise ArgumentError("with_cls_token", "the class token is dropped (with_cls_token = false)")
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tokens, hw = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        pos_embed = resize_pos_embed(self.pos_embed, self.pos_grid, hw, self.interpolate_mode)
        tokens = self.drop_after_pos(tokens + pos_embed)
        if not self.with_cls_token:
            tokens = tokens[:, 1:]
        tokens = self.pre_ln(tokens)
        prefix = 1 if self.with_cls_token else 0
        outputs = [(tokens_to_map(tokens, hw, prefix), tokens[:, 0])] if self.out_origin else []
        for index, layer in enumerate(self.layers):
            tokens = run_layer(layer, tokens, self.use_checkpoint, self.training)
            if self.final_norm and index == len(self.layers) - 1:
                tokens = self.ln1(tokens)
            if index in self.out_indices:
                outputs.append((tokens_to_map(tokens, hw, prefix), tokens[:, 0]))
        return outputs
