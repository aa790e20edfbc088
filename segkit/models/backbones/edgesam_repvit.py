"""``EdgeSAMRepViT``: RepViT (m1/m2/m3) as EdgeSAM's image encoder (stride-16 and stride-32 stages fused, SAM neck).

Written here rather than wrapped from timm because EdgeSAM's weights use RepViT's original layout
(``features.{i}.token_mixer``, ``features.{i}.channel_mixer.m``) that SSSegmentation follows; timm's ``repvit_m1``
(same blocks, ``legacy=True``) has another layout and no fuse/neck. The squeeze-excitation is timm's ``SqueezeExcite``
with ratio 0.25, as in RepViT and EdgeSAM.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import SqueezeExcite, make_divisible
from torch import nn

from ...registry import BACKBONES
from ..layers import LayerNorm2d
from ..pretrained import LoadReport, load_pretrained
from .base import Backbone
from .mobilesam_tinyvit import NECK_CHANNELS, Conv2dBN
from .vit import check_structure, official_url

_EDGESAM = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"
PRETRAINED_URLS: dict[str, str] = {"edge_sam": _EDGESAM + "edge_sam.pth", "edge_sam_3x": _EDGESAM + "edge_sam_3x.pth"}
"""Official EdgeSAM checkpoints (segkit addition: SSSegmentation's ``DEFAULT_MODEL_URLS`` for it is empty)."""

STRUCTURE_ARGUMENTS: dict[str, dict] = {"edge_sam": {"arch": "m1"}, "edge_sam_3x": {"arch": "m1"}}


def _blocks(channels: int, pattern: str) -> list[tuple[int, int, int, int, int, int]]:
    """Block settings ``(kernel, expansion, channels, use_se, use_hs, stride)`` of one stage: per block ``d`` is a
    stride-2 block (no SE), ``1`` a block with squeeze-excitation, ``0`` one without."""
    use_hs = int(channels >= 192)  # RepViT's flag; both branches use GELU
    return [(3, 2, channels, int(p == "1"), use_hs, 2 if p == "d" else 1) for p in pattern]


ARCH_SETTINGS: dict[str, list[tuple[int, int, int, int, int, int]]] = {  # RepViT's (and EdgeSAM's) m1/m2/m3 tables
    "m1": _blocks(48, "100") + _blocks(96, "d100") + _blocks(192, "d" + "10" * 7 + "0") + _blocks(384, "d10"),
    "m2": _blocks(64, "100") + _blocks(128, "d100") + _blocks(256, "d" + "10" * 6 + "0") + _blocks(512, "d10"),
    "m3": _blocks(64, "10100") + _blocks(128, "d10100") + _blocks(256, "d" + "10" * 9 + "0") + _blocks(512, "d10"),
}


class Residual(nn.Module):
    """``x + m(x)`` (child ``m``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.m = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class RepVGGDW(nn.Module):
    """Depthwise 3x3 conv-BN + depthwise 1x1 conv-BN + identity (re-parameterisable into one conv)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2dBN(channels, channels, 3, 1, 1, groups=channels)
        self.conv1 = Conv2dBN(channels, channels, 1, 1, 0, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x


class RepViTBlock(nn.Module):
    """Token mixer (RepVGG depthwise, or a stride-2 depthwise conv + 1x1 projection) then a residual 2x MLP."""

    def __init__(self, inp: int, hidden_dim: int, oup: int, kernel_size: int, stride: int, use_se: bool) -> None:
        super().__init__()
        se = SqueezeExcite(inp, 0.25) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(
                Conv2dBN(inp, inp, kernel_size, stride, (kernel_size - 1) // 2, groups=inp), se, Conv2dBN(inp, oup))
            hidden_dim = 2 * oup
        else:
            if inp != oup:
                raise ValueError(f"a stride-1 RepViT block keeps its channels ({inp} -> {oup})")
            self.token_mixer = nn.Sequential(RepVGGDW(inp), se)
        self.channel_mixer = Residual(nn.Sequential(Conv2dBN(oup, hidden_dim), nn.GELU(),
                                                    Conv2dBN(hidden_dim, oup, bn_weight_init=0.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


@BACKBONES.register("EdgeSAMRepViT")
class EdgeSAMRepViT(Backbone):
    """RepViT + fuse + SAM neck: one 256-channel map at stride 16 (SSSegmentation's ``EdgeSAMRepViT`` arguments).

    ``fuse_stage2`` (1x1 conv of the stride-16 stage) + upsampled ``fuse_stage3`` (stride-32 stage), then the neck.
    The upsampling goes to the stride-16 map's size (SSSegmentation: ``scale_factor=2``, the same for inputs
    divisible by 32). ``structure_type`` ``edge_sam``/``edge_sam_3x`` name the official EdgeSAM weights (segkit
    addition), whose ``image_encoder.*`` entries are loaded.
    """

    arch_settings = ARCH_SETTINGS

    def __init__(
        self,
        structure_type: str | None = None,
        arch: Literal["m1", "m2", "m3"] = "m1",
        img_size: int = 1024,
        upsample_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic",
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        check_structure(structure_type, PRETRAINED_URLS, STRUCTURE_ARGUMENTS, locals())
        self.structure_type, self.arch, self.img_size, self.upsample_mode = structure_type, arch, img_size, \
            upsample_mode
        cfgs = self.arch_settings[arch]
        channels = cfgs[0][2]
        layers: list[nn.Module] = [nn.Sequential(Conv2dBN(3, channels // 2, 3, 2, 1), nn.GELU(),
                                                 Conv2dBN(channels // 2, channels, 3, 2, 1))]
        self.stage_idx: list[int] = []
        for index, (kernel, expansion, out, use_se, _, stride) in enumerate(cfgs):
            if out != cfgs[index - 1][2] and index > 0:
                self.stage_idx.append(index - 1)
            out = make_divisible(out, 8)
            layers.append(RepViTBlock(channels, make_divisible(channels * expansion, 8), out, kernel, stride,
                                      bool(use_se)))
            channels = out
        self.stage_idx.append(len(cfgs) - 1)
        self.features = nn.ModuleList(layers)
        stage2, stage3 = (make_divisible(cfgs[self.stage_idx[s]][2], 8) for s in (2, 3))
        self.fuse_stage2 = nn.Conv2d(stage2, NECK_CHANNELS, 1, bias=False)
        self.fuse_stage3 = nn.Sequential(nn.Conv2d(stage3, NECK_CHANNELS, 1, bias=False))
        self.neck = nn.Sequential(nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 1, bias=False), LayerNorm2d(NECK_CHANNELS),
                                  nn.Conv2d(NECK_CHANNELS, NECK_CHANNELS, 3, padding=1, bias=False),
                                  LayerNorm2d(NECK_CHANNELS))
        self.feature_info = [{"num_chs": NECK_CHANNELS, "reduction": 16, "module": "neck"}]
        if pretrained:
            self.load_official_weights(pretrained_model_path)

    def load_official_weights(self, pretrained_model_path: str = "") -> LoadReport:
        """Load the encoder of ``pretrained_model_path`` or of the official EdgeSAM checkpoint."""
        url = official_url(self.structure_type, PRETRAINED_URLS, pretrained_model_path)
        return load_pretrained(self, url=url, path=pretrained_model_path or None, convert=convert_edgesam_checkpoint)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = []
        x = self.features[0](x)
        for index, block in enumerate(self.features[1:]):
            x = block(x)
            if index in self.stage_idx:
                stages.append(x)
        coarse = self.fuse_stage3(stages[3])
        fine = self.fuse_stage2(stages[2])
        align = None if self.upsample_mode == "nearest" else False
        x = fine + F.interpolate(coarse, size=fine.shape[-2:], mode=self.upsample_mode, align_corners=align)
        return [self.neck(x)]


def convert_edgesam_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EdgeSAM's layout -> this one: ``image_encoder.*`` entries only (when present) and
    ``fuse_stage3.op_list.0`` (EdgeSAM's OpSequential) -> ``fuse_stage3.0``."""
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return {k.replace("fuse_stage3.op_list.", "fuse_stage3."): v for k, v in state_dict.items()}
