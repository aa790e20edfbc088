"""MobileViT (Mehta & Rastegari, 2022) on timm's modules, with SSSegmentation's arguments and weights.

The network is timm's ``mobilevit_s`` / ``_xs`` / ``_xxs`` trunk (``stem``, ``stages.0`` ... ``stages.4``,
``final_conv``). ``out_indices`` counts the five stages (SSSegmentation's ``layers``); the 4x channel expansion
(``final_conv``, SSSegmentation's ``conv_1x1_exp``) belongs to the last one, so the default ``(0, 1, 2, 3, 4)`` of
``small`` gives 32/64/96/128/640 channels at strides 2 ... 32.

``pretrained = true`` loads the mmcls checkpoints SSSegmentation publishes (``layers.i.j.conv.k``,
``layers.i.1.local_rep``, ``global_rep.k.ln1``, ``ffn.layers``, ``conv_1x1_exp``), converted by
:func:`convert_mmcls_mobilevit`. As in SSSegmentation 1.7.0, the projection after the transformer (``conv_proj``) is a
convolution and a norm without an activation; ``conv_proj_activation = true`` adds the activation that the paper,
mmcls and timm have (and with which their weights were trained).
"""

from __future__ import annotations

from typing import Literal

import timm
import timm.models.mobilevit
import torch
from torch import nn

from ...registry import BACKBONES
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    act_factory,
    batch_norm_layer,
    feature,
    rename_keys,
    resolve_structure,
    select_out_indices,
    strip_prefix,
)

_MMCLS = "https://download.openmmlab.com/mmclassification/v0/mobilevit"
PRETRAINED_URLS: dict[str, str] = {
    "mobilevit-small": f"{_MMCLS}/mobilevit-small_3rdparty_in1k_20221018-cb4f741c.pth",
    "mobilevit-xsmall": f"{_MMCLS}/mobilevit-xsmall_3rdparty_in1k_20221018-be39a6e7.pth",
    "mobilevit-xxsmall": f"{_MMCLS}/mobilevit-xxsmall_3rdparty_in1k_20221018-77835605.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MobileViT (mmcls)."""

STRUCTURE_TYPES: dict[str, dict] = {"mobilevit-small": {"arch": "small"}, "mobilevit-xsmall": {"arch": "x_small"},
                                    "mobilevit-xxsmall": {"arch": "xx_small"}}
TIMM_MODELS = {"small": "mobilevit_s", "x_small": "mobilevit_xs", "xx_small": "mobilevit_xxs"}
"""SSSegmentation's ``arch`` -> timm's model of the same architecture."""

_MMCLS_TO_TIMM = [
    (r"^layers\.", "stages."),
    (r"^conv_1x1_exp\.", "final_conv."),
    (r"\.conv\.0\.(conv|bn)\.", r".conv1_1x1.\1."),
    (r"\.conv\.1\.(conv|bn)\.", r".conv2_kxk.\1."),
    (r"\.conv\.2\.(conv|bn)\.", r".conv3_1x1.\1."),
    (r"\.local_rep\.0\.", ".conv_kxk."),
    (r"\.local_rep\.1\.conv\.", ".conv_1x1."),
    (r"\.global_rep\.\d+\.(weight|bias)$", r".norm.\1"),  # the LayerNorm after the transformer layers
    (r"\.global_rep\.(\d+)\.", r".transformer.\1."),
    (r"\.ln(\d)\.", r".norm\1."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]


def convert_mmcls_mobilevit(state_dict: StateDict) -> StateDict:
    """mmcls/SSSegmentation MobileViT keys -> timm's; the classifier goes."""
    return rename_keys(strip_prefix(state_dict), _MMCLS_TO_TIMM, drop=(r"^head\.",))


class MobileViTFeatures(Backbone):
    """A timm MobileViT(V2) ByobNet's stem and stages; the last stage includes ``final_conv``."""

    def __init__(self, *, timm_name: str, in_channels: int, out_indices: tuple[int, ...], norm_cfg: dict | None,
                 act_cfg: dict | None, family: str, **overrides: int) -> None:
        super().__init__()
        model = timm.create_model(timm_name, num_classes=0, in_chans=in_channels,
                                  norm_layer=batch_norm_layer(norm_cfg, family), act_layer=act_factory(act_cfg),
                                  **overrides)
        self.out_indices = select_out_indices(out_indices, len(model.stages))
        self.stem = model.stem
        self.stages = model.stages[: max(self.out_indices) + 1]
        self.final_conv = model.final_conv if len(self.stages) == len(model.stages) else None
        info = model.feature_info
        self.feature_info = [feature(info[i]["num_chs"], info[i]["reduction"], f"stages.{i}")
                             for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if self.final_conv is not None and index == len(self.stages) - 1:
                x = self.final_conv(x)
            if index in self.out_indices:
                outputs.append(x)
        return outputs


@BACKBONES.register("MobileViT")
class MobileViT(MobileViTFeatures):
    """MobileViT returning the stage outputs of ``out_indices`` (SSSegmentation's ``MobileViT`` arguments).

    ``structure_type`` (``mobilevit-small``/``-xsmall``/``-xxsmall``) implies ``arch`` (``small``/``x_small``/
    ``xx_small``). ``stem_channels`` and ``last_exp_factor`` (the channel expansion of ``final_conv``) default to the
    published 16 and 4. ``norm_cfg`` is a BatchNorm, ``act_cfg`` the activation everywhere (Swish = SiLU) except
    after each transformer block's ``conv_proj``, which has none unless ``conv_proj_activation`` (timm's and mmcls'
    block; SSSegmentation 1.7.0 drops it).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        arch: Literal["small", "x_small", "xx_small"] | None = None,
        in_channels: int = 3,
        stem_channels: int = 16,
        last_exp_factor: int = 4,
        out_indices: tuple[int, ...] = (0, 1, 2, 3, 4),
        norm_cfg: dict | None = {"type": "SyncBatchNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "Swish"},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
        conv_proj_activation: bool = False,
    ) -> None:
        arch = resolve_structure("MobileViT", structure_type, STRUCTURE_TYPES, {"arch": arch},
                                 {"arch": "small"})["arch"]
        last_channels = {"small": 160, "x_small": 96, "xx_small": 80}[arch]
        super().__init__(timm_name=TIMM_MODELS[arch], in_channels=in_channels, out_indices=out_indices,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, family="MobileViT", stem_chs=stem_channels,
                         num_features=last_exp_factor * last_channels)
        self.structure_type, self.arch = structure_type, arch
        self.conv_proj_activation = conv_proj_activation
        if not conv_proj_activation:  # SSSegmentation's MobileVitBlock: conv_proj = conv -> norm
            for stage in self.stages:
                for block in stage:
                    if isinstance(block, timm.models.mobilevit.MobileVitBlock):
                        block.conv_proj.bn.act = nn.Identity()
        if pretrained:
            load_published_weights(self, family="MobileViT", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path, convert=convert_mmcls_mobilevit)
