"""ConvNeXt-V2 (Woo et al., 2023) on timm's modules, with SSSegmentation's arguments and published weights.

The network is ConvNeXt with Global Response Normalization in every block's MLP and no layer scale (timm's
``convnextv2_*`` with linear MLPs, see :class:`~segkit.models.backbones.convnext.ConvNeXtFeatures`); each output is
normalised by its own channel LayerNorm ``norm{i}``. SSSegmentation 1.7.0's ConvNeXtV2 cannot run a forward pass (its
GRN expects channels-first tensors and gets channels-last ones, facts 12.1); this one can.

``pretrained = true`` loads the checkpoints of the official release that SSSegmentation lists: the ImageNet
fine-tuned ones (``*_1k_224_ema``, ``*_22k_*_ema``: ``downsample_layers``, ``stages.i.j.dwconv``, ``pwconv1/2``,
``grn.gamma`` of shape ``(1, 1, 1, C)``) and the FCMAE pre-trained encoders (``*_fcmae``: sparse MinkowskiEngine
layout, ``encoder.stages.i.j.dwconv.kernel`` of shape ``(49, C)``, ``...norm.ln.weight``, ``...pwconv1.linear.weight``).
SSSegmentation loads the FCMAE files non-strictly under keys that match nothing, i.e. not at all; here both layouts
are converted to timm's names (:func:`convert_official_convnextv2`).
"""

from __future__ import annotations

import math
from typing import Literal

from ...registry import BACKBONES
from ..layers import ArgumentError
from ..pretrained import load_published_weights
from .convnext import ConvNeXtFeatures
from .timm_adapter import (
    StateDict,
    fit_singleton_dims,
    layer_norm_eps,
    rename_keys,
    resolve_structure,
)

ConvNeXtV2Arch = Literal["atto", "femto", "pico", "nano", "tiny", "base", "large", "huge"]

_FB = "https://dl.fbaipublicfiles.com/convnext/convnextv2"
_FCMAE = ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")
_IN22K = (("nano", 224), ("nano", 384), ("tiny", 224), ("tiny", 384), ("base", 224), ("base", 384),
          ("large", 224), ("large", 384), ("huge", 384), ("huge", 512))
PRETRAINED_URLS: dict[str, str] = {
    **{f"convnextv2_{a}_1k_224_fcmae": f"{_FB}/pt_only/convnextv2_{a}_1k_224_fcmae.pt" for a in _FCMAE},
    **{f"convnextv2_{a}_1k_224_ema": f"{_FB}/im1k/convnextv2_{a}_1k_224_ema.pt" for a in _FCMAE},
    **{f"convnextv2_{a}_22k_{s}_ema": f"{_FB}/im22k/convnextv2_{a}_22k_{s}_ema.pt" for a, s in _IN22K},
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for ConvNeXtV2 (26 official checkpoints)."""

STRUCTURE_TYPES: dict[str, dict] = {name: {"arch": name.split("_")[1]} for name in PRETRAINED_URLS}
"""structure_type -> the architecture it names (timm's ``convnextv2_<arch>``)."""

LAYER_NORMS = ("LayerNorm2d", "LayerNorm")

_OFFICIAL_TO_TIMM = [
    (r"^downsample_layers\.0\.", "stem."),
    (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
    (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"\.dwconv\.", ".conv_dw."),
    (r"\.pwconv(\d)\.", r".mlp.fc\1."),
    (r"\.grn\.gamma$", ".mlp.grn.weight"),
    (r"\.grn\.beta$", ".mlp.grn.bias"),
]


def sparse_encoder_to_dense(state_dict: StateDict) -> StateDict:
    """An FCMAE checkpoint's sparse encoder -> the dense official layout (the decoder, mask token and projection go).

    MinkowskiEngine kernels ``(k*k, in, out)`` / depthwise ``(k*k, C)`` become ``(out, in, k, k)`` / ``(C, 1, k, k)``
    (as the official fine-tuning code remaps them), ``ln``/``linear`` wrappers disappear from the names and ``(1, C)``
    biases become ``(C,)``.
    """
    dense: StateDict = {}
    for key, value in state_dict.items():
        if not key.startswith("encoder."):
            continue
        key = key[len("encoder."):].replace(".ln.", ".").replace(".linear.", ".")
        if key.endswith(".kernel"):
            key = key[: -len("kernel")] + "weight"
            size = math.isqrt(value.shape[0])
            if value.ndim == 3:
                value = value.permute(2, 1, 0).reshape(value.shape[2], value.shape[1], size, size).transpose(3, 2)
            else:
                value = value.permute(1, 0).reshape(value.shape[1], 1, size, size).transpose(3, 2)
        elif key.endswith(".bias") and value.ndim != 1:
            value = value.reshape(-1)
        dense[key] = value
    return dense


def convert_official_convnextv2(state_dict: StateDict) -> StateDict:
    """Official ConvNeXt-V2 keys (dense or FCMAE sparse) -> timm's; the classifier and final norm are dropped."""
    if any(key.startswith("encoder.") for key in state_dict):
        state_dict = sparse_encoder_to_dense(state_dict)
    return rename_keys(state_dict, _OFFICIAL_TO_TIMM, drop=(r"^head\.", r"^norm\."))


@BACKBONES.register("ConvNeXtV2")
class ConvNeXtV2(ConvNeXtFeatures):
    """ConvNeXt-V2 returning the LayerNorm-ed stage outputs of ``out_indices`` (SSSegmentation's ``ConvNeXtV2``).

    ``structure_type`` (``convnextv2_<arch>_1k_224_fcmae``, ``..._1k_224_ema``, ``..._22k_<size>_ema``) implies ``arch``.
    ``norm_cfg`` must be a channel LayerNorm, ``LayerNorm2d`` (SSSegmentation's default names its own
    ``LayerNormConvNeXtV2``, which it registers globally as a side effect of the import, facts 12.17; segkit does not);
    its ``eps`` is used everywhere. Stages after the last output are not built.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        arch: ConvNeXtV2Arch | None = None,
        drop_path_rate: float = 0.0,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        norm_cfg: dict | None = {"type": "LayerNorm2d", "eps": 1e-6},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "GELU"},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        resolved = resolve_structure("ConvNeXtV2", structure_type, STRUCTURE_TYPES, {"arch": arch}, {"arch": "tiny"})
        if resolved["arch"] not in ConvNeXtV2Arch.__args__:
            raise ArgumentError("arch", f"ConvNeXtV2 has no arch '{resolved['arch']}'")
        super().__init__(
            arch=resolved["arch"], in_channels=in_channels, stem_patch_size=4,
            eps=layer_norm_eps(norm_cfg, "ConvNeXtV2", LAYER_NORMS), act_cfg=act_cfg, linear_pw_conv=True, use_grn=True,
            drop_path_rate=drop_path_rate, layer_scale_init_value=None, out_indices=out_indices,
            use_checkpoint=False,
        )
        self.structure_type = structure_type
        if pretrained:
            load_published_weights(self, family="ConvNeXtV2", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path,
                         convert=lambda sd: fit_singleton_dims(convert_official_convnextv2(sd), self))
