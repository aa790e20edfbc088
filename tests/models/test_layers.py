"""Norm/activation registries and factories, the custom layers, ConvNormAct."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit import ACTIVATIONS, NORMS
from segkit.errors import RecipeError
from segkit.models.layers import GRN, ConvNormAct, LayerNorm2d, build_act, build_norm, is_norm

SSSEG_NORMS = {"LayerNorm", "LayerNorm2d", "GroupNorm", "LocalResponseNorm", "BatchNorm1d", "BatchNorm2d",
               "BatchNorm3d", "SyncBatchNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GRN"}
SSSEG_ACTIVATIONS = {"ReLU", "GELU", "ReLU6", "PReLU", "Sigmoid", "HardSwish", "LeakyReLU", "HardSigmoid", "Swish",
                     "ELU", "Hardshrink", "Hardtanh", "LogSigmoid", "RReLU", "SELU", "CELU", "SiLU", "GLU", "Mish",
                     "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold"}

NORM_EXTRA = {"GroupNorm": {"num_groups": 2}}
ACT_EXTRA = {"Threshold": {"threshold": 0.1, "value": 0.0}}


def _norm_input(name: str) -> torch.Tensor:
    torch.manual_seed(0)
    if name.endswith("1d"):
        return torch.randn(2, 8, 5)
    if name.endswith("3d"):
        return torch.randn(2, 8, 3, 3, 3)
    if name in ("LayerNorm", "GRN"):  # channels-last
        return torch.randn(2, 4, 4, 8)
    return torch.randn(2, 8, 4, 4)


def test_registries_hold_ssseg_members():
    assert SSSEG_NORMS <= set(NORMS.names())
    assert SSSEG_ACTIVATIONS <= set(ACTIVATIONS.names())
    assert {n for n in NORMS.names() if n.startswith("Lazy")} == {n for n in dir(nn) if n.startswith("Lazy")
                                                                  and "Norm" in n}


@pytest.mark.parametrize("name", NORMS.names())
def test_every_norm_builds_for_the_channel_count(name):
    layer = build_norm({"type": name, **NORM_EXTRA.get(name, {})}, 8)
    x = _norm_input(name)
    y = layer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    params = {tuple(p.shape) for p in layer.parameters()}
    if name not in ("LocalResponseNorm",) and not name.startswith(("InstanceNorm", "LazyInstance")):
        assert params == {(8,)}, f"{name} was not built for 8 channels: {params}"
    assert is_norm(layer)


def test_batch_norm_normalises_in_training():
    layer = build_norm({"type": "BatchNorm2d", "momentum": 0.5}, 8)
    assert layer.momentum == 0.5
    y = layer(torch.randn(4, 8, 6, 6) * 3 + 2)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)


def test_sync_batch_norm_builds_plain_batch_norm():
    layer = build_norm({"type": "SyncBatchNorm", "eps": 1e-3}, 16)
    assert type(layer) is nn.BatchNorm2d and layer.eps == 1e-3 and layer.num_features == 16
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(layer))
    assert isinstance(converted[0], nn.SyncBatchNorm)


def test_none_gives_identity():
    assert isinstance(build_norm(None, 8), nn.Identity)
    assert isinstance(build_act(None), nn.Identity)


def test_norm_cfg_typo_names_its_path_and_a_suggestion():
    with pytest.raises(RecipeError, match=r"backbone\.norm_cfg\.momentun: .*did you mean 'momentum'"):
        build_norm({"type": "BatchNorm2d", "momentun": 0.1}, 8, path="backbone.norm_cfg")


def test_norm_cfg_errors():
    with pytest.raises(RecipeError, match=r"norm_cfg\.type: unknown norm 'BatchNorm'.*did you mean"):
        build_norm({"type": "BatchNorm"}, 8)
    with pytest.raises(RecipeError, match=r"norm_cfg\.num_groups: GroupNorm needs 'num_groups'"):
        build_norm({"type": "GroupNorm"}, 8)
    with pytest.raises(RecipeError, match=r"norm_cfg\.num_features: the channel count is set by the layer"):
        build_norm({"type": "BatchNorm2d", "num_features": 3}, 8)
    with pytest.raises(RecipeError, match=r"norm_cfg\.eps: .*BatchNorm2d expects float"):
        build_norm({"type": "BatchNorm2d", "eps": "small"}, 8)
    with pytest.raises(RecipeError, match=r"act_cfg\.inplce: ReLU takes no 'inplce'; did you mean 'inplace'"):
        build_act({"type": "ReLU", "inplce": True})


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_builds_and_runs(name):
    act = build_act({"type": name, **ACT_EXTRA.get(name, {})})
    x = torch.linspace(-4, 4, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    y = act(x.clone())
    expected_shape = (2, 3, 4, 2) if name == "GLU" else x.shape
    assert y.shape == expected_shape and torch.isfinite(y).all()


def test_activation_semantics():
    x = torch.linspace(-5, 5, 101)
    assert torch.allclose(build_act({"type": "Swish"})(x), x * torch.sigmoid(x))
    assert torch.allclose(build_act({"type": "HardSwish"})(x), x * F.relu6(x + 3) / 6)
    assert torch.allclose(build_act({"type": "HardSigmoid"})(x), ((x + 1) / 2).clamp(0, 1))
    mobilenet = build_act({"type": "HardSigmoid", "bias": 3.0, "divisor": 6.0})
    assert torch.allclose(mobilenet(x), F.relu6(x + 3) / 6)
    assert build_act({"type": "LeakyReLU", "negative_slope": 0.01})(torch.tensor([-1.0])).item() == pytest.approx(-0.01)


def test_layer_norm_2d_normalises_channels_of_nchw():
    layer = LayerNorm2d(8)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 8, 5, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (8,), layer.weight, layer.bias, layer.eps).permute(0, 3, 1, 2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_grn_matches_the_paper_on_channels_last_input():
    grn = GRN(8)
    nn.init.normal_(grn.gamma)
    nn.init.normal_(grn.beta)
    x = torch.randn(2, 5, 5, 8)  # NHWC, as ConvNeXt-V2 blocks pass it
    gx = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    assert torch.allclose(grn(x), grn.gamma * (x * nx) + grn.beta + x, atol=1e-5)
    first = GRN(8, data_format="channels_first")
    first.load_state_dict(grn.state_dict())
    assert torch.allclose(first(x.permute(0, 3, 1, 2)), grn(x).permute(0, 3, 1, 2), atol=1e-5)


def test_conv_norm_act_block():
    block = ConvNormAct(4, 6, 3, dilation=2, norm_cfg={"type": "BatchNorm2d"}, act_cfg={"type": "ReLU"})
    assert [name for name, _ in block.named_children()] == ["conv", "norm", "act"]
    assert block.conv.bias is None and block.conv.padding == (2, 2)
    y = block(torch.randn(1, 4, 9, 9))
    assert y.shape == (1, 6, 9, 9) and (y >= 0).all()
    plain = ConvNormAct(4, 6, 1, bias=True)
    assert isinstance(plain.norm, nn.Identity) and isinstance(plain.act, nn.Identity) and plain.conv.bias is not None
