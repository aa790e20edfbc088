"""Hiera (timm's HieraDet behind the backbone contract) and HieraWithFPN (SAM 2's image encoder): plain timm and
SAM 2 checkpoints load and give identical outputs, SAM 2's trunks build with timm's parameter counts, the FPN
outputs and position encodings have the declared shapes."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones.hiera import (
    PRETRAINED_URLS,
    STRUCTURE_ARGUMENTS,
    Hiera,
    HieraWithFPN,
    PositionEmbeddingSine,
)
from segkit.models.layers import ArgumentError

from ..helpers import count_parameters, images

TRUNK = {"embed_dim": 8, "num_heads": 1, "stages": (1, 1, 2, 1), "window_spec": (4, 2, 2, 1),
         "global_att_blocks": (3,), "window_pos_embed_bkg_spatial_size": (4, 4)}
FPN = {"d_model": 16, "backbone_channel_list": [64, 32, 16, 8], "fpn_top_down_levels": [2, 3],
       "fpn_interp_model": "nearest", "position_encoding_cfg": {"type": "PositionEmbeddingSine", "num_pos_feats": 16,
                                                                "normalize": True, "temperature": 10000}}


def plain_hiera() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("sam2_hiera_tiny", embed_dim=8, num_heads=1, stages=(1, 1, 2, 1),
                              window_spec=(4, 2, 2, 1), global_att_blocks=(3,), global_pos_size=(4, 4)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    return model


def test_a_plain_timm_state_dict_loads_and_gives_identical_outputs(tmp_path):
    plain = plain_hiera()
    path = tmp_path / "hiera.pth"
    torch.save(plain.state_dict(), path)  # with timm's classifier norm, which the trunk does not have
    model = Hiera(**TRUNK, pretrained=True, pretrained_model_path=str(path)).eval()
    assert model.load_official_weights(str(path)).ok
    x = images(2, 64)
    with torch.no_grad():
        outputs, expected = model(x), plain.forward_intermediates(x, intermediates_only=True)
    for output, target, info in zip(outputs, expected, model.feature_info, strict=True):
        torch.testing.assert_close(output, target)
        assert output.shape == (2, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    assert model.channel_list == [64, 32, 16, 8]


def test_a_sam2_checkpoint_loads_trunk_and_neck(tmp_path):
    source = HieraWithFPN(TRUNK, FPN, scalp=1).eval()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_(std=0.1)
    state = {f"image_encoder.{k}".replace("mlp.fc1", "mlp.layers.0").replace("mlp.fc2", "mlp.layers.1"): v
             for k, v in source.state_dict().items()}
    state["memory_encoder.out_proj.weight"] = torch.zeros(4, 4)
    assert "image_encoder.trunk.blocks.0.mlp.layers.0.weight" in state and "image_encoder.neck.convs.0.conv.weight" in state
    path = tmp_path / "sam2_tiny.pt"
    torch.save({"model": state}, path)
    model = HieraWithFPN(TRUNK, FPN, scalp=1, pretrained=True, pretrained_model_path=str(path)).eval()
    assert model.load_official_weights(str(path)).ok
    with torch.no_grad():
        for a, b in zip(model(images(1, 64)), source(images(1, 64)), strict=True):
            torch.testing.assert_close(a, b)


def test_fpn_outputs_scalp_and_position_encodings():
    model = HieraWithFPN(TRUNK, FPN, scalp=1).eval()
    assert [(i["num_chs"], i["reduction"], i["module"]) for i in model.feature_info] == [
        (16, 4, "neck.convs.3"), (16, 8, "neck.convs.2"), (16, 16, "neck.convs.1")]
    with torch.no_grad():
        features, positions = model.forward_with_pos(images(2, 64))
    assert [f.shape for f in features] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    assert [p.shape for p in positions] == [f.shape for f in features]
    encoding = PositionEmbeddingSine(4)(torch.zeros(1, 1, 2, 3))  # 2 channels per axis: (sin, cos) of y, then x
    y = torch.tensor([1.0, 2.0]) / 2 * 2 * torch.pi  # coordinates normalised to (0, 2*pi]
    x = torch.tensor([1.0, 2.0, 3.0]) / 3 * 2 * torch.pi
    torch.testing.assert_close(encoding[0, 1, :, 0], torch.cos(y), atol=1e-5, rtol=0)
    torch.testing.assert_close(encoding[0, 2, 0, :], torch.sin(x), atol=1e-5, rtol=0)


def test_fpn_channels_must_match_the_trunk():
    with pytest.raises(ArgumentError, match="backbone_channel_list"):
        HieraWithFPN(TRUNK, {**FPN, "backbone_channel_list": [8, 16, 32, 64]})
    with pytest.raises(ArgumentError, match="scalp"):
        HieraWithFPN(TRUNK, FPN, scalp=4)


@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_sam2_trunks_have_timms_parameter_counts(size):
    # SAM 2's README gives whole-model totals (e.g. 38.9M for tiny); the trunk's reference is timm's
    # sam2_hiera_* (no classifier), which loads SAM 2's trunk weights.
    name = f"sam2_hiera_{size}"
    with torch.device("meta"):
        model = Hiera(structure_type=name, **STRUCTURE_ARGUMENTS[name])
        reference = timm.create_model(name, num_classes=0)
    assert count_parameters(model) == count_parameters(reference) - count_parameters(reference.head)
    assert STRUCTURE_ARGUMENTS[f"sam2.1_hiera_{size}"] == STRUCTURE_ARGUMENTS[name]
    assert PRETRAINED_URLS[name].endswith(f"/072824/{name}.pt")


def test_return_interm_layers_false_gives_the_last_stage():
    model = Hiera(**TRUNK, return_interm_layers=False)
    assert [i["reduction"] for i in model.feature_info] == [32]
    assert model(images(1, 64))[0].shape == (1, 64, 2, 2)
