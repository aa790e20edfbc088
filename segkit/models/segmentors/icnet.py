"""``ICNet``: the image cascade network (Zhao et al., 2018) as SSSegmentation builds it.

The recipe's ``backbone`` (a ResNet) is wrapped in :class:`ICNetEncoder`, which runs it on two resolutions and adds a
light branch on the full image; :class:`~segkit.models.necks.icneck.ICNeck` fuses the three branches; the decode head
(an FCN head with one 3x3 conv) reads the fused map ``x_cff_12`` and the auxiliary heads read the neck's ``x_24`` and
``x_12``. ``backbone.selected_indices`` applies to the encoder's three outputs, as in SSSegmentation.

Recipe keys (SSSegmentation's): ``head.encoder`` is the encoder's table (:class:`ICNetEncoder`'s arguments but the
backbone), ``head.in_channels_list`` the encoder's output channels (checked), ``head.feats_channels`` both the neck's
and the decoder's width.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError
from ...registry import NECKS, SEGMENTORS, validate_arguments
from ..features import FeatureInfo
from ..layers import ConvNormAct
from ..layers.ppm import PPM
from .base import EncoderDecoder

if TYPE_CHECKING:
    from ..build import ModelBuilder

_RESNET_PARTS = ("maxpool", "layer1", "layer2", "layer3", "layer4")


def _stage_channels(stage: nn.Module) -> int:
    """The output channels of a ResNet stage: those of its last block's last convolution."""
    last_block = list(stage.children())[-1]
    return [m for m in last_block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class ICNetEncoder(nn.Module):
    """ICNet's three branches around a ResNet (SSSegmentation's ``ICNetEncoder``).

    * ``conv_sub1``: three stride-2 3x3 conv-norm-act on the full image -> ``out_channels_list[0]`` at stride 8;
    * the image halved -> ``stem``, ``maxpool`` (``ceil_mode=True``, as SSSegmentation swaps it in), ``layer1``,
      ``layer2`` -> ``conv_sub2`` (1x1) -> ``out_channels_list[1]``;
    * ``layer2``'s output halved -> ``layer3``, ``layer4``, ``ppm_net`` (:class:`~segkit.models.layers.ppm.PPM`,
      ``pool_scales``, ``psp_out_channels``) -> ``conv_sub4`` (1x1) -> ``out_channels_list[2]``.

    ``layer_channels_list`` (layer2's and layer4's channels) is read from the backbone when not given.
    """

    def __init__(self, backbone: nn.Module, in_channels: int = 3, layer_channels_list: Sequence[int] | None = None,
                 light_branch_middle_channels: int = 32, psp_out_channels: int = 512,
                 out_channels_list: Sequence[int] = (64, 256, 256), pool_scales: Sequence[int] = (1, 2, 3, 6),
                 norm_cfg: dict | None = None, act_cfg: dict | None = None, align_corners: bool = False) -> None:
        super().__init__()
        missing = [name for name in _RESNET_PARTS if not hasattr(backbone, name)]
        if missing or not (hasattr(backbone, "stem") or hasattr(backbone, "conv1")):
            raise TypeError(f"ICNetEncoder wraps a ResNet-style backbone (stem, maxpool, layer1..4); "
                            f"{type(backbone).__name__} lacks {', '.join(missing) or 'a stem'}")
        if len(out_channels_list) != 3:
            raise ValueError(f"out_channels_list must have 3 entries, got {list(out_channels_list)}")
        derived = [_stage_channels(backbone.layer2), _stage_channels(backbone.layer4)]
        if layer_channels_list is not None and list(layer_channels_list) != derived:
            raise ValueError(f"layer_channels_list {list(layer_channels_list)} does not match the backbone's layer2 "
                             f"and layer4 channels {derived}")
        self.align_corners = align_corners
        self.backbone_net = backbone
        self.backbone_net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.ppm_net = PPM(derived[1], psp_out_channels, pool_scales, align_corners=align_corners,
                           norm_cfg=norm_cfg, act_cfg=act_cfg)
        middle = light_branch_middle_channels
        self.conv_sub1 = nn.Sequential(
            ConvNormAct(in_channels, middle, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvNormAct(middle, middle, 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvNormAct(middle, out_channels_list[0], 3, stride=2, norm_cfg=norm_cfg, act_cfg=act_cfg),
        )
        self.conv_sub2 = ConvNormAct(derived[0], out_channels_list[1], 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv_sub4 = ConvNormAct(psp_out_channels, out_channels_list[2], 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        outstride = int(getattr(backbone, "outstride", 32))  # layer4's stride; layer2's is always 8
        self.feature_info = [
            {"num_chs": out_channels_list[0], "reduction": 8, "module": "conv_sub1"},
            {"num_chs": out_channels_list[1], "reduction": 16, "module": "conv_sub2"},
            {"num_chs": out_channels_list[2], "reduction": 4 * outstride, "module": "conv_sub4"},
        ]

    def convert_ssseg_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """SSSegmentation's ``ICNetEncoder`` tensors (relative names) -> this module's names. The ResNet keeps its
        names; the PPM and the branch convs are flat ``nn.Sequential`` (conv, norm, act) in SSSeg and
        ``ConvNormAct`` blocks here, in the same order, so they are paired in order."""
        own = self.state_dict()
        converted = {k: v for k, v in state_dict.items() if k.startswith("backbone_net.")}
        for prefix in ("ppm_net.", "conv_sub1.", "conv_sub2.", "conv_sub4."):
            source = [k for k in state_dict if k.startswith(prefix)]
            target = [k for k in own if k.startswith(prefix)]
            if [tuple(state_dict[k].shape) for k in source] != [tuple(own[k].shape) for k in target]:
                return dict(state_dict)  # not SSSeg's layout: leave it to the name check, which reports it
            converted.update({t: state_dict[s] for s, t in zip(source, target, strict=True)})
        return converted

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone_net
        if hasattr(backbone, "stem") and getattr(backbone, "use_conv3x3_stem", True):
            return backbone.stem(x)
        return backbone.relu(backbone.bn1(backbone.conv1(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.conv_sub1(x)]
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=self.align_corners)
        x = self.backbone_net.maxpool(self._stem(x))
        x = self.backbone_net.layer2(self.backbone_net.layer1(x))
        outputs.append(self.conv_sub2(x))
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=self.align_corners)
        x = self.backbone_net.layer4(self.backbone_net.layer3(x))
        outputs.append(self.conv_sub4(self.ppm_net(x)))
        return outputs


def _encoder_options(in_channels: int = 3, layer_channels_list: list[int] | None = None,
                     light_branch_middle_channels: int = 32, psp_out_channels: int = 512,
                     out_channels_list: list[int] = (64, 256, 256), pool_scales: list[int] = (1, 2, 3, 6),
                     norm_cfg: dict | None = None, act_cfg: dict | None = None,
                     align_corners: bool | None = None) -> None:
    """The keys of ``head.encoder`` (:class:`ICNetEncoder`'s arguments but the backbone), for validation."""


@SEGMENTORS.register("ICNet")
class ICNet(EncoderDecoder):
    """:class:`ICNetEncoder` (around the recipe's ResNet) -> ``ICNeck`` -> FCN head on ``x_cff_12`` (+ auxiliary
    heads on ``x_24``, ``x_12`` while training)."""

    head_type = "FCNHead"
    ssseg_prefixes = {"backbone_net": "backbone", "neck": "neck", "decoder": "head", "auxiliary_decoder": "aux_heads"}

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> ICNet:
        recipe = builder.recipe
        resnet, _ = builder.backbone()
        head_table = copy.deepcopy(recipe.head)
        if not isinstance(head_table, dict):
            raise RecipeError("head", f"expected a table, got {head_table!r}")
        encoder_cfg = validate_arguments(_encoder_options, head_table.pop("encoder", None) or {}, "head.encoder",
                                         what="ICNet.encoder")
        in_channels_list = head_table.pop("in_channels_list", None)
        for key, value in (("norm_cfg", builder.norm_cfg), ("act_cfg", builder.act_cfg),
                           ("align_corners", builder.align_corners)):
            if encoder_cfg.get(key) is None:
                encoder_cfg[key] = copy.deepcopy(value)
        try:
            encoder = ICNetEncoder(resnet, **encoder_cfg)
        except (TypeError, ValueError) as exc:
            raise RecipeError("head.encoder", str(exc)) from None
        info = FeatureInfo.from_timm(encoder.feature_info)
        if builder.selected_indices is not None:
            try:
                info = info.select(builder.selected_indices)
            except IndexError as exc:
                raise RecipeError("backbone.selected_indices", f"{exc} (ICNet's encoder has 3 outputs)") from None
        builder.backbone_info = info
        if in_channels_list is not None and list(in_channels_list) != info.channels:
            raise RecipeError("head.in_channels_list", f"{list(in_channels_list)} does not match the encoder's "
                              f"outputs ({info.channels})")
        neck_table = dict(getattr(recipe, "neck", None) or {})
        neck_table.setdefault("type", "ICNeck")
        neck_table.setdefault("out_channels", head_table.get("feats_channels", 128))
        neck = builder.component(NECKS, neck_table, "neck", features=info)
        features = FeatureInfo.from_timm(neck.feature_info)
        head_table.setdefault("num_convs", 1)
        head = builder.head(features, default_type=cls.head_type, table=head_table)
        aux_heads = builder.aux_heads(features)
        return cls(backbone=encoder, neck=neck, head=head, aux_heads=aux_heads,
                   selected_indices=builder.selected_indices, align_corners=builder.align_corners)
