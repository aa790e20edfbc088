"""``PositionEmbeddingSine``: DETR's fixed sine/cosine encoding of a feature map's pixel coordinates.

This is the encoding MaskFormer and Mask2Former use (SSSegmentation's ``bricks/transformer/pe.py``):
``num_pos_feats`` channels per axis, so ``2 * num_pos_feats`` in all, y first then x. SAM 2's FPN in
``segkit.models.backbones.hiera`` has its own class of that name whose ``num_pos_feats`` counts both axes together
(``PositionEmbeddingSine(2 * n)`` there equals ``PositionEmbeddingSine(n)`` here, when normalised).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ArgumentError


class PositionEmbeddingSine(nn.Module):
    """``forward(x [B, C, H, W], mask [B, H, W] | None) -> [B, 2 * num_pos_feats, H, W]`` (float32, no gradient).

    Coordinates count valid pixels from 1 (``mask`` marks padding with True); ``normalize`` divides them by the
    last one (``+ 1e-6``) and multiplies by ``scale`` (2π). Channel ``2i`` / ``2i + 1`` holds
    ``sin`` / ``cos`` of ``coord / temperature ** (2i / num_pos_feats)``.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000, normalize: bool = False,
                 scale: float | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        if num_pos_feats < 2 or num_pos_feats % 2:
            raise ArgumentError("num_pos_feats", f"must be a positive even number, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ArgumentError("scale", "scale needs normalize = true")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.eps = eps

    @torch.no_grad()
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, height, width = x.shape
        if mask is None:
            y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=x.device)[None, :, None]
            x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=x.device)[None, None, :]
            y_embed, x_embed = y_embed.expand(batch, height, width), x_embed.expand(batch, height, width)
        else:
            valid = (~mask).to(torch.float32)
            y_embed, x_embed = valid.cumsum(1), valid.cumsum(2)
        if self.normalize:
            y_embed = y_embed / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
