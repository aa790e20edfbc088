"""ConvNeXtV2: the 26 official structure types, published sizes, timm / official / FCMAE checkpoints, a forward."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import convnextv2 as v2_module
from segkit.models.backbones.convnext import ARCH_SETTINGS
from segkit.models.backbones.convnextv2 import (
    ConvNeXtV2,
    convert_official_convnextv2,
    sparse_encoder_to_dense,
)
from segkit.models.backbones.timm_adapter import fit_singleton_dims
from segkit.models.layers import ArgumentError

from ..helpers import images
from .test_timm_adapter import (
    build_on_meta,
    check_contract,
    check_conversion,
    check_published_count,
    count_parameters,
    save_state,
)

# Published parameter counts (millions, classifier included), Woo et al., "ConvNeXt V2", CVPR 2023 /
# github.com/facebookresearch/ConvNeXt-V2 README: Atto 3.7, Femto 5.2, Pico 9.1, Nano 15.6, Tiny 28.6, Base 89,
# Large 198, Huge 660 -> (value, unit of the last published digit).
PUBLISHED = {"atto": (3.7, 0.1), "femto": (5.2, 0.1), "pico": (9.1, 0.1), "nano": (15.6, 0.1), "tiny": (28.6, 0.1),
             "base": (89, 1), "large": (198, 1), "huge": (660, 1)}
NORMS = ("norm0", "norm1", "norm2", "norm3")
ALL_NORMS = [f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]


def test_structure_types_and_urls_are_the_26_official_checkpoints():
    urls = v2_module.PRETRAINED_URLS
    assert len(urls) == 26
    assert urls["convnextv2_atto_1k_224_fcmae"] == \
        "https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_atto_1k_224_fcmae.pt"
    assert urls["convnextv2_huge_22k_512_ema"].endswith("/im22k/convnextv2_huge_22k_512_ema.pt")
    assert urls["convnextv2_tiny_1k_224_ema"].endswith("/im1k/convnextv2_tiny_1k_224_ema.pt")


@pytest.mark.parametrize("structure_type", list(v2_module.PRETRAINED_URLS))
def test_every_structure_type_builds_with_the_published_size(structure_type):
    backbone = build_on_meta(ConvNeXtV2, structure_type=structure_type)
    arch = v2_module.STRUCTURE_TYPES[structure_type]["arch"]
    dims = ARCH_SETTINGS[arch][1]
    assert backbone.out_channels == list(dims) and backbone.strides == [4, 8, 16, 32]
    total = count_parameters(backbone, skip=NORMS) + 2 * dims[-1] + dims[-1] * 1000 + 1000  # + norm and classifier
    check_published_count(total, *PUBLISHED[arch])


@pytest.mark.parametrize("arch", [
    "atto", "femto", "pico", "nano", "tiny",
    *(pytest.param(a, marks=pytest.mark.slow) for a in ("base", "large", "huge"))])
def test_published_architectures_forward_as_declared(arch):
    check_contract(ConvNeXtV2(arch=arch, pretrained=False), size=32)  # SSSegmentation 1.7.0 crashes here


def test_loads_a_plain_timm_checkpoint_and_matches_timm(tmp_path):
    reference = timm.create_model("convnextv2_atto").eval()
    backbone = ConvNeXtV2(arch="atto", pretrained=True, pretrained_model_path=save_state(reference, tmp_path)).eval()
    x = images(1, 64)
    with torch.no_grad():
        ours = backbone(x)
        expected = reference.forward_intermediates(x, intermediates_only=True)
    for index, (output, feature) in enumerate(zip(ours, expected, strict=True)):
        assert torch.allclose(output, getattr(backbone, f"norm{index}")(feature), atol=1e-5)


def official_shapes(depths, dims) -> dict[str, tuple[int, ...]]:
    """The official (dense) ConvNeXt-V2 release: names and shapes, GRN parameters as ``(1, 1, 1, C)``."""
    shapes = {"downsample_layers.0.0.weight": (dims[0], 3, 4, 4), "downsample_layers.0.0.bias": (dims[0],),
              "downsample_layers.0.1.weight": (dims[0],), "downsample_layers.0.1.bias": (dims[0],)}
    for i in range(1, 4):
        shapes |= {f"downsample_layers.{i}.0.weight": (dims[i - 1],), f"downsample_layers.{i}.0.bias": (dims[i - 1],),
                   f"downsample_layers.{i}.1.weight": (dims[i], dims[i - 1], 2, 2),
                   f"downsample_layers.{i}.1.bias": (dims[i],)}
    for i, (depth, c) in enumerate(zip(depths, dims, strict=True)):
        for j in range(depth):
            block = f"stages.{i}.{j}"
            shapes |= {f"{block}.dwconv.weight": (c, 1, 7, 7), f"{block}.dwconv.bias": (c,),
                       f"{block}.norm.weight": (c,), f"{block}.norm.bias": (c,),
                       f"{block}.pwconv1.weight": (4 * c, c), f"{block}.pwconv1.bias": (4 * c,),
                       f"{block}.grn.gamma": (1, 1, 1, 4 * c), f"{block}.grn.beta": (1, 1, 1, 4 * c),
                       f"{block}.pwconv2.weight": (c, 4 * c), f"{block}.pwconv2.bias": (c,)}
    return shapes | {"norm.weight": (dims[3],), "norm.bias": (dims[3],), "head.weight": (1000, dims[3]),
                     "head.bias": (1000,)}


def sparse_fcmae_shapes(depths, dims) -> dict[str, tuple[int, ...]]:
    """An FCMAE ``pt_only`` checkpoint: MinkowskiEngine encoder (``encoder.``), decoder, mask token, predictor."""
    shapes = {f"encoder.downsample_layers.0.{k}": v for k, v in (
        ("0.weight", (dims[0], 3, 4, 4)), ("0.bias", (dims[0],)), ("1.weight", (dims[0],)), ("1.bias", (dims[0],)))}
    for i in range(1, 4):
        layer = f"encoder.downsample_layers.{i}"
        shapes |= {f"{layer}.0.ln.weight": (dims[i - 1],), f"{layer}.0.ln.bias": (dims[i - 1],),
                   f"{layer}.1.kernel": (4, dims[i - 1], dims[i]), f"{layer}.1.bias": (1, dims[i])}
    for i, (depth, c) in enumerate(zip(depths, dims, strict=True)):
        for j in range(depth):
            block = f"encoder.stages.{i}.{j}"
            shapes |= {f"{block}.dwconv.kernel": (49, c), f"{block}.dwconv.bias": (1, c),
                       f"{block}.norm.ln.weight": (c,), f"{block}.norm.ln.bias": (c,),
                       f"{block}.pwconv1.linear.weight": (4 * c, c), f"{block}.pwconv1.linear.bias": (4 * c,),
                       f"{block}.grn.gamma": (1, 4 * c), f"{block}.grn.beta": (1, 4 * c),
                       f"{block}.pwconv2.linear.weight": (c, 4 * c), f"{block}.pwconv2.linear.bias": (c,)}
    return shapes | {"mask_token": (1, 512, 1, 1), "proj.weight": (512, dims[3], 1, 1), "proj.bias": (512,),
                     "decoder.0.dwconv.weight": (512, 1, 7, 7), "pred.weight": (32 * 32 * 3, 512, 1, 1)}


@pytest.mark.parametrize("structure_type", ["convnextv2_atto_1k_224_ema", "convnextv2_huge_22k_512_ema",
                                            "convnextv2_tiny_1k_224_fcmae", "convnextv2_huge_1k_224_fcmae"])
def test_official_and_fcmae_layouts_convert_to_timm_names(structure_type):
    backbone = build_on_meta(ConvNeXtV2, structure_type=structure_type)
    arch = ARCH_SETTINGS[v2_module.STRUCTURE_TYPES[structure_type]["arch"]]
    shapes = sparse_fcmae_shapes(*arch) if structure_type.endswith("fcmae") else official_shapes(*arch)
    check_conversion(backbone, shapes, lambda sd: fit_singleton_dims(convert_official_convnextv2(sd), backbone),
                     missing=ALL_NORMS)  # the per-output norms are SSSegmentation's, in no release


def test_sparse_kernels_become_the_dense_convolutions_they_encode():
    """MinkowskiEngine stores a k x k kernel as (k*k, in, out) with the offsets in (x, y) order; the official
    fine-tuning code turns it into (out, in, k, k). Encoding a dense weight the other way round must give it back."""
    dense_down, dense_dw = torch.randn(8, 4, 2, 2), torch.randn(4, 1, 7, 7)
    sparse = {"encoder.downsample_layers.1.1.kernel": dense_down.transpose(3, 2).reshape(8, 4, 4).permute(2, 1, 0),
              "encoder.stages.0.0.dwconv.kernel": dense_dw.transpose(3, 2).reshape(4, 49).permute(1, 0),
              "encoder.stages.0.0.dwconv.bias": torch.arange(4.0).reshape(1, 4),
              "encoder.stages.0.0.pwconv1.linear.weight": torch.ones(16, 4), "decoder.0.weight": torch.ones(1)}
    dense = sparse_encoder_to_dense(sparse)
    assert torch.equal(dense["downsample_layers.1.1.weight"], dense_down)
    assert torch.equal(dense["stages.0.0.dwconv.weight"], dense_dw)
    assert torch.equal(dense["stages.0.0.dwconv.bias"], torch.arange(4.0))
    assert set(dense) == {"downsample_layers.1.1.weight", "stages.0.0.dwconv.weight", "stages.0.0.dwconv.bias",
                          "stages.0.0.pwconv1.weight"}


def test_arch_must_exist_for_v2_and_agree_with_the_structure_type():
    with pytest.raises(ArgumentError, match="ConvNeXtV2 has no arch 'small'"):
        ConvNeXtV2(arch="small", pretrained=False)
    with pytest.raises(ArgumentError, match="conflicts with structure_type 'convnextv2_nano_22k_384_ema'"):
        ConvNeXtV2(structure_type="convnextv2_nano_22k_384_ema", arch="atto", pretrained=False)
