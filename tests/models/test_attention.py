"""The attention / context family: SelfAttentionBlock, Scale, NonLocal2d and the segmentors built on them (OCRNet,
DANet, NonLocalNet, DNLNet, GCNet, ISANet, ANNNet).

SSSegmentation parameter counts below were obtained by building SSSegmentation 1.7.0's own modules
(``ssseg.modules.BuildSegmentor`` on the named config, ``pretrained=False``, mode TRAIN) and summing
``parameters()``; they are hard-coded so that these tests do not need SSSegmentation.
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.models.layers.scale import Scale
from segkit.models.layers.self_attention import SelfAttentionBlock

from .helpers import BN, count_parameters

RELU = {"type": "ReLU", "inplace": True}


def _block(**flags) -> SelfAttentionBlock:
    args = {"key_in_channels": 12, "query_in_channels": 12, "transform_channels": 8, "out_channels": 10,
            "query_downsample": None, "key_downsample": None, "norm_cfg": BN, "act_cfg": RELU}
    return SelfAttentionBlock(**{**args, **flags})


OCR_FLAGS = {"share_key_query": False, "key_query_num_convs": 2, "value_out_num_convs": 1, "key_query_norm": True,
             "value_out_norm": True, "matmul_norm": True, "with_out_project": True}
PAM_FLAGS = {"share_key_query": False, "key_query_num_convs": 1, "value_out_num_convs": 1, "key_query_norm": False,
             "value_out_norm": False, "matmul_norm": False, "with_out_project": False}
APN_FLAGS = {"share_key_query": True, "key_query_num_convs": 1, "value_out_num_convs": 1, "key_query_norm": True,
             "value_out_norm": False, "matmul_norm": True, "with_out_project": True}


# ----------------------------------------------------------------------------------------------- layers


def test_self_attention_block_parameters_and_layout_match_ssseg():
    # SSSeg's SelfAttentionBlock(12, 12, 8, 10, ...) with each flag set: 596 (OCR's), 312 (PAM's), 288 (APNB's)
    ocr, pam, apn = _block(**OCR_FLAGS), _block(**PAM_FLAGS, norm_cfg=None, act_cfg=None), _block(**APN_FLAGS)
    assert (count_parameters(ocr), count_parameters(pam), count_parameters(apn)) == (596, 312, 288)
    assert len(ocr.state_dict()) == 36  # as SSSeg: key/query 2x(conv, BN), value and out (conv, BN)
    assert list(pam.state_dict()) == ["key_project.weight", "query_project.weight", "value_project.weight"]
    # shared key/query: one module under both names (both in the state dict, counted once)
    assert apn.query_project is apn.key_project
    assert [k.split(".")[0] for k in apn.state_dict()].count("query_project") == 6


def test_self_attention_block_computes_scaled_dot_product_attention():
    torch.manual_seed(0)
    block = _block(**{**PAM_FLAGS, "matmul_norm": True, "with_out_project": True}).eval()
    query, key = torch.randn(2, 12, 5, 6), torch.randn(2, 12, 4, 3)
    q = block.query_project(query).flatten(2)
    k = block.key_project(key).flatten(2)
    v = block.value_project(key).flatten(2)
    weights = torch.einsum("bcn,bcm->bnm", q, k).mul(8 ** -0.5).softmax(-1)
    expected = block.out_project(torch.einsum("bnm,bcm->bcn", weights, v).reshape(2, 8, 5, 6))
    torch.testing.assert_close(block(query, key), expected)


def test_self_attention_block_downsamples_queries_and_pooled_keys():
    class Flatten(nn.Module):  # keys already flattened by the downsample (ANNNet's pyramid pooling)
        def forward(self, x):
            return torch.cat([nn.functional.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 2)], dim=2)

    block = _block(**{**OCR_FLAGS, "query_downsample": nn.MaxPool2d(2), "key_downsample": Flatten()})
    out = block(torch.randn(2, 12, 8, 6), torch.randn(2, 12, 7, 7))
    assert out.shape == (2, 10, 4, 3)


def test_scale_is_a_learnable_scalar():
    scale = Scale(0)
    assert list(dict(scale.named_parameters())) == ["scale"] and scale.scale.shape == ()
    x = torch.randn(2, 3)
    assert torch.equal(scale(x), torch.zeros_like(x))
    scale = Scale(2.5)
    scale(x).sum().backward()
    torch.testing.assert_close(scale.scale.grad, x.sum())
