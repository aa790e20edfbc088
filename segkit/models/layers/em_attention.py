"""``EMAModule``: Expectation-Maximization Attention (Li et al., 2019), as SSSegmentation's EMANet builds it.

The module keeps ``bases`` ``[1, C, K]`` (a buffer: saved, not trained), initialised with ``N(0, sqrt(2 / K))``
and L2-normalised over the channels. For features ``x`` ``[B, C, N]`` it runs ``num_stages`` EM steps without
gradients, starting from the stored bases::

    E: z = softmax_k(x^T mu)              # [B, N, K], responsibilities
    M: mu = l2normalize_c(x (z / sum_n z))  # [B, C, K]

and reconstructs ``x~ = mu z^T`` (gradients do not flow through the EM iterations, as in SSSegmentation). In
training the stored bases move towards the batch's::

    bases <- (1 - momentum) * bases + momentum * l2normalize_c(reduce_mean(mean_b(mu)))

``reduce_mean`` is the cross-rank mean (identity in one process; the engine provides it under DDP through the
segmentor's ``reduce_mean``). It averages *before* the normalisation, where SSSegmentation all-reduces, so every
rank ends the step with the same bases; averaging the buffers after the step would not give the same value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class EMAModule(nn.Module):
    """EM attention with a momentum-updated ``bases`` buffer (see the module docstring)."""

    def __init__(self, channels: int, num_bases: int, num_stages: int, momentum: float) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"EMAModule: num_stages must be at least 1, got {num_stages}")
        self.num_bases = num_bases
        self.num_stages = num_stages
        self.momentum = momentum
        bases = torch.empty(1, channels, num_bases).normal_(0, math.sqrt(2.0 / num_bases))
        self.register_buffer("bases", F.normalize(bases, dim=1, p=2))
        self.reduce_mean: Callable[[torch.Tensor], torch.Tensor] = _identity
        """The cross-rank mean of the batch bases; the segmentor hands its own ``reduce_mean`` down."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        feats = x.reshape(batch, channels, height * width)
        bases = self.bases.expand(batch, -1, -1)
        with torch.no_grad():
            for _ in range(self.num_stages):
                attention = F.softmax(torch.einsum("bcn,bck->bnk", feats, bases), dim=2)
                attention_normed = F.normalize(attention, dim=1, p=1)
                bases = F.normalize(torch.einsum("bcn,bnk->bck", feats, attention_normed), dim=1, p=2)
        recon = torch.einsum("bck,bnk->bcn", bases, attention).reshape(batch, channels, height, width)
        if self.training:
            with torch.no_grad():
                batch_bases = self.reduce_mean(bases.mean(dim=0, keepdim=True))
                batch_bases = F.normalize(batch_bases, dim=1, p=2)
                self.bases.copy_((1 - self.momentum) * self.bases + self.momentum * batch_bases)
        return recon

    def extra_repr(self) -> str:
        return f"num_bases={self.num_bases}, num_stages={self.num_stages}, momentum={self.momentum}"
