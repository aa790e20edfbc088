"""``EMANet``: Expectation-Maximization Attention Network (Li et al., 2019) as SSSegmentation builds it."""

from __future__ import annotations

import torch

from ...registry import SEGMENTORS
from .base import EncoderDecoder


@SEGMENTORS.register("EMANet")
class EMANet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.ema.EMAHead` (+ auxiliary heads while training).

    Stateful: in training the head's ``ema_module.bases`` buffer moves towards the batch's bases, averaged over
    ranks by the segmentor's ``reduce_mean`` (which the engine sets under DDP; each forward hands it to the EM
    module). ``ema_mid_conv`` is frozen, as in SSSegmentation (whose configs set ``filter_params = true``).
    """

    head_type = "EMAHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "ema_in_conv": "head.ema_in_conv", "ema_mid_conv": "head.ema_mid_conv",
        "ema_module": "head.ema_module", "ema_out_conv": "head.ema_out_conv", "bottleneck": "head.bottleneck",
        "decoder": "head.decoder", "auxiliary_decoder": "aux_heads",
    }

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        ema_module = getattr(self.head, "ema_module", None)
        if ema_module is not None:
            ema_module.reduce_mean = self.reduce_mean
        return super().forward(images, targets)
