"""MobileViT-V2 (Mehta & Rastegari, 2022: separable self-attention) on timm's modules, SSSegmentation's arguments.

The network is timm's ``mobilevitv2_050`` ... ``mobilevitv2_200`` trunk (``stem``, ``stages.0`` ... ``stages.4``);
``out_indices`` counts the five stages, default SSSegmentation's ``(0, 1, 2, 3, 4)`` (e.g. 32/64/128/192/256
channels at strides 2 ... 32 for ``_050``; its DeepLabV3 configs select ``(3, 4)`` from them).
The weights SSSegmentation publishes are timm's own releases, so they load as they are (the classifier dropped).
As in timm and SSSegmentation, a transformer block whose input side is not a multiple of its patch size (2) resizes
it up to one and keeps that size: the declared strides hold for inputs divisible by 64.
"""

from __future__ import annotations

from typing import Literal

from ...registry import BACKBONES
from ..pretrained import load_published_weights
from .mobilevit import MobileViTFeatures
from .timm_adapter import StateDict, rename_keys, resolve_structure

MobileViTV2Arch = Literal["mobilevitv2_050", "mobilevitv2_075", "mobilevitv2_100", "mobilevitv2_125",
                          "mobilevitv2_150", "mobilevitv2_175", "mobilevitv2_200"]

_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-mvit-weights"
_FILES = {
    "mobilevitv2_050": "mobilevitv2_050-49951ee2", "mobilevitv2_075": "mobilevitv2_075-b5556ef6",
    "mobilevitv2_100": "mobilevitv2_100-e464ef3b", "mobilevitv2_125": "mobilevitv2_125-0ae35027",
    "mobilevitv2_150": "mobilevitv2_150-737c5019", "mobilevitv2_175": "mobilevitv2_175-16462ee2",
    "mobilevitv2_200": "mobilevitv2_200-b3422f67",
    "mobilevitv2_150_in22ft1k": "mobilevitv2_150_in22ft1k-0b555d7b",
    "mobilevitv2_175_in22ft1k": "mobilevitv2_175_in22ft1k-4117fa1f",
    "mobilevitv2_200_in22ft1k": "mobilevitv2_200_in22ft1k-1d7c8927",
    "mobilevitv2_150_384_in22ft1k": "mobilevitv2_150_384_in22ft1k-9e142854",
    "mobilevitv2_175_384_in22ft1k": "mobilevitv2_175_384_in22ft1k-059cbe56",
    "mobilevitv2_200_384_in22ft1k": "mobilevitv2_200_384_in22ft1k-32c87503",
}
PRETRAINED_URLS: dict[str, str] = {name: f"{_RELEASE}/{file}.pth" for name, file in _FILES.items()}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for MobileViTV2 (timm's releases)."""

STRUCTURE_TYPES: dict[str, dict] = {name: {"arch": name[: len("mobilevitv2_050")]} for name in PRETRAINED_URLS}
"""structure_type -> arch, which is also the timm model name."""


def convert_timm_mobilevitv2(state_dict: StateDict) -> StateDict:
    """timm's release is already in timm's names; only the classifier goes."""
    return rename_keys(state_dict, [], drop=(r"^head\.",))


@BACKBONES.register("MobileViTV2")
class MobileViTV2(MobileViTFeatures):
    """MobileViT-V2 returning the stage outputs of ``out_indices`` (SSSegmentation's ``MobileViTV2`` arguments).

    ``structure_type`` (``mobilevitv2_050`` ... ``_200``, ``..._in22ft1k``, ``..._384_in22ft1k``) implies ``arch``.
    ``norm_cfg`` is a BatchNorm, ``act_cfg`` the activation of the convolutions and MLPs (SiLU).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        arch: MobileViTV2Arch | None = None,
        in_channels: int = 3,
        out_indices: tuple[int, ...] = (0, 1, 2, 3, 4),
        norm_cfg: dict | None = {"type": "SyncBatchNorm"},  # noqa: B006 (never mutated)
        act_cfg: dict | None = {"type": "SiLU", "inplace": True},  # noqa: B006
        pretrained: bool = True,
        pretrained_model_path: str = "",
    ) -> None:
        arch = resolve_structure("MobileViTV2", structure_type, STRUCTURE_TYPES, {"arch": arch},
                                 {"arch": "mobilevitv2_050"})["arch"]
        super().__init__(timm_name=arch, in_channels=in_channels, out_indices=out_indices, norm_cfg=norm_cfg,
                         act_cfg=act_cfg, family="MobileViTV2")
        self.structure_type, self.arch = structure_type, arch
        if pretrained:
            load_published_weights(self, family="MobileViTV2", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path, convert=convert_timm_mobilevitv2)
