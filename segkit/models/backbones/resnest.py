"""ResNeSt (Zhang et al., 2022) on timm's modules, with SSSegmentation's arguments, dilation and weights.

The network is timm's ResNeSt (``resnest50d``, ``resnest101e``, ``resnest200e``: deep 3x3 stem, split attention with
radix 2, average-pool downsampling in the shortcut and after the 3x3 convolution of strided blocks). Parameter names
are timm's (``conv1.0`` ... ``conv1.6`` and ``bn1`` for the stem, ``layer1.0.conv2.conv``, ``...conv2.fc1``).

``outstride`` 8/16 replaces the strides of the last stages by dilation; with ``contract_dilation`` (default) the
first block of a dilated stage uses half the dilation (timm's own rule), without it the full one. As in
SSSegmentation, a shortcut whose stride became 1 averages nothing (timm would apply a 2x2 "same" average pool).

``pretrained = true`` loads the mmseg checkpoints SSSegmentation publishes (``stem.0`` ... ``stem.7``, the rest
already in timm's names), converted by :func:`convert_mmseg_resnest`.
"""

from __future__ import annotations

from typing import Literal

import torch
from timm.layers import AvgPool2dSame
from timm.models.resnest import ResNestBottleneck
from timm.models.resnet import ResNet as TimmResNet
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    act_factory,
    batch_norm_layer,
    feature,
    rename_keys,
    resolve_structure,
    run_maybe_checkpointed,
    select_out_indices,
    set_stride_and_dilation,
    strip_prefix,
)

_THIRD_PARTY = "https://download.openmmlab.com/pretrain/third_party"
PRETRAINED_URLS: dict[str, str] = {
    "resnest50": f"{_THIRD_PARTY}/resnest50_d2-7497a55b.pth",
    "resnest101": f"{_THIRD_PARTY}/resnest101_d2-f3b931b2.pth",
    "resnest200": f"{_THIRD_PARTY}/resnest200_d2-ca88e41f.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for ResNeSt (mmseg layout)."""

STRUCTURE_TYPES: dict[str, dict] = {
    "resnest50": {"depth": 50, "stem_channels": 64},  # timm resnest50d
    "resnest101": {"depth": 101, "stem_channels": 128},  # timm resnest101e
    "resnest200": {"depth": 200, "stem_channels": 128},  # timm resnest200e
}
"""structure_type -> architecture: the stem width of the published weights (SSSegmentation's test sets the same)."""

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
OUTSTRIDE_STRIDES = {8: (1, 2, 1, 1), 16: (1, 2, 2, 1), 32: (1, 2, 2, 2)}

_MMSEG_TO_TIMM = [(r"^stem\.([0-6])\.", r"conv1.\1."), (r"^stem\.7\.", "bn1.")]


def convert_mmseg_resnest(state_dict: StateDict) -> StateDict:
    """mmseg/SSSegmentation ResNeSt keys -> timm's: the deep stem's last norm is timm's ``bn1``; ``fc`` goes."""
    return rename_keys(strip_prefix(state_dict), _MMSEG_TO_TIMM, drop=(r"^fc\.",))


@BACKBONES.register("ResNeSt")
class ResNeSt(Backbone):
    """ResNeSt returning the stage outputs of ``out_indices`` (SSSegmentation's ``ResNeSt`` arguments).

    ``structure_type`` (``resnest50``/``101``/``200``) implies ``depth`` and ``stem_channels`` (64 for ResNeSt-50,
    128 otherwise; SSSegmentation's default 128 does not fit the ResNeSt-50 weights). ``reduction_factor`` must be 4
    (timm's split attention), ``style`` is always SSSegmentation's "pytorch" (stride on the 3x3 convolution).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        groups: int = 1,
        base_width: int = 4,
        radix: int = 2,
        reduction_factor: int = 4,
        use_avg_after_block_conv2: bool = True,
        in_channels: int = 3,
        base_channels: int = 64,
        stem_channels: int | None = None,
        depth: Literal[50, 101, 152, 200] | None = None,
        outstride: Literal[8, 16, 32] = 8,
        contract_dilation: bool = True,
        use_conv3x3_stem: bool = True,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        use_avg_for_downsample: bool = True,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = True,
        pretrained_model_path: str = "",
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        arch = resolve_structure("ResNeSt", structure_type, STRUCTURE_TYPES,
                                 {"depth": depth, "stem_channels": stem_channels},
                                 {"depth": 101, "stem_channels": 128})
        if reduction_factor != 4:
            raise ArgumentError("reduction_factor", "timm's split attention reduces by 4 (as the published weights)")
        if outstride not in OUTSTRIDE_STRIDES:
            raise ArgumentError("outstride", f"unsupported outstride {outstride} (choose 8, 16 or 32)")
        self.structure_type, self.depth = structure_type, arch["depth"]
        self.use_checkpoint = use_checkpoint
        self.out_indices = select_out_indices(out_indices, 4)
        model = TimmResNet(
            block=ResNestBottleneck, layers=BLOCKS[arch["depth"]], num_classes=0, in_chans=in_channels,
            output_stride=outstride, cardinality=groups, base_width=64 if groups == 1 else base_width,
            stem_width=arch["stem_channels"] // 2, stem_type="deep" if use_conv3x3_stem else "",
            avg_down=use_avg_for_downsample, channels=tuple(base_channels * 2**i for i in range(4)),
            act_layer=act_factory(act_cfg), norm_layer=batch_norm_layer(norm_cfg, "ResNeSt"),
            block_args={"radix": radix, "avd": use_avg_after_block_conv2, "avd_first": False},
        )
        self.conv1, self.bn1, self.act1, self.maxpool = model.conv1, model.bn1, model.act1, model.maxpool
        last = max(self.out_indices) + 1
        self.num_layers = last
        for index in range(last):
            self.add_module(f"layer{index + 1}", getattr(model, f"layer{index + 1}"))
            _mmseg_dilated_stage(getattr(self, f"layer{index + 1}"), contract_dilation)
        reduction, self.feature_info = 4, []
        for index, stride in enumerate(OUTSTRIDE_STRIDES[outstride][:last]):
            reduction *= stride
            if index in self.out_indices:
                self.feature_info.append(feature(base_channels * 2**index * 4, reduction, f"layer{index + 1}"))
        if pretrained:
            load_published_weights(self, family="ResNeSt", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path, convert=convert_mmseg_resnest)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        outputs = []
        for index in range(self.num_layers):
            for block in getattr(self, f"layer{index + 1}"):
                x = run_maybe_checkpointed(block, x, self.use_checkpoint)
            if index in self.out_indices:
                outputs.append(x)
        return outputs


def _mmseg_dilated_stage(layer: nn.Sequential, contract_dilation: bool) -> None:
    """In a dilated stage the shortcut pools nothing (timm pools 2x2 'same'); without ``contract_dilation`` the first
    block uses the stage's full dilation."""
    first, dilation = layer[0], layer[-1].conv2.conv.dilation[0]
    if first.downsample is not None and isinstance(first.downsample[0], AvgPool2dSame):
        first.downsample[0] = nn.Identity()
    if not contract_dilation and dilation > 1:
        set_stride_and_dilation(first.conv2.conv, first.conv2.conv.stride[0], dilation)
