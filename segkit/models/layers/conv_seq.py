"""``conv_norm_act_seq``: conv -> norm -> act as a plain ``nn.Sequential`` with children ``0``, ``1``, ``2``.

SSSegmentation writes its head blocks as ``nn.Sequential(nn.Conv2d(...), BuildNormalization(...),
BuildActivation(...))``; heads that keep that layout (and slice it, as CE2P's ``decoder_stage1[:-1]``) have
SSSegmentation's state-dict keys exactly (``decoder.0.weight``, ``decoder.1.running_mean``, ...).
"""

from __future__ import annotations

from torch import nn

from .norm_act import build_act, build_norm


def conv_norm_act_seq(in_channels: int, out_channels: int, kernel_size: int = 1, *, norm_cfg: dict | None = None,
                      act_cfg: dict | None = None, bias: bool = False, padding: int | None = None) -> nn.Sequential:
    """``Sequential(Conv2d(stride 1, padding kernel_size // 2 unless given), norm, act)``; a ``None`` cfg gives
    ``nn.Identity`` at its place (no parameters)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=1,
                  padding=kernel_size // 2 if padding is None else padding, bias=bias),
        build_norm(norm_cfg, out_channels),
        build_act(act_cfg),
    )
