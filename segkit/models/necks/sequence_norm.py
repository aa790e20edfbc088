"""``SequenceNorm``: a LayerNorm over the tokens of each feature map (SETR's per-level norm, SSSegmentation's
``head.norm_cfg`` of SETRUP)."""

from __future__ import annotations

import torch
from torch import nn

from ...registry import NECKS
from ..layers import ArgumentError, build_norm

LN_EPS6: dict = {"type": "LayerNorm", "eps": 1e-6}
"""SSSegmentation's SETR ``head.norm_cfg``. Never mutated."""


def check_token_norm_cfg(token_norm_cfg: dict | None) -> None:
    """Token norms see ``(B, N, C)`` sequences, normalised over C: only LayerNorm (or none) fits."""
    if token_norm_cfg is not None and token_norm_cfg.get("type") != "LayerNorm":
        raise ArgumentError("token_norm_cfg", f"normalises token sequences (B, N, C) over the channels; "
                            f"{token_norm_cfg.get('type')} does not fit, use {{type = \"LayerNorm\", eps = 1e-6}}")


def norm_tokens(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``norm`` applied to the H*W tokens of ``x`` (B, C, H, W), returned as (B, C, H, W)."""
    n, c, h, w = x.shape
    tokens = norm(x.flatten(2).transpose(1, 2))
    return tokens.transpose(1, 2).reshape(n, c, h, w)


@NECKS.register("SequenceNorm")
class SequenceNorm(nn.Module):
    """One ``token_norm_cfg`` norm (LayerNorm) per feature map, applied over its tokens (``norm_layers``); the
    normalised maps replace the inputs, so the decode head and the auxiliary heads all read normalised features
    (SSSegmentation's SETRUP writes them back into its feature list). Channels and strides are unchanged.

    ``token_norm_cfg`` is SSSegmentation's SETR ``head.norm_cfg`` (named apart from ``norm_cfg``, which recipes
    inject with the segmentor's BatchNorm).
    """

    def __init__(self, in_channels: list[int], token_norm_cfg: dict | None = LN_EPS6,
                 in_strides: list[int] | None = None) -> None:
        super().__init__()
        check_token_norm_cfg(token_norm_cfg)
        self.norm_layers = nn.ModuleList([build_norm(token_norm_cfg, c, path="token_norm_cfg") for c in in_channels])
        strides = list(in_strides) if in_strides is not None else [1] * len(in_channels)
        self.feature_info = [{"num_chs": c, "reduction": s, "module": f"norm_layers.{i}"}
                             for i, (c, s) in enumerate(zip(in_channels, strides, strict=True))]

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.norm_layers):
            raise ValueError(f"SequenceNorm expects {len(self.norm_layers)} inputs, got {len(inputs)}")
        return [norm_tokens(x, norm) for x, norm in zip(inputs, self.norm_layers, strict=True)]
