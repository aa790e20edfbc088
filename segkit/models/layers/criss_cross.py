"""``CrissCrossAttention``: CCNet's attention over the row and the column of every position (Huang et al., 2019).

Pure PyTorch, with the definition and parameter names of mmcv's ``mmcv.ops.CrissCrossAttention`` (which
SSSegmentation's CCNet uses), so SSSegmentation checkpoints load: ``query_conv`` and ``key_conv`` (1x1, ``C -> C/8``),
``value_conv`` (1x1, ``C -> C``) and ``gamma`` (a learnt scalar ``gamma.scale``, initialised to 0).

For an input ``x`` ``[B, C, H, W]`` and query/key/value maps ``q``, ``k``, ``v``, the position ``(h, w)`` attends to
the ``H + W`` positions of its column and its row:

* column energies ``e[h, w, i] = <q[:, h, w], k[:, i, w]>`` for ``i`` in ``0..H-1``, with ``e[h, w, h] = -inf``
  (the position itself is counted once, in the row);
* row energies ``e[h, w, H + j] = <q[:, h, w], k[:, h, j]>`` for ``j`` in ``0..W-1``;
* one softmax over the ``H + W`` energies gives ``a``; the output is
  ``gamma * (sum_i a[h, w, i] v[:, i, w] + sum_j a[h, w, H + j] v[:, h, j]) + x[:, :, h, w]``.

CCNet applies the same module ``num_recurrence`` times (shared weights), so information reaches every position after
two passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .scale import Scale


class CrissCrossAttention(nn.Module):
    """Criss-cross attention (see the module docstring); ``in_channels`` must be at least 8 (the query/key maps have
    ``in_channels // 8`` channels)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 8:
            raise ValueError(f"CrissCrossAttention: in_channels must be >= 8 (query/key use in_channels // 8 "
                             f"channels), got {in_channels}")
        self.in_channels = in_channels
        self.query_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.key_conv = nn.Conv2d(in_channels, in_channels // 8, 1)
        self.value_conv = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.size(2)
        query = self.query_conv(x)
        key = self.key_conv(x)
        value = self.value_conv(x)
        # [B, H, W, H]: the column of (h, w); the position itself is masked here (it is in the row)
        energy_h = torch.einsum("bchw,bciw->bhwi", query, key)
        diagonal = torch.eye(height, dtype=torch.bool, device=x.device).view(height, 1, height)
        energy_h = energy_h.masked_fill(diagonal, float("-inf"))
        # [B, H, W, W]: the row of (h, w)
        energy_w = torch.einsum("bchw,bchj->bhwj", query, key)
        attention = F.softmax(torch.cat([energy_h, energy_w], dim=-1), dim=-1)
        out = torch.einsum("bciw,bhwi->bchw", value, attention[..., :height])
        out = out + torch.einsum("bchj,bhwj->bchw", value, attention[..., height:])
        return self.gamma(out) + x

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"
