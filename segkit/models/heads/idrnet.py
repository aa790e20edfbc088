"""``IDRNetHead``: "IDRNet: Intervention-Driven Relation Network for Semantic Segmentation" (Jin et al., NeurIPS 2023),
SSSegmentation's ``IDRNet``.

On the last feature: a 3x3 ``bottleneck``; an optional coarse context (``coarse_context``: ASPP or PPM, with an optional
``SelfAttentionBlock`` refiner before or after ``decoder_stage1``) and an optional UPerNet-style FPN over the other
levels (``fpn``; before ``decoder_stage1`` or after it); ``decoder_stage1`` logits; the features followed by the
dataset-level representation of each pixel's class (``dl_cls_representations``); two intervention-driven contexts
mixed by the class relations (``class_relations_mean``, ``class_relations_var``); ``idcontext_refiner``; and
``decoder_stage2`` on [features, context, coarse context]. The IDRNet segmentor updates the relations (by an
"intervention" that drops one class from the context, replaying ``decoder_stage2``'s dropout), the per-class selection
counter and the class representations in training. The four state tensors are frozen parameters, as in SSSeg.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct
from ..layers.context_module import build_context_module
from ..layers.fpn_fusion import UPerFPNFusion
from ..layers.self_attention import SelfAttentionBlock
from .base import Head
from .idrnet_ops import insert_dl_representations, intervention_context
from .mcibi import class_decoder
from .mcibiplusplus import fpn_options


def coarse_context_options(type: Literal["aspp", "ppm"] = "aspp",  # noqa: A002 (SSSeg's key)
                           dilations: list[int] | None = None, pool_scales: list[int] | None = None) -> None:
    """``head.coarse_context``: an ASPP (``dilations``) or PPM (``pool_scales``) on the bottleneck's output."""


def refiner(channels: int, transform_channels: int, out_channels: int, norm_cfg: dict | None,
            act_cfg: dict | None) -> SelfAttentionBlock:
    """The self-attention block IDRNet refines its contexts with."""
    return SelfAttentionBlock(
        key_in_channels=channels, query_in_channels=channels, transform_channels=transform_channels,
        out_channels=out_channels, share_key_query=False, query_downsample=None, key_downsample=None,
        key_query_num_convs=2, value_out_num_convs=1, key_query_norm=True, value_out_norm=True, matmul_norm=True,
        with_out_project=True, norm_cfg=norm_cfg, act_cfg=act_cfg,
    )


@HEADS.register("IDRNetHead")
class IDRNetHead(Head):
    """See the module docstring. ``feature_channels`` (every feature's channels, provided by the segmentor) checks
    ``fpn.in_channels_list``; the FPN laterals read every feature but the last."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        refine_idcontext_channels: int = 256,
        refine_coarsecontext_channels: int = 256,
        coarse_context: Annotated[dict, TableOf(coarse_context_options)] | None = None,
        use_sa_on_coarsecontext_before: bool = False,
        use_sa_on_coarsecontext_after: bool = False,
        use_fpn_before: bool = False,
        use_fpn_after: bool = True,
        force_stage1_use_oripr: bool = False,
        clsrelation_momentum: float = 0.1,
        dlclsreps_momentum: float = 0.1,
        ignore_index: int = -100,
        dropout: float = 0.1,
        fpn: Annotated[dict, TableOf(fpn_options)] | None = None,
        feature_channels: list[int] | None = None,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_index: InIndex = -1,
    ) -> None:
        super().__init__(in_index)
        if use_fpn_before and use_fpn_after and fpn is not None:
            raise ArgumentError("use_fpn_before", "the FPN runs either before or after decoder_stage1, not both")
        if fpn is not None and coarse_context is None:
            raise ArgumentError("fpn", "the FPN's top level is the coarse context: give coarse_context")
        if use_sa_on_coarsecontext_before and use_sa_on_coarsecontext_after and coarse_context is not None:
            raise ArgumentError("use_sa_on_coarsecontext_before", "refine the coarse context before or after, not both")
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.use_fpn_before, self.use_fpn_after = use_fpn_before, use_fpn_after
        self.force_stage1_use_oripr = force_stage1_use_oripr
        self.clsrelation_momentum, self.dlclsreps_momentum = clsrelation_momentum, dlclsreps_momentum
        self.ignore_index = ignore_index
        self.bottleneck = ConvNormAct(in_channels, feats_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        context_channels = feats_channels
        if coarse_context is not None:
            context_channels = fpn["feats_channels"] if fpn is not None else feats_channels
            cfg = {k: v for k, v in coarse_context.items() if k != "type" and v is not None}
            self.coarse_context_module = build_context_module(
                coarse_context.get("type", "aspp"), cfg, feats_channels, context_channels,
                align_corners=align_corners, norm_cfg=norm_cfg, act_cfg=act_cfg, argument="coarse_context")
            if use_sa_on_coarsecontext_before or use_sa_on_coarsecontext_after:
                name = "coarsecontext_refiner_" + ("before" if use_sa_on_coarsecontext_before else "after")
                self.add_module(name, refiner(context_channels, refine_coarsecontext_channels, context_channels,
                                              norm_cfg, act_cfg))
        fpn_channels = 0
        if fpn is not None:
            lateral = list(fpn["in_channels_list"][:-1])
            if feature_channels is not None and lateral != list(feature_channels[:-1]):
                raise ArgumentError("fpn", f"in_channels_list {list(fpn['in_channels_list'])} does not match the "
                                    f"features read ({list(feature_channels)})")
            self.fpn = UPerFPNFusion(lateral, fpn["feats_channels"], fpn["out_channels"], norm_cfg=norm_cfg,
                                     act_cfg=act_cfg, align_corners=align_corners)
            fpn_channels = fpn["out_channels"] * len(lateral)
        self.class_relations_mean = nn.Parameter(torch.eye(num_classes), requires_grad=False)
        self.class_relations_var = nn.Parameter(torch.eye(num_classes), requires_grad=False)
        self.selected_classes_counter = nn.Parameter(torch.full((num_classes,), 1e-6), requires_grad=False)
        self.idcontext_refiner = refiner(feats_channels * 6, refine_idcontext_channels, feats_channels, norm_cfg,
                                         act_cfg)
        self.dl_cls_representations = nn.Parameter(torch.zeros(num_classes, feats_channels), requires_grad=False)
        stage1_channels = feats_channels
        if coarse_context is not None:
            stage1_channels = context_channels + (fpn_channels if use_fpn_before else 0)
        if force_stage1_use_oripr:
            stage1_channels = feats_channels
        stage2_channels = feats_channels * 2 + (context_channels + fpn_channels if coarse_context is not None else 0)
        self.decoder_stage1 = class_decoder(stage1_channels, feats_channels, num_classes, dropout, norm_cfg, act_cfg)
        self.decoder_stage2 = class_decoder(stage2_channels, feats_channels, num_classes, dropout, norm_cfg, act_cfg)

    def training_outputs(self) -> list[str]:
        return ["out", "stage1"]

    # ----------------------------------------------------------------------------------------------- parts
    def _fpn(self, features: list[torch.Tensor], top: torch.Tensor) -> torch.Tensor:
        return self.fpn.concat(self.fpn(features[:-1], top))

    def decode(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Everything the training step reuses: ``feats``, ``feats_withdl``, ``stage1``, ``coarse`` (or absent),
        ``present`` (classes predicted per image) and ``id_context``; ``stage2`` is computed by :meth:`stage2`."""
        x = self.select(features)
        feats = self.bottleneck(x)
        coarse = None
        if hasattr(self, "coarse_context_module"):
            coarse = self.coarse_context_module(feats)
            if hasattr(self, "coarsecontext_refiner_before"):
                coarse = self.coarsecontext_refiner_before(coarse, coarse)
        if hasattr(self, "fpn") and self.use_fpn_before:
            coarse = self._fpn(features, coarse)
        stage1 = self.decoder_stage1(feats if self.force_stage1_use_oripr or coarse is None else coarse)
        if stage1.shape[2:] != feats.shape[2:]:
            stage1 = F.interpolate(stage1, size=feats.shape[2:], mode="bilinear", align_corners=self.align_corners)
        if coarse is not None and hasattr(self, "coarsecontext_refiner_after"):
            coarse = self.coarsecontext_refiner_after(coarse, coarse)
        feats_withdl = insert_dl_representations(feats, stage1, self.dl_cls_representations.data)
        id_context, present = self.id_context(feats_withdl, stage1)
        if hasattr(self, "fpn") and self.use_fpn_after:
            coarse = self._fpn(features, coarse)
        parts = {"feats": feats, "feats_withdl": feats_withdl, "stage1": stage1, "present": present,
                 "id_context": id_context}
        if coarse is not None:
            parts["coarse"] = coarse
        return parts

    def id_context(self, feats_withdl: torch.Tensor, stage1: torch.Tensor,
                   intervention: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The refined intervention-driven context (``intervention``: a class per image left out) and the classes
        present (without intervention)."""
        context_mean, present = intervention_context(feats_withdl, stage1, self.class_relations_mean.data,
                                                     intervention, remove_negative=True)
        context_var, _ = intervention_context(feats_withdl, stage1, self.class_relations_var.data, intervention,
                                              remove_negative=False)
        combined = torch.cat([feats_withdl, context_mean, context_var], dim=1)
        return self.idcontext_refiner(combined, combined), present

    def stage2(self, parts: dict[str, torch.Tensor], id_context: torch.Tensor) -> torch.Tensor:
        """``decoder_stage2`` on [features, context(, coarse context)], at the coarse context's size."""
        feats, coarse = parts["feats"], parts.get("coarse")
        if coarse is None:
            return self.decoder_stage2(torch.cat([feats, id_context], dim=1))
        if feats.shape[2:] != coarse.shape[2:]:
            size = coarse.shape[2:]
            feats = F.interpolate(feats, size=size, mode="bilinear", align_corners=self.align_corners)
            id_context = F.interpolate(id_context, size=size, mode="bilinear", align_corners=self.align_corners)
        return self.decoder_stage2(torch.cat([feats, id_context, coarse], dim=1))

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor] | torch.Tensor:
        parts = self.decode(features)
        stage2 = self.stage2(parts, parts["id_context"])
        return {"out": stage2, "stage1": parts["stage1"]} if self.training else stage2
