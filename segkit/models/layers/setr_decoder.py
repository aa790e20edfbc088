"""``SETRUpDecoder``: SETR's progressive-upsampling decoder (Zheng et al., 2021), also its auxiliary decoder.

``num_convs`` x [k x k conv (no bias) -> norm -> act -> bilinear upsampling by ``scale_factor``] -> Dropout2d ->
1x1 classifier, as one flat ``nn.Sequential`` (SSSegmentation's ``builddecoder`` layout, in the same order). With
``num_convs = 4, scale_factor = 2`` this is SETR-PUP; with ``num_convs = 2, scale_factor = 4`` the "naive" variant
of SSSegmentation's configs; ``num_convs = 0`` leaves Dropout2d -> 1x1 from ``in_channels``.
"""

from __future__ import annotations

from torch import nn

from .conv import ConvNormAct
from .errors import ArgumentError


class SETRUpDecoder(nn.Sequential):
    """See the module docstring; logits at ``scale_factor ** num_convs`` times the input's resolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_classes: int,
        num_convs: int = 1,
        kernel_size: int = 3,
        scale_factor: float = 4,
        dropout: float = 0.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        align_corners: bool = False,
    ) -> None:
        if num_convs < 0:
            raise ArgumentError("num_convs", f"num_convs must be >= 0, got {num_convs}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ArgumentError("kernel_size", f"expected an odd positive kernel size, got {kernel_size}")
        if scale_factor <= 0:
            raise ArgumentError("scale_factor", f"expected a positive scale factor, got {scale_factor}")
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers.append(ConvNormAct(in_channels if index == 0 else out_channels, out_channels, kernel_size,
                                      padding=(kernel_size - 1) // 2, norm_cfg=norm_cfg, act_cfg=act_cfg))
            layers.append(nn.Upsample(scale_factor=scale_factor, mode="bilinear", align_corners=align_corners))
        layers.append(nn.Dropout2d(dropout))
        layers.append(nn.Conv2d(out_channels if num_convs > 0 else in_channels, num_classes, 1))
        super().__init__(*layers)
        self.num_convs = num_convs
        self.scale_factor = scale_factor
