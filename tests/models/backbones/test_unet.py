"""UNet: mmseg/SSSegmentation layout and size, output order, stage options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.models.backbones.unet import UNet
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params


def unet(**kwargs) -> UNet:
    return UNet(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def expected_unet_parameters(base: int = 64, stages: int = 5, upsample: str = "InterpConv") -> int:
    """Derived from the layer table: two 3x3 conv-BN per encoder stage; per decoder stage an upsampling to the skip's
    channels (1x1 conv-BN after bilinear, or a 4x4 transposed conv with bias, BN) and two 3x3 conv-BN on the concat.
    (The paper reports no count; its unpadded, BN-free variant with 2x2 up-convolutions differs.)"""
    widths = [base * 2**i for i in range(stages)]
    total, previous = 0, 3
    for width in widths:
        total += conv_params(previous, width, 3) + conv_params(width, width, 3) + 2 * norm_params(width)
        previous = width
    for deep, skip in zip(widths[1:], widths[:-1], strict=True):
        if upsample == "InterpConv":
            total += conv_params(deep, skip, 1) + norm_params(skip)
        else:
            total += conv_params(deep, skip, 4, bias=True) + norm_params(skip)
        total += conv_params(2 * skip, skip, 3) + conv_params(skip, skip, 3) + 2 * norm_params(skip)
    return total


@pytest.mark.parametrize("upsample_type", ["InterpConv", "DeconvModule"])
def test_default_unet_has_the_derived_parameter_count(upsample_type):
    with torch.device("meta"):
        model = unet(upsample_type=upsample_type)
    assert count_parameters(model) == expected_unet_parameters(upsample=upsample_type)
    assert expected_unet_parameters() == 28_949_568


def test_outputs_are_the_ssseg_outputs_by_increasing_stride():
    model = unet(base_channels=4)
    assert model.out_channels == [4, 8, 16, 32, 64] and model.strides == [1, 2, 4, 8, 16]
    assert [i["module"] for i in model.feature_info] == ["decoder.0", "decoder.1", "decoder.2", "decoder.3",
                                                         "encoder.4"]
    x = images(1, 32)
    outputs = model(x)
    deepest = x
    for stage in model.encoder:
        deepest = stage(deepest)
    assert torch.equal(outputs[-1], deepest)  # SSSegmentation's first output
    assert outputs[0].shape == (1, 4, 32, 32)


def test_key_layout_is_sssegmentations():
    keys = set(unet(base_channels=4).state_dict())
    assert {"encoder.0.0.convs.0.0.weight", "encoder.1.1.convs.1.1.running_mean",
            "decoder.0.upsample.interp_upsample.1.0.weight", "decoder.3.conv_block.convs.0.0.weight"} <= keys
    assert isinstance(unet(base_channels=4).encoder[1][0], nn.MaxPool2d)
    deconv = unet(base_channels=4, upsample_type="DeconvModule")
    assert "decoder.0.upsample.deconv_upsamping.0.bias" in deconv.state_dict()


def test_strided_convolutions_instead_of_pooling_and_a_stage_without_downsampling():
    model = unet(base_channels=4, num_stages=4, strides=(1, 2, 1, 2), enc_num_convs=(2, 2, 2, 2),
                 dec_num_convs=(2, 2, 2), downsamples=(False, False, False), enc_dilations=(1, 1, 2, 1),
                 dec_dilations=(1, 1, 1))
    assert model.strides == [1, 2, 2, 4]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert isinstance(model.decoder[1].upsample[0], nn.Conv2d)  # stage 2 keeps the resolution: a 1x1 conv only
    assert model.encoder[2][0].convs[1][0].dilation == (2, 2)
    outputs = model(images(1, 16))
    assert [o.shape[-1] for o in outputs] == [16, 8, 8, 4]


def test_input_not_divisible_by_the_total_stride_is_refused():
    with pytest.raises(ValueError, match="divisible by 16"):
        unet(base_channels=4)(images(1, 40))


def test_argument_lengths_are_checked():
    with pytest.raises(ArgumentError, match="dec_num_convs: needs 4 values"):
        unet(dec_num_convs=(2, 2))
