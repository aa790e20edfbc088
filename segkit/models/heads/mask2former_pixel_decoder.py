"""Mask2Former's pixel decoder (Cheng et al. 2022): a multi-scale deformable-attention encoder over the coarser
feature levels, then an FPN down to ``common_stride`` (SSSegmentation's ``MSDeformAttnPixelDecoder``, the
``head.pixel_decoder`` table).

The levels named in ``transformer_in_features`` (``res3..res5`` = strides 8..32 by default; ``res{i + 2}`` is the
``i``-th input) are projected to ``conv_dim`` (1x1 conv + GroupNorm(32)), flattened together with a sine position
encoding plus a learnt ``level_embed``, and refined by ``transformer_enc_layers`` deformable self-attention layers
(each pixel attends to 4 points per head on every level around its own position). The finer inputs are then added
top-down FPN-style (1x1 lateral + norm, bilinear upsampling, 3x3 conv-norm-act) until ``common_stride``; a 1x1
conv of the finest map gives the ``mask_dim`` mask features. Outputs: the mask features, the coarsest encoded map,
and the first three maps (coarsest first) that the transformer decoder attends to.

Deformable attention runs in float32 (the head disables autocast around this module, as the reference does).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import TypedDict  # pydantic validates typing.TypedDict only from Python 3.12

from ..layers import ArgumentError, build_act, build_norm
from ..layers.ms_deform_attn import MSDeformAttn
from ..layers.position_embedding import PositionEmbeddingSine
from .maskformer import c2_xavier_fill

DEFAULT_PIXEL_DECODER_NORM_CFG: dict = {"type": "GroupNorm", "num_groups": 32}
DEFAULT_PIXEL_DECODER_ACT_CFG: dict = {"type": "ReLU", "inplace": True}


class InputShape(TypedDict):
    """SSSegmentation's ``pixel_decoder.input_shape``: segkit derives it from the features; given, it is checked."""

    in_channels: list[int]
    strides: list[int]


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Deformable self-attention and a feed-forward block, post-norm (``self_attn``, ``norm1``, ``linear1``,
    ``linear2``, ``norm2``)."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, n_levels: int = 4,
                 n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = nn.ReLU(inplace=True)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, reference_points, src, spatial_shapes)))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnTransformerEncoder(nn.Module):
    """``num_layers`` copies of the encoder layer (``layers``)."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))

    @staticmethod
    def reference_points(spatial_shapes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Every pixel's centre, normalised per level, all levels concatenated: ``[1, S, 1, 2]`` as ``(x, y)``
        (the same point on every level; no padding, so every valid ratio is 1)."""
        points = []
        for height, width in spatial_shapes:
            ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
            xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
        return torch.cat(points, 0)[None, :, None]

    def forward(self, src: torch.Tensor, spatial_shapes: list[tuple[int, int]], pos: torch.Tensor) -> torch.Tensor:
        reference_points = self.reference_points(spatial_shapes, src.device)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """The encoder over several levels: ``forward(srcs, pos_embeds) -> (memory [B, S, C], spatial_shapes)``, the
    levels flattened in the order given. ``level_embed`` ``[levels, C]`` is added to the position encodings."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
                 dropout: float = 0.1, num_feature_levels: int = 4, enc_n_points: int = 4) -> None:
        super().__init__()
        self.nhead = nhead
        self.d_model = d_model
        layer = MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                                    enc_n_points)
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[torch.Tensor],
                pos_embeds: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        spatial_shapes = [(int(src.shape[2]), int(src.shape[3])) for src in srcs]
        src_flatten = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)
        pos_flatten = torch.cat([pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
                                 for level, pos in enumerate(pos_embeds)], 1)
        return self.encoder(src_flatten, spatial_shapes, pos_flatten), spatial_shapes


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder (see the module docstring); ``in_channels``/``in_strides`` are the head's four
    inputs (``res2..res5``)."""

    def __init__(
        self,
        in_channels: list[int],
        in_strides: list[int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm_cfg: dict | None = DEFAULT_PIXEL_DECODER_NORM_CFG,
        act_cfg: dict | None = DEFAULT_PIXEL_DECODER_ACT_CFG,
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        transformer_in_features: tuple[str, ...] = ("res3", "res4", "res5"),
        common_stride: int = 4,
        input_shape: InputShape | None = None,
    ) -> None:
        super().__init__()
        names = [f"res{index + 2}" for index in range(len(in_channels))]
        if input_shape is not None and (list(input_shape["in_channels"]) != list(in_channels)
                                        or list(input_shape["strides"]) != list(in_strides)):
            raise ArgumentError("input_shape", f"{dict(input_shape)} does not match the features the head reads "
                                f"(in_channels {list(in_channels)}, strides {list(in_strides)}); remove it, segkit "
                                "derives it")
        unknown = [name for name in transformer_in_features if name not in names]
        if unknown or not transformer_in_features:
            raise ArgumentError("transformer_in_features", f"expected names among {names}, got "
                                f"{list(transformer_in_features)}")
        if conv_dim % 32:
            raise ArgumentError("conv_dim", f"must be a multiple of 32 (GroupNorm(32) on the projections), got "
                                f"{conv_dim}")
        if conv_dim % transformer_nheads:
            raise ArgumentError("transformer_nheads", f"conv_dim ({conv_dim}) must be divisible by "
                                f"transformer_nheads ({transformer_nheads})")
        order = sorted(range(len(names)), key=lambda i: in_strides[i])
        self.in_features = [names[i] for i in order]
        self.feature_strides = [in_strides[i] for i in order]
        self.feature_channels = [in_channels[i] for i in order]
        selected = [i for i in order if names[i] in transformer_in_features]
        self.transformer_in_features = [names[i] for i in selected]
        self.transformer_feature_strides = [in_strides[i] for i in selected]
        self.transformer_num_feature_levels = len(selected)
        self.input_proj = nn.ModuleList(nn.Sequential(
            nn.Conv2d(in_channels[i], conv_dim, kernel_size=1),
            nn.GroupNorm(32, conv_dim),
        ) for i in reversed(selected))  # coarsest first
        for projection in self.input_proj:
            nn.init.xavier_uniform_(projection[0].weight, gain=1)
            nn.init.zeros_(projection[0].bias)
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.mask_dim = mask_dim
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        c2_xavier_fill(self.mask_features)
        self.maskformer_num_feature_levels = 3  # the transformer decoder always reads three levels
        self.common_stride = common_stride
        finest = min(self.transformer_feature_strides)
        self.num_fpn_levels = max(0, int(math.log2(finest) - math.log2(common_stride)))
        if self.transformer_num_feature_levels + self.num_fpn_levels < self.maskformer_num_feature_levels:
            raise ArgumentError("transformer_in_features", "the decoder reads 3 levels: give more transformer "
                                "levels or a smaller common_stride")
        use_bias = norm_cfg is None
        lateral_convs, output_convs = nn.ModuleList(), nn.ModuleList()
        for channels in self.feature_channels[:self.num_fpn_levels]:
            lateral = nn.Sequential(nn.Conv2d(channels, conv_dim, kernel_size=1, bias=use_bias),
                                    build_norm(norm_cfg, conv_dim, "norm_cfg"))
            output = nn.Sequential(nn.Conv2d(conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias),
                                   build_norm(norm_cfg, conv_dim, "norm_cfg"), build_act(act_cfg, "act_cfg"))
            c2_xavier_fill(lateral[0])
            c2_xavier_fill(output[0])
            lateral_convs.append(lateral)
            output_convs.append(output)
        self.lateral_convs = lateral_convs[::-1]  # coarsest first, the order of the top-down pass
        self.output_convs = output_convs[::-1]

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``features``: the four inputs (``res2..res5``) -> (mask features ``[B, mask_dim, H/4, W/4]``, the
        coarsest encoded map, the three maps the transformer decoder reads, coarsest first)."""
        by_name = {f"res{index + 2}": feature for index, feature in enumerate(features)}
        srcs, pos = [], []
        for projection, name in zip(self.input_proj, reversed(self.transformer_in_features), strict=True):
            x = at_least_float32(by_name[name])
            srcs.append(projection(x))
            pos.append(self.pe_layer(x))
        memory, spatial_shapes = self.transformer(srcs, pos)
        batch = memory.shape[0]
        sizes = [height * width for height, width in spatial_shapes]
        out = [level.transpose(1, 2).reshape(batch, -1, height, width)
               for level, (height, width) in zip(memory.split(sizes, dim=1), spatial_shapes, strict=True)]
        for index, name in enumerate(reversed(self.in_features[:self.num_fpn_levels])):
            lateral = self.lateral_convs[index](at_least_float32(by_name[name]))
            top_down = F.interpolate(out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out.append(self.output_convs[index](lateral + top_down))
        return self.mask_features(out[-1]), out[0], out[:self.maskformer_num_feature_levels]


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is in a lower precision (deformable attention does not run in half precision, the
    reason SSSeg casts with ``.float()``), else as it is: a float64 model stays in float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
