"""``PointRendHead``: PointRend (Kirillov et al., 2020) as SSSegmentation's ``PointRend`` segmentor builds it.

A SemanticFPN-style coarse branch (``fpn_neck`` -> ``scale_heads`` summed at the first level -> the recipe's
``auxiliary`` head, SSSeg's ``auxiliary_decoder`` with ``num_convs = 0``) predicts coarse logits at stride 4; a point
head (``fcs``: ``num_fcs`` x [Conv1d, norm, act] over the fine FPN features and the coarse logits sampled at points,
with the coarse logits appended after every layer when ``coarse_pred_each_layer``; ``decoder``: Dropout -> Conv1d)
re-predicts chosen points.

* Training: ``head.train.num_points`` points, most of them where the coarse prediction is uncertain (the smallest
  gap between the two best classes among ``oversample_ratio`` x as many uniform draws), the rest uniform; outputs
  ``out`` (point logits ``[B, K, P]``), ``points`` (``[B, P, 2]``, x/y in [0, 1]) and ``aux`` (coarse logits).
* Eval: ``head.test.subdivision_steps`` times, the logits are upsampled by ``scale_factor`` and the
  ``subdivision_num_points`` most uncertain cells are re-predicted and written back; ``out`` is one dense map.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, ConvNormAct, build_act, build_norm
from ..layers.fpn import FPN, UpsampleCfg
from ..layers.point_sample import point_sample, uncertainty_point_coords
from .base import Head

_BATCH_NORMS = ("SyncBatchNorm", "BatchNorm1d", "BatchNorm2d")


def point_train_options(num_points: int = 2048, oversample_ratio: float = 3.0,
                        importance_sample_ratio: float = 0.75) -> dict:
    """``head.train``: how many points are trained and how they are drawn (SSSegmentation's defaults)."""
    return {"num_points": num_points, "oversample_ratio": oversample_ratio,
            "importance_sample_ratio": importance_sample_ratio}


def point_test_options(subdivision_steps: int = 2, subdivision_num_points: int = 8196,
                       scale_factor: float = 2.0) -> dict:
    """``head.test``: the subdivision refinement at inference (SSSegmentation's defaults)."""
    return {"subdivision_steps": subdivision_steps, "subdivision_num_points": subdivision_num_points,
            "scale_factor": scale_factor}


def top2_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """``[B, K, ...] -> [B, 1, ...]``: second-best minus best logit (highest where the two best classes tie)."""
    top2 = torch.topk(logits, k=2, dim=1)[0]
    return (top2[:, 1] - top2[:, 0]).unsqueeze(1)


def _norm1d(norm_cfg: dict | None, channels: int) -> nn.Module:
    """The norm of ``norm_cfg`` for ``[B, C, P]`` point features (batch norms become ``BatchNorm1d``)."""
    if norm_cfg is not None and norm_cfg.get("type") in _BATCH_NORMS:
        kwargs = {k: v for k, v in norm_cfg.items() if k not in ("type", "process_group")}
        return nn.BatchNorm1d(channels, **kwargs)
    return build_norm(norm_cfg, channels)


@HEADS.register("PointRendHead")
class PointRendHead(Head):
    """See the module docstring. ``coarse_head`` (the recipe's ``auxiliary`` table, built by the PointRend segmentor
    over the ``scale_head_channels`` map) becomes ``auxiliary_decoder``. SSSeg's ``fpn_in_channels_list``,
    ``pointrend_in_channels_list`` and ``feature_stride_list`` are derived from the features read, or checked."""

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 256,
        scale_head_channels: int = 128,
        upsample_cfg: UpsampleCfg | None = None,
        feature_stride_list: list[int] | None = None,
        num_fcs: int = 3,
        coarse_pred_each_layer: bool = True,
        train: Annotated[dict, TableOf(point_train_options)] | None = None,
        test: Annotated[dict, TableOf(point_test_options)] | None = None,
        dropout: float = 0.0,
        fpn_in_channels_list: list[int] | None = None,
        pointrend_in_channels_list: list[int] | None = None,
        coarse_head: nn.Module | None = None,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_strides: list[int] | None = None,
        in_index: InIndex = (0, 1, 2, 3),
    ) -> None:
        super().__init__(in_index)
        in_channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        if fpn_in_channels_list is not None and list(fpn_in_channels_list) != in_channels:
            raise ArgumentError("fpn_in_channels_list", f"{list(fpn_in_channels_list)} does not match the features "
                                f"read ({in_channels})")
        if pointrend_in_channels_list is not None and list(pointrend_in_channels_list) != [feats_channels]:
            raise ArgumentError("pointrend_in_channels_list", f"the point head reads the finest FPN level "
                                f"([{feats_channels}] channels), got {list(pointrend_in_channels_list)}")
        strides = list(feature_stride_list if feature_stride_list is not None else in_strides or [4, 8, 16, 32])
        if len(strides) != len(in_channels) or any(s < strides[0] for s in strides):
            raise ArgumentError("feature_stride_list", f"expected {len(in_channels)} strides, finest first, got "
                                f"{strides}")
        if coarse_head is None:
            raise ArgumentError("coarse_head", "PointRend needs its coarse head (the recipe's auxiliary table)")
        self.train_cfg: dict = point_train_options(**(train or {}))
        self.test_cfg: dict = point_test_options(**(test or {}))
        if self.train_cfg["oversample_ratio"] < 1 or not 0 <= self.train_cfg["importance_sample_ratio"] <= 1:
            raise ArgumentError("train", "oversample_ratio must be >= 1 and importance_sample_ratio in [0, 1]")
        self.align_corners = align_corners
        self.num_classes = num_classes
        self.coarse_pred_each_layer = coarse_pred_each_layer
        self.fpn_neck = FPN(in_channels, feats_channels, upsample_cfg=upsample_cfg, norm_cfg=norm_cfg,
                            act_cfg=act_cfg)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            layers: list[nn.Module] = []
            for k in range(max(1, int(math.log2(stride) - math.log2(strides[0])))):
                layers.append(ConvNormAct(feats_channels if k == 0 else scale_head_channels, scale_head_channels, 3,
                                          norm_cfg=norm_cfg, act_cfg=act_cfg))
                if stride != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners))
            self.scale_heads.append(nn.Sequential(*layers))
        fc_in = feats_channels + num_classes
        self.fcs = nn.ModuleList()
        for _ in range(num_fcs):
            self.fcs.append(nn.Sequential(nn.Conv1d(fc_in, feats_channels, 1, bias=False),
                                          _norm1d(norm_cfg, feats_channels), build_act(act_cfg)))
            fc_in = feats_channels + (num_classes if coarse_pred_each_layer else 0)
        self.decoder = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(fc_in, num_classes, 1))
        self.auxiliary_decoder = coarse_head

    def training_outputs(self) -> list[str]:
        return ["out", "points", "aux"]

    # ----------------------------------------------------------------------------------------------- parts
    def coarse(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coarse logits, finest FPN level)``, both at the first level's resolution."""
        inputs = self.select(features)
        pyramid = self.fpn_neck([inputs] if isinstance(inputs, torch.Tensor) else inputs)
        feats = self.scale_heads[0](pyramid[0])
        for scale_head, x in zip(self.scale_heads[1:], pyramid[1:], strict=True):
            feats = feats + F.interpolate(scale_head(x), size=feats.shape[2:], mode="bilinear",
                                          align_corners=self.align_corners)
        return self.auxiliary_decoder([feats]), pyramid[0]

    def point_logits(self, fine: torch.Tensor, coarse: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, P]`` of the point head at ``points`` ``[B, P, 2]``."""
        coarse_points = point_sample(coarse, points, align_corners=self.align_corners)
        x = torch.cat([point_sample(fine, points, align_corners=self.align_corners), coarse_points], dim=1)
        for fc in self.fcs:
            x = fc(x)
            if self.coarse_pred_each_layer:
                x = torch.cat([x, coarse_points], dim=1)
        return self.decoder(x)

    def refine(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Subdivision inference: upsample, re-predict the most uncertain cells, repeat."""
        refined = coarse
        for _ in range(int(self.test_cfg["subdivision_steps"])):
            refined = F.interpolate(refined, scale_factor=self.test_cfg["scale_factor"], mode="bilinear",
                                    align_corners=self.align_corners)
            batch, channels, height, width = refined.shape
            num_points = min(height * width, int(self.test_cfg["subdivision_num_points"]))
            indices = top2_uncertainty(refined).view(batch, height * width).topk(num_points, dim=1)[1]
            w_step, h_step = 1.0 / width, 1.0 / height
            points = torch.stack([w_step / 2.0 + (indices % width).float() * w_step,
                                  h_step / 2.0 + torch.div(indices, width, rounding_mode="floor").float() * h_step],
                                 dim=2)
            logits = self.point_logits(fine, coarse, points)
            refined = refined.reshape(batch, channels, height * width)
            refined = refined.scatter(2, indices.unsqueeze(1).expand(-1, channels, -1), logits.to(refined.dtype))
            refined = refined.view(batch, channels, height, width)
        return refined

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor] | torch.Tensor:
        coarse, fine = self.coarse(features)
        if not self.training:
            return self.refine(coarse, fine)
        cfg = self.train_cfg
        points = uncertainty_point_coords(coarse, top2_uncertainty, int(cfg["num_points"]),
                                          float(cfg["oversample_ratio"]), float(cfg["importance_sample_ratio"]))
        return {"out": self.point_logits(fine, coarse, points), "points": points, "aux": coarse}
