"""MobileNetV3 (Howard et al., 2019) on timm's modules, with SSSegmentation's arguments, dilation and weights.

The network is timm's ``mobilenetv3_large_100`` / ``mobilenetv3_small_100`` trunk (``conv_stem``, ``bn1``,
``blocks``; the last stage is the 960/576-channel 1x1 convolution) with TF "same" padding on the stride-2
convolutions (timm's ``pad_type='same'``), as SSSegmentation's (mmseg's) ``AdptivePaddingConv2d``, and without the
classifier head. ``out_indices`` counts SSSegmentation's layers: ``layer0`` is the stem, ``layer1`` ... ``layer15``
(large; ``layer11`` small) the inverted-residual blocks in order (timm's ``blocks.s.b`` flattened), ``layer16``
(``layer12``) the last convolution; the default ``(1, 3, 16)`` gives 16/24/960 channels at strides 2/4/8.

``outstride`` 8/16 removes the stride of the 80- (and 160-) channel stages and dilates every later depthwise
convolution by 2 (and 4), as SSSegmentation does. ``reduction_factor`` divides the channels of the last three blocks
(large: layer13..15, small: layer9..11), as for LR-ASPP.

``pretrained = true`` loads the mmseg checkpoints SSSegmentation publishes (``layer0.conv``, ``layerN.expand_conv.conv``,
``...depthwise_conv.bn``, ``...se.conv1.conv``, ``...linear_conv.conv``), converted by
:func:`convert_mmseg_mobilenetv3`.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

import torch
from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.mobilenetv3 import MobileNetV3 as TimmMobileNetV3
from torch import nn

from ...registry import BACKBONES
from ..layers import ArgumentError, build_act
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    batch_norm_layer,
    feature,
    rename_keys,
    resolve_structure,
    select_out_indices,
    set_stride_and_dilation,
    strip_prefix,
)

_THIRD_PARTY = "https://download.openmmlab.com/pretrain/third_party"
PRETRAINED_URLS: dict[str, str] = {
    "mobilenetv3_small": f"{_THIRD_PARTY}/mobilenet_v3_small-47085aa1.pth",
    "mobilenetv3_large": f"{_THIRD_PARTY}/mobilenet_v3_large-bc2c3fd3.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MobileNetV3 (mmseg layout)."""

STRUCTURE_TYPES: dict[str, dict] = {"mobilenetv3_small": {"arch_type": "small"},
                                    "mobilenetv3_large": {"arch_type": "large"}}

# (kernel, mid channels, out channels, squeeze-excite, ReLU (else HardSwish), stride) of layer1.., SSSegmentation's
# arch_settings, grouped into timm's stages.
ARCH: dict[str, list[list[tuple[int, int, int, bool, bool, int]]]] = {
    "large": [
        [(3, 16, 16, False, True, 1)],
        [(3, 64, 24, False, True, 2), (3, 72, 24, False, True, 1)],
        [(5, 72, 40, True, True, 2), (5, 120, 40, True, True, 1), (5, 120, 40, True, True, 1)],
        [(3, 240, 80, False, False, 2), (3, 200, 80, False, False, 1), (3, 184, 80, False, False, 1),
         (3, 184, 80, False, False, 1)],
        [(3, 480, 112, True, False, 1), (3, 672, 112, True, False, 1)],
        [(5, 672, 160, True, False, 2), (5, 960, 160, True, False, 1), (5, 960, 160, True, False, 1)],
    ],
    "small": [
        [(3, 16, 16, True, True, 2)],
        [(3, 72, 24, False, True, 2), (3, 88, 24, False, True, 1)],
        [(5, 96, 40, True, False, 2), (5, 240, 40, True, False, 1), (5, 240, 40, True, False, 1)],
        [(5, 120, 48, True, False, 1), (5, 144, 48, True, False, 1)],
        [(5, 288, 96, True, False, 2), (5, 576, 96, True, False, 1), (5, 576, 96, True, False, 1)],
    ],
}
LAST_CHANNELS = {"large": 960, "small": 576}
# arch -> (first reduced layer, layer losing its stride at outstride 16, ... at outstride 8, first 4x-dilated layer)
_SEGMENTATION = {"large": (12, 7, 13, 13), "small": (8, 4, 9, 9)}
DEFAULT_OUT_INDICES = {"large": (1, 3, 16), "small": (0, 1, 12)}


def layer_settings(arch_type: str, reduction_factor: int) -> list[list[tuple[int, int, int, bool, bool, int]]]:
    """The arch with the channels of the last blocks divided by ``reduction_factor`` (as SSSegmentation does)."""
    first_reduced, stages, index = _SEGMENTATION[arch_type][0], [], 0
    for stage in ARCH[arch_type]:
        stages.append([])
        for kernel, mid, out, se, relu, stride in stage:
            if index >= first_reduced:
                mid, out = mid // reduction_factor, out // reduction_factor
            stages[-1].append((kernel, mid, out, se, relu, stride))
            index += 1
    return stages


def convert_mmseg_mobilenetv3(state_dict: StateDict, arch_type: str) -> StateDict:
    """mmseg/SSSegmentation MobileNetV3 keys -> timm's (layer index -> ``blocks.stage.block``); a state dict in timm's
    layout keeps its names (its head convolution and classifier go)."""
    state_dict = strip_prefix(state_dict)
    if not any(key.startswith("layer") for key in state_dict):
        return rename_keys(state_dict, [], drop=(r"^conv_head\.", r"^classifier\."))
    positions = [(s, b) for s, stage in enumerate(ARCH[arch_type]) for b in range(len(stage))]
    last = len(positions) + 1
    converted: StateDict = {}
    for key, value in state_dict.items():
        match = re.match(r"^layer(\d+)\.(.+)$", key)
        if match is None:
            continue  # classifier
        layer, rest = int(match.group(1)), match.group(2)
        if layer == 0:
            converted[rest.replace("conv.", "conv_stem.", 1).replace("bn.", "bn1.", 1)] = value
        elif layer == last:
            converted[f"blocks.{len(ARCH[arch_type])}.0." + rest.replace("bn.", "bn1.", 1)] = value
        else:
            stage, block = positions[layer - 1]
            expands = f"layer{layer}.expand_conv.conv.weight" in state_dict
            converted[f"blocks.{stage}.{block}." + _block_param(rest, expands)] = value
    return converted


def _block_param(rest: str, expands: bool) -> str:
    names = {"expand_conv.conv": "conv_pw", "expand_conv.bn": "bn1", "depthwise_conv.conv": "conv_dw",
             "depthwise_conv.bn": "bn2" if expands else "bn1", "se.conv1.conv": "se.conv_reduce",
             "se.conv2.conv": "se.conv_expand", "linear_conv.conv": "conv_pwl" if expands else "conv_pw",
             "linear_conv.bn": "bn3" if expands else "bn2"}
    module, _, parameter = rest.rpartition(".")
    return f"{names.get(module, module)}.{parameter}"


@BACKBONES.register("MobileNetV3")
class MobileNetV3(Backbone):
    """MobileNetV3 returning the layer outputs of ``out_indices`` (SSSegmentation's ``MobileNetV3`` arguments).

    ``structure_type`` (``mobilenetv3_large``/``small``) implies ``arch_type``. ``act_cfg`` is the activation of the
    stem and the last convolution (the blocks use the paper's fixed ReLU/HardSwish, as in SSSegmentation); ``norm_cfg``
    is a BatchNorm. ``out_indices`` defaults to ``(1, 3, 16)`` for large and ``(0, 1, 12)`` for small (SSSegmentation
    has the large default for both, which does not fit small's 13 layers).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        arch_type: Literal["small", "large"] | None = None,
        outstride: Literal[8, 16, 32] = 8,
        out_indices: tuple[int, ...] | None = None,
        reduction_factor: int = 1,
        norm_cfg: dict | None = {"type": "SyncBatchNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "HardSwish"},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        arch_type = resolve_structure("MobileNetV3", structure_type, STRUCTURE_TYPES, {"arch_type": arch_type},
                                      {"arch_type": "large"})["arch_type"]
        if reduction_factor < 1:
            raise ArgumentError("reduction_factor", f"must be a positive integer, got {reduction_factor}")
        if outstride not in (8, 16, 32):
            raise ArgumentError("outstride", f"unsupported outstride {outstride} (choose 8, 16 or 32)")
        self.structure_type, self.arch_type = structure_type, arch_type
        settings = layer_settings(arch_type, reduction_factor)
        num_layers = sum(len(stage) for stage in settings) + 2
        self.out_indices = select_out_indices(out_indices or DEFAULT_OUT_INDICES[arch_type], num_layers)
        model = _build_timm_mobilenetv3(settings, LAST_CHANNELS[arch_type], in_channels, norm_cfg)
        model.bn1.act = build_act(act_cfg)
        model.blocks[-1][0].bn1.act = build_act(act_cfg)
        self.conv_stem, self.bn1, self.blocks = model.conv_stem, model.bn1, model.blocks
        strides = _segmentation_strides(self._layers(), arch_type, outstride)
        channels = [16] + [c[2] for stage in settings for c in stage] + [LAST_CHANNELS[arch_type]]
        _check_channels(self._layers(), settings)
        reductions = [2]
        for stride in strides[1:]:
            reductions.append(reductions[-1] * stride)
        self.feature_info = [feature(channels[i], reductions[i], f"layer{i}") for i in self.out_indices]
        if pretrained:
            load_published_weights(self, family="MobileNetV3", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path,
                         convert=lambda sd: convert_mmseg_mobilenetv3(sd, arch_type))

    def _layers(self) -> list[nn.Module]:
        """SSSegmentation's layer1.. in order: timm's blocks, flattened."""
        return [block for stage in self.blocks for block in stage]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        outputs = [x] if 0 in self.out_indices else []
        for index, layer in enumerate(self._layers(), start=1):
            x = layer(x)
            if index in self.out_indices:
                outputs.append(x)
            if index == self.out_indices[-1]:
                break
        return outputs


def _build_timm_mobilenetv3(settings: list[list[tuple]], last_channels: int, in_channels: int,
                            norm_cfg: dict | None) -> TimmMobileNetV3:
    arch_def, in_chs = [], 16
    for stage in settings:
        arch_def.append([])
        for kernel, mid, out, se, relu, stride in stage:
            kind, ratio = ("ds", 1) if mid == in_chs else ("ir", mid / in_chs)
            arch_def[-1].append(f"{kind}_r1_k{kernel}_s{stride}_e{ratio!r}_c{out}{'_se0.25' if se else ''}"
                                f"{'_nre' if relu else ''}")
            in_chs = out
    arch_def.append([f"cn_r1_k1_s1_c{last_channels}"])
    se_layer = functools.partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU,
                                 rd_round_fn=round_channels)
    return TimmMobileNetV3(
        block_args=decode_arch_def(arch_def), num_classes=0, in_chans=in_channels, stem_size=16, pad_type="same",
        round_chs_fn=lambda channels: channels, norm_layer=batch_norm_layer(norm_cfg, "MobileNetV3"),
        act_layer=get_act_layer("hard_swish"), se_layer=se_layer,
    )


def _segmentation_strides(layers: list[nn.Module], arch_type: str, outstride: int) -> list[int]:
    """Apply SSSegmentation's outstride conversion to the depthwise (and last) convolutions; return each layer's
    stride, the stem's first."""
    _, unstrided_16, unstrided_8, dilated_4 = _SEGMENTATION[arch_type]
    strides = [2]
    for index, layer in enumerate(layers, start=1):
        conv = layer.conv_dw if hasattr(layer, "conv_dw") else layer.conv
        stride = conv.stride[0]
        if outstride < 32 and index >= unstrided_16:
            if index == unstrided_16 or (outstride == 8 and index == unstrided_8):
                stride = 1
            dilation = 4 if outstride == 8 and index >= dilated_4 else 2
            set_stride_and_dilation(conv, stride, dilation)
        strides.append(stride)
    return strides


def _check_channels(layers: list[nn.Module], settings: list[list[tuple]]) -> None:
    """timm rounds expanded channels to multiples of 8; SSSegmentation's reduced blocks need not be."""
    expected = [(mid, out) for stage in settings for _, mid, out, *_ in stage]
    built = [(layer.conv_dw.out_channels, (layer.conv_pwl if hasattr(layer, "conv_pwl") else layer.conv_pw).out_channels)
             for layer in layers[:-1]]
    if built != expected:
        raise ArgumentError("reduction_factor", f"the reduced (expanded, output) channels {expected[-3:]} cannot be "
                            f"built by timm's blocks (they round expanded channels to multiples of 8: {built[-3:]}); "
                            "choose a reduction_factor such as 2 or 4")
