"""ResNet: SSSegmentation's parameter counts, dilation, torchvision/mmseg checkpoint layouts, options."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from segkit.errors import RecipeError
from segkit.models.backbones import ResNet
from segkit.models.backbones import resnet as resnet_module
from segkit.models.layers import ArgumentError

from .helpers import BN, count_parameters, images

STRIDES = {8: [4, 8, 8, 8], 16: [4, 8, 16, 16], 32: [4, 8, 16, 32]}


def slim(**kwargs) -> ResNet:
    base = {"base_channels": 8, "stem_channels": 8, "norm_cfg": BN, "pretrained": False}
    return ResNet(**{**base, **kwargs})


def test_resnet50_conv3x3stem_has_ssseg_parameter_count():
    with torch.device("meta"):
        model = ResNet(structure_type="resnet50conv3x3stem", outstride=8, norm_cfg=BN, pretrained=False)
    assert count_parameters(model) == 23_527_264
    assert model.out_channels == [256, 512, 1024, 2048] and model.strides == [4, 8, 8, 8]


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_depth_has_torchvision_layout(depth):
    """Same keys and shapes as torchvision's resnet<depth> (minus fc): the official weights load as they are."""
    with torch.device("meta"):
        ours = ResNet(structure_type=f"resnet{depth}", outstride=32, norm_cfg=BN, pretrained=False)
        reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    expected = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_depth_forward_matches_feature_info(depth):
    model = slim(depth=depth, outstride=8).eval()
    x = images(1, 32)
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == len(model.feature_info) == 4
    for output, info in zip(outputs, model.feature_info, strict=True):
        assert output.shape == (1, info["num_chs"], 32 // info["reduction"], 32 // info["reduction"])
    expansion = 4 if depth >= 50 else 1
    assert model.out_channels == [8 * expansion * 2**i for i in range(4)]


@pytest.mark.parametrize("outstride", [8, 16, 32])
def test_outstride_sets_strides(outstride):
    model = slim(depth=18, outstride=outstride)
    assert model.strides == STRIDES[outstride]
    outputs = model(images(1, 64))
    assert [64 // o.shape[-1] for o in outputs] == STRIDES[outstride]


def test_dilation_and_contract_dilation():
    model = slim(depth=50, outstride=8)
    assert [b.conv2.dilation[0] for b in model.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert model.layer3[0].conv2.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    plain = slim(depth=50, outstride=16, contract_dilation=False)
    assert [b.conv2.dilation[0] for b in plain.layer4] == [2, 2, 2]
    assert plain.layer3[0].conv2.stride == (2, 2)


def test_torchvision_weights_load_and_give_the_same_features():
    reference = torchvision.models.resnet50(weights=None).eval()
    ours = ResNet(structure_type="resnet50", outstride=32, norm_cfg=BN, pretrained=False).eval()
    result = ours.load_state_dict(reference.state_dict(), strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]
    x = images(1, 64)
    with torch.no_grad():
        trunk = nn.Sequential(*list(reference.children())[:-2])
        assert torch.allclose(ours(x)[-1], trunk(x), atol=1e-5)


def test_conv3x3_stem_uses_the_v1c_checkpoint_layout():
    with torch.device("meta"):
        model = ResNet(structure_type="resnet50conv3x3stem", norm_cfg=BN, pretrained=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["stem.0.weight"] == (32, 3, 3, 3) and shapes["stem.1.running_mean"] == (32,)
    assert shapes["stem.3.weight"] == (32, 32, 3, 3) and shapes["stem.4.weight"] == (32,)
    assert shapes["stem.6.weight"] == (64, 32, 3, 3) and shapes["stem.7.bias"] == (64,)
    assert "conv1.weight" not in shapes and shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)


def test_structure_type_implies_depth_and_stem():
    model = slim(structure_type="resnet34")
    assert model.depth == 34 and not model.use_conv3x3_stem and len(model.layer3) == 6
    assert slim(structure_type="resnet18conv3x3stem").use_conv3x3_stem
    default = slim()
    assert default.depth == 101 and default.use_conv3x3_stem


@pytest.mark.parametrize(("kwargs", "argument", "message"), [
    ({"structure_type": "resnet50", "depth": 101}, "depth", "depth=101 conflicts with structure_type 'resnet50'"),
    ({"structure_type": "resnet50", "use_conv3x3_stem": True}, "use_conv3x3_stem", "conflicts"),
    ({"structure_type": "resnet51"}, "structure_type", "unknown ResNet structure_type 'resnet51'"),
    ({"depth": 50, "outstride": 4}, "outstride", "unsupported outstride 4"),
    ({"depth": 50, "out_indices": (0, 4)}, "out_indices", "subset of 0..3"),
])
def test_conflicting_arguments_are_clear_errors(kwargs, argument, message):
    with pytest.raises(ArgumentError, match=message) as info:
        slim(**kwargs)
    assert info.value.argument == argument
    assert isinstance(info.value, RecipeError) and str(info.value.at("backbone")).startswith(f"backbone.{argument}:")


def test_pretrained_without_official_weights_is_a_clear_error(no_network):
    with pytest.raises(ArgumentError, match="no official weights for structure_type 'resnet152conv3x3stem'"):
        slim(structure_type="resnet152conv3x3stem", pretrained=True)


def test_url_table_covers_ssseg_structure_types():
    assert set(resnet_module.PRETRAINED_URLS) == {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "resnet18conv3x3stem", "resnet50conv3x3stem", "resnet101conv3x3stem"}
    assert resnet_module.PRETRAINED_URLS["resnet50conv3x3stem"].endswith("resnet50_v1c-2cccc1ad.pth")


def test_use_checkpoint_recomputes_blocks_with_identical_results(monkeypatch):
    calls = []
    real_checkpoint = resnet_module.checkpoint
    monkeypatch.setattr(resnet_module, "checkpoint", lambda *a, **k: calls.append(1) or real_checkpoint(*a, **k))
    torch.manual_seed(0)
    plain = slim(depth=18, outstride=16)
    checkpointed = slim(depth=18, outstride=16, use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = images(2, 32)
    grads = []
    for model in (plain, checkpointed):
        model.zero_grad()
        loss = sum(o.square().mean() for o in model(x))
        loss.backward()
        grads.append(model.layer1[0].conv1.weight.grad.clone())
    assert len(calls) == 8  # every block of the checkpointed model, none of the plain one
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_caffe_style_puts_the_stride_on_the_first_1x1():
    model = slim(depth=50, outstride=32, style="caffe")
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    assert model(images(1, 64))[-1].shape[-1] == 2


def test_avg_downsample_out_indices_and_in_channels():
    model = slim(depth=50, outstride=16, use_avg_for_downsample=True, out_indices=(1, 3), in_channels=4)
    assert isinstance(model.layer2[0].downsample[0], nn.AvgPool2d)
    assert [info["module"] for info in model.feature_info] == ["layer2", "layer4"]
    outputs = model(images(1, 64, channels=4))
    assert [o.shape[1] for o in outputs] == model.out_channels == [64, 256]
    assert [64 // o.shape[-1] for o in outputs] == model.strides == [8, 16]


def test_official_v1c_checkpoint_layout_loads_without_missing_or_unexpected_keys():
    """openmmlab's resnet50_v1c checkpoint: a 3-conv stem (stem.0/1, 3/4, 6/7) and torchvision's layer names."""
    import torchvision

    reference = torchvision.models.resnet50(weights=None).state_dict()
    official = {k: v for k, v in reference.items() if not k.startswith(("conv1.", "bn1.", "fc."))}
    for conv, norm, (cin, cout) in (("stem.0", "stem.1", (3, 32)), ("stem.3", "stem.4", (32, 32)),
                                    ("stem.6", "stem.7", (32, 64))):
        official[f"{conv}.weight"] = torch.randn(cout, cin, 3, 3)
        for name in ("weight", "bias", "running_mean", "running_var"):
            official[f"{norm}.{name}"] = torch.randn(cout)
        official[f"{norm}.num_batches_tracked"] = torch.tensor(0)
    backbone = ResNet(structure_type="resnet50conv3x3stem", outstride=8, pretrained=False,
                      norm_cfg={"type": "BatchNorm2d"})
    result = backbone.load_state_dict(official, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
