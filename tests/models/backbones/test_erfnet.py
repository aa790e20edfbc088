"""ERFNet: size against the original network (Romera et al. 2017), layout, dilations, odd input sizes."""

from __future__ import annotations

import pytest
import torch

from segkit.models.backbones.erfnet import ERFNet
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params

PRELU = {"type": "PReLU"}


def erfnet(**kwargs) -> ERFNet:
    return ERFNet(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def original_erfnet_parameters() -> int:
    """The original ERFNet (eromera/erfnet_pytorch) without its output deconvolution, from its layer table:
    downsamplers 3->16->64->128 (3x3/2 conv with bias + BN), 5 + 8 non-bottleneck-1D blocks (two 3x1/1x3 conv pairs
    with bias, BN after each pair), upsamplers 128->64->16 (3x3/2 transposed conv with bias + BN), 2 + 2 blocks."""

    def downsampler(i: int, o: int) -> int:
        return conv_params(i, o - i, 3, bias=True) + norm_params(o)

    def non_bottleneck(c: int) -> int:
        return 4 * (3 * c * c + c) + 2 * norm_params(c)

    def upsampler(i: int, o: int) -> int:
        return conv_params(i, o, 3, bias=True) + norm_params(o)

    encoder = downsampler(3, 16) + downsampler(16, 64) + 5 * non_bottleneck(64) + downsampler(64, 128)
    encoder += 8 * non_bottleneck(128)
    decoder = upsampler(128, 64) + 2 * non_bottleneck(64) + upsampler(64, 16) + 2 * non_bottleneck(16)
    return encoder + decoder


def test_size_is_the_original_network_in_sssegmentations_layout():
    assert original_erfnet_parameters() == 2_062_956  # + the 16->19 output deconvolution: 2.06 M in all
    downsampler_biases = 13 + 48 + 64  # SSSegmentation's downsampler convolutions have no bias
    with torch.device("meta"):
        relu = erfnet()
        prelu = erfnet(act_cfg=PRELU)
    assert count_parameters(relu) == original_erfnet_parameters() - downsampler_biases
    assert count_parameters(relu) == 2_062_831  # SSSegmentation 1.7.0's fcn_erfnet_cityscapes backbone (ReLU)
    prelu_slopes = 3 + 13 + 2 + 4  # one shared slope per downsampler, block and upsampler
    assert count_parameters(prelu) == count_parameters(relu) + prelu_slopes


def test_one_stride_2_output_of_the_last_decoder_width():
    model = erfnet()
    assert model.feature_info == [{"num_chs": 16, "reduction": 2, "module": "decoder.5"}]
    outputs = model.eval()(images(1, 64))
    assert len(outputs) == 1 and outputs[0].shape == (1, 16, 32, 32)


def test_default_activation_is_sssegmentations_relu():
    model = erfnet()
    assert isinstance(model.encoder[0].act, torch.nn.ReLU) and isinstance(model.encoder[2].act, torch.nn.ReLU)
    assert isinstance(erfnet(act_cfg=PRELU).encoder[2].act, torch.nn.PReLU)


def test_last_encoder_stage_cycles_through_the_dilations():
    model = erfnet()
    blocks = list(model.encoder)[-8:]
    assert [b.convs_layers[5].dilation for b in blocks] == [(d, 1) for d in (2, 4, 8, 16) * 2]
    assert [b.convs_layers[7].padding for b in blocks] == [(0, d) for d in (2, 4, 8, 16) * 2]
    assert all(b.convs_layers[9].p == 0.1 for b in blocks)
    assert model.decoder[1].convs_layers[9].p == 0.0


def test_key_layout_is_sssegmentations_with_a_shared_activation():
    model = erfnet(act_cfg=PRELU)
    keys = set(model.state_dict())
    assert {"encoder.0.conv.weight", "encoder.0.bn.running_mean", "encoder.2.convs_layers.0.bias",
            "encoder.2.convs_layers.8.weight", "decoder.0.conv.weight", "decoder.1.convs_layers.3.weight"} <= keys
    block = model.encoder[2]
    assert block.convs_layers[1] is block.act and block.convs_layers[4] is block.act
    assert block.convs_layers[6] is block.act


def test_odd_input_sizes_work():
    small = erfnet(enc_downsample_channels=(4, 8, 16), enc_stage_non_bottlenecks=(1, 4),
                   enc_non_bottleneck_channels=(8, 16), dec_upsample_channels=(8, 4),
                   dec_stages_non_bottleneck=(1, 1), dec_non_bottleneck_channels=(8, 4))
    assert small(images(2, 35))[0].shape == (2, 4, 20, 20)  # 35 -> 18 -> 9 -> 5, then 10 -> 20


def test_inconsistent_lengths_are_clear_errors():
    with pytest.raises(ArgumentError, match="dec_stages_non_bottleneck: needs 2 values"):
        erfnet(dec_stages_non_bottleneck=(2,))
    with pytest.raises(ArgumentError, match="must be a multiple of the number of enc_non_bottleneck_dilations"):
        erfnet(enc_stage_non_bottlenecks=(5, 6))
