"""HRNet: structure types, sizes against timm, SSSegmentation's bilinear fusion and concatenated output."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.hrnet import HighResolutionNet, cfg_cls
from torch import nn

from segkit.models.backbones import hrnet as hrnet_module
from segkit.models.backbones.hrnet import TIMM_CONFIGS, HRNet, convert_official_hrnet
from segkit.models.backbones.timm_adapter import replace_modules
from segkit.models.layers import ArgumentError

from ..helpers import BN, images
from .test_timm_adapter import build_on_meta, check_contract, check_conversion, count_parameters, save_state

CHANNELS = {"hrnetv2_w18_small": 270, "hrnetv2_w18": 270, "hrnetv2_w32": 480, "hrnetv2_w40": 600,
            "hrnetv2_w48": 720}
HEAD = ("incre_modules", "downsamp_modules", "final_layer", "classifier")


def test_structure_types_and_urls_are_ssseg_s():
    assert list(hrnet_module.PRETRAINED_URLS) == list(CHANNELS)
    assert hrnet_module.PRETRAINED_URLS["hrnetv2_w48"] == \
        "https://download.openmmlab.com/pretrain/third_party/hrnetv2_w48-d2186c55.pth"


@pytest.mark.parametrize("structure_type", list(CHANNELS))
def test_every_structure_type_builds_with_timm_s_trunk_size(structure_type):
    """No published figure is for the headless HRNetV2 trunk (the papers count classification or segmentation
    heads), so the size is compared with timm's classification model of the same name without its head."""
    backbone = build_on_meta(HRNet, structure_type=structure_type, norm_cfg=BN)
    assert backbone.feature_info == [{"num_chs": CHANNELS[structure_type], "reduction": 4, "module": "stage4"}]
    with torch.device("meta"):
        reference = timm.create_model(TIMM_CONFIGS[structure_type])
    assert count_parameters(backbone) == count_parameters(reference, skip=HEAD)


@pytest.mark.parametrize("structure_type", [
    "hrnetv2_w18_small", "hrnetv2_w18",
    *(pytest.param(t, marks=pytest.mark.slow) for t in ("hrnetv2_w32", "hrnetv2_w40", "hrnetv2_w48"))])
def test_published_architectures_forward_as_declared(structure_type):
    check_contract(HRNet(structure_type=structure_type, norm_cfg=BN, pretrained=False), size=32)


def bilinear_reference(model: HighResolutionNet, x: torch.Tensor) -> torch.Tensor:
    """timm's network with SSSegmentation's bilinear fusion, branches upsampled and concatenated."""
    replace_modules(model, nn.Upsample, lambda up: nn.Upsample(scale_factor=up.scale_factor, mode="bilinear"))
    x = model.act2(model.bn2(model.conv2(model.act1(model.bn1(model.conv1(x))))))
    branches = model.stages(x)
    size = branches[0].shape[-2:]
    return torch.cat([F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches], 1)


def test_loads_a_plain_timm_checkpoint_and_fuses_bilinearly(tmp_path):
    reference = timm.create_model("hrnet_w18_small_v2").eval()
    backbone = HRNet(arch="hrnetv2_w18_small", norm_cfg=BN, pretrained=True,
                     pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        ours = backbone(x)[0]
        nearest = torch.cat([F.interpolate(b, size=(16, 16), mode="bilinear") for b in reference.stages(
            reference.act2(reference.bn2(reference.conv2(reference.act1(reference.bn1(reference.conv1(x)))))))], 1)
        assert torch.allclose(ours, bilinear_reference(reference, x), atol=1e-5)
    assert not torch.allclose(ours, nearest, atol=1e-3)  # timm's classification model fuses with nearest upsampling


def test_official_layout_loads_without_its_classification_head():
    with torch.device("meta"):
        release = HighResolutionNet(cfg_cls["hrnet_w48"])  # official names, incl. the classification head
    backbone = build_on_meta(HRNet, structure_type="hrnetv2_w48", norm_cfg=BN)
    check_conversion(backbone, {k: tuple(v.shape) for k, v in release.state_dict().items()}, convert_official_hrnet)


def test_any_input_size_single_scale_output_and_cfgs():
    backbone = HRNet(arch="hrnetv2_w18_small", norm_cfg=BN, pretrained=False).eval()
    with torch.no_grad():
        assert backbone(images(1, 70)[..., :45])[0].shape == (1, 270, 18, 12)
    single = HRNet(arch="hrnetv2_w18_small", multiscale_output=False, norm_cfg={"type": "GroupNorm", "num_groups": 2},
                   act_cfg={"type": "LeakyReLU"}, use_checkpoint=True, pretrained=False)
    assert single.out_channels == [18] and len(single.stage4[-1].fuse_layers) == 1
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in single.modules())
    check_contract(single, size=32)
    with pytest.raises(ArgumentError, match="arch='hrnetv2_w32' conflicts with structure_type 'hrnetv2_w18'"):
        HRNet(structure_type="hrnetv2_w18", arch="hrnetv2_w32", pretrained=False)
