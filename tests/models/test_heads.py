"""FCNHead and AuxiliaryHead: SSSegmentation's structure, parameter counts and options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit import HEADS
from segkit.models.heads import AuxiliaryHead, FCNHead
from segkit.models.layers import ArgumentError, ConvNormAct

from .helpers import BN, count_parameters


def test_heads_are_registered():
    assert HEADS.get("FCNHead") is FCNHead and HEADS.get("AuxiliaryHead") is AuxiliaryHead


def test_fcn_head_structure_and_parameter_count():
    head = FCNHead(in_channels=2048, num_classes=21, feats_channels=512, dropout=0.1, norm_cfg=BN)
    assert count_parameters(head) == 11_809_301
    assert len(head.convs) == 2 and all(isinstance(c, ConvNormAct) for c in head.convs)
    assert head.convs[0].conv.kernel_size == (3, 3) and head.convs[0].conv.bias is None
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1
    assert head.classifier.in_channels == 512 and head.classifier.kernel_size == (1, 1)


def test_fcn_head_uses_the_last_feature_at_its_resolution():
    head = FCNHead(in_channels=8, num_classes=3, feats_channels=4, norm_cfg=BN).eval()
    last = torch.randn(2, 8, 5, 6)
    out = head([torch.randn(2, 4, 10, 12), last])
    assert out.shape == (2, 3, 5, 6)
    assert torch.equal(out, head([torch.zeros(2, 4, 10, 12), last]))


def test_fcn_head_without_convs_and_with_concat_input():
    bare = FCNHead(in_channels=8, num_classes=3, num_convs=0, norm_cfg=BN)
    assert len(bare.convs) == 0 and bare.classifier.in_channels == 8
    assert bare([torch.randn(1, 8, 4, 4)]).shape == (1, 3, 4, 4)
    concat = FCNHead(in_channels=8, num_classes=3, feats_channels=4, num_convs=1, concat_input=True, norm_cfg=BN)
    assert concat.conv_cat.conv.in_channels == 12
    assert concat([torch.randn(1, 8, 4, 4)]).shape == (1, 3, 4, 4)
    with pytest.raises(ArgumentError, match="concat_input"):
        FCNHead(in_channels=8, num_classes=3, num_convs=0, concat_input=True)


def test_auxiliary_head_matches_ssseg_default_decoder():
    head = AuxiliaryHead(in_channels=1024, num_classes=21, out_channels=512, dropout=0.1, norm_cfg=BN)
    assert count_parameters(head) == 4_730_389
    assert len(head.convs) == 1 and head.dropout.p == 0.1


def test_auxiliary_head_upsample_and_no_convs():
    head = AuxiliaryHead(in_channels=8, num_classes=3, out_channels=4, num_convs=2, norm_cfg=BN,
                         upsample={"scale_factor": 2, "mode": "bilinear", "align_corners": False})
    feature = torch.randn(1, 8, 4, 4)
    assert head([feature, torch.randn(1, 16, 2, 2)]).shape == (1, 3, 16, 16)  # reads in_index -2 by default
    bare = AuxiliaryHead(in_channels=8, num_classes=3, num_convs=0, in_index=0)
    assert bare.classifier.in_channels == 8 and bare([feature]).shape == (1, 3, 4, 4)
