"""``MCIBIPlusPlusHead``: MCIBI++ (Jin et al., TPAMI 2022), SSSegmentation's ``MCIBIPlusPlus``.

On the last feature: an optional ASPP/PPM context within the image (``context_within_image_module``) classified by
``decoder_cwi`` and, optionally, attended to by ``self_attention``; a 3x3 ``bottleneck`` -> pixel representations,
classified by ``decoder_pr``; the soft memory (:class:`~segkit.models.layers.memory_v2.FeaturesMemoryV2`,
``memory_module``) read with the ``cwi`` logits (or the ``pr`` ones without context, or with
``force_use_preds_pr``); with the context, an optional UPerNet-style FPN over the other levels (``head.fpn``, its top
being the memory output and the context, concatenated before the FPN unless ``fuse_memory_cwi_before_fpn = false``);
``decoder_cls`` on the result. Training outputs: ``out`` (``loss_cls``), ``pr`` (``loss_pr``), ``cwi``
(``loss_cwi``, with the context). During ``warmup_epoch`` epochs the memory is read with the ground truth (one-hot
logits at the feature size) instead of the predictions.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, build_act, build_norm
from ..layers.context_module import build_context_module
from ..layers.fpn_fusion import UPerFPNFusion
from ..layers.memory import memory_attention
from ..layers.memory_v2 import FeaturesMemoryV2
from .base import Head
from .mcibi import context_options, momentum_options


def update_options_v2(ignore_index: int = -100,
                      momentum_cfg: Annotated[dict, TableOf(momentum_options)] | None = None) -> dict:
    """``head.update_cfg`` of MCIBI++ (its momentum does not follow the learning rate by default)."""
    momentum = {"base_momentum": 0.1, "base_lr": None, "adjust_by_learning_rate": False, **(momentum_cfg or {})}
    return {"ignore_index": ignore_index, "momentum_cfg": momentum}


def decoder_entry(in_channels: int, out_channels: int, dropout: float = 0.1, kernel_size: int = 1,
                  padding: int = 0) -> dict:
    """One ``head.decoder.<name>`` table: conv (``kernel_size``) -> norm -> act -> Dropout2d -> 1x1 classifier."""
    return {"in_channels": in_channels, "out_channels": out_channels, "dropout": dropout,
            "kernel_size": kernel_size, "padding": padding}


def decoder_options(pr: Annotated[dict, TableOf(decoder_entry)], cls: Annotated[dict, TableOf(decoder_entry)],
                    cwi: Annotated[dict, TableOf(decoder_entry)] | None = None) -> None:
    """``head.decoder``: the ``pr``, ``cwi`` and ``cls`` classifiers."""


def fpn_options(in_channels_list: list[int], feats_channels: int, out_channels: int) -> None:
    """``head.fpn``: the channels of every level read (the last is the memory's input), the lateral width and the
    output width of the 3x3 convs."""


def named_decoder(cfg: dict, num_classes: int, norm_cfg: dict | None, act_cfg: dict | None) -> nn.Sequential:
    """SSSeg's ``decoder_<name>`` with its child names (``conv1``, ``bn1``, ``act1``, ``dropout``, ``conv2``)."""
    cfg = decoder_entry(**cfg)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], padding=cfg["padding"],
                            bias=False)),
        ("bn1", build_norm(norm_cfg, cfg["out_channels"])),
        ("act1", build_act(act_cfg)),
        ("dropout", nn.Dropout2d(cfg["dropout"])),
        ("conv2", nn.Conv2d(cfg["out_channels"], num_classes, 1)),
    ]))


@HEADS.register("MCIBIPlusPlusHead")
class MCIBIPlusPlusHead(Head):
    """See the module docstring. ``feature_channels`` (the channels of every feature, provided by the segmentor)
    checks ``fpn.in_channels_list``; the FPN laterals read every feature but the last."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        decoder: Annotated[dict, TableOf(decoder_options)],
        feats_channels: int = 512,
        transform_channels: int = 256,
        out_channels: int = 512,
        context_within_image: Annotated[dict, TableOf(context_options)] | None = None,
        warmup_epoch: int = 0,
        use_hard_aggregate: bool = False,
        downsample_before_sa: bool = False,
        force_use_preds_pr: bool = False,
        fuse_memory_cwi_before_fpn: bool = True,
        update_cfg: Annotated[dict, TableOf(update_options_v2)] | None = None,
        fpn: Annotated[dict, TableOf(fpn_options)] | None = None,
        feature_channels: list[int] | None = None,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        context = context_options(**{"is_on": False, **(context_within_image or {})})
        self.update_cfg = update_options_v2(**(update_cfg or {}))
        self.num_classes = num_classes
        self.warmup_epoch = warmup_epoch
        self.force_use_preds_pr = force_use_preds_pr
        self.fuse_memory_cwi_before_fpn = fuse_memory_cwi_before_fpn
        self.align_corners = align_corners
        if fpn is not None and not context["is_on"]:
            raise ArgumentError("fpn", "the FPN runs on the context within image: set context_within_image.is_on")
        if context["is_on"]:
            self.context_within_image_module = build_context_module(
                context["type"], context["cfg"], in_channels, feats_channels, align_corners=align_corners,
                norm_cfg=norm_cfg, act_cfg=act_cfg)
            if context["use_self_attention"]:
                self.self_attention = memory_attention(feats_channels, feats_channels // 2, norm_cfg, act_cfg)
        self.bottleneck = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.memory_module = FeaturesMemoryV2(num_classes, feats_channels, transform_channels, out_channels,
                                              use_hard_aggregate=use_hard_aggregate,
                                              downsample_before_sa=downsample_before_sa, norm_cfg=norm_cfg,
                                              act_cfg=act_cfg, align_corners=align_corners)
        if fpn is not None:
            lateral = list(fpn["in_channels_list"][:-1])
            if feature_channels is not None and lateral != list(feature_channels[:-1]):
                raise ArgumentError("fpn", f"in_channels_list {list(fpn['in_channels_list'])} does not match the "
                                    f"features read ({list(feature_channels)})")
            self.fpn = UPerFPNFusion(lateral, fpn["feats_channels"], fpn["out_channels"], norm_cfg=norm_cfg,
                                     act_cfg=act_cfg, align_corners=align_corners)
        for name in ("pr", "cwi", "cls"):
            if name == "cwi" and not context["is_on"]:
                continue
            if decoder.get(name) is None:
                raise ArgumentError("decoder", f"give decoder.{name}")
            self.add_module(f"decoder_{name}", named_decoder(decoder[name], num_classes, norm_cfg, act_cfg))

    def training_outputs(self) -> list[str]:
        return ["out", "pr", *(["cwi"] if hasattr(self, "decoder_cwi") else [])]

    def decode(self, features: list[torch.Tensor],
               gt_weights: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``({"out", "pr"[, "cwi"]} logits, pixel representations)``; ``gt_weights`` (one-hot ground truth at the
        feature size) replaces the predictions that read the memory (warm-up)."""
        x = self.select(features)
        outputs: dict[str, torch.Tensor] = {}
        context = None
        if hasattr(self, "context_within_image_module"):
            context = self.context_within_image_module(x)
            outputs["cwi"] = self.decoder_cwi(context)
        representations = self.bottleneck(x)
        outputs["pr"] = self.decoder_pr(representations)
        gather = outputs["pr"] if self.force_use_preds_pr else outputs.get("cwi", outputs["pr"])
        memory_output = self.memory_module(representations, gt_weights if gt_weights is not None else gather)
        if context is not None:
            if hasattr(self, "self_attention"):
                memory_output = self.self_attention(context, memory_output)
            if hasattr(self, "fpn"):
                memory_output = self._fpn(features[:-1], memory_output, context)
            else:
                memory_output = torch.cat([memory_output, context], dim=1)
        ordered = {"out": self.decoder_cls(memory_output), "pr": outputs["pr"]}
        if "cwi" in outputs:
            ordered["cwi"] = outputs["cwi"]
        return ordered, representations

    def _fpn(self, laterals: list[torch.Tensor], memory_output: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        top = torch.cat([memory_output, context], dim=1) if self.fuse_memory_cwi_before_fpn else context
        fused = self.fpn.concat(self.fpn(laterals, top))
        if not self.fuse_memory_cwi_before_fpn:
            memory_output = F.interpolate(memory_output, size=fused.shape[2:], mode="bilinear",
                                          align_corners=self.align_corners)
            fused = torch.cat([fused, memory_output], dim=1)
        return fused

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor] | torch.Tensor:
        outputs, _ = self.decode(features)
        return outputs if self.training else outputs["out"]

