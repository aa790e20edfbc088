"""UNet (Ronneberger et al. 2015) in mmseg's form, as SSSegmentation's ``UNet``: an encoder of ``num_stages`` conv
blocks (2x max-pooling between them) and a decoder that upsamples, concatenates the skip connection and convolves.

Differences from the paper are mmseg's / SSSegmentation's: padded 3x3 convolutions with a norm after each, and a
bilinear 2x upsampling followed by a 1x1 conv-norm-act (``upsample_type="InterpConv"``; ``"DeconvModule"`` is a
4x4 transposed convolution) instead of the 2x2 up-convolution. Parameter names are SSSegmentation's
(``encoder.<i>``, ``decoder.<i>.upsample``, ``decoder.<i>.conv_block.convs.<j>.0``).

Output order: SSSegmentation returns the deepest encoder output first and the decoder outputs after it (strides 16,
8, 4, 2, 1 by default); segkit returns outputs by non-decreasing stride, i.e. the same list reversed (the last
decoder output, stride 1, first). SSSegmentation's recipe ``selected_indices = (3, 4)`` (auxiliary head on stride 2,
head on stride 1) is ``selected_indices = [1, 0]`` here.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..pretrained import load_published_weights
from .base import Backbone
from .fastscnn import conv_norm_act

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no UNet backbone weights (``DEFAULT_MODEL_URLS`` is empty)."""


class BasicConvBlock(nn.Module):
    """``num_convs`` 3x3 conv-norm-act layers (``convs.<j>``); the first has the stride, the others the dilation."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int = 2, stride: int = 1, dilation: int = 1,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(
            conv_norm_act(in_channels if i == 0 else out_channels, out_channels, 3, stride=stride if i == 0 else 1,
                          dilation=1 if i == 0 else dilation, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for i in range(num_convs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class InterpConv(nn.Module):
    """Bilinear 2x upsampling, then a 1x1 conv-norm-act (``interp_upsample.1``)."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.interp_upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_norm_act(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.interp_upsample(x)


class DeconvModule(nn.Module):
    """A 4x4 stride-2 transposed convolution, norm, activation (``deconv_upsamping``, SSSegmentation's spelling)."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.deconv_upsamping = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1),
            build_norm(norm_cfg, out_channels), build_act(act_cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv_upsamping(x)


class UpConvBlock(nn.Module):
    """Upsample the deeper features to the skip's channels and size, concatenate, convolve."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, num_convs: int, dilation: int,
                 norm_cfg: dict | None, act_cfg: dict | None, upsample_type: str | None) -> None:
        super().__init__()
        self.conv_block = BasicConvBlock(2 * skip_channels, out_channels, num_convs, 1, dilation, norm_cfg, act_cfg)
        if upsample_type == "InterpConv":
            self.upsample = InterpConv(in_channels, skip_channels, norm_cfg, act_cfg)
        elif upsample_type == "DeconvModule":
            self.upsample = DeconvModule(in_channels, skip_channels, norm_cfg, act_cfg)
        else:  # the stage did not downsample: a 1x1 conv-norm-act only
            self.upsample = conv_norm_act(in_channels, skip_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([skip, self.upsample(x)], dim=1))


@BACKBONES.register("UNet")
class UNet(Backbone):
    """UNet returning every decoder output and the deepest encoder output, by non-decreasing stride.

    SSSegmentation's arguments and defaults (``base_channels=64``, 5 stages): stage ``i`` has ``base_channels * 2**i``
    channels; it downsamples by 2 when ``strides[i] == 2`` (strided conv) or ``downsamples[i - 1]`` (max-pooling).
    The input height and width must be divisible by the total downsampling (16 by default).
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 5,
        strides: tuple[int, ...] = (1, 1, 1, 1, 1),
        enc_num_convs: tuple[int, ...] = (2, 2, 2, 2, 2),
        dec_num_convs: tuple[int, ...] = (2, 2, 2, 2),
        downsamples: tuple[bool, ...] = (True, True, True, True),
        enc_dilations: tuple[int, ...] = (1, 1, 1, 1, 1),
        dec_dilations: tuple[int, ...] = (1, 1, 1, 1),
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        upsample_type: Literal["InterpConv", "DeconvModule"] = "InterpConv",
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        for name, values, expected in (("strides", strides, num_stages), ("enc_num_convs", enc_num_convs, num_stages),
                                       ("enc_dilations", enc_dilations, num_stages),
                                       ("dec_num_convs", dec_num_convs, num_stages - 1),
                                       ("downsamples", downsamples, num_stages - 1),
                                       ("dec_dilations", dec_dilations, num_stages - 1)):
            if len(values) != expected:
                raise ArgumentError(name, f"needs {expected} values for num_stages={num_stages}, got {list(values)}")
        self.structure_type = structure_type
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        stage_strides = [1]
        for i in range(num_stages):
            layers: list[nn.Module] = []
            if i > 0:
                downsample = strides[i] != 1 or downsamples[i - 1]
                if strides[i] == 1 and downsamples[i - 1]:
                    layers.append(nn.MaxPool2d(kernel_size=2))
                stage_strides.append(stage_strides[-1] * (2 if downsample else 1))
                self.decoder.append(UpConvBlock(
                    base_channels * 2**i, base_channels * 2 ** (i - 1), base_channels * 2 ** (i - 1),
                    dec_num_convs[i - 1], dec_dilations[i - 1], norm_cfg, act_cfg,
                    upsample_type if downsample else None))
            layers.append(BasicConvBlock(in_channels, base_channels * 2**i, enc_num_convs[i], strides[i],
                                         enc_dilations[i], norm_cfg, act_cfg))
            self.encoder.append(nn.Sequential(*layers))
            in_channels = base_channels * 2**i
        self.total_stride = stage_strides[-1]
        self.feature_info = [{"num_chs": base_channels * 2**i, "reduction": stage_strides[i],
                              "module": f"decoder.{i}" if i < num_stages - 1 else f"encoder.{i}"}
                             for i in range(num_stages)]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        height, width = x.shape[-2:]
        if height % self.total_stride or width % self.total_stride:
            raise ValueError(f"UNet needs an input whose height and width are divisible by {self.total_stride}, "
                             f"got {height}x{width}")
        skips = []
        for encoder_stage in self.encoder:
            x = encoder_stage(x)
            skips.append(x)
        outputs = [x]
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](skips[i], x)
            outputs.append(x)
        return outputs[::-1]
