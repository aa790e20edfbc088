"""``Feature2Pyramid``: same-stride ViT feature maps -> a feature pyramid (UPerNet on BEiT/MAE/ViT).

SSSegmentation's UPerNet builds it from ``head.feature2pyramid = {embed_dim, rescales}`` with the segmentor's
``norm_cfg``. Module names follow SSSegmentation/mmseg (``upsample_4x``, ``upsample_2x``, ``identity``,
``downsample_2x``, ``downsample_4x``), so trained checkpoints map by prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ArgumentError
from .norm_act import build_act, build_norm

_MODULE_NAMES: dict[float, str] = {4: "upsample_4x", 2: "upsample_2x", 1: "identity", 0.5: "downsample_2x",
                                   0.25: "downsample_4x"}
_SYNC_BN: dict = {"type": "SyncBatchNorm"}
_GELU: dict = {"type": "GELU"}


class Feature2Pyramid(nn.Module):
    """Rescale the i-th input map by ``rescales[i]``: 4 -> two 2x2 transposed convolutions with norm and activation
    between them, 2 -> one, 1 -> identity, 0.5 / 0.25 -> 2x2 / 4x4 max pooling. Channels are unchanged.
    ``norm_cfg``/``act_cfg`` (default SyncBatchNorm, GELU as mmseg's) apply between the two 4x deconvolutions;
    ``None`` leaves them out.

    With the default ``rescales`` four stride-16 maps become strides 4, 8, 16, 32. :meth:`describe` turns the input
    ``feature_info`` into the output's, so a head can derive its ``in_channels`` before any forward pass.
    """

    def __init__(self, embed_dim: int, rescales: tuple[float, ...] = (4, 2, 1, 0.5),
                 norm_cfg: dict | None = _SYNC_BN, act_cfg: dict | None = _GELU) -> None:
        super().__init__()
        unknown = [r for r in rescales if r not in _MODULE_NAMES]
        if unknown or len(set(rescales)) != len(rescales):
            raise ArgumentError("rescales", f"expected distinct values out of {sorted(_MODULE_NAMES)}, got {rescales}")
        self.embed_dim = embed_dim
        self.rescales = tuple(rescales)
        for rescale in self.rescales:
            self.add_module(_MODULE_NAMES[rescale], self._rescaler(rescale, embed_dim, norm_cfg, act_cfg))

    @staticmethod
    def _rescaler(rescale: float, channels: int, norm_cfg: dict | None,
                  act_cfg: dict | None) -> nn.Module:
        if rescale == 4:
            return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2), build_norm(norm_cfg, channels),
                                 build_act(act_cfg), nn.ConvTranspose2d(channels, channels, 2, stride=2))
        if rescale == 2:
            return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, stride=2))
        if rescale == 1:
            return nn.Identity()
        kernel = round(1 / rescale)
        return nn.MaxPool2d(kernel_size=kernel, stride=kernel)

    def describe(self, feature_info: list[dict]) -> list[dict]:
        """The ``feature_info`` of the outputs for inputs described by ``feature_info`` (one entry per rescale)."""
        if len(feature_info) != len(self.rescales):
            raise ArgumentError("rescales", f"{len(self.rescales)} rescales for {len(feature_info)} input features")
        described = []
        for info, rescale in zip(feature_info, self.rescales, strict=True):
            if info["num_chs"] != self.embed_dim:
                raise ArgumentError("embed_dim", f"embed_dim={self.embed_dim} but an input has {info['num_chs']} "
                                    "channels")
            described.append({"num_chs": self.embed_dim, "reduction": int(info["reduction"] / rescale),
                              "module": _MODULE_NAMES[rescale]})
        return described

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(inputs) != len(self.rescales):
            raise ValueError(f"Feature2Pyramid expects {len(self.rescales)} inputs, got {len(inputs)}")
        return [getattr(self, _MODULE_NAMES[r])(x) for x, r in zip(inputs, self.rescales, strict=True)]
