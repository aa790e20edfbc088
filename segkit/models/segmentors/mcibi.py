"""``MCIBI``: "Mining Contextual Information Beyond Image for Semantic Segmentation" (Jin et al., ICCV 2021).

Backbone -> (ViT configs: a LayerNorm per level over the tokens, ``head.norm_cfg`` with ``in_channels_list``;
HRNet configs: one shared stride-2 conv-norm-act on every level, ``head.downsample_backbone``) -> ``MCIBIHead`` (+
auxiliary heads on the same, normalised/downsampled, features). The segmentor needs the ground truth and the
training progress: after each training forward it moves the memory towards the batch's class features (momentum
``base_momentum / base_lr * lr``), averaged across ranks with ``reduce_mean``, and from epoch 2 (``use_loss``) it
outputs ``memory``, the memory classified by ``decoder_stage2``, for ``loss_memory``. Outputs: ``out`` (stage 2,
``loss_cls_stage2``), ``stage1`` (``loss_cls_stage1``), the auxiliary outputs, ``memory``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError
from ...registry import SEGMENTORS, validate_arguments
from ..features import Feature, FeatureInfo
from ..layers import ConvNormAct, build_norm
from ..layers.memory import momentum_at
from .base import EncoderDecoder, Route

if TYPE_CHECKING:
    from ..build import ModelBuilder

STAGE_ROUTES = {"loss_cls_stage1": Route("stage1"), "loss_cls_stage2": Route("out")}


def _downsample_options(kernel_size: int = 3, stride: int = 1, padding: int = 1, bias: bool = False,
                        dilation: int = 1) -> None:
    """``head.downsample_backbone``: the shared conv applied to every level when ``stride > 1``."""


def level_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """``norm`` over the channels of each position of ``x`` ``[B, C, H, W]`` (a token LayerNorm)."""
    batch, channels, height, width = x.shape
    tokens = norm(x.reshape(batch, channels, height * width).transpose(1, 2))
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def meta_if(probe: bool):
    """Build on the meta device while the model builder only validates."""
    return torch.device("meta") if probe else contextlib.nullcontext()


@SEGMENTORS.register("MCIBI")
class MCIBI(EncoderDecoder):
    """See the module docstring."""

    head_type = "MCIBIHead"
    criterion_type = "MCIBICriterion"
    uses_targets = True
    uses_progress = True
    loss_routes = {**STAGE_ROUTES,
                   "loss_memory": Route("memory", target="memory_labels", resize="none", optional=True)}
    ssseg_prefixes = {
        "backbone_net": "backbone", "norm_layers": "norm_layers", "downsample_backbone": "downsample_backbone",
        "context_within_image_module": "head.context_within_image_module", "bottleneck": "head.bottleneck",
        "memory_module": "head.memory_module", "decoder_stage1": "head.decoder_stage1",
        "decoder_stage2": "head.decoder_stage2", "auxiliary_decoder": "aux_heads",
    }

    def __init__(self, backbone: nn.Module, head: nn.Module, aux_heads: dict[str, nn.Module] | None = None,
                 selected_indices: tuple[int, ...] | None = None, align_corners: bool = False,
                 norm_layers: nn.ModuleList | None = None, downsample_backbone: nn.Module | None = None) -> None:
        super().__init__(backbone, head, aux_heads=aux_heads, selected_indices=selected_indices,
                         align_corners=align_corners)
        self.norm_layers = norm_layers
        self.downsample_backbone = downsample_backbone
        self.epoch: int | None = None
        self.lr: float | None = None

    @classmethod
    def from_recipe(cls, builder: ModelBuilder) -> MCIBI:
        backbone, features = builder.backbone()
        head_table = copy.deepcopy(builder.recipe.head)
        if not isinstance(head_table, dict):
            raise RecipeError("head", f"expected a table, got {head_table!r}")
        with meta_if(builder.probe):
            norm_layers = cls._level_norms(head_table, features)
            downsample, features = cls._downsample(head_table, features, builder)
        head = builder.head(features, default_type=cls.head_type, table=head_table)
        aux_heads = builder.aux_heads(features)
        return cls(backbone=backbone, head=head, aux_heads=aux_heads, selected_indices=builder.selected_indices,
                   align_corners=builder.align_corners, norm_layers=norm_layers, downsample_backbone=downsample)

    @staticmethod
    def _level_norms(head_table: dict, features: FeatureInfo) -> nn.ModuleList | None:
        """SSSeg's ``head.norm_cfg`` with ``in_channels_list``: one norm per level (popped from the head table)."""
        cfg = head_table.get("norm_cfg")
        if not (isinstance(cfg, dict) and "in_channels_list" in cfg):
            return None
        cfg = dict(head_table.pop("norm_cfg"))
        channels = cfg.pop("in_channels_list")
        if list(channels) != features.channels:
            raise RecipeError("head.norm_cfg.in_channels_list", f"{channels} does not match the features "
                              f"({features.channels})")
        return nn.ModuleList(build_norm(cfg, c, path="head.norm_cfg") for c in channels)

    @staticmethod
    def _downsample(head_table: dict, features: FeatureInfo,
                    builder: ModelBuilder) -> tuple[nn.Module | None, FeatureInfo]:
        """SSSeg's ``head.downsample_backbone``: a conv shared by every level when its stride is > 1."""
        table = head_table.pop("downsample_backbone", None) or {}
        cfg = {"kernel_size": 3, "stride": 1, "padding": 1, "bias": False, "dilation": 1,
               **validate_arguments(_downsample_options, table, "head.downsample_backbone", what="MCIBI")}
        if cfg["stride"] <= 1:
            return None, features
        channels = head_table.get("in_channels", features.channels[-1])
        if any(c != channels for c in features.channels):
            raise RecipeError("head.downsample_backbone", f"the shared conv needs every level to have {channels} "
                              f"channels, got {features.channels}")
        module = ConvNormAct(channels, channels, cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                             dilation=cfg["dilation"], bias=cfg["bias"], norm_cfg=copy.deepcopy(builder.norm_cfg),
                             act_cfg=copy.deepcopy(builder.act_cfg))
        return module, FeatureInfo(Feature(f.channels, f.stride * cfg["stride"], f.name) for f in features)

    # ----------------------------------------------------------------------------------------------- forward
    def set_progress(self, *, epoch: int, iteration: int, lr: float, max_epochs: int, max_iters: int) -> None:
        self.epoch, self.lr = epoch, lr

    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = super().extract_features(images)
        if self.norm_layers is not None:
            features = [level_norm(x, norm) for x, norm in zip(features, self.norm_layers, strict=True)]
        if self.downsample_backbone is not None:
            features = [self.downsample_backbone(x) for x in features]
        return features

    def output_names(self, training: bool = True) -> list[str]:
        if not training:
            return ["out"]
        return ["out", "stage1", *self.aux_names, *(["memory"] if self.head.use_loss else [])]

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        features = self.extract_features(images)
        stage2, stage1, memory_input = self.head.decode(features)
        if not self.training:
            return {"out": stage2}
        if targets is None or "seg_target" not in targets:
            raise ValueError("MCIBI updates its memory from the ground truth: call it with targets in training")
        outputs = {"out": stage2, "stage1": stage1}
        if self.aux_heads is not None:
            for name, aux_head in zip(self.aux_names, self.aux_heads, strict=True):
                outputs[name] = aux_head(features)
        seg = targets["seg_target"]
        cfg = self.head.update_cfg
        with torch.no_grad():
            feats = F.interpolate(memory_input, size=seg.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            self.head.memory_module.update(feats, seg, momentum_at(cfg["momentum_cfg"], self.lr), cfg["ignore_index"],
                                           cfg["strategy"], reduce_mean=self.reduce_mean)
        if self.head.use_loss and (self.epoch is None or self.epoch > 1):
            outputs["memory"] = self.head.memory_logits()
        return outputs
