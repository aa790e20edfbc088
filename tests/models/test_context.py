"""CCNet, PSANet, EMANet, ENCNet, CE2P and ISNet: SSSegmentation default-config parameter counts, the pure-PyTorch
ops against naive loop references (values and gradients), EMANet's bases across 2 processes, and behaviour.

SSSegmentation's counts were read from its own modules (``/work/ssseg`` on ``sys.path``, non-torch imports stubbed,
``pretrained=False``, ``TRAIN`` mode so the auxiliary decoder is built); CCNet and PSANet need mmcv there, so their
counts are SSSeg's modules with mmcv's criss-cross attention counted by formula (PSAMask has no parameters).
"""

from __future__ import annotations

import torch

from segkit.models import build_segmentor
from segkit.models.layers.criss_cross import CrissCrossAttention

from .helpers import count_parameters, make_recipe

R101 = {"type": "ResNet", "structure_type": "resnet101conv3x3stem", "pretrained": False, "outstride": 8}
SYNC = {"type": "SyncBatchNorm"}


def _on_meta(**fields):
    with torch.device("meta"):
        return build_segmentor(make_recipe(norm_cfg=dict(SYNC), **fields), pretrained=False)


def _head_and_aux(segmentor) -> int:
    aux = count_parameters(segmentor.aux_heads) if segmentor.aux_heads is not None else 0
    return count_parameters(segmentor.head) + aux


def _grads(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.grad.clone() for t in tensors]


# ----------------------------------------------------------------------------------------------- CCNet


def naive_criss_cross(x, query, key, value, gamma):
    """The criss-cross attention written out position by position (mmcv's definition)."""
    _, _, height, width = x.shape
    out = torch.zeros_like(x)
    for b in range(x.size(0)):
        for h in range(height):
            for w in range(width):
                q = query[b, :, h, w]
                column = [(q * key[b, :, i, w]).sum() for i in range(height) if i != h]
                row = [(q * key[b, :, h, j]).sum() for j in range(width)]
                weights = torch.softmax(torch.stack(column + row), dim=0)
                values = [value[b, :, i, w] for i in range(height) if i != h] + [value[b, :, h, j] for j in range(width)]
                out[b, :, h, w] = (weights.unsqueeze(1) * torch.stack(values)).sum(0)
    return gamma * out + x


def test_criss_cross_attention_matches_a_loop_reference_values_and_gradients():
    torch.manual_seed(0)
    cca = CrissCrossAttention(16).double()
    torch.nn.init.constant_(cca.gamma.scale, 0.7)  # 0 at init would hide the attention
    x = torch.randn(2, 16, 5, 4, dtype=torch.double, requires_grad=True)
    out = cca(x)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = naive_criss_cross(x_ref, cca.query_conv(x_ref), cca.key_conv(x_ref), cca.value_conv(x_ref), cca.gamma.scale)
    assert (out - ref).abs().max() < 1e-12
    weight = torch.randn_like(out)
    cca.zero_grad()
    (out * weight).sum().backward()
    fast = _grads(x, *cca.parameters())
    cca.zero_grad()
    (ref * weight).sum().backward()
    slow = _grads(x_ref, *cca.parameters())
    assert max((a - b).abs().max().item() for a, b in zip(fast, slow, strict=True)) < 1e-12


def test_criss_cross_attention_has_mmcv_parameter_names_and_starts_as_identity():
    cca = CrissCrossAttention(64)
    assert [n for n, _ in cca.named_parameters()] == [
        "query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias", "value_conv.weight",
        "value_conv.bias", "gamma.scale",
    ]
    assert cca.query_conv.out_channels == 8 and cca.gamma.scale.dim() == 0
    x = torch.randn(1, 64, 6, 7)
    assert torch.equal(cca(x), x)  # gamma = 0


def test_ccnet_default_parameter_count_matches_ssseg():
    # SSSeg CCNET_SEGMENTOR_CFG (num_classes 150): conv_before_cca 9,438,208 + cca 328,321 + conv_after_cca
    # 2,360,320 + decoder 11,874,454 = 24,001,303; auxiliary_decoder 4,796,566; total 71,317,261 with the
    # ResNet-101 (42,519,392). cca by formula: 2 * (512 * 64 + 64) + 512 * 512 + 512 + 1.
    segmentor = _on_meta(type="CCNet", num_classes=150, backbone={**R101, "selected_indices": [2, 3]},
                         head={"feats_channels": 512, "num_recurrence": 2, "dropout": 0.1},
                         auxiliary={"out_channels": 512, "dropout": 0.1})
    assert count_parameters(segmentor.head.cca) == 328_321
    assert count_parameters(segmentor.head) == 24_001_303
    assert _head_and_aux(segmentor) == 24_001_303 + 4_796_566
    assert count_parameters(segmentor) == 71_317_261


def test_ccnet_recurrence_reuses_one_attention():
    torch.manual_seed(0)
    recipe = make_recipe(type="CCNet", head={"feats_channels": 16, "num_recurrence": 3, "dropout": 0.0})
    segmentor = build_segmentor(recipe, pretrained=False).eval()
    calls = []
    segmentor.head.cca.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        segmentor(torch.randn(1, 3, 64, 64))
    assert len(calls) == 3
    assert sum(isinstance(m, CrissCrossAttention) for m in segmentor.modules()) == 1
