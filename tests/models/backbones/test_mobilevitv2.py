"""MobileViTV2: structure types, published sizes, timm's releases, stage outputs."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import mobilevitv2 as v2_module
from segkit.models.backbones.mobilevitv2 import MobileViTV2, convert_timm_mobilevitv2

from ..helpers import BN, images
from .test_timm_adapter import (
    build_on_meta,
    check_contract,
    check_conversion,
    check_published_count,
    count_parameters,
    save_state,
)

# Published parameter counts (millions, classifier included): Mehta & Rastegari, "Separable Self-attention for
# Mobile Vision Transformers", TMLR 2023 (arXiv 2206.02680), Table 2: width 0.5 -> 1.4M ... 2.0 -> 18.4M.
PUBLISHED = {"mobilevitv2_050": 1.4, "mobilevitv2_075": 2.9, "mobilevitv2_100": 4.9, "mobilevitv2_125": 7.5,
             "mobilevitv2_150": 10.6, "mobilevitv2_175": 14.3, "mobilevitv2_200": 18.4}


def test_structure_types_and_urls_are_ssseg_s():
    urls = v2_module.PRETRAINED_URLS
    assert len(urls) == 13 and urls["mobilevitv2_200_384_in22ft1k"] == (
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-mvit-weights/"
        "mobilevitv2_200_384_in22ft1k-32c87503.pth")
    assert v2_module.STRUCTURE_TYPES["mobilevitv2_175_384_in22ft1k"] == {"arch": "mobilevitv2_175"}


@pytest.mark.parametrize("structure_type", list(v2_module.PRETRAINED_URLS))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build_on_meta(MobileViTV2, structure_type=structure_type, norm_cfg=BN, out_indices=(0, 1, 2, 3, 4))
    width = int(structure_type[len("mobilevitv2_"):][:3]) / 100
    assert backbone.out_channels == [int(c * width) for c in (64, 128, 256, 384, 512)]
    assert backbone.strides == [2, 4, 8, 16, 32]
    last = backbone.out_channels[-1]
    check_published_count(count_parameters(backbone) + last * 1000 + 1000, PUBLISHED[backbone.arch], unit=0.1)


def test_default_out_indices_are_sssegmentations_five_stages():
    backbone = build_on_meta(MobileViTV2, structure_type="mobilevitv2_050", norm_cfg=BN)
    assert backbone.out_indices == (0, 1, 2, 3, 4) and backbone.out_channels == [32, 64, 128, 192, 256]


@pytest.mark.parametrize("arch", list(PUBLISHED))
def test_published_architectures_forward_as_declared(arch):
    check_contract(MobileViTV2(arch=arch, norm_cfg=BN, pretrained=False), size=64)


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("mobilevitv2_050").eval()
    backbone = MobileViTV2(arch="mobilevitv2_050", out_indices=(0, 2, 4), norm_cfg=BN, pretrained=True,
                           pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, indices=(0, 2, 4), intermediates_only=True)
        for output, feature in zip(backbone(x), expected, strict=True):
            assert torch.equal(output, feature)


@pytest.mark.parametrize("arch", ["mobilevitv2_050", "mobilevitv2_200"])
def test_timm_release_layout_loads_without_conversion(arch):
    with torch.device("meta"):
        release = timm.create_model(arch)
    backbone = build_on_meta(MobileViTV2, arch=arch, norm_cfg=BN)
    check_conversion(backbone, {k: tuple(v.shape) for k, v in release.state_dict().items()},
                     convert_timm_mobilevitv2)
