"""timm_adapter: structure types, out_indices, norm/act factories, weight loading and conversion helpers.

The ``check_*`` / ``build_on_meta`` / ``official_state`` helpers here are shared by the tests of the backbones built
on timm's modules (test_convnext.py, test_swin.py, ...).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

import pytest
import timm
import torch
from timm.layers import Conv2dSame
from torch import nn

from segkit.errors import DownloadError
from segkit.models.backbones import mobilenetv3, timm_adapter
from segkit.models.backbones.mobilenetv3 import MobileNetV3
from segkit.models.backbones.timm_adapter import (
    act_factory,
    batch_norm_layer,
    fit_singleton_dims,
    layer_norm_eps,
    rename_keys,
    replace_modules,
    resolve_structure,
    select_out_indices,
    set_stride_and_dilation,
)
from segkit.models.layers import ArgumentError
from segkit.models.pretrained import hub_cache_path, load_state_dict_reported

from ..helpers import BN, images

# ----------------------------------------------------------------------------------------------- shared checks


def build_on_meta(cls: type[nn.Module], **kwargs) -> nn.Module:
    """The backbone on the meta device (no memory, no weights): cheap for any size."""
    with torch.device("meta"):
        return cls(pretrained=False, **kwargs)


def count_parameters(module: nn.Module, skip: Iterable[str] = ()) -> int:
    """Parameters of ``module`` whose names do not start with one of ``skip``."""
    prefixes = tuple(skip)
    return sum(p.numel() for name, p in module.named_parameters() if not (prefixes and name.startswith(prefixes)))


def check_published_count(count: int, published_millions: float, unit: float) -> None:
    """``count`` matches a published figure given to ``unit`` millions (a published 28M allows 27M..29M)."""
    assert abs(count / 1e6 - published_millions) <= unit + 1e-9, (count, published_millions)


def check_contract(backbone: nn.Module, size: int = 64, batch: int = 2) -> list[torch.Tensor]:
    """Forward matches ``feature_info`` (count, channels, stride, NCHW), and the backward pass is finite."""
    backbone.train()
    outputs = backbone(images(batch, size))
    assert isinstance(outputs, list) and len(outputs) == len(backbone.feature_info)
    for output, info in zip(outputs, backbone.feature_info, strict=True):
        side = -(-size // info["reduction"])
        assert output.shape == (batch, info["num_chs"], side, side), (output.shape, info)
    sum(o.square().mean() for o in outputs).backward()
    for name, parameter in backbone.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), name
    return outputs


def official_state(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A state dict of the given names and shapes (meta tensors: sizes are free)."""
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def batch_norm_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    """A BatchNorm's state-dict entries."""
    shapes = {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}
    return shapes | {f"{prefix}.num_batches_tracked": ()}


def conv_bn_shapes(prefix: str, out: int, inputs: int, kernel: int) -> dict[str, tuple[int, ...]]:
    """An mmcv ``ConvModule`` (``conv`` without bias, ``bn``); ``inputs`` per group (1 for depthwise)."""
    return {f"{prefix}.conv.weight": (out, inputs, kernel, kernel), **batch_norm_shapes(f"{prefix}.bn", out)}


def check_conversion(backbone: nn.Module, shapes: Mapping[str, tuple[int, ...]],
                     convert: Callable[[dict], dict], missing: Iterable[str] = ()) -> None:
    """An official checkpoint layout converts to ``backbone``'s names and shapes: nothing unexpected or misshapen,
    and only the keys the official checkpoint cannot have (``missing``) are missing."""
    report = load_state_dict_reported(backbone, convert(official_state(shapes)), "official layout")
    assert report.unexpected_keys == [] and report.mismatched_keys == []
    assert report.missing_keys == sorted(missing)


def save_state(model: nn.Module, directory: os.PathLike) -> str:
    """Save ``model``'s state dict (as a plain timm checkpoint) and return the path."""
    path = os.path.join(directory, "plain_timm.pth")
    torch.save(model.state_dict(), path)
    return path


# ----------------------------------------------------------------------------------------------- adapter tests

TYPES = {"net_small": {"depth": 2, "widths": (8, 16)}, "net_large": {"depth": 4, "width": 8}}


def test_structure_type_implies_arguments_and_conflicts_are_errors():
    assert resolve_structure("Net", "net_large", TYPES, {"depth": None}, {"depth": 1, "width": 1}) == \
        {"depth": 4, "width": 8}
    assert resolve_structure("Net", None, TYPES, {"depth": 3}, {"depth": 1, "width": 1}) == {"depth": 3, "width": 1}
    assert resolve_structure("Net", "net_small", TYPES, {"widths": [8, 16]}, {})["widths"] == [8, 16]  # == (8, 16)
    with pytest.raises(ArgumentError, match=r"depth=3 conflicts with structure_type 'net_small' \(depth=2\)") as info:
        resolve_structure("Net", "net_small", TYPES, {"depth": 3}, {})
    assert info.value.argument == "depth"
    with pytest.raises(ArgumentError, match="unknown Net structure_type 'net_tiny' .known: net_small, net_large"):
        resolve_structure("Net", "net_tiny", TYPES, {}, {})


def test_out_indices_are_sorted_and_negative_ones_count_from_the_end():
    assert select_out_indices((3, -4, 1), 4) == (0, 1, 3)
    assert select_out_indices(2, 4) == (2,)
    for bad in [(4,), (0, 0), ()]:
        with pytest.raises(ArgumentError, match="out_indices must be distinct indices into the 4 outputs"):
            select_out_indices(bad, 4)


def test_norm_and_act_factories_follow_the_recipe_tables():
    make = act_factory({"type": "ReLU", "inplace": True})
    assert isinstance(make(inplace=False), nn.ReLU) and make().inplace
    norm = batch_norm_layer({"type": "SyncBatchNorm", "momentum": 0.01}, "Net")(8)
    assert type(norm) is nn.BatchNorm2d and norm.momentum == 0.01
    with pytest.raises(ArgumentError, match="Net supports norm_cfg types BatchNorm2d, SyncBatchNorm"):
        batch_norm_layer({"type": "GroupNorm", "num_groups": 2}, "Net")
    assert layer_norm_eps({"type": "LayerNorm2d", "eps": 1e-6}, "Net", ["LayerNorm2d"]) == 1e-6
    with pytest.raises(ArgumentError, match='Net needs a channel LayerNorm: norm_cfg = {type = "LayerNorm2d"'):
        layer_norm_eps({"type": "SyncBatchNorm"}, "Net", ["LayerNorm2d"])


def test_rename_fit_and_replace_helpers():
    renamed = rename_keys({"layers.0.a": torch.zeros(1), "head.w": torch.zeros(1)},
                          [(r"^layers\.(\d+)", lambda m: f"stages.{int(m.group(1)) + 1}")], drop=(r"^head\.",))
    assert list(renamed) == ["stages.1.a"]
    model = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2), nn.ReLU())
    fitted = fit_singleton_dims({"0.weight": torch.ones(2, 4), "1.weight": torch.ones(1, 1, 1, 2),
                                 "1.bias": torch.ones(3)}, model)
    assert fitted["0.weight"].shape == (2, 4, 1, 1) and fitted["1.weight"].shape == (2,)
    assert fitted["1.bias"].shape == (3,)  # not a singleton difference: left to be reported
    assert replace_modules(model, nn.ReLU, lambda _: nn.GELU()) == 1 and isinstance(model[2], nn.GELU)


def test_new_stride_and_dilation_pad_static_convolutions_only():
    static, same = nn.Conv2d(4, 4, 5, stride=2, padding=2), Conv2dSame(4, 4, 5, stride=2)
    for conv in (static, same):
        set_stride_and_dilation(conv, 1, 4)
        assert conv(torch.zeros(1, 4, 9, 9)).shape[-1] == 9
    assert static.padding == (8, 8) and same.padding == (0, 0)


def test_offline_pretrained_fails_fast_naming_the_url(no_network, hub_dir):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="mobilenet_v3_small-47085aa1.pth"):
        MobileNetV3(structure_type="mobilenetv3_small", norm_cfg=BN, pretrained=True)
    assert time.monotonic() - start < 5


def test_pretrained_loads_the_published_file_from_the_hub_cache(no_network, hub_dir):
    source = timm.create_model("mobilenetv3_small_100", pad_type="same")
    path = hub_cache_path(mobilenetv3.PRETRAINED_URLS["mobilenetv3_small"])
    os.makedirs(os.path.dirname(path))
    torch.save({"state_dict": source.state_dict()}, path)
    backbone = MobileNetV3(structure_type="mobilenetv3_small", norm_cfg=BN, pretrained=True)
    assert torch.equal(backbone.conv_stem.weight, source.conv_stem.weight)
    assert torch.equal(backbone.blocks[5][0].conv.weight, source.blocks[5][0].conv.weight)


def test_pretrained_needs_a_structure_type_or_a_file(tmp_path):
    with pytest.raises(ArgumentError, match="no published MobileNetV3 weights for structure_type None"):
        MobileNetV3(norm_cfg=BN, pretrained=True)
    with pytest.raises(ArgumentError, match="pretrained_model_path: no such file"):
        MobileNetV3(norm_cfg=BN, pretrained=True, pretrained_model_path=str(tmp_path / "absent.pth"))


def test_unfitting_keys_are_reported(caplog):
    model = nn.Sequential(nn.Linear(2, 3))
    report = load_state_dict_reported(model, {"0.weight": torch.zeros(4, 2), "extra": torch.zeros(1)}, "file.pth")
    assert report.mismatched_keys == ["0.weight"] and report.unexpected_keys == ["extra"]
    assert report.missing_keys == ["0.bias", "0.weight"] and "file.pth" in caplog.text
    assert timm_adapter.logger.name == "segkit.models"
