"""ResNet (V1b with a 7x7 stem, V1c with a 3x3 stem), dilated for outstride 8/16, as SSSegmentation's ``ResNet``.

Parameter names follow the published checkpoints, so the official weights load without renaming:

* 7x7 stem (``use_conv3x3_stem=False``): torchvision's layout (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
  ``layer1.0.downsample.0/1``) for the ``download.pytorch.org`` ImageNet weights;
* 3x3 stem (ResNet-V1c): mmseg/SSSegmentation's ``stem.0/1`` (conv, norm), ``stem.3/4``, ``stem.6/7`` for the
  ``resnet*_v1c`` weights.

``structure_type`` (``resnet50``, ``resnet101conv3x3stem``, ...) names the architecture and the pretrained weights:
it implies ``depth`` and the stem; an explicit ``depth``/``use_conv3x3_stem`` that disagrees is an error (SSSegmentation
would silently build one architecture and load the weights of another).
"""

from __future__ import annotations

import os
import re
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..pretrained import load_pretrained
from .base import Backbone

PRETRAINED_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-333f7ec4.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-19c8e357.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-b121ed2d.pth",
    "resnet18conv3x3stem": "https://download.openmmlab.com/pretrain/third_party/resnet18_v1c-b5776b93.pth",
    "resnet50conv3x3stem": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "resnet101conv3x3stem": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
}
"""Official ImageNet weights per ``structure_type`` (SSSegmentation's ``DEFAULT_MODEL_URLS`` for ResNet)."""

_STRUCTURE_RE = re.compile(r"^resnet(18|34|50|101|152)(conv3x3stem)?$")

# outstride -> (stride of layer1..4, dilation of layer1..4)
_STRIDES_AND_DILATIONS = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, style: str = "pytorch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = build_norm(norm_cfg, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = build_norm(norm_cfg, planes)
        self.relu = build_act(act_cfg)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convolutions with a residual connection (ResNet-50/101/152).

    ``style="pytorch"`` puts the stride on the 3x3 convolution (torchvision, V1b/V1c), ``"caffe"`` on the first 1x1.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, style: str = "pytorch") -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride_1x1, bias=False)
        self.bn1 = build_norm(norm_cfg, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride_3x3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = build_norm(norm_cfg, planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = build_norm(norm_cfg, planes * self.expansion)
        self.relu = build_act(act_cfg)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_ARCH: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resolve_structure(structure_type: str | None, depth: int | None,
                      use_conv3x3_stem: bool | None) -> tuple[int, bool]:
    """Return ``(depth, use_conv3x3_stem)`` from ``structure_type`` and the explicit arguments, which must agree.

    Without ``structure_type`` the defaults are SSSegmentation's: depth 101, 3x3 stem.
    """
    if structure_type is None:
        return (101 if depth is None else depth), (True if use_conv3x3_stem is None else use_conv3x3_stem)
    match = _STRUCTURE_RE.match(structure_type)
    if match is None:
        known = ", ".join(sorted(PRETRAINED_URLS))
        raise ArgumentError("structure_type", f"unknown ResNet structure_type '{structure_type}' "
                            f"(expected resnet<18|34|50|101|152>[conv3x3stem], e.g. {known})")
    implied_depth, implied_stem = int(match.group(1)), match.group(2) is not None
    if depth is not None and depth != implied_depth:
        raise ArgumentError("depth", f"depth={depth} conflicts with structure_type '{structure_type}' "
                            f"(depth {implied_depth}); drop one of them")
    if use_conv3x3_stem is not None and use_conv3x3_stem != implied_stem:
        raise ArgumentError("use_conv3x3_stem", f"use_conv3x3_stem={use_conv3x3_stem} conflicts with structure_type "
                            f"'{structure_type}' (which {'has' if implied_stem else 'has no'} 3x3 stem)")
    return implied_depth, implied_stem


@BACKBONES.register("ResNet")
class ResNet(Backbone):
    """ResNet backbone returning the stage outputs of ``out_indices`` (SSSegmentation's ``ResNet`` arguments).

    ``depth`` defaults to 101 and ``use_conv3x3_stem`` to True unless ``structure_type`` implies them. ``outstride``
    8/16 replaces the strides of the last stages by dilation; with ``contract_dilation`` the first block of a dilated
    stage uses half the dilation. ``pretrained=True`` loads ``pretrained_model_path`` if given, else the official
    weights of ``structure_type`` (downloaded once into torch.hub's cache). ``use_checkpoint`` recomputes each block in
    the backward pass while training (less memory, more time).
    """

    structure_types = tuple(f"resnet{d}{stem}" for stem in ("", "conv3x3stem") for d in (18, 34, 50, 101, 152))

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        base_channels: int = 64,
        stem_channels: int = 64,
        depth: Literal[18, 34, 50, 101, 152] | None = None,
        outstride: Literal[8, 16, 32] = 8,
        contract_dilation: bool = True,
        use_conv3x3_stem: bool | None = None,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        use_avg_for_downsample: bool = False,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        style: Literal["pytorch", "caffe"] = "pytorch",
        pretrained: bool = True,
        pretrained_model_path: str = "",
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        depth, use_conv3x3_stem = resolve_structure(structure_type, depth, use_conv3x3_stem)
        if depth not in _ARCH:
            raise ArgumentError("depth", f"unsupported depth {depth} (choose from {sorted(_ARCH)})")
        if outstride not in _STRIDES_AND_DILATIONS:
            raise ArgumentError("outstride", f"unsupported outstride {outstride} (choose 8, 16 or 32)")
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ArgumentError("out_indices", f"out_indices must be a non-empty subset of 0..3, got {out_indices}")
        self.structure_type = structure_type
        self.depth = depth
        self.outstride = outstride
        self.use_conv3x3_stem = use_conv3x3_stem
        self.out_indices = tuple(out_indices)
        self.use_checkpoint = use_checkpoint
        self._last_stage = max(self.out_indices)
        self._build_stem(in_channels, stem_channels, norm_cfg, act_cfg)
        self._build_stages(base_channels, stem_channels, contract_dilation, use_avg_for_downsample,
                           norm_cfg, act_cfg, style)
        self._init_weights()
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    # ------------------------------------------------------------------------------------------- construction
    def _build_stem(self, in_channels: int, stem_channels: int, norm_cfg: dict | None,
                    act_cfg: dict | None) -> None:
        if self.use_conv3x3_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
                build_norm(norm_cfg, half), build_act(act_cfg),
                nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
                build_norm(norm_cfg, half), build_act(act_cfg),
                nn.Conv2d(half, stem_channels, 3, stride=1, padding=1, bias=False),
                build_norm(norm_cfg, stem_channels), build_act(act_cfg),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = build_norm(norm_cfg, stem_channels)
            self.relu = build_act(act_cfg)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def _build_stages(self, base_channels: int, stem_channels: int, contract_dilation: bool,
                      use_avg_for_downsample: bool, norm_cfg: dict | None, act_cfg: dict | None,
                      style: str) -> None:
        block, num_blocks = _ARCH[self.depth]
        strides, dilations = _STRIDES_AND_DILATIONS[self.outstride]
        inplanes, reduction = stem_channels, 4
        self.feature_info: list[dict] = []
        for index in range(4):
            planes = base_channels * 2**index
            stage = self._make_stage(block, inplanes, planes, num_blocks[index], strides[index], dilations[index],
                                     contract_dilation, use_avg_for_downsample, norm_cfg, act_cfg, style)
            self.add_module(f"layer{index + 1}", stage)
            inplanes, reduction = planes * block.expansion, reduction * strides[index]
            if index in self.out_indices:
                self.feature_info.append({"num_chs": inplanes, "reduction": reduction, "module": f"layer{index + 1}"})

    @staticmethod
    def _make_stage(block: type[nn.Module], inplanes: int, planes: int, num_blocks: int, stride: int,
                    dilation: int, contract_dilation: bool, use_avg_for_downsample: bool,
                    norm_cfg: dict | None, act_cfg: dict | None, style: str) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            if use_avg_for_downsample:
                downsample = nn.Sequential(
                    nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                    nn.Conv2d(inplanes, outplanes, 1, stride=1, bias=False), build_norm(norm_cfg, outplanes))
            else:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), build_norm(norm_cfg, outplanes))
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        blocks = [block(inplanes, planes, stride, first_dilation, downsample, norm_cfg, act_cfg, style)]
        blocks += [block(outplanes, planes, 1, dilation, None, norm_cfg, act_cfg, style) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for module in self.modules():
            # (a meta-device build, used by recipe validation, has no values to initialise)
            if isinstance(module, nn.Conv2d) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def load_official_weights(self, pretrained_model_path: str = "") -> None:
        """Load ``pretrained_model_path`` or, without it, the official weights of this structure type."""
        url = None
        if pretrained_model_path and not os.path.isfile(pretrained_model_path):
            raise ArgumentError("pretrained_model_path", f"no such file: {pretrained_model_path}")
        if not pretrained_model_path:
            name = self.structure_type or f"resnet{self.depth}{'conv3x3stem' if self.use_conv3x3_stem else ''}"
            url = PRETRAINED_URLS.get(name)
            if url is None:
                raise ArgumentError("pretrained", f"no official weights for structure_type '{name}' (available: "
                                    f"{', '.join(sorted(PRETRAINED_URLS))}); set pretrained = false or give "
                                    "pretrained_model_path")
        load_pretrained(self, url=url, path=pretrained_model_path or None, ignore_prefixes=("fc.",))

    # ------------------------------------------------------------------------------------------- contract
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.use_conv3x3_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        outputs: list[torch.Tensor] = []
        for index, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = self._run_stage(stage, x)
            if index in self.out_indices:
                outputs.append(x)
            if index == self._last_stage:
                break
        return outputs

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)
