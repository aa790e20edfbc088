"""``DANet``: Dual Attention Network for scene segmentation (Fu et al., CVPR 2019)."""

from __future__ import annotations

from typing import ClassVar

from ...registry import SEGMENTORS
from .base import EncoderDecoder, Route


@SEGMENTORS.register("DANet")
class DANet(EncoderDecoder):
    """Backbone -> :class:`~segkit.models.heads.DAHead` (+ auxiliary heads while training).

    SSSegmentation's DANet has no ``loss_cls``: ``loss_cls_pamcam`` supervises the summed branches (``out``),
    ``loss_cls_pam`` and ``loss_cls_cam`` the two branch classifiers (``pam``, ``cam``).
    """

    head_type = "DAHead"
    loss_routes: ClassVar[dict[str, Route]] = {
        "loss_cls_pamcam": Route("out"),
        "loss_cls_pam": Route("pam"),
        "loss_cls_cam": Route("cam"),
    }
    ssseg_prefixes: ClassVar[dict[str, str]] = {
        "backbone_net": "backbone",
        **{name: f"head.{name}" for name in (
            "pam_in_conv", "pam_net", "pam_out_conv", "decoder_pam", "cam_in_conv", "cam_net", "cam_out_conv",
            "decoder_cam", "decoder_pamcam")},
        "auxiliary_decoder": "aux_heads",
    }
