"""``NonLocal2d``: the non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018).

Every position's response is a weighted sum of the (1x1-projected, ``g``) features at all positions, with weights
``f(x_i, x_j)`` from one of the paper's pairwise functions, projected back to ``in_channels`` and added to the input::

    y = x + conv_out( softmax_or_norm(f(theta(x), phi(x))) @ g(x) )

``mode``: ``embeddedgaussian`` (softmax of ``theta^T phi``, divided by ``sqrt(inter_channels)`` when ``use_scale``),
``gaussian`` (softmax of ``x^T x``, no embeddings), ``dotproduct`` (``theta^T phi / N``) and ``concatenation``
(``relu(w^T [theta, phi]) / N``). ``inter_channels = max(in_channels // reduction, 1)``. ``sub_sample`` max-pools the
keys (``phi``) and values (``g``) by 2. ``conv_out`` is a 1x1 conv (no bias) followed by the norm of ``norm_cfg``;
``act_cfg`` is the activation of the concatenation projection. Module names and their order are SSSegmentation's
(``g``, ``conv_out``, ``theta``, ``phi``, ``concat_project``); like SSSegmentation (and unlike the paper's zero-init of
the last norm), nothing is specially initialised.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .norm_act import build_act

NonLocalMode = Literal["gaussian", "embeddedgaussian", "dotproduct", "concatenation"]
NON_LOCAL_MODES: tuple[str, ...] = ("gaussian", "embeddedgaussian", "dotproduct", "concatenation")


class NonLocal2d(nn.Module):
    """The non-local block on ``[B, C, H, W]`` maps (see the module docstring)."""

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        use_scale: bool = True,
        mode: NonLocalMode = "embeddedgaussian",
        sub_sample: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if mode not in NON_LOCAL_MODES:
            raise ValueError(f"mode must be one of {NON_LOCAL_MODES}, got {mode!r}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.in_channels = in_channels
        self.reduction = reduction
        self.use_scale = use_scale
        self.mode = mode
        self.sub_sample = sub_sample
        self.inter_channels = max(in_channels // reduction, 1)
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.conv_out = ConvNormAct(self.inter_channels, in_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        if mode != "gaussian":
            self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
            self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
        if mode == "concatenation":
            self.concat_project = nn.Sequential(
                nn.Conv2d(self.inter_channels * 2, 1, 1, bias=False), build_act(act_cfg),
            )

    # ------------------------------------------------------------------------------------------- pieces
    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, kernel_size=2) if self.sub_sample else x

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x)`` (keys' positions, pooled when ``sub_sample``) as ``[B, M, inter_channels]``."""
        return self._pool(self.g(x)).flatten(2).transpose(1, 2)

    def embeddings(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries and keys: ``[B, N, C']`` and ``[B, C', M]`` (concatenation: ``[B, C', N, 1]``, ``[B, C', 1, M]``)."""
        if self.mode == "gaussian":
            return x.flatten(2).transpose(1, 2), self._pool(x).flatten(2)
        theta, phi = self.theta(x).flatten(2), self._pool(self.phi(x)).flatten(2)
        if self.mode == "concatenation":
            return theta.unsqueeze(3), phi.unsqueeze(2)
        return theta.transpose(1, 2), phi

    def pairwise(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        """The ``[B, N, M]`` weights of ``mode``."""
        if self.mode == "concatenation":
            num_queries, num_keys = theta_x.shape[2], phi_x.shape[3]
            concat = torch.cat([theta_x.expand(-1, -1, -1, num_keys), phi_x.expand(-1, -1, num_queries, -1)], dim=1)
            weights = self.concat_project(concat).squeeze(1)
            return weights / weights.shape[-1]
        weights = torch.matmul(theta_x, phi_x)
        if self.mode == "dotproduct":
            return weights / weights.shape[-1]
        if self.mode == "embeddedgaussian":
            weights = self.scale_logits(weights, theta_x.shape[-1])
        return weights.softmax(dim=-1)

    def scale_logits(self, weights: torch.Tensor, channels: int) -> torch.Tensor:
        """The embedded-Gaussian logits before the softmax (``/ sqrt(channels)`` when ``use_scale``)."""
        return weights / channels ** 0.5 if self.use_scale else weights

    def aggregate(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The non-local response ``[B, inter_channels, H, W]`` before ``conv_out``."""
        theta_x, phi_x = self.embeddings(x)
        y = torch.matmul(self.pairwise(theta_x, phi_x), values)  # [B, N, C']
        return y.transpose(1, 2).reshape(x.shape[0], self.inter_channels, *x.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_out(self.aggregate(x, self.values(x)))
