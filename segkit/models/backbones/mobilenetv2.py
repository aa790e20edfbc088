"""MobileNetV2 (Sandler et al., 2018) on timm's modules, with SSSegmentation's arguments, dilation and weights.

The network is timm's ``mobilenetv2_100`` trunk (``conv_stem``, ``bn1``, ``blocks.0`` ... ``blocks.6``; timm's
``channel_multiplier`` is ``widen_factor``) without the 1280-channel head convolution, which SSSegmentation's
backbone does not have either. ``out_indices`` counts SSSegmentation's seven layers ``layer1`` ... ``layer7``, which
are timm's stages ``blocks.0`` ... ``blocks.6``: the default ``(1, 2, 4, 6)`` gives 24/32/96/320 channels.

``outstride`` 8/16 turns the strides of the later layers into dilation as SSSegmentation (and mmseg) do: only the
*first* block of a layer gets the layer's stride and dilation; its other blocks stay undilated.

``pretrained = true`` loads the mmcls checkpoint SSSegmentation publishes (``backbone.conv1.conv``,
``backbone.layer2.0.conv.0.conv``, ...), converted by :func:`convert_mmcls_mobilenetv2`.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNet

from ...registry import BACKBONES
from ..layers import ArgumentError
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    act_factory,
    batch_norm_layer,
    feature,
    rename_keys,
    resolve_structure,
    select_out_indices,
    set_stride_and_dilation,
    strip_prefix,
)

PRETRAINED_URLS: dict[str, str] = {
    "mobilenetv2": "https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/"
                   "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MobileNetV2 (mmcls)."""

STRUCTURE_TYPES: dict[str, dict] = {"mobilenetv2": {"widen_factor": 1.0}}
"""structure_type -> architecture (timm's ``mobilenetv2_100``)."""

ARCH = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
"""(expand ratio, channels, blocks) of layer1..layer7, SSSegmentation's ``arch_settings``."""

STRIDES_AND_DILATIONS = {
    8: ((1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 2, 2, 4, 4)),
    16: ((1, 2, 2, 2, 1, 1, 1), (1, 1, 1, 1, 1, 2, 2)),
    32: ((1, 2, 2, 2, 1, 2, 1), (1, 1, 1, 1, 1, 1, 1)),
}
"""outstride -> (stride, dilation) of each layer's first block (SSSegmentation's table)."""

_NAMES = {"0": ("conv_pw", "bn1"), "1": ("conv_dw", "bn2"), "2": ("conv_pwl", "bn3")}


def _block_key(match: object) -> str:
    layer, block, position, kind = match.groups()  # type: ignore[attr-defined]
    if layer == "1":  # expand ratio 1: depthwise, then pointwise (timm's DepthwiseSeparableConv)
        names = {"0": ("conv_dw", "bn1"), "1": ("conv_pw", "bn2")}[position]
    else:
        names = _NAMES[position]
    return f"blocks.{int(layer) - 1}.{block}.{names[0] if kind == 'conv' else names[1]}."


def convert_mmcls_mobilenetv2(state_dict: StateDict) -> StateDict:
    """mmcls/SSSegmentation MobileNetV2 keys -> timm's; the 1280-channel head convolution (``conv2``, timm's
    ``conv_head``/``bn2``) and the classifier go, so a timm state dict loads too."""
    rules = [
        (r"^conv1\.conv\.", "conv_stem."),
        (r"^conv1\.bn\.", "bn1."),
        (r"^layer(\d+)\.(\d+)\.conv\.(\d)\.(conv|bn)\.", _block_key),
    ]
    return rename_keys(strip_prefix(state_dict), rules, drop=(r"^head\.", r"^conv2\.", r"^conv_head\.", r"^bn2\.", r"^classifier\."))


@BACKBONES.register("MobileNetV2")
class MobileNetV2(Backbone):
    """MobileNetV2 returning the layer outputs of ``out_indices`` (SSSegmentation's ``MobileNetV2`` arguments).

    ``norm_cfg`` is a BatchNorm (``SyncBatchNorm``/``BatchNorm2d``); ``act_cfg`` is the activation of every block
    (ReLU6). Layers after the last output are not built.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        widen_factor: float | None = None,
        outstride: Literal[8, 16, 32] = 8,
        out_indices: tuple[int, ...] = (1, 2, 4, 6),
        norm_cfg: dict | None = {"type": "SyncBatchNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "ReLU6", "inplace": True},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        arch = resolve_structure("MobileNetV2", structure_type, STRUCTURE_TYPES, {"widen_factor": widen_factor},
                                 {"widen_factor": 1.0})
        if outstride not in STRIDES_AND_DILATIONS:
            raise ArgumentError("outstride", f"unsupported outstride {outstride} (choose 8, 16 or 32)")
        self.structure_type = structure_type
        self.out_indices = select_out_indices(out_indices, len(ARCH))
        model = _build_timm_mobilenetv2(arch["widen_factor"], in_channels, norm_cfg, act_cfg)
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = model.blocks[: max(self.out_indices) + 1]
        strides, dilations = STRIDES_AND_DILATIONS[outstride]
        reduction, reductions = 2, []
        for layer, stride, dilation in zip(self.blocks, strides, dilations, strict=False):
            set_stride_and_dilation(layer[0].conv_dw, stride, dilation)
            reduction *= stride
            reductions.append(reduction)
        widths = [round_channels(channels, arch["widen_factor"]) for _, channels, _ in ARCH]
        self.feature_info = [feature(widths[i], reductions[i], f"blocks.{i}") for i in self.out_indices]
        if pretrained:
            load_published_weights(self, family="MobileNetV2", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path, convert=convert_mmcls_mobilenetv2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        outputs = []
        for index, layer in enumerate(self.blocks):
            x = layer(x)
            if index in self.out_indices:
                outputs.append(x)
        return outputs


def _build_timm_mobilenetv2(widen_factor: float, in_channels: int, norm_cfg: dict | None,
                            act_cfg: dict | None) -> EfficientNet:
    """timm's MobileNetV2 (the arch of ``mobilenetv2_100``) at stride 32; blocks are re-strided afterwards."""
    strides = STRIDES_AND_DILATIONS[32][0]
    arch_def = [[f"ds_r{n}_k3_s{s}_c{c}"] if e == 1 else [f"ir_r{n}_k3_s{s}_e{e}_c{c}"]
                for (e, c, n), s in zip(ARCH, strides, strict=True)]
    return EfficientNet(
        block_args=decode_arch_def(arch_def), num_classes=0, in_chans=in_channels, stem_size=32,
        round_chs_fn=functools.partial(round_channels, multiplier=widen_factor),
        norm_layer=batch_norm_layer(norm_cfg, "MobileNetV2"), act_layer=act_factory(act_cfg),
    )
