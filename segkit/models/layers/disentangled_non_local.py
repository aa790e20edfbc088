"""``DisentangledNonLocal2d``: the disentangled non-local block (Yin et al., "Disentangled Non-Local Neural
Networks", ECCV 2020).

The non-local attention is split into a *whitened pairwise* term (queries and keys centred over the positions, the
embedded-Gaussian logits divided by ``temperature``) and a *unary* term (a softmax over positions of a 1x1 conv,
``conv_mask``, pooling the values into one vector broadcast to every position)::

    y = x + conv_out( softmax((theta - mean)^T (phi - mean) [/ sqrt(C')] / temperature) @ g  +  softmax(mask) @ g )
"""

from __future__ import annotations

import torch
from torch import nn

from .non_local import NonLocal2d, NonLocalMode


class DisentangledNonLocal2d(NonLocal2d):
    """:class:`NonLocal2d` with the whitened pairwise and the unary terms (module ``conv_mask`` added last, as
    SSSegmentation). ``temperature`` divides the embedded-Gaussian logits only (the other modes ignore it, as in
    SSSegmentation). ``sub_sample`` is refused: the unary mask is computed at every position while the pooled
    values are not (SSSegmentation fails there too)."""

    def __init__(
        self,
        in_channels: int,
        temperature: float = 0.05,
        reduction: int = 2,
        use_scale: bool = True,
        mode: NonLocalMode = "embeddedgaussian",
        sub_sample: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        if sub_sample:
            raise ValueError("DisentangledNonLocal2d does not support sub_sample")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(in_channels, reduction=reduction, use_scale=use_scale, mode=mode, sub_sample=False,
                         norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.temperature = temperature
        self.conv_mask = nn.Conv2d(in_channels, 1, 1)

    def embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta_x, phi_x = super().embeddings(x)  # positions along dim -2 of theta and dim -1 of phi
        return theta_x - theta_x.mean(dim=-2, keepdim=True), phi_x - phi_x.mean(dim=-1, keepdim=True)

    def scale_logits(self, weights: torch.Tensor, channels: int) -> torch.Tensor:
        return super().scale_logits(weights, channels) / self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.values(x)  # [B, N, C']
        pairwise = self.aggregate(x, values)
        mask = self.conv_mask(x).flatten(2).softmax(dim=-1)  # [B, 1, N]
        unary = torch.matmul(mask, values).transpose(1, 2).unsqueeze(3)  # [B, C', 1, 1]
        return x + self.conv_out(pairwise + unary)
