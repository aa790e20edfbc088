"""Fast-SCNN: size from the layer table (Poudel et al. 2019, mmseg layout), output order, options, key layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.models.backbones.fastscnn import FastSCNN
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params

SMALL = {"downsample_dw_channels": (8, 8), "global_in_channels": 16, "global_block_channels": (16, 16, 32),
         "global_out_channels": 32, "higher_in_channels": 16, "lower_in_channels": 32, "fusion_out_channels": 32}


def fastscnn(**kwargs) -> FastSCNN:
    return FastSCNN(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def inverted_residual(i: int, o: int, expand: int = 6) -> int:
    hidden = i * expand
    return (conv_params(i, hidden) + conv_params(hidden, hidden, 3, groups=hidden) + conv_params(hidden, o)
            + 2 * norm_params(hidden) + norm_params(o))


def expected_fastscnn_parameters() -> int:
    """The paper's Table 1 (conv 32, DSConv 48, 64; bottlenecks 64/96/128 x 3 with t=6; PPM; fusion 128) with
    mmseg's choices: a 3x3 conv after the pyramid pooling, BN everywhere, no biases. The paper's 1.11 M is for its
    whole network (classifier included, a lighter pooling module) and is not this layout's figure."""
    learning_to_downsample = (conv_params(3, 32, 3) + norm_params(32)
                              + conv_params(32, 32, 3, groups=32) + norm_params(32) + conv_params(32, 48) + norm_params(48)
                              + conv_params(48, 48, 3, groups=48) + norm_params(48) + conv_params(48, 64) + norm_params(64))
    bottlenecks = (3 * inverted_residual(64, 64) + inverted_residual(64, 96) + 2 * inverted_residual(96, 96)
                   + inverted_residual(96, 128) + 2 * inverted_residual(128, 128))
    pyramid = 4 * (conv_params(128, 32) + norm_params(32)) + conv_params(256, 128, 3) + norm_params(128)
    fusion = (conv_params(128, 128, 3, groups=128) + conv_params(128, 128) + conv_params(64, 128)
              + 3 * norm_params(128))
    return learning_to_downsample + bottlenecks + pyramid + fusion


def test_default_size_matches_the_layer_table():
    assert count_parameters(fastscnn()) == expected_fastscnn_parameters() == 1_361_392


def test_outputs_come_by_stride_with_ssseg_numbering_in_out_indices():
    model = fastscnn(**SMALL).eval()
    assert [i["module"] for i in model.feature_info] == ["learning_to_downsample", "feature_fusion",
                                                         "global_feature_extractor"]
    assert model.strides == [8, 8, 32] and model.out_channels == [16, 32, 32]
    x = images(2, 64)
    with torch.no_grad():
        outputs = model(x)
        fused_only = fastscnn(**SMALL, out_indices=(2,)).eval()
        fused_only.load_state_dict(model.state_dict())
        assert torch.equal(fused_only(x)[0], outputs[1])  # SSSegmentation's output 2 (the head's input)
    assert [tuple(o.shape[1:]) for o in outputs] == [(16, 8, 8), (32, 8, 8), (32, 2, 2)]


def test_key_layout_is_sssegmentations():
    keys = set(fastscnn(**SMALL).state_dict())
    assert {"learning_to_downsample.conv.0.weight", "learning_to_downsample.dsconv1.depthwise_bn.weight",
            "learning_to_downsample.dsconv2.pointwise_conv.weight",
            "global_feature_extractor.bottleneck1.0.conv.0.conv.weight",
            "global_feature_extractor.bottleneck3.2.conv.2.bn.running_mean",
            "global_feature_extractor.ppm.3.1.weight", "global_feature_extractor.out.1.weight",
            "feature_fusion.dwconv.0.weight", "feature_fusion.conv_lower_res.1.weight",
            "feature_fusion.conv_higher_res.0.weight"} <= keys


def test_depthwise_activation_follows_dw_act_cfg():
    default = fastscnn(**SMALL)
    assert isinstance(default.learning_to_downsample.dsconv1.depthwise_activate, nn.ReLU)
    none = fastscnn(**SMALL, dw_act_cfg=None)
    assert isinstance(none.learning_to_downsample.dsconv1.depthwise_activate, nn.Identity)
    assert isinstance(none.learning_to_downsample.dsconv1.pointwise_activate, nn.ReLU)


def test_bottleneck_strides_set_the_low_resolution_stride():
    model = fastscnn(**SMALL, global_block_strides=(2, 1, 1))
    assert model.strides == [8, 8, 16]
    assert [o.shape[-1] for o in model(images(2, 64))] == [8, 8, 4]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"higher_in_channels": 32}, "higher_in_channels"),
    ({"lower_in_channels": 64}, "lower_in_channels"),
    ({"out_indices": (0, 3)}, "out_indices"),
])
def test_inconsistent_arguments_are_clear_errors(kwargs, argument):
    with pytest.raises(ArgumentError) as info:
        fastscnn(**{**SMALL, **kwargs})
    assert info.value.argument == argument
