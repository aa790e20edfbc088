"""``MCIBIHead``: "Mining Contextual Information Beyond Image" (Jin et al., ICCV 2021), SSSegmentation's ``MCIBI``.

On the last feature: an optional ASPP/PPM context within the image (``context_within_image_module``), a 3x3
``bottleneck`` whose output is the memory's input, ``decoder_stage1`` (1x1 conv-norm-act, Dropout2d, 1x1) whose
logits weight the memory readout, the :class:`~segkit.models.layers.memory.FeaturesMemory` (``memory_module``) and
``decoder_stage2`` on its output. The MCIBI segmentor updates the memory from the ground truth after each training
forward and, from epoch 2 with ``use_loss``, classifies the memory itself with ``decoder_stage2`` (output
``memory``, routed to ``loss_memory``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.context_module import build_context_module
from ..layers.memory import FeaturesMemory
from .base import Head


def context_options(is_on: bool = True, type: Literal["aspp", "ppm"] = "aspp",  # noqa: A002 (SSSeg's key)
                    cfg: dict[str, list[int]] | None = None, use_self_attention: bool = True) -> dict:
    """``head.context_within_image``: whether and which ASPP/PPM runs on the last feature; ``cfg`` holds its
    ``dilations`` or ``pool_scales`` (``use_self_attention`` is MCIBI++'s)."""
    return {"is_on": is_on, "type": type, "cfg": dict(cfg or {}), "use_self_attention": use_self_attention}


def momentum_options(base_momentum: float = 0.9, base_lr: float | None = 0.01,
                     adjust_by_learning_rate: bool = True) -> dict:
    """``head.update_cfg.momentum_cfg``: the memory momentum, ``base_momentum / base_lr * lr`` when adjusted."""
    return {"base_momentum": base_momentum, "base_lr": base_lr, "adjust_by_learning_rate": adjust_by_learning_rate}


def update_options(strategy: Literal["mean", "cosine_similarity"] = "cosine_similarity", ignore_index: int = -100,
                   momentum_cfg: Annotated[dict, TableOf(momentum_options)] | None = None) -> dict:
    """``head.update_cfg``: how the memory follows the ground-truth class features."""
    return {"strategy": strategy, "ignore_index": ignore_index, "momentum_cfg": momentum_options(**(momentum_cfg or {}))}


def class_decoder(in_channels: int, feats_channels: int, num_classes: int, dropout: float, norm_cfg: dict | None,
                  act_cfg: dict | None, kernel_size: int = 1) -> nn.Sequential:
    """conv-norm-act (``kernel_size``) -> Dropout2d -> 1x1 classifier (SSSeg's ``decoder_*`` of these heads)."""
    return nn.Sequential(ConvNormAct(in_channels, feats_channels, kernel_size, norm_cfg=norm_cfg, act_cfg=act_cfg),
                         nn.Dropout2d(dropout), nn.Conv2d(feats_channels, num_classes, 1))


@HEADS.register("MCIBIHead")
class MCIBIHead(Head):
    """See the module docstring. ``use_loss`` turns the memory loss on; SSSeg's ``head.loss_cfg`` (the loss table)
    is read by the MCIBI criterion when the recipe has no ``[losses.loss_memory]``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        transform_channels: int = 256,
        out_channels: int = 512,
        num_feats_per_cls: int = 1,
        use_hard_aggregate: bool = False,
        context_within_image: Annotated[dict, TableOf(context_options)] | None = None,
        update_cfg: Annotated[dict, TableOf(update_options)] | None = None,
        use_loss: bool = True,
        loss_cfg: dict | None = None,
        dropout: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        context = context_options(**(context_within_image if context_within_image is not None
                                     else {"cfg": {"dilations": [1, 12, 24, 36]}}))
        self.update_cfg = update_options(**(update_cfg or {}))
        if self.update_cfg["strategy"] == "mean" and num_feats_per_cls > 1:
            raise ArgumentError("update_cfg", "the 'mean' strategy needs num_feats_per_cls = 1")
        if use_loss and out_channels != feats_channels:
            raise ArgumentError("use_loss", f"the memory loss runs decoder_stage2 ({out_channels} input channels) on "
                                f"the memory ({feats_channels} channels): they must be equal")
        self.num_classes = num_classes
        self.use_loss = use_loss
        self.align_corners = align_corners
        if context["is_on"]:
            self.context_within_image_module = build_context_module(
                context["type"], context["cfg"], in_channels, feats_channels, align_corners=align_corners,
                norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.bottleneck = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.memory_module = FeaturesMemory(num_classes, feats_channels, transform_channels, out_channels,
                                            use_context_within_image=context["is_on"],
                                            num_feats_per_cls=num_feats_per_cls,
                                            use_hard_aggregate=use_hard_aggregate, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.decoder_stage1 = class_decoder(feats_channels, feats_channels, num_classes, dropout, norm_cfg, act_cfg)
        self.decoder_stage2 = class_decoder(out_channels, out_channels, num_classes, dropout, norm_cfg, act_cfg)

    def training_outputs(self) -> list[str]:
        return ["out", "stage1"]

    def decode(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(stage-2 logits, stage-1 logits, memory input)`` at the feature's resolution."""
        x = self.select(features)
        context = self.context_within_image_module(x) if hasattr(self, "context_within_image_module") else None
        memory_input = self.bottleneck(x)
        stage1 = self.decoder_stage1(memory_input)
        stage2 = self.decoder_stage2(self.memory_module(memory_input, stage1, context))
        return stage2, stage1, memory_input

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor] | torch.Tensor:
        stage2, stage1, _ = self.decode(features)
        return {"out": stage2, "stage1": stage1} if self.training else stage2

    def memory_logits(self) -> torch.Tensor:
        """``[K*n, K]``: ``decoder_stage2`` applied to every memory vector (the memory loss's predictions)."""
        memory = self.memory_module.memory
        return self.decoder_stage2(memory.reshape(-1, memory.shape[-1], 1, 1)).flatten(1)
