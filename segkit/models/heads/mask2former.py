"""``Mask2FormerHead``: Mask2Former's pixel decoder and masked-attention transformer decoder (Cheng et al. 2022,
"Masked-attention Mask Transformer for Universal Image Segmentation"), as SSSegmentation builds them.

The pixel decoder (:mod:`.mask2former_pixel_decoder`, the ``head.pixel_decoder`` table) turns the four backbone levels
into mask features at stride 4 and three multi-scale maps. The transformer decoder (``head.predictor``) refines
``num_queries`` learnt query features (``query_feat``, with learnt positions ``query_embed``) through
``dec_layers - 1`` layers (SSSegmentation's count: ``dec_layers`` predictions including the initial one), each
attending to one of the three maps in turn (plus ``level_embed``) with *masked* cross-attention (a query sees only
the pixels its previous mask prediction covers, ``sigmoid >= 0.5``; a query whose mask is empty sees everything),
then self-attention among the queries, then a feed-forward block. Every prediction (the initial one and one per
layer) gives class logits and mask logits, which deep supervision trains.

Module names are SSSegmentation's (``pixel_decoder``, ``predictor`` with ``transformer_self_attention_layers``,
``transformer_cross_attention_layers``, ``transformer_ffn_layers``, ``decoder_norm``, ``query_feat``,
``query_embed``, ``level_embed``, ``input_proj``, ``class_embed``, ``mask_embed``): its ``params_rules`` key on them.
The pixel decoder runs in float32 (float64 stays float64) with autocast off; the decoder under the caller's autocast.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import HEADS, TableOf
from ..features import InIndex
from ..layers import ArgumentError
from ..layers.position_embedding import PositionEmbeddingSine
from ..layers.transformer import MLP, with_pos
from .base import Head
from .mask2former_pixel_decoder import MSDeformAttnPixelDecoder, at_least_float32
from .maskformer import c2_xavier_fill, nested_table, pack_predictions, query_output_names


class SelfAttentionLayer(nn.Module):
    """Self-attention among the queries with a residual and a LayerNorm (post-norm unless ``normalize_before``)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False) -> None:
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = with_pos(x, query_pos)
        tgt = tgt + self.dropout(self.self_attn(q, k, value=x)[0])
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Queries attend to a memory (``attn_mask`` True = may not attend), residual, LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False) -> None:
        super().__init__()
        self.normalize_before = normalize_before
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        attended = self.multihead_attn(query=with_pos(x, query_pos), key=with_pos(memory, pos), value=memory,
                                       attn_mask=memory_mask)[0]
        tgt = tgt + self.dropout(attended)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Linear -> ReLU -> linear with a residual and a LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 normalize_before: bool = False) -> None:
        super().__init__()
        self.normalize_before = normalize_before
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.activation = nn.ReLU(inplace=True)
        _xavier(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


def _xavier(module: nn.Module) -> None:
    for parameter in module.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former's transformer decoder (the ``head.predictor`` table; ``in_channels``, ``num_classes`` and
    ``mask_dim`` come from the head and the pixel decoder).

    ``dec_layers`` counts the predictions as SSSegmentation's config does: ``dec_layers - 1`` decoder layers.
    ``forward(x, mask_features) -> (logits, masks)``: one ``[B, Q, K + 1]`` / ``[B, Q, h, w]`` entry per prediction.
    """

    num_feature_levels = 3

    def __init__(self, in_channels: int, num_classes: int, mask_dim: int, hidden_dim: int = 256,
                 num_queries: int = 100, nheads: int = 8, dim_feedforward: int = 2048, dec_layers: int = 10,
                 pre_norm: bool = False, enforce_input_project: bool = False,
                 mask_classification: bool = True) -> None:
        super().__init__()
        if not mask_classification:
            raise ArgumentError("mask_classification", "only mask classification is supported")
        if dec_layers < 1:
            raise ArgumentError("dec_layers", f"counts the predictions (decoder layers + 1): must be >= 1, got "
                                f"{dec_layers}")
        if hidden_dim % nheads:
            raise ArgumentError("nheads", f"hidden_dim ({hidden_dim}) must be divisible by nheads ({nheads})")
        if hidden_dim % 4:
            raise ArgumentError("hidden_dim", f"must be a multiple of 4 (sine position encoding), got {hidden_dim}")
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers - 1
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(self.num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            for _ in range(self.num_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout=0.0, normalize_before=pre_norm)
            for _ in range(self.num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                self.input_proj.append(nn.Conv2d(in_channels, hidden_dim, kernel_size=1))
                c2_xavier_fill(self.input_proj[-1])
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(self, x: list[torch.Tensor],
                mask_features: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(x) != self.num_feature_levels:
            raise ValueError(f"the decoder reads {self.num_feature_levels} levels, got {len(x)}")
        sizes, src, pos = [], [], []
        for level in range(self.num_feature_levels):
            sizes.append(x[level].shape[-2:])
            pos.append(self.pe_layer(x[level]).flatten(2).permute(2, 0, 1))
            projected = self.input_proj[level](x[level]).flatten(2) + self.level_embed.weight[level][None, :, None]
            src.append(projected.permute(2, 0, 1))  # [HW, B, C]
        batch = src[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).expand(-1, batch, -1)
        output = self.query_feat.weight.unsqueeze(1).expand(-1, batch, -1)
        logits, masks = [], []
        layer_logits, layer_masks, attn_mask = self.predict(output, mask_features, sizes[0])
        logits.append(layer_logits)
        masks.append(layer_masks)
        for index in range(self.num_layers):
            level = index % self.num_feature_levels
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)  # an empty mask: attend everywhere
            output = self.transformer_cross_attention_layers[index](output, src[level], memory_mask=attn_mask,
                                                                   pos=pos[level], query_pos=query_embed)
            output = self.transformer_self_attention_layers[index](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[index](output)
            layer_logits, layer_masks, attn_mask = self.predict(
                output, mask_features, sizes[(index + 1) % self.num_feature_levels],
                attention=index < self.num_layers - 1)
            logits.append(layer_logits)
            masks.append(layer_masks)
        return logits, masks

    def predict(self, output: torch.Tensor, mask_features: torch.Tensor, attn_size: torch.Size,
                attention: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Class and mask logits of the queries ``[Q, B, C]``, and the next layer's attention mask
        ``[B * heads, Q, h * w]`` (True where the mask, resized to the attended level, is below 0.5)."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        logits = self.class_embed(decoded)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        if not attention:
            return logits, masks, None
        attn_mask = F.interpolate(masks, size=attn_size, mode="bilinear", align_corners=False)
        attn_mask = attn_mask.sigmoid().flatten(2) < 0.5
        attn_mask = attn_mask.unsqueeze(1).expand(-1, self.num_heads, -1, -1).flatten(0, 1)
        return logits, masks, attn_mask.detach()


@HEADS.register("Mask2FormerHead")
class Mask2FormerHead(Head):
    """Mask2Former's pixel decoder + masked-attention decoder (see the module docstring).

    Reads four feature levels (``in_index``, default ``[0, 1, 2, 3]``; their channels and strides are
    SSSegmentation's ``pixel_decoder.input_shape``, derived). ``pixel_decoder`` and ``predictor`` are the nested
    tables (:class:`MSDeformAttnPixelDecoder`, :class:`MultiScaleMaskedTransformerDecoder`). ``deep_supervision``
    returns every earlier prediction in training (SSSegmentation's ``head.deep_supervision``). Returns the
    prediction dict of :func:`~segkit.models.heads.maskformer.query_output_names`.
    """

    def __init__(
        self,
        in_channels: list[int],
        in_strides: list[int],
        num_classes: int,
        deep_supervision: bool = True,
        pixel_decoder: Annotated[dict, TableOf(MSDeformAttnPixelDecoder,
                                               optional=("in_channels", "in_strides"))] | None = None,
        predictor: Annotated[dict, TableOf(MultiScaleMaskedTransformerDecoder,
                                           optional=("in_channels", "num_classes", "mask_dim"))] | None = None,
        in_index: InIndex = (0, 1, 2, 3),  # type: ignore[assignment]
    ) -> None:
        super().__init__(in_index)
        if not isinstance(self.in_index, list) or len(self.in_index) != 4:
            raise ArgumentError("in_index", f"Mask2Former's pixel decoder reads exactly 4 feature levels (res2..res5), "
                                f"got in_index {self.in_index!r}")
        pixel_decoder, predictor = dict(pixel_decoder or {}), dict(predictor or {})
        for key in ("in_channels", "in_strides"):
            if pixel_decoder.pop(key, None) is not None:
                raise ArgumentError(f"pixel_decoder.{key}", "is derived from the features; remove it")
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        with nested_table("pixel_decoder"):
            self.pixel_decoder = MSDeformAttnPixelDecoder(in_channels=list(in_channels),
                                                          in_strides=list(in_strides), **pixel_decoder)
        conv_dim = self.pixel_decoder.input_proj[0][0].out_channels
        for key, expected in (("in_channels", conv_dim), ("mask_dim", self.pixel_decoder.mask_dim)):
            given = predictor.pop(key, None)
            if given is not None and given != expected:
                raise ArgumentError(f"predictor.{key}", f"must equal the pixel decoder's "
                                    f"{'conv_dim' if key == 'in_channels' else 'mask_dim'} ({expected}), got {given}; "
                                    "or leave it out")
        if predictor.pop("num_classes", None) is not None:
            raise ArgumentError("predictor.num_classes", "is the recipe's num_classes; remove it")
        with nested_table("predictor"):
            self.predictor = MultiScaleMaskedTransformerDecoder(in_channels=conv_dim, num_classes=num_classes,
                                                                mask_dim=self.pixel_decoder.mask_dim, **predictor)

    @property
    def num_aux(self) -> int:
        return self.predictor.num_layers if self.deep_supervision else 0

    def training_outputs(self) -> list[str]:
        return query_output_names(self.num_aux)

    def forward(self, features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self.select(features)
        with _autocast_off(inputs[0].device.type):
            mask_features, _, multi_scale = self.pixel_decoder([at_least_float32(x) for x in inputs])
        logits, masks = self.predictor(multi_scale, mask_features)
        return pack_predictions(logits, masks, self.training and self.deep_supervision)


def _autocast_off(device_type: str):
    """SSSegmentation's ``autocast(enabled=False)`` around the pixel decoder (deformable attention in float32);
    a no-op context when autocast is not on (tracing and export see no autocast region)."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()
