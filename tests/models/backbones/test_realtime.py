"""The hand-written realtime and Segformer backbones together: default architectures forward as declared, the small
configurations (small_configs/realtime.toml) learn, and every one follows SSSegmentation's pretrained contract."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import tomllib
import torch
import torch.nn.functional as F
from torch import nn

from segkit import BACKBONES
from segkit.errors import DownloadError
from segkit.models import build_segmentor
from segkit.models.layers import ArgumentError

from ..helpers import BN, images, make_recipe

SMALL: dict[str, dict] = tomllib.loads((Path(__file__).parents[1] / "small_configs" / "realtime.toml").read_text())
R18_V1C = {"type": "ResNet", "structure_type": "resnet18conv3x3stem", "outstride": 32, "pretrained": False}
DEFAULTS: dict[str, dict] = {
    "UNet": {}, "CGNet": {}, "ERFNet": {}, "FastSCNN": {}, "BiSeNetV1": {"backbone_cfg": R18_V1C}, "BiSeNetV2": {},
    "MixVisionTransformer": {"structure_type": "mit-b0", "norm_cfg": {"type": "LayerNorm", "eps": 1e-6}},
}
"""SSSegmentation's default architecture of each backbone (BatchNorm2d instead of SyncBatchNorm, no weights)."""


def conv_params(in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1, bias: bool = False) -> int:
    """Parameters of a Conv2d (for the hand-derived parameter counts of the backbone tests)."""
    return in_channels // groups * out_channels * kernel_size**2 + (out_channels if bias else 0)


def norm_params(channels: int) -> int:
    """Parameters of a BatchNorm (weight and bias)."""
    return 2 * channels


def build(name: str, **kwargs) -> nn.Module:
    return BACKBONES.build({"type": name, "norm_cfg": BN, "pretrained": False, **kwargs})


def assert_outputs_match_feature_info(backbone: nn.Module, outputs: list[torch.Tensor], size: int) -> None:
    assert len(outputs) == len(backbone.feature_info)
    for output, info in zip(outputs, backbone.feature_info, strict=True):
        assert output.shape[1:] == (info["num_chs"], size // info["reduction"], size // info["reduction"])
    assert backbone.strides == sorted(backbone.strides)


def test_every_backbone_of_the_family_has_a_small_and_a_default_configuration():
    assert set(SMALL) == set(DEFAULTS) == {"UNet", "CGNet", "ERFNet", "FastSCNN", "BiSeNetV1", "BiSeNetV2",
                                           "MixVisionTransformer"}
    assert all(name in BACKBONES for name in SMALL)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_default_architecture_forwards_as_declared_with_finite_gradients(name):
    backbone = build(name, **DEFAULTS[name]).train()
    outputs = backbone(images(2, 64))
    assert_outputs_match_feature_info(backbone, outputs, 64)
    sum(o.square().mean() for o in outputs).backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_configuration_learns_a_fixed_target(name):
    """A few Adam steps fit a fixed random map with a 1x1 conv on the last feature."""
    torch.manual_seed(0)
    backbone = BACKBONES.build({"type": name, **SMALL[name]}).train()
    probe = nn.Conv2d(backbone.out_channels[-1], 1, 1)
    x = images(2, 64, seed=1)
    side = 64 // backbone.strides[-1]
    target = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam([*backbone.parameters(), *probe.parameters()], lr=1e-2)
    losses = []
    for _ in range(10):
        loss = F.mse_loss(probe(backbone(x)[-1]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["UNet", "CGNet", "ERFNet", "FastSCNN", "BiSeNetV1", "BiSeNetV2"])
def test_pretrained_without_path_is_a_clear_error_as_no_weights_are_published(name, no_network):
    with pytest.raises(ArgumentError, match="no published .* weights for structure_type None .*none are published") \
            as info:
        BACKBONES.build({"type": name, **SMALL[name], "pretrained": True})
    assert info.value.argument == "pretrained"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_pretrained_model_path_loads_a_local_file(name, tmp_path):
    torch.manual_seed(0)
    source = BACKBONES.build({"type": name, **SMALL[name]})
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(1)
    loaded = BACKBONES.build({"type": name, **SMALL[name], "pretrained": True, "pretrained_model_path": str(path)})
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", sorted(SMALL))
def test_missing_pretrained_model_path_names_the_argument(name, tmp_path):
    with pytest.raises(ArgumentError, match="no such file") as info:
        BACKBONES.build({"type": name, **SMALL[name], "pretrained": True,
                         "pretrained_model_path": str(tmp_path / "missing.pth")})
    assert str(info.value.at("backbone")).startswith("backbone.pretrained_model_path:")


def test_mit_official_weights_fail_fast_offline(no_network, hub_dir):
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="ssseg_segformer/mit_b0.pth"):
        build("MixVisionTransformer", **{**DEFAULTS["MixVisionTransformer"], "pretrained": True})
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(("name", "selected", "head_channels", "aux_channels"), [
    ("UNet", [1, 0], 4, [8]),  # SSSegmentation's (3, 4)
    ("FastSCNN", [0, 2, 1], 32, [16, 32]),  # SSSegmentation's (0, 1, 2)
    ("BiSeNetV1", [0, 2, 1], 32, [16, 16]),  # SSSegmentation's (0, 1, 2)
    ("BiSeNetV2", [0, 1, 3, 4, 2], 16, [4, 8, 16, 16]),  # SSSegmentation's (0, 1, 2, 3, 4)
])
def test_documented_selected_indices_feed_the_heads_as_in_sssegmentation(name, selected, head_channels,
                                                                          aux_channels):
    """The head gets the decoder / fused output and the auxiliary heads the others, in SSSegmentation's order."""
    auxiliary = [{"out_channels": 8, "dropout": 0.0} for _ in aux_channels]
    losses = {"loss_cls": {"type": "CrossEntropyLoss"},
              **{f"loss_aux{i + 1}": {"type": "CrossEntropyLoss"} for i in range(len(aux_channels))}}
    recipe = make_recipe(backbone={"type": name, **SMALL[name], "selected_indices": selected},
                         auxiliary=auxiliary, losses=losses)
    segmentor = build_segmentor(recipe)
    assert segmentor.head.in_channels == head_channels
    assert [h.in_channels for h in segmentor.aux_heads] == aux_channels
    outputs = segmentor.train()(images(2, 64))
    assert list(outputs) == ["out", *(f"aux{i + 1}" for i in range(len(aux_channels)))]
