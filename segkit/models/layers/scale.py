"""``Scale``: multiply by one learnable scalar (DANet's ``gamma``, initialised to 0 so attention starts switched
off)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    """``x * scale`` with ``scale`` a learnable 0-d parameter (SSSegmentation's ``Scale``; parameter ``scale``)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
