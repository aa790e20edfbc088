"""``Head``: what every decode and auxiliary head shares: it selects its inputs from the feature list by ``in_index``.

A head's constructor declares ``in_channels`` (an int, or a list when ``in_index`` is a list) and ``in_index``; the
model builder resolves ``in_index`` against the backbone's (or neck's) :class:`~segkit.models.features.FeatureInfo`
and passes the matching channels, so recipes never repeat them (a recipe that gives them has them checked).
``forward(features)`` takes the whole list and returns logits at feature resolution, or a dict with ``"out"`` plus
training-only extras named by :meth:`training_outputs`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..features import InIndex, select_inputs


class Head(nn.Module):
    """Base of segkit heads: stores ``in_index`` and selects the head's inputs from the feature list."""

    is_auxiliary: ClassVar[bool] = False
    """Auxiliary heads (deep supervision on earlier features) may be named in a recipe's ``auxiliary`` tables."""

    def __init__(self, in_index: InIndex = -1) -> None:
        super().__init__()
        self.in_index: InIndex = list(in_index) if isinstance(in_index, list | tuple) else in_index

    def select(self, features: list[torch.Tensor]):
        """The input(s) this head reads: one tensor for an int ``in_index``, a list for a list."""
        return select_inputs(features, self.in_index)

    def training_outputs(self) -> list[str]:
        """The names this head returns in training (``"out"`` first); eval mode returns ``"out"`` only."""
        return ["out"]
