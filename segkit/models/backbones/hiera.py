"""``Hiera`` (SAM 2's image-encoder trunk, timm's ``HieraDet``) and ``HieraWithFPN`` (trunk + SAM 2's FPN neck).

The trunk's parameter layout is timm's (``blocks.{i}.mlp.fc1``; SAM 2 checkpoints say ``mlp.layers.0``), so a plain
timm ``sam2_hiera_*`` state dict loads as it is. SAM 2 checkpoints (``image_encoder.trunk.*``,
``image_encoder.neck.convs.{i}.conv.*``, plus the memory modules) are converted by :func:`convert_sam2_checkpoint`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from timm.models.hieradet_sam2 import HieraDet
from torch import nn

from ...registry import BACKBONES, TableOf
from ..layers import ArgumentError
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone
from .vit import check_structure, official_url

_SAM2 = "https://dl.fbaipublicfiles.com/segment_anything_2/"
PRETRAINED_URLS: dict[str, str] = {
    "sam2_hiera_tiny": _SAM2 + "072824/sam2_hiera_tiny.pt",
    "sam2_hiera_small": _SAM2 + "072824/sam2_hiera_small.pt",
    "sam2_hiera_base_plus": _SAM2 + "072824/sam2_hiera_base_plus.pt",
    "sam2_hiera_large": _SAM2 + "072824/sam2_hiera_large.pt",
    "sam2.1_hiera_tiny": _SAM2 + "092824/sam2.1_hiera_tiny.pt",
    "sam2.1_hiera_small": _SAM2 + "092824/sam2.1_hiera_small.pt",
    "sam2.1_hiera_base_plus": _SAM2 + "092824/sam2.1_hiera_base_plus.pt",
    "sam2.1_hiera_large": _SAM2 + "092824/sam2.1_hiera_large.pt",
}
"""The official SAM 2 / SAM 2.1 checkpoints (segkit addition: SSSegmentation's ``Hiera`` loads nothing itself)."""

_TRUNKS: dict[str, dict] = {  # SAM 2's sam2_hiera_{t,s,b+,l}.yaml
    "tiny": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 7, 2), "global_att_blocks": (5, 7, 9),
             "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "small": {"embed_dim": 96, "num_heads": 1, "stages": (1, 2, 11, 2), "global_att_blocks": (7, 10, 13),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 14, 7)},
    "base_plus": {"embed_dim": 112, "num_heads": 2, "stages": (2, 3, 16, 3), "global_att_blocks": (12, 16, 20),
                  "window_pos_embed_bkg_spatial_size": (14, 14), "window_spec": (8, 4, 14, 7)},
    "large": {"embed_dim": 144, "num_heads": 2, "stages": (2, 6, 36, 4), "global_att_blocks": (23, 33, 43),
              "window_pos_embed_bkg_spatial_size": (7, 7), "window_spec": (8, 4, 16, 8)},
}
STRUCTURE_ARGUMENTS: dict[str, dict] = {name: _TRUNKS[name.split("_hiera_")[1]] for name in PRETRAINED_URLS}
"""The trunk arguments each SAM 2 structure type fixes."""


def convert_sam2_checkpoint(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """SAM 2's layout -> this one: only the ``prefix`` entries (when there are any), ``mlp.layers.{0,1}`` ->
    ``mlp.fc{1,2}``; a timm classifier head is dropped."""
    if any(key.startswith(prefix) for key in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    renamed = {re.sub(r"\.mlp\.layers\.([01])\.", lambda m: f".mlp.fc{int(m.group(1)) + 1}.", k): v
               for k, v in state_dict.items()}
    return {k: v for k, v in renamed.items() if not re.match(r"^(trunk\.)?head\.", k)}


@BACKBONES.register("Hiera")
class Hiera(HieraDet, Backbone):
    """SAM 2's hierarchical ViT trunk (SSSegmentation's ``Hiera`` arguments): the last block of each stage at
    strides 4, 8, 16, 32 (``return_interm_layers``; otherwise the last stage only).

    ``window_pos_embed_bkg_spatial_size`` is the background position embedding's grid (timm: ``global_pos_size``).
    segkit adds ``structure_type``/``pretrained``/``pretrained_model_path`` (default off) to load the trunk of an
    official SAM 2 checkpoint; the structure type fixes the trunk arguments.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        stages: tuple[int, ...] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14),
        window_spec: tuple[int, ...] = (8, 4, 14, 7),
        global_att_blocks: tuple[int, ...] = (12, 16, 20),
        return_interm_layers: bool = True,
        structure_type: str | None = None,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        check_structure(structure_type, PRETRAINED_URLS, STRUCTURE_ARGUMENTS, locals())
        if len(stages) != len(window_spec):
            raise ArgumentError("window_spec", f"{len(window_spec)} window sizes for {len(stages)} stages")
        if not 0 <= q_pool < len(stages):
            raise ArgumentError("q_pool", f"must be in 0..{len(stages) - 1}, got {q_pool}")
        if q_stride[0] != q_stride[1]:
            raise ArgumentError("q_stride", f"feature strides need a square q_stride, got {tuple(q_stride)}")
        super().__init__(
            num_classes=0, embed_dim=embed_dim, num_heads=num_heads, q_pool=q_pool, q_stride=tuple(q_stride),
            stages=tuple(stages), dim_mul=dim_mul, head_mul=head_mul,
            global_pos_size=tuple(window_pos_embed_bkg_spatial_size), window_spec=tuple(window_spec),
            global_att_blocks=tuple(global_att_blocks), drop_path_rate=drop_path_rate,
        )
        self.head = nn.Identity()  # a feature trunk: no classifier (nor its norm)
        self.structure_type = structure_type
        self.return_interm_layers = return_interm_layers
        self.output_stages = list(range(len(stages))) if return_interm_layers else [len(stages) - 1]
        self.feature_info = [
            {"num_chs": self.blocks[self.stage_ends[s]].dim_out, "reduction": 4 * q_stride[0] ** min(s, q_pool),
             "module": f"blocks.{self.stage_ends[s]}"} for s in self.output_stages]
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    @property
    def channel_list(self) -> list[int]:
        """Output channels, lowest resolution first (SSSegmentation's ``channel_list``, the FPN's input order)."""
        return self.out_channels[::-1]

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load the trunk of ``pretrained_model_path`` or of the official SAM 2 checkpoint of ``structure_type``."""
        url = official_url(self.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None,
                              convert=lambda sd: convert_sam2_checkpoint(sd, "image_encoder.trunk."))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._pos_embed(self.patch_embed(x))
        wanted = {self.stage_ends[s] for s in self.output_stages}
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in wanted:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class PositionEmbeddingSine(nn.Module):
    """DETR's sine position encoding of a feature map's coordinates, ``num_pos_feats`` channels (half y, half x)."""

    def __init__(self, num_pos_feats: int, temperature: int = 10000, normalize: bool = True,
                 scale: float | None = None) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ArgumentError("num_pos_feats", f"must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ArgumentError("scale", "scale needs normalize = true")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=x.device)[:, None].expand(height, width)
        x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=x.device)[None, :].expand(height, width)
        if self.normalize:
            y_embed = y_embed / (y_embed[-1:, :] + 1e-6) * self.scale
            x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x, pos_y = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=3).flatten(2)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=3).flatten(2)
        return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None].expand(batch, -1, -1, -1)


class FPNNeck(nn.Module):
    """SAM 2's FPN: a lateral conv per trunk output (``convs.{i}.conv``, lowest resolution first), top-down fusion
    (``fuse_type`` sum/avg, upsampled by 2 with ``fpn_interp_model``) at ``fpn_top_down_levels``, position encodings."""

    def __init__(self, position_encoding_cfg: Annotated[dict, TableOf(PositionEmbeddingSine, extra=("type",))],
                 d_model: int, backbone_channel_list: list[int], kernel_size: int = 1, stride: int = 1,
                 padding: int = 0, fpn_interp_model: str = "bilinear", fuse_type: Literal["sum", "avg"] = "sum",
                 fpn_top_down_levels: list[int] | None = None) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ArgumentError("fpn_cfg.fuse_type", f"expected 'sum' or 'avg', got {fuse_type!r}")
        encoding = dict(position_encoding_cfg)
        if encoding.pop("type", "PositionEmbeddingSine") != "PositionEmbeddingSine":
            raise ArgumentError("fpn_cfg.position_encoding_cfg.type", "only PositionEmbeddingSine is supported")
        self.position_encoding = PositionEmbeddingSine(**encoding)
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for channels in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(channels, d_model, kernel_size, stride, padding))
            self.convs.append(lateral)
        self.fpn_interp_model, self.fuse_type = fpn_interp_model, fuse_type
        levels = range(len(self.convs)) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = list(levels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk outputs (highest resolution first) -> fused maps in the same order."""
        outputs: list[torch.Tensor] = [features[0]] * len(features)
        previous = None
        last = len(self.convs) - 1
        for level in range(last, -1, -1):
            lateral = self.convs[last - level](features[level])
            if level in self.fpn_top_down_levels and previous is not None:
                align = None if self.fpn_interp_model == "nearest" else False
                top_down = F.interpolate(previous.float(), scale_factor=2.0, mode=self.fpn_interp_model,
                                         align_corners=align, antialias=False)
                previous = lateral + top_down
                if self.fuse_type == "avg":
                    previous = previous / 2
            else:
                previous = lateral
            outputs[level] = previous
        return outputs


@BACKBONES.register("HieraWithFPN")
class HieraWithFPN(Backbone):
    """SAM 2's image encoder (SSSegmentation's ``HieraWithFPN``): ``Hiera(**hiera_cfg)`` then ``FPNNeck(**fpn_cfg)``;
    ``scalp`` drops that many lowest-resolution outputs. ``forward`` returns the FPN maps (``d_model`` channels);
    :meth:`forward_with_pos` adds their position encodings (SSSegmentation returns both in a dict).

    ``pretrained`` loads ``image_encoder.{trunk,neck}`` of ``pretrained_model_path`` or of the official SAM 2
    checkpoint named by ``hiera_cfg.structure_type`` (segkit addition).
    """

    def __init__(self, hiera_cfg: Annotated[dict, TableOf(Hiera, extra=("pretrained", "pretrained_model_path"))],
                 fpn_cfg: Annotated[dict, TableOf(FPNNeck)], scalp: int = 0, pretrained: bool = False,
                 pretrained_model_path: str = "") -> None:
        super().__init__()
        hiera_cfg = {k: v for k, v in hiera_cfg.items() if k not in ("pretrained", "pretrained_model_path")}
        self.trunk = Hiera(**hiera_cfg)
        self.neck = FPNNeck(**fpn_cfg)
        if self.trunk.channel_list != self.neck.backbone_channel_list:
            raise ArgumentError("fpn_cfg.backbone_channel_list", f"{self.neck.backbone_channel_list} does not match "
                                f"the trunk's channels (lowest resolution first) {self.trunk.channel_list}")
        if not 0 <= scalp < len(self.trunk.feature_info):
            raise ArgumentError("scalp", f"must be in 0..{len(self.trunk.feature_info) - 1}, got {scalp}")
        self.scalp = scalp
        d_model = self.neck.convs[0].conv.out_channels
        kept = self.trunk.feature_info[: len(self.trunk.feature_info) - scalp]
        self.feature_info = [{"num_chs": d_model, "reduction": info["reduction"], "module": f"neck.convs.{i}"}
                             for i, info in zip(range(len(kept) - 1 + scalp, scalp - 1, -1), kept, strict=True)]
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load ``image_encoder.{trunk,neck}`` of ``pretrained_model_path`` or of the official SAM 2 checkpoint."""
        url = official_url(self.trunk.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None,
                              convert=lambda sd: convert_sam2_checkpoint(sd, "image_encoder."))

    def forward_with_pos(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The FPN maps and their sine position encodings (after ``scalp``)."""
        features = self.forward(x)
        return features, [self.neck.position_encoding(f).to(f.dtype) for f in features]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.neck(self.trunk(x))
        return features[: len(features) - self.scalp]
