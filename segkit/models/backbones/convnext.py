"""ConvNeXt (Liu et al., 2022) on timm's modules, with SSSegmentation's arguments, outputs and weights.

Each output ``i`` of ``out_indices`` is stage ``i`` normalised by its own channel LayerNorm ``norm{i}`` (as
SSSegmentation and mmseg do); the stages are timm's ``ConvNeXt`` stages, so parameter names are timm's
(``stem.0``, ``stages.1.downsample.1``, ``stages.1.blocks.0.conv_dw``, ``...mlp.fc1``, ``...gamma``).

``pretrained = true`` loads the mmcls checkpoints SSSegmentation publishes for ``convnext_tiny`` ... ``_21k``
(``backbone.downsample_layers.*``, ``backbone.stages.i.j.depthwise_conv``, ``pointwise_conv1/2``), converted to timm's
names by :func:`convert_mmcls_convnext`; ``pretrained_model_path`` loads a local file of that layout or of timm's.
"""

from __future__ import annotations

from typing import Literal

import torch
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from torch import nn

from ...registry import BACKBONES
from ..layers import ArgumentError, LayerNorm2d
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import (
    StateDict,
    act_factory,
    feature,
    fit_singleton_dims,
    layer_norm_eps,
    rename_keys,
    resolve_structure,
    select_out_indices,
    strip_prefix,
)

ConvNeXtArch = Literal["atto", "femto", "pico", "nano", "tiny", "small", "base", "large", "xlarge", "huge"]

ARCH_SETTINGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
    "huge": ((3, 3, 27, 3), (352, 704, 1408, 2816)),
}
"""arch -> (blocks per stage, channels per stage), SSSegmentation's ``ConvNeXt.arch_settings``."""

_MMCLS = "https://download.openmmlab.com/mmclassification/v0/convnext/downstream"
PRETRAINED_URLS: dict[str, str] = {
    "convnext_tiny": f"{_MMCLS}/convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth",
    "convnext_small": f"{_MMCLS}/convnext-small_3rdparty_32xb128-noema_in1k_20220301-303e75e3.pth",
    "convnext_base": f"{_MMCLS}/convnext-base_3rdparty_32xb128-noema_in1k_20220301-2a0ee547.pth",
    "convnext_base_21k": f"{_MMCLS}/convnext-base_3rdparty_in21k_20220301-262fd037.pth",
    "convnext_large_21k": f"{_MMCLS}/convnext-large_3rdparty_in21k_20220301-e6e0ea0a.pth",
    "convnext_xlarge_21k": f"{_MMCLS}/convnext-xlarge_3rdparty_in21k_20220301-08aa5ddc.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for ConvNeXt (mmcls layout)."""

STRUCTURE_TYPES: dict[str, dict] = {name: {"arch": name.split("_")[1]} for name in PRETRAINED_URLS}
"""structure_type -> the architecture it names (the timm model of the same name, ``convnext_<arch>``)."""

LAYER_NORMS = ("LayerNorm2d", "LayerNorm")

_MMCLS_TO_TIMM = [
    (r"^downsample_layers\.0\.", "stem."),
    (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
    (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"\.depthwise_conv\.", ".conv_dw."),
    (r"\.pointwise_conv(\d)\.", r".mlp.fc\1."),
    (r"\.grn\.gamma$", ".mlp.grn.weight"),
    (r"\.grn\.beta$", ".mlp.grn.bias"),
]


def convert_mmcls_convnext(state_dict: StateDict) -> StateDict:
    """mmcls/SSSegmentation ConvNeXt keys -> timm's (``norm{i}`` kept, the classifier dropped)."""
    return rename_keys(strip_prefix(state_dict), _MMCLS_TO_TIMM, drop=(r"^head\.",))


class ConvNeXtFeatures(Backbone):
    """timm ConvNeXt stages plus a channel LayerNorm per output: what ConvNeXt and ConvNeXtV2 share."""

    def __init__(self, *, arch: str, in_channels: int, stem_patch_size: int, eps: float, act_cfg: dict | None,
                 linear_pw_conv: bool, use_grn: bool, drop_path_rate: float, layer_scale_init_value: float | None,
                 out_indices: tuple[int, ...], use_checkpoint: bool) -> None:
        super().__init__()
        if arch not in ARCH_SETTINGS:
            raise ArgumentError("arch", f"unknown arch '{arch}' (choose from {', '.join(ARCH_SETTINGS)})")
        depths, dims = ARCH_SETTINGS[arch]
        self.arch = arch
        self.out_indices = select_out_indices(out_indices, len(depths))
        model = TimmConvNeXt(
            in_chans=in_channels, num_classes=0, depths=depths, dims=dims,
            ls_init_value=layer_scale_init_value, conv_mlp=not linear_pw_conv, use_grn=use_grn,
            act_layer=act_factory(act_cfg), norm_eps=eps, drop_path_rate=drop_path_rate,
        )
        model.set_grad_checkpointing(use_checkpoint)
        if stem_patch_size != 4:  # timm's patch_size 2 adds a downsampling to stage 0; SSSeg's only changes the stem
            model.stem[0] = nn.Conv2d(in_channels, dims[0], kernel_size=stem_patch_size, stride=stem_patch_size)
        self.stem = model.stem
        self.stages = model.stages[: max(self.out_indices) + 1]
        for index in self.out_indices:
            self.add_module(f"norm{index}", LayerNorm2d(dims[index], eps=eps))
        self.feature_info = [feature(dims[i], stem_patch_size * 2**i, f"norm{i}") for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outputs.append(getattr(self, f"norm{index}")(x))
        return outputs


@BACKBONES.register("ConvNeXt")
class ConvNeXt(ConvNeXtFeatures):
    """ConvNeXt returning the LayerNorm-ed stage outputs of ``out_indices`` (SSSegmentation's ``ConvNeXt``).

    ``structure_type`` (``convnext_tiny``, ..., ``convnext_xlarge_21k``) implies ``arch``; an explicit ``arch`` that
    disagrees is an error. ``norm_cfg`` must be a channel LayerNorm (its ``eps`` is used everywhere);
    ``linear_pw_conv=False`` uses 1x1 convolutions for the MLP, ``use_grn`` adds ConvNeXt-V2's GRN,
    ``layer_scale_init_value <= 0`` drops layer scale. Stages after the last output are not built.

    ``gap_before_final_norm`` (SSSegmentation default True: global-average-pool each output into a vector, for
    classification) must be False: a segmentation backbone returns feature maps. The default here is False.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        arch: ConvNeXtArch | None = None,
        in_channels: int = 3,
        stem_patch_size: int = 4,
        norm_cfg: dict | None = {"type": "LayerNorm2d", "eps": 1e-6},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "GELU"},  # noqa: B006
        linear_pw_conv: bool = True,
        use_grn: bool = False,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        gap_before_final_norm: bool = False,
        pretrained: bool = True,
        pretrained_model_path: str = "",
        use_checkpoint: bool = False,
    ) -> None:
        if gap_before_final_norm:
            raise ArgumentError("gap_before_final_norm", "pooled vectors are not feature maps; a segmentation "
                                "backbone needs gap_before_final_norm = false")
        resolved = resolve_structure("ConvNeXt", structure_type, STRUCTURE_TYPES, {"arch": arch}, {"arch": "tiny"})
        super().__init__(
            arch=resolved["arch"], in_channels=in_channels, stem_patch_size=stem_patch_size,
            eps=layer_norm_eps(norm_cfg, "ConvNeXt", LAYER_NORMS), act_cfg=act_cfg, linear_pw_conv=linear_pw_conv,
            use_grn=use_grn, drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value if layer_scale_init_value > 0 else None,
            out_indices=out_indices, use_checkpoint=use_checkpoint,
        )
        self.structure_type = structure_type
        if pretrained:
            load_published_weights(self, family="ConvNeXt", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path,
                         convert=lambda sd: fit_singleton_dims(convert_mmcls_convnext(sd), self))
