"""What every backbone shares: the ``feature_info`` contract and its convenience views."""

from __future__ import annotations

from torch import nn


class Backbone(nn.Module):
    """Base of segkit backbones: ``forward(x) -> list[Tensor]`` and ``feature_info`` (timm's dict format:
    ``{"num_chs", "reduction", "module"}`` per output), known before any forward pass."""

    feature_info: list[dict]

    @property
    def out_channels(self) -> list[int]:
        """Channels of each output."""
        return [info["num_chs"] for info in self.feature_info]

    @property
    def strides(self) -> list[int]:
        """Stride (reduction from the input) of each output."""
        return [info["reduction"] for info in self.feature_info]
