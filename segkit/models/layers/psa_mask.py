"""``PSAMask``: PSANet's point-wise spatial attention mask (Zhao et al., 2018), in pure PyTorch.

The semantics are those of mmcv's compiled ``PSAMask`` (``psamask_forward``/``psamask_backward``), which
SSSegmentation's PSANet uses with ``compact=False``. The input ``[N, h_mask * w_mask, H, W]`` holds, for every
position ``q = (h, w)``, an over-complete mask of ``h_mask x w_mask`` weights centred on ``q`` (``(2H - 1) x (2W - 1)``
covers the whole map from every position). The output ``[N, H * W, H, W]`` (zeros where a window leaves the map) is
the ``(H * W) x (H * W)`` attention between positions, with ``p = (h + i - (h_mask - 1) // 2, w + j - (w_mask - 1)
// 2)`` the position that mask entry ``(i, j)`` of ``q`` points at:

* ``collect``:    ``out[n, p, h, w] = mask[n, i * w_mask + j, h, w]`` (``q`` gathers from ``p``);
* ``distribute``: ``out[n, q, p_h, p_w] = mask[n, i * w_mask + j, h, w]`` (``q`` spreads to ``p``), the
  transpose of ``collect`` over the two position axes.

It is one ``gather`` with an index of size ``(H * W) x (H * W)`` computed once per ``(H, W, mask size, device)`` and
cached; the backward pass is ``gather``'s (each mask entry lands in at most one output entry, as in mmcv's kernel).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


class PSAMask(nn.Module):
    """``collect`` or ``distribute`` (see the module docstring); ``mask_size = (h_mask, w_mask)``."""

    def __init__(self, psa_type: Literal["collect", "distribute"], mask_size: tuple[int, int]) -> None:
        super().__init__()
        if psa_type not in ("collect", "distribute"):
            raise ValueError(f"PSAMask: psa_type must be 'collect' or 'distribute', got {psa_type!r}")
        h_mask, w_mask = mask_size
        if h_mask < 1 or w_mask < 1:
            raise ValueError(f"PSAMask: mask_size must be positive, got {tuple(mask_size)}")
        self.psa_type = psa_type
        self.mask_size = (int(h_mask), int(w_mask))
        self._index_cache: dict[tuple, torch.Tensor] = {}

    def gather_index(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``[H * W (p), H * W (q)]``: the mask channel that gives ``out[p, q]`` in collect mode, or
        ``h_mask * w_mask`` (a zero channel appended to the mask) where ``p`` is outside the window of ``q``."""
        key = (height, width, self.mask_size, str(device))
        index = self._index_cache.get(key)
        if index is None:
            index = _collect_index(height, width, *self.mask_size).to(device)
            self._index_cache[key] = index
        return index

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = mask.shape
        h_mask, w_mask = self.mask_size
        if channels != h_mask * w_mask:
            raise ValueError(f"PSAMask: the input has {channels} channels, mask_size {self.mask_size} needs "
                             f"{h_mask * w_mask}")
        index = self.gather_index(height, width, mask.device)
        flat = mask.reshape(batch, channels, height * width)
        flat = torch.cat([flat, flat.new_zeros(batch, 1, height * width)], dim=1)
        out = torch.gather(flat, 1, index.unsqueeze(0).expand(batch, -1, -1))  # [N, p, q]
        if self.psa_type == "distribute":
            out = out.transpose(1, 2)
        return out.reshape(batch, height * width, height, width)

    def extra_repr(self) -> str:
        return f"psa_type={self.psa_type!r}, mask_size={self.mask_size}"


def _collect_index(height: int, width: int, h_mask: int, w_mask: int) -> torch.Tensor:
    half_h, half_w = (h_mask - 1) // 2, (w_mask - 1) // 2
    ys = torch.arange(height).view(height, 1).expand(height, width).reshape(-1)
    xs = torch.arange(width).view(1, width).expand(height, width).reshape(-1)
    # mask entry (i, j) of q points at p = q + (i - half_h, j - half_w), so i = p_h - q_h + half_h
    i = ys.view(-1, 1) - ys.view(1, -1) + half_h  # [p, q]
    j = xs.view(-1, 1) - xs.view(1, -1) + half_w
    inside = (i >= 0) & (i < h_mask) & (j >= 0) & (j < w_mask)
    return torch.where(inside, i * w_mask + j, torch.full_like(i, h_mask * w_mask))
