"""``MaskFormerHead``: MaskFormer's pixel decoder and transformer predictor (Cheng et al. 2021, "Per-Pixel
Classification is Not All You Need for Semantic Segmentation"), as SSSegmentation builds it.

Pixel decoder: UPerNet-style, on exactly four feature levels (strides 4..32): a pyramid pooling module on the last,
1x1 laterals on the other three, a top-down sum with a 3x3 conv at each level, and a 3x3 conv to
``mask_feats_channels`` "mask features" at the first level's resolution. Predictor: DETR's transformer decoder
(``dec_layers`` layers, ``num_queries`` learnt query positions, sine position encoding) over the last backbone
feature; each decoder layer's queries give class logits (``num_classes + 1``, the last meaning "no object") and a
mask embedding whose dot product with the mask features is a mask logit map.

Module names are SSSegmentation's (``ppm_net``, ``lateral_convs``, ``fpn_convs``, ``decoder_mask``,
``decoder_predictor`` with ``transformer``, ``query_embed``, ``input_proj``, ``class_embed``, ``mask_embed``): SSSeg
builds them on the segmentor, segkit in this head (``MaskFormer.ssseg_prefixes`` maps them).

Outputs (:func:`query_output_names`): ``pred_logits`` ``[B, Q, K + 1]`` and ``pred_masks`` ``[B, Q, h, w]`` of the
last layer, then ``pred_logits_{i}`` / ``pred_masks_{i}`` of the earlier layers ``i = 0 .. dec_layers - 2`` with
``deep_supervision`` (in training; eval mode returns the last layer's only).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError
from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..layers.position_embedding import PositionEmbeddingSine
from ..layers.transformer import DEFAULT_TRANSFORMER_ACT_CFG, DEFAULT_TRANSFORMER_NORM_CFG, MLP, Transformer
from .base import Head


def query_output_names(num_aux: int) -> list[str]:
    """Training outputs of a query head with ``num_aux`` deep-supervised earlier layers."""
    names = ["pred_logits", "pred_masks"]
    for index in range(num_aux):
        names += [f"pred_logits_{index}", f"pred_masks_{index}"]
    return names


def pack_predictions(logits: list[torch.Tensor], masks: list[torch.Tensor], aux: bool) -> dict[str, torch.Tensor]:
    """``{pred_logits, pred_masks}`` of the last layer, then ``pred_*_{i}`` of every earlier layer when ``aux``."""
    outputs = {"pred_logits": logits[-1], "pred_masks": masks[-1]}
    if aux:
        for index, (layer_logits, layer_masks) in enumerate(zip(logits[:-1], masks[:-1], strict=True)):
            outputs[f"pred_logits_{index}"] = layer_logits
            outputs[f"pred_masks_{index}"] = layer_masks
    return outputs


@contextmanager
def nested_table(name: str) -> Iterator[None]:
    """Errors raised while building a nested table's module are reported at ``<head>.<name>.<key>``."""
    try:
        yield
    except ArgumentError as exc:
        raise ArgumentError(f"{name}.{exc.argument}", exc.detail) from None
    except RecipeError as exc:
        raise ArgumentError(f"{name}.{exc.path}", exc.message) from None


def c2_xavier_fill(module: nn.Module) -> None:
    """Detectron2's ``c2_xavier_fill`` (Caffe2's XavierFill): Kaiming-uniform with ``a = 1``, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class PyramidPoolingModule(nn.Module):
    """PSPNet's pyramid pooling (``branches``: adaptive pool -> 1x1 conv-norm-act per scale; ``bottleneck``: 3x3
    conv-norm-act over the input and the upsampled branches), as SSSegmentation's ``PyramidPoolingModule``."""

    def __init__(self, in_channels: int, out_channels: int, pool_scales: tuple[int, ...] | list[int],
                 align_corners: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(nn.Sequential(
            nn.AdaptiveAvgPool2d(scale),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            build_norm(norm_cfg, out_channels),
            build_act(act_cfg),
        ) for scale in pool_scales)
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + out_channels * len(pool_scales), out_channels, 3, padding=1, bias=False),
            build_norm(norm_cfg, out_channels),
            build_act(act_cfg),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [x] + [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners)
                        for branch in self.branches]
        return self.bottleneck(torch.cat(levels, dim=1))


class MaskFormerPredictor(nn.Module):
    """MaskFormer's transformer predictor (SSSegmentation's ``Predictor``): the ``head.predictor`` table.

    ``forward(x [B, in_channels, H, W], mask_features [B, mask_dim, h, w], all_masks) -> (logits, masks)``, one
    ``[B, Q, K + 1]`` / ``[B, Q, h, w]`` entry per decoder layer when ``deep_supervision`` (masks of the earlier
    layers only with ``all_masks``), else the last layer's only.
    """

    def __init__(self, in_channels: int, num_classes: int, mask_dim: int, mask_classification: bool = True,
                 hidden_dim: int = 256, num_queries: int = 100, nheads: int = 8, dropout: float = 0.1,
                 dim_feedforward: int = 2048, enc_layers: int = 0, dec_layers: int = 6, pre_norm: bool = False,
                 deep_supervision: bool = True, enforce_input_project: bool = False,
                 norm_cfg: dict | None = DEFAULT_TRANSFORMER_NORM_CFG,
                 act_cfg: dict | None = DEFAULT_TRANSFORMER_ACT_CFG) -> None:
        super().__init__()
        if not mask_classification:
            raise ArgumentError("mask_classification", "only mask classification is supported (the semantic "
                                "inference needs class scores per query)")
        for name, value in (("hidden_dim", hidden_dim), ("num_queries", num_queries), ("dec_layers", dec_layers)):
            if value < 1:
                raise ArgumentError(name, f"must be >= 1, got {value}")
        if enc_layers < 0:
            raise ArgumentError("enc_layers", f"must be >= 0, got {enc_layers}")
        if hidden_dim % nheads:
            raise ArgumentError("nheads", f"hidden_dim ({hidden_dim}) must be divisible by nheads ({nheads})")
        if hidden_dim % 4:
            raise ArgumentError("hidden_dim", f"must be a multiple of 4 (sine position encoding), got {hidden_dim}")
        self.num_queries = num_queries
        self.in_channels = in_channels
        self.aux_loss = deep_supervision
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim, nhead=nheads, num_encoder_layers=enc_layers, num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward, dropout=dropout, norm_before=pre_norm,
            return_intermediate_dec=deep_supervision, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
            c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Sequential()
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(self, x: torch.Tensor, mask_features: torch.Tensor,
                all_masks: bool = True) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hs, _ = self.transformer(self.input_proj(x), self.query_embed.weight, self.pe_layer(x))
        if not all_masks:
            hs = hs[-1:]
        logits = self.class_embed(hs)  # [L, B, Q, K + 1]
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        return list(logits.unbind(0)), list(masks.unbind(0))


@HEADS.register("MaskFormerHead")
class MaskFormerHead(Head):
    """MaskFormer's pixel decoder + transformer predictor (see the module docstring).

    Reads four feature levels (``in_index``, default ``[0, 1, 2, 3]``); their channels are SSSegmentation's
    ``in_channels_list``, derived (given, it is checked). ``predictor`` is the nested ``head.predictor`` table
    (:class:`MaskFormerPredictor`'s arguments; its ``in_channels``, ``num_classes`` and ``mask_dim`` come from the
    head, and are checked when given). Returns the prediction dict of :func:`query_output_names`.
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        feats_channels: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        mask_feats_channels: int = 256,
        predictor: Annotated[dict, TableOf(MaskFormerPredictor,
                                           optional=("in_channels", "num_classes", "mask_dim"))] | None = None,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        align_corners: bool = False,
        in_channels_list: list[int] | None = None,
        in_index: InIndex = (0, 1, 2, 3),  # type: ignore[assignment]
    ) -> None:
        super().__init__(in_index)
        if not isinstance(self.in_index, list) or len(self.in_index) != 4:
            raise ArgumentError("in_index", f"MaskFormer's pixel decoder reads exactly 4 feature levels, got "
                                f"in_index {self.in_index!r}")
        if in_channels_list is not None and list(in_channels_list) != list(in_channels):
            raise ArgumentError("in_channels_list", f"{list(in_channels_list)} does not match the features it reads "
                                f"({list(in_channels)} channels at in_index {self.in_index}); remove it, it is derived")
        predictor = dict(predictor or {})
        for key, expected, source in (("in_channels", in_channels[-1], "the last feature's channels"),
                                      ("num_classes", num_classes, "the recipe's num_classes"),
                                      ("mask_dim", mask_feats_channels, "mask_feats_channels")):
            given = predictor.pop(key, None)
            if given is not None and given != expected:
                raise ArgumentError(f"predictor.{key}", f"must equal {source} ({expected}), got {given}; or leave "
                                    "it out (the head sets it)")
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.align_corners = align_corners
        lateral_act_cfg = copy.deepcopy(act_cfg)
        if isinstance(lateral_act_cfg, dict) and "inplace" in lateral_act_cfg:
            lateral_act_cfg["inplace"] = False
        self.ppm_net = PyramidPoolingModule(in_channels[-1], feats_channels, pool_scales, align_corners,
                                            norm_cfg, act_cfg)
        self.lateral_convs = nn.ModuleList(nn.Sequential(
            nn.Conv2d(channels, feats_channels, 1, bias=False),
            build_norm(norm_cfg, feats_channels),
            build_act(lateral_act_cfg),
        ) for channels in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(nn.Sequential(
            nn.Conv2d(feats_channels, feats_channels, 3, padding=1, bias=False),
            build_norm(norm_cfg, feats_channels),
            build_act(lateral_act_cfg),
        ) for _ in in_channels[:-1])
        self.decoder_mask = nn.Sequential(nn.Conv2d(feats_channels, mask_feats_channels, 3, padding=1))
        with nested_table("predictor"):
            self.decoder_predictor = MaskFormerPredictor(in_channels=in_channels[-1], num_classes=num_classes,
                                                         mask_dim=mask_feats_channels, **predictor)

    @property
    def num_aux(self) -> int:
        predictor = self.decoder_predictor
        return len(predictor.transformer.decoder.layers) - 1 if predictor.aux_loss else 0

    def training_outputs(self) -> list[str]:
        return query_output_names(self.num_aux)

    def pixel_decoder(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The mask features ``[B, mask_feats_channels, H/4, W/4]`` (top-down over the four levels)."""
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features[:-1], strict=True)]
        fpn_out = self.ppm_net(features[-1])
        for index, lateral in enumerate(reversed(laterals)):
            fpn_out = F.interpolate(fpn_out, size=lateral.shape[-2:], mode="bilinear",
                                    align_corners=self.align_corners) + lateral
            fpn_out = self.fpn_convs[index](fpn_out)
        return self.decoder_mask(fpn_out)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self.select(features)
        mask_features = self.pixel_decoder(inputs)
        aux = self.training and self.decoder_predictor.aux_loss
        logits, masks = self.decoder_predictor(inputs[-1], mask_features, all_masks=aux)
        return pack_predictions(logits, masks, aux)
