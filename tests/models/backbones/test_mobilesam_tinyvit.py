"""MobileSAMTinyViT: every structure type builds with TinyViT's parameter counts plus SAM's neck, stride-16 output
for any input divisible by 32, MobileSAM and TinyViT checkpoints (official layout) load."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones.mobilesam_tinyvit import (
    PRETRAINED_URLS,
    STRUCTURE_ARGUMENTS,
    MobileSAMTinyViT,
)
from segkit.models.layers import ArgumentError

from ..helpers import count_parameters, images

SMALL = {"embed_dims": (8, 16, 24, 32), "depths": (1, 2, 1, 1), "num_heads": (1, 2, 3, 4),
         "window_sizes": (2, 2, 2, 2), "drop_path_rate": 0.0}
NECK = 32 * 256 + 2 * 256 + 256 * 256 * 9 + 2 * 256  # SAM's neck from the last stage's 32 channels


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    return model.eval()


@pytest.mark.parametrize("structure_type", sorted(PRETRAINED_URLS))
def test_every_structure_type_builds_with_tinyvits_parameter_count_plus_sams_neck(structure_type):
    size = structure_type.split("_")[2]  # 5m, 11m, 21m
    resolution = "384" if "_384_" in structure_type else "512" if "_512_" in structure_type else "224"
    with torch.device("meta"):
        model = MobileSAMTinyViT(structure_type=structure_type, **STRUCTURE_ARGUMENTS[structure_type])
        reference = timm.create_model(f"tiny_vit_{size}_{resolution}", num_classes=0)
    trunk = count_parameters(reference) - count_parameters(reference.head)  # head: TinyViT's classifier norm
    assert count_parameters(model) - count_parameters(model.neck) == trunk
    if structure_type == "tiny_vit_5m_22kto1k_distill":  # MobileSAM's encoder (its README: "5M" parameters)
        assert count_parameters(model) == 5_743_892


def test_output_is_stride_16_for_inputs_divisible_by_32():
    model = MobileSAMTinyViT(**SMALL).eval()
    assert model.feature_info == [{"num_chs": 256, "reduction": 16, "module": "neck"}]
    with torch.no_grad():
        assert model(images(1, 64))[0].shape == (1, 256, 4, 4)
        assert model(images(1, 96))[0].shape == (1, 256, 6, 6)  # windows of the last stages are padded
    assert model.layers[2].downsample.conv2.c.stride == (1, 1)  # into the last stage: MobileSAM keeps stride 16
    assert model.layers[1].downsample.conv2.c.stride == (2, 2)


def test_a_mobilesam_checkpoint_loads_its_image_encoder(tmp_path):
    source = randomized(MobileSAMTinyViT(**SMALL))
    state = {f"image_encoder.{k}": v for k, v in source.state_dict().items()}
    state["image_encoder.layers.1.blocks.0.attn.attention_bias_idxs"] = torch.zeros(4, 4, dtype=torch.long)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    path = tmp_path / "mobile_sam.pt"
    torch.save(state, path)
    model = MobileSAMTinyViT(**SMALL, pretrained=True, pretrained_model_path=str(path)).eval()
    assert model.load_official_weights(str(path)).ok
    with torch.no_grad():
        torch.testing.assert_close(model(images(1, 64)), source(images(1, 64)))


def test_attention_bias_indices_follow_tinyvits_numbering():
    import itertools

    points = list(itertools.product(range(3), range(3)))
    offsets: dict[tuple[int, int], int] = {}
    expected = [offsets.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(offsets)) for a in points for b in points]
    block = MobileSAMTinyViT(**{**SMALL, "window_sizes": (3, 3, 3, 3)}).layers[1].blocks[0]
    assert block.attn.attention_bias_idxs.flatten().tolist() == expected


def test_a_tinyvit_classification_checkpoint_of_another_window_size_loads():
    source = MobileSAMTinyViT(**{**SMALL, "window_sizes": (3, 3, 3, 3)})
    state = {**source.state_dict(), "head.weight": torch.zeros(10, 32), "norm_head.weight": torch.zeros(32)}
    model = MobileSAMTinyViT(**SMALL)
    converted = model.convert_checkpoint(state)
    assert set(converted) == set(model.state_dict())
    assert converted["layers.1.blocks.0.attn.attention_biases"].shape == (2, 4)  # 3x3 window: 9 offsets -> 4


def test_structure_types_fix_the_published_sizes():
    with pytest.raises(ArgumentError, match=r"embed_dims=\(96, 192, 384, 768\) does not match"):
        MobileSAMTinyViT(structure_type="tiny_vit_5m_1k")
    assert PRETRAINED_URLS["tiny_vit_21m_22kto1k_512_distill"].endswith(
        "/ssseg_mobilesam/tiny_vit_21m_22kto1k_512_distill.pth")
