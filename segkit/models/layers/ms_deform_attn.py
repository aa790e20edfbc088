"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021) in pure PyTorch.

Each query looks at ``n_points`` locations per head on each of ``n_levels`` feature maps: a location is the query's
reference point plus a learnt offset (in pixels of that level), the value there is read bilinearly (zero outside
the map), and the values are summed with softmax weights taken over all levels and points of the head.

:func:`ms_deform_attn_core` is that sampling-and-sum over already projected values, written with
``F.grid_sample`` (``align_corners=False``, zero padding): the semantics of Deformable DETR's
``ms_deform_attn_core_pytorch`` and of mmcv's ``MultiScaleDeformableAttnFunction``, without a compiled kernel. It
traces and exports to ONNX (``GridSample``, opset >= 16). :class:`MSDeformAttn` is the attention module around it,
with SSSegmentation's (Mask2Former's) parameter names: ``sampling_offsets``, ``attention_weights``,
``value_proj``, ``output_proj``.

Locations are normalised ``(x, y)`` in ``[0, 1]`` per level: ``(0, 0)`` is the top-left corner of the map, pixel
``(i, j)`` has its centre at ``((j + 0.5) / W, (i + 0.5) / H)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ArgumentError

SpatialShapes = Sequence[tuple[int, int]]
"""``(H, W)`` of each level, in the order the levels are concatenated in ``value``."""


def ms_deform_attn_core(value: torch.Tensor, spatial_shapes: SpatialShapes, sampling_locations: torch.Tensor,
                        attention_weights: torch.Tensor) -> torch.Tensor:
    """Deformable attention over several levels.

    ``value`` ``[N, S, M, D]`` (``S = sum(H_l * W_l)``, the levels flattened row-major and concatenated, ``M``
    heads of ``D`` channels); ``sampling_locations`` ``[N, Lq, M, L, P, 2]`` normalised ``(x, y)``;
    ``attention_weights`` ``[N, Lq, M, L, P]``. Returns ``[N, Lq, M * D]``: for every query and head,
    ``sum_{l, p} weight[l, p] * bilinear(value_l, location[l, p])``.
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    if len(spatial_shapes) != levels:
        raise ValueError(f"{len(spatial_shapes)} spatial shapes for {levels} levels of sampling locations")
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    if sum(sizes) != value.shape[1]:
        raise ValueError(f"value has {value.shape[1]} positions, the spatial shapes {list(spatial_shapes)} "
                         f"make {sum(sizes)}")
    # one image per (batch, head): [N * M, D, H, W]; grids [N * M, Lq, P, 2] in grid_sample's [-1, 1]
    grids = (2.0 * sampling_locations - 1.0).transpose(1, 2).flatten(0, 1)
    weights = attention_weights.transpose(1, 2).flatten(0, 1)  # [N * M, Lq, L, P]
    output = value.new_zeros(batch * heads, channels, queries)
    for level, (per_level, (height, width)) in enumerate(zip(value.split(sizes, dim=1), spatial_shapes,
                                                             strict=True)):
        maps = per_level.permute(0, 2, 3, 1).reshape(batch * heads, channels, int(height), int(width))
        sampled = F.grid_sample(maps, grids[:, :, level], mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # [N * M, D, Lq, P]
        output = output + (sampled * weights[:, None, :, level]).sum(-1)
    return output.view(batch, heads * channels, queries).transpose(1, 2)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR's ``MSDeformAttn``; Mask2Former's pixel decoder).

    ``forward(query [N, Lq, C], reference_points [N or 1, Lq, L or 1, 2], value_input [N, S, C],
    spatial_shapes, padding_mask [N, S] | None) -> [N, Lq, C]``. Offsets are predicted in pixels of each level
    (divided by the level's ``(W, H)``), the weights are a softmax over the ``n_levels * n_points`` samples of a
    head. Initialised as the paper: zero offset weights with biases pointing each head in its own direction at
    distances ``1..n_points``, uniform attention, Xavier projections.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ArgumentError("n_heads", f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]  # onto the unit square's border
        scales = torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        bias = directions.view(self.n_heads, 1, 1, 2) * scales  # [heads, 1, points, 2]
        bias = bias.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value_input: torch.Tensor,
                spatial_shapes: SpatialShapes, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, queries, _ = query.shape
        positions = value_input.shape[1]
        if reference_points.shape[-1] != 2:
            raise ValueError(f"reference points must be (x, y), got the last dimension {reference_points.shape[-1]}")
        value = self.value_proj(value_input)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(batch, positions, self.n_heads, self.d_model // self.n_heads)
        heads, levels, points = self.n_heads, self.n_levels, self.n_points
        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, queries, heads, levels, points)
        normaliser = torch.tensor([[float(w), float(h)] for h, w in spatial_shapes], dtype=offsets.dtype,
                                  device=offsets.device)  # (W, H) per level
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_core(value, spatial_shapes, locations, weights))
