"""HRNetV2 (Wang et al., 2020) on timm's modules, with SSSegmentation's arguments, fusion and output.

The network is timm's HRNet trunk (``hrnet_w18_small_v2``, ``hrnet_w18`` ... ``hrnet_w48``: ``conv1``, ``bn1``,
``conv2``, ``bn2``, ``layer1``, ``transition1..3``, ``stage2..4``) without the classification head. Parameter names are
the official ones (which mmseg and timm keep), so the checkpoints SSSegmentation publishes load after dropping the
classification head (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``).

As in SSSegmentation (and the official segmentation code), lower-resolution branches are upsampled bilinearly in the
fusion (timm's classification model: nearest) and resized to the exact size of the target branch, so any input size
works, and the output is one map: all four branches upsampled to the highest resolution and concatenated (stride 4,
e.g. 18+36+72+144 = 270 channels for W18). SSSegmentation's stem omits the ReLU after the first convolution; the
published weights were trained with it (official HRNet, mmseg, timm), so it is kept here.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.models.hrnet import HighResolutionModule, HighResolutionNet, cfg_cls
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, build_act, build_norm, validate_norm_cfg
from ..pretrained import load_published_weights
from .base import Backbone
from .timm_adapter import StateDict, feature, rename_keys, replace_modules, resolve_structure

HRNetArch = Literal["hrnetv2_w18_small", "hrnetv2_w18", "hrnetv2_w32", "hrnetv2_w40", "hrnetv2_w48"]

_THIRD_PARTY = "https://download.openmmlab.com/pretrain/third_party"
PRETRAINED_URLS: dict[str, str] = {
    "hrnetv2_w18_small": f"{_THIRD_PARTY}/hrnetv2_w18_small-b5a04e21.pth",
    "hrnetv2_w18": f"{_THIRD_PARTY}/hrnetv2_w18-00eb2006.pth",
    "hrnetv2_w32": f"{_THIRD_PARTY}/hrnetv2_w32-dc9eeb4f.pth",
    "hrnetv2_w40": f"{_THIRD_PARTY}/hrnetv2_w40-ed0b031c.pth",
    "hrnetv2_w48": f"{_THIRD_PARTY}/hrnetv2_w48-d2186c55.pth",
}
"""SSSegmentation's ``DEFAULT_MODEL_URLS`` for HRNet (official layout, via mmseg)."""

TIMM_CONFIGS = {"hrnetv2_w18_small": "hrnet_w18_small_v2", "hrnetv2_w18": "hrnet_w18", "hrnetv2_w32": "hrnet_w32",
                "hrnetv2_w40": "hrnet_w40", "hrnetv2_w48": "hrnet_w48"}
"""SSSegmentation's arch -> timm's configuration of the same network."""

STRUCTURE_TYPES: dict[str, dict] = {name: {"arch": name} for name in PRETRAINED_URLS}


def convert_official_hrnet(state_dict: StateDict) -> StateDict:
    """Official/mmseg HRNet keys are timm's; the classification head goes."""
    return rename_keys(state_dict, [], drop=(r"^(incre_modules|downsamp_modules|final_layer|classifier)\.",))


@BACKBONES.register("HRNet")
class HRNet(Backbone):
    """HRNetV2 returning one map: the four branches at stride 4, concatenated (SSSegmentation's ``HRNet``).

    ``structure_type`` implies ``arch`` (``hrnetv2_w18_small`` ... ``hrnetv2_w48``). ``multiscale_output=False``
    fuses the last module into the highest-resolution branch only, which is then the output. Every BatchNorm and
    ReLU is built from ``norm_cfg`` / ``act_cfg``. ``use_checkpoint`` recomputes each HRNet module in the backward pass.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        arch: HRNetArch | None = None,
        in_channels: int = 3,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        multiscale_output: bool = True,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = True,
        pretrained_model_path: str = "",
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        arch = resolve_structure("HRNet", structure_type, STRUCTURE_TYPES, {"arch": arch},
                                 {"arch": "hrnetv2_w18_small"})["arch"]
        validate_norm_cfg(norm_cfg)
        self.structure_type, self.arch, self.use_checkpoint = structure_type, arch, use_checkpoint
        model = HighResolutionNet(cfg_cls[TIMM_CONFIGS[arch]], in_chans=in_channels, num_classes=0, head="")
        replace_modules(model, nn.BatchNorm2d, lambda norm: build_norm(norm_cfg, norm.num_features))
        replace_modules(model, nn.ReLU, lambda _: build_act(act_cfg))
        replace_modules(model, nn.Upsample, lambda up: nn.Upsample(scale_factor=up.scale_factor, mode="bilinear",
                                                                   align_corners=False))
        if not multiscale_output:
            model.stage4[-1].fuse_layers = model.stage4[-1].fuse_layers[:1]
        for name in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "layer1", "transition1", "stage2",
                     "transition2", "stage3", "transition3", "stage4"):
            self.add_module(name, getattr(model, name))
        branches = cfg_cls[TIMM_CONFIGS[arch]]["stage4"]["num_channels"]
        channels = sum(branches) if multiscale_output else branches[0]
        self.feature_info = [feature(channels, 4, "stage4")]
        if pretrained:
            load_published_weights(self, family="HRNet", structure_type=structure_type, urls=PRETRAINED_URLS,
                         pretrained_model_path=pretrained_model_path, convert=convert_official_hrnet)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer1(self.act2(self.bn2(self.conv2(x))))
        branches = [transition(x) for transition in self.transition1]
        for transition, stage in ((None, self.stage2), (self.transition2, self.stage3), (self.transition3, self.stage4)):
            if transition is not None:
                branches = [branches[i] if isinstance(t, nn.Identity) else t(branches[-1])
                            for i, t in enumerate(transition)]
            for module in stage:
                branches = self._run_module(module, branches)
        height, width = branches[0].shape[-2:]
        resized = [F.interpolate(b, size=(height, width), mode="bilinear", align_corners=False) for b in branches]
        return [torch.cat(resized, dim=1)]

    def _run_module(self, module: HighResolutionModule, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(fuse_branches, module, branches, use_reentrant=False)
        return fuse_branches(module, branches)


def fuse_branches(module: HighResolutionModule, branches: list[torch.Tensor]) -> list[torch.Tensor]:
    """One HRNet module: each branch's blocks, then every output branch sums all branches brought to its size."""
    branches = [branch(x) for branch, x in zip(module.branches, branches, strict=True)]
    if module.num_branches == 1:
        return branches
    fused = []
    for i, fuse_layer in enumerate(module.fuse_layers):
        total: torch.Tensor | float = 0.0
        for j, fuse in enumerate(fuse_layer):
            if j == i:
                total = total + branches[j]
            elif j > i:
                size = branches[i].shape[-2:]
                total = total + F.interpolate(fuse(branches[j]), size=size, mode="bilinear", align_corners=False)
            else:
                total = total + fuse(branches[j])
        fused.append(module.fuse_act(total))
    return fused
