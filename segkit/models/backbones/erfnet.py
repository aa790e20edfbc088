"""ERFNet (Romera et al. 2017, "Efficient Residual Factorized ConvNet"), as SSSegmentation's ``ERFNet``.

Encoder: downsampler blocks (a stride-2 3x3 conv concatenated with a 2x2 max-pool) and non-bottleneck-1D blocks
(3x1 and 1x3 convolutions, the second pair dilated, residual); the last encoder stage cycles through
``enc_non_bottleneck_dilations``. Decoder: transposed-conv upsampler blocks and non-bottleneck-1D blocks. The final
upsampling to the classes (the paper's output deconvolution) is the head's job, so the output is the stride-2,
``dec_non_bottleneck_channels[-1]``-channel decoder feature.

Parameter names are SSSegmentation's (``encoder.<i>.conv``, ``encoder.<i>.convs_layers.<j>``, ``decoder.<i>``); a
non-bottleneck block uses one activation module at every activation place (``act`` and ``convs_layers.1/4/6``), so a
PReLU ``act_cfg`` has one shared slope per block. The default activation is SSSegmentation 1.7.0's ReLU
(``fcn_erfnet_cityscapes``: 2,062,831 parameters); ``fcn_erfnet_prelu_cityscapes`` asks for ``{type = "PReLU"}``
(22 slopes more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import BACKBONES
from ..layers import DEFAULT_ACT_CFG, DEFAULT_NORM_CFG, ArgumentError, build_act, build_norm
from ..pretrained import load_published_weights
from .base import Backbone

PRETRAINED_URLS: dict[str, str] = {}
"""SSSegmentation publishes no ERFNet backbone weights (``DEFAULT_MODEL_URLS`` is empty)."""


class DownsamplerBlock(nn.Module):
    """``cat(conv3x3/2(x), maxpool2(x))`` -> norm -> act; the conv gives ``out - in`` channels."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ArgumentError("enc_downsample_channels", f"each downsampler must widen the features (it "
                                f"concatenates a conv to the pooled input), got {in_channels} -> {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bn = build_norm(norm_cfg, out_channels)
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, pool = self.conv(x), self.pool(x)
        if pool.shape[2:] != conv.shape[2:]:  # odd input sizes
            pool = F.interpolate(pool, size=conv.shape[2:], mode="bilinear", align_corners=False)
        return self.act(self.bn(torch.cat([conv, pool], dim=1)))


class NonBottleneck1d(nn.Module):
    """Two (3x1 conv -> act -> 1x3 conv -> norm) pairs, the second dilated and followed by dropout; residual."""

    def __init__(self, channels: int, drop_rate: float = 0.0, dilation: int = 1, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None) -> None:
        super().__init__()
        self.act = build_act(act_cfg)
        layers: list[nn.Module] = []
        for pair in range(2):
            rate = 1 if pair == 0 else dilation
            layers += [nn.Conv2d(channels, channels, (3, 1), padding=(rate, 0), dilation=(rate, 1)), self.act,
                       nn.Conv2d(channels, channels, (1, 3), padding=(0, rate), dilation=(1, rate)),
                       build_norm(norm_cfg, channels), self.act if pair == 0 else nn.Dropout(p=drop_rate)]
        self.convs_layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.convs_layers:
            out = layer(out)
        return self.act(out + x)


class UpsamplerBlock(nn.Module):
    """3x3 stride-2 transposed convolution -> norm -> act."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict | None, act_cfg: dict | None) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.bn = build_norm(norm_cfg, out_channels)
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@BACKBONES.register("ERFNet")
class ERFNet(Backbone):
    """ERFNet encoder-decoder returning its last decoder feature (one output).

    SSSegmentation's arguments and defaults. As there, ``enc_non_bottleneck_channels`` and ``dec_upsample_channels``
    are only checked for their length: the block widths are ``enc_downsample_channels`` and
    ``dec_non_bottleneck_channels``. ``dropout_ratio`` is the encoder blocks' dropout.
    """

    def __init__(
        self,
        structure_type: str | None = None,
        in_channels: int = 3,
        enc_downsample_channels: tuple[int, ...] = (16, 64, 128),
        enc_stage_non_bottlenecks: tuple[int, ...] = (5, 8),
        enc_non_bottleneck_dilations: tuple[int, ...] = (2, 4, 8, 16),
        enc_non_bottleneck_channels: tuple[int, ...] = (64, 128),
        dec_upsample_channels: tuple[int, ...] = (64, 16),
        dec_stages_non_bottleneck: tuple[int, ...] = (2, 2),
        dec_non_bottleneck_channels: tuple[int, ...] = (64, 16),
        dropout_ratio: float = 0.1,
        norm_cfg: dict | None = DEFAULT_NORM_CFG,
        act_cfg: dict | None = DEFAULT_ACT_CFG,
        pretrained: bool = False,
        pretrained_model_path: str = "",
    ) -> None:
        super().__init__()
        num_down = len(enc_downsample_channels)
        for name, values, expected in (("enc_stage_non_bottlenecks", enc_stage_non_bottlenecks, num_down - 1),
                                       ("enc_non_bottleneck_channels", enc_non_bottleneck_channels, num_down - 1),
                                       ("dec_upsample_channels", dec_upsample_channels, num_down - 1),
                                       ("dec_stages_non_bottleneck", dec_stages_non_bottleneck, num_down - 1),
                                       ("dec_non_bottleneck_channels", dec_non_bottleneck_channels, num_down - 1)):
            if len(values) != expected:
                raise ArgumentError(name, f"needs {expected} values (one fewer than enc_downsample_channels), "
                                    f"got {list(values)}")
        if not enc_non_bottleneck_dilations or enc_stage_non_bottlenecks[-1] % len(enc_non_bottleneck_dilations):
            raise ArgumentError("enc_stage_non_bottlenecks", f"the last stage's block count "
                                f"({enc_stage_non_bottlenecks[-1]}) must be a multiple of the number of "
                                f"enc_non_bottleneck_dilations ({len(enc_non_bottleneck_dilations)})")
        self.structure_type = structure_type
        self.encoder = nn.ModuleList([DownsamplerBlock(in_channels, enc_downsample_channels[0], norm_cfg, act_cfg)])
        for i in range(num_down - 1):
            channels = enc_downsample_channels[i + 1]
            self.encoder.append(DownsamplerBlock(enc_downsample_channels[i], channels, norm_cfg, act_cfg))
            if i == num_down - 2:
                repeats = enc_stage_non_bottlenecks[-1] // len(enc_non_bottleneck_dilations)
                dilations = list(enc_non_bottleneck_dilations) * repeats
            else:
                dilations = [1] * enc_stage_non_bottlenecks[i]
            self.encoder.extend(NonBottleneck1d(channels, dropout_ratio, d, norm_cfg, act_cfg) for d in dilations)
        self.decoder = nn.ModuleList()
        channels = enc_downsample_channels[-1]
        for out_channels, num_blocks in zip(dec_non_bottleneck_channels, dec_stages_non_bottleneck, strict=True):
            self.decoder.append(UpsamplerBlock(channels, out_channels, norm_cfg, act_cfg))
            self.decoder.extend(NonBottleneck1d(out_channels, norm_cfg=norm_cfg, act_cfg=act_cfg)
                                for _ in range(num_blocks))
            channels = out_channels
        reduction = 2 ** num_down // 2 ** len(dec_non_bottleneck_channels)
        self.feature_info = [{"num_chs": channels, "reduction": reduction, "module": f"decoder.{len(self.decoder) - 1}"}]
        if pretrained:
            load_published_weights(self, urls=PRETRAINED_URLS, structure_type=structure_type, pretrained_model_path=pretrained_model_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for block in self.encoder:
            x = block(x)
        for block in self.decoder:
            x = block(x)
        return [x]
