"""``SAMViT``: the image encoder of Segment Anything (ViT with window attention, decomposed relative positions and a
conv neck to ``out_chans``), as timm's ``VisionTransformerSAM`` with SSSegmentation's arguments.

The parameter layout is timm's (``blocks.{i}.mlp.fc1``; SAM's own checkpoints say ``mlp.lin1``), so a plain timm
``samvit_*`` state dict loads as it is; SAM checkpoints (``image_encoder.*`` plus prompt encoder and mask decoder)
are converted by :func:`convert_sam_checkpoint`, which a SAM segmentor can use for its ``image_encoder``.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed_nhwc
from timm.models.vision_transformer_sam import VisionTransformerSAM
from torch import nn

from ...registry import BACKBONES
from ..layers import build_act, build_norm
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone
from .vit import GELU_CFG, LN_CFG, check_structure, official_url

PRETRAINED_URLS: dict[str, str] = {
    "sam_vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "sam_vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "sam_vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
"""The official SAM checkpoints SSSegmentation's ``SAMPredictor`` loads (``use_default_sam_b/l/h``)."""

_SAM_COMMON = {"patch_size": 16, "mlp_ratio": 4, "qkv_bias": True, "use_rel_pos": True,
               "window_size": 14, "out_chans": 256}
STRUCTURE_ARGUMENTS: dict[str, dict] = {
    "sam_vit_b": {**_SAM_COMMON, "embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "sam_vit_l": {**_SAM_COMMON, "embed_dim": 1024, "depth": 24, "num_heads": 16,
                  "global_attn_indexes": (5, 11, 17, 23)},
    "sam_vit_h": {**_SAM_COMMON, "embed_dim": 1280, "depth": 32, "num_heads": 16,
                  "global_attn_indexes": (7, 15, 23, 31)},
}
"""SSSegmentation's ``SAMPredictor`` encoder settings for ViT-B/L/H (fixed by the structure type; ``img_size`` is free:
the position embedding and relative tables are resized on load)."""


def convert_sam_checkpoint(state_dict: dict[str, torch.Tensor], prefix: str = "image_encoder.") -> \
        dict[str, torch.Tensor]:
    """SAM's layout (``image_encoder.blocks.{i}.mlp.lin1``) -> timm's (``blocks.{i}.mlp.fc1``). With a whole SAM
    checkpoint only the ``prefix`` entries are kept; a bare encoder state dict (either layout) is renamed as is."""
    if any(key.startswith(prefix) for key in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return {re.sub(r"\.mlp\.lin([12])\.", r".mlp.fc\1.", k): v for k, v in state_dict.items()
            if not k.startswith("head.")}


@BACKBONES.register("SAMViT")
class SAMViT(VisionTransformerSAM, Backbone):
    """SAM's image encoder: one ``out_chans`` map at stride ``patch_size`` (SSSegmentation's ``SAMViT`` arguments).

    SSSegmentation's ``SAMViT`` has no ``structure_type``/``pretrained``; segkit adds them (default off) so the encoder
    of an official SAM checkpoint (``sam_vit_b``/``l``/``h``) can be loaded on its own; the structure type fixes the
    architecture arguments it needs. ``rel_pos_zero_init=False`` starts the relative position tables from a truncated
    normal (SAM/SSSegmentation accept the argument but ignore it). The absolute position embedding and relative
    position tables are interpolated when the input's token grid is not ``img_size // patch_size``.
    """

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_cfg: dict | None = LN_CFG,
        act_cfg: dict | None = GELU_CFG,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        global_attn_indexes: tuple[int, ...] = (),
        structure_type: str | None = None,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        check_structure(structure_type, PRETRAINED_URLS, STRUCTURE_ARGUMENTS, locals())
        super().__init__(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="",
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            norm_layer=lambda dim, **_: build_norm(norm_cfg, dim), act_layer=lambda **_: build_act(act_cfg),
            use_abs_pos=use_abs_pos, use_rel_pos=use_rel_pos, window_size=window_size,
            global_attn_indexes=tuple(global_attn_indexes), neck_chans=out_chans,
        )
        self.structure_type = structure_type
        self.img_size = img_size
        self.feature_info = [{"num_chs": out_chans, "reduction": patch_size, "module": "neck"}]
        if use_rel_pos and not rel_pos_zero_init:
            for name, parameter in self.named_parameters():
                if name.endswith(("rel_pos_h", "rel_pos_w")):
                    nn.init.trunc_normal_(parameter, std=0.02)
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load the encoder of ``pretrained_model_path`` or of the official SAM checkpoint of ``structure_type``."""
        url = official_url(self.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None, convert=self.convert_checkpoint)

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A SAM or timm checkpoint -> this layout, position embedding and relative tables resized to this model."""
        converted = convert_sam_checkpoint(state_dict)
        own = self.state_dict()
        for key, value in converted.items():
            if key not in own or own[key].shape == value.shape:
                continue
            if key == "pos_embed":
                converted[key] = resample_abs_pos_embed_nhwc(value, list(own[key].shape[1:3]))
            elif key.endswith(("rel_pos_h", "rel_pos_w")):
                resized = F.interpolate(value.T[None].float(), size=own[key].shape[0], mode="linear")
                converted[key] = resized[0].T.to(value.dtype)
        return converted

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.forward_features(x)]
