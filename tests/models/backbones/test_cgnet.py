"""CGNet: M3N21 size (Wu et al. 2018), outputs, PReLU slopes per channel, SSSegmentation's key layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.models.backbones.cgnet import CGNet
from segkit.models.layers import ArgumentError

from ..helpers import BN, count_parameters, images
from .test_realtime import conv_params, norm_params


def cgnet(**kwargs) -> CGNet:
    return CGNet(**{"norm_cfg": BN, "pretrained": False, **kwargs})


def context_guided_block(in_channels: int, out_channels: int, reduction: int, downsample: bool) -> int:
    """Input conv-BN-PReLU, local and surrounding 3x3 depth-wise convs, BN+PReLU on both, (1x1 bottleneck), SE."""
    channels = out_channels if downsample else out_channels // 2
    total = conv_params(in_channels, channels, 3 if downsample else 1) + norm_params(channels) + channels
    total += 2 * conv_params(channels, channels, 3, groups=channels) + norm_params(2 * channels) + 2 * channels
    if downsample:
        total += conv_params(2 * channels, out_channels, 1)
    squeezed = out_channels // reduction
    return total + out_channels * squeezed + squeezed + squeezed * out_channels + out_channels


def expected_cgnet_parameters() -> int:
    """CGNet-M3N21 from the paper's layer table: stem 3x(3x3 conv-BN-PReLU), 3 + 21 context guided blocks."""
    stem = conv_params(3, 32, 3) + 2 * conv_params(32, 32, 3) + 3 * (norm_params(32) + 32)
    level1 = context_guided_block(35, 64, 8, True) + 2 * context_guided_block(64, 64, 8, False)
    level2 = context_guided_block(131, 128, 16, True) + 20 * context_guided_block(128, 128, 16, False)
    norm_prelus = sum(norm_params(c) + c for c in (35, 131, 256))
    return stem + level1 + level2 + norm_prelus


def test_m3n21_has_the_derived_size_and_the_papers_half_million_parameters():
    model = cgnet()
    assert count_parameters(model) == expected_cgnet_parameters() == 491_442
    # Wu et al. 2018: CGNet_M3N21 has 0.5 M parameters, with its 1x1 classifier (256 -> 19 Cityscapes classes)
    assert round((count_parameters(model) + conv_params(256, 19, 1)) / 1e6, 1) == 0.5


def test_three_outputs_at_strides_2_4_8():
    model = cgnet().eval()
    assert model.out_channels == [35, 131, 256] and model.strides == [2, 4, 8]
    with torch.no_grad():
        outputs = model(images(1, 64))
    assert [tuple(o.shape[1:]) for o in outputs] == [(35, 32, 32), (131, 16, 16), (256, 8, 8)]


def test_prelu_gets_one_slope_per_channel_and_other_activations_work():
    model = cgnet(num_channels=(8, 16, 32), num_blocks=(2, 2))
    assert model.stem[0][2].num_parameters == 8
    assert model.level1[0].conv1x1[2].num_parameters == 16  # downsampling block: out channels
    assert model.level1[1].conv1x1[2].num_parameters == 8  # regular block: half of them
    relu = cgnet(num_channels=(8, 16, 32), num_blocks=(1, 1), act_cfg={"type": "ReLU", "inplace": True})
    assert isinstance(relu.stem[0][2], nn.ReLU) and isinstance(relu.norm_prelu_0[1], nn.PReLU)
    assert relu(images(2, 32))[-1].shape == (2, 64, 4, 4)


def test_key_layout_is_sssegmentations():
    keys = set(cgnet(num_channels=(8, 16, 32), num_blocks=(2, 2)).state_dict())
    assert {"stem.0.0.weight", "stem.2.1.running_var", "norm_prelu_0.0.weight", "norm_prelu_0.1.weight",
            "level1.0.conv1x1.0.weight", "level1.0.bottleneck.weight", "level1.1.f_loc.weight",
            "level1.1.f_sur.weight", "level2.1.f_glo.fc.2.weight", "norm_prelu_2.1.weight"} <= keys
    assert "level1.1.bottleneck.weight" not in keys


def test_regular_blocks_are_residual_and_dilated():
    model = cgnet(num_channels=(8, 16, 32), num_blocks=(2, 2), dilations=(3, 5))
    assert model.level1[1].f_sur.dilation == (3, 3) and model.level2[1].f_sur.dilation == (5, 5)
    block = model.level1[1].eval()
    x = images(1, 8, channels=16)
    with torch.no_grad():
        nn.init.zeros_(block.f_glo.fc[2].weight)
        nn.init.constant_(block.f_glo.fc[2].bias, -100.0)  # the SE gate closes: only the residual remains
        assert torch.allclose(block(x), x, atol=1e-6)


def test_a_reduction_larger_than_the_channels_is_refused():
    with pytest.raises(ArgumentError, match="reductions: a reduction must lie in 1..16"):
        cgnet(num_channels=(8, 16, 32), num_blocks=(1, 1), reductions=(32, 8))
