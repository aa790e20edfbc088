"""TIMMBackbone: feature_info, loading plain timm checkpoints, NCHW outputs, friendly errors."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones import TIMMBackbone
from segkit.models.layers import ArgumentError

from .helpers import images


def test_feature_info_matches_forward():
    backbone = TIMMBackbone(model_name="resnet18", pretrained=False).eval()
    assert backbone.feature_info[0] == {"num_chs": 64, "reduction": 2, "module": "act1"}
    with torch.no_grad():
        outputs = backbone(images(1, 64))
    assert [o.shape[1] for o in outputs] == backbone.out_channels == [64, 64, 128, 256, 512]
    assert [64 // o.shape[-1] for o in outputs] == backbone.strides == [2, 4, 8, 16, 32]


def test_loads_a_plain_timm_checkpoint_and_gives_identical_features(tmp_path):
    plain = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(plain.state_dict(), path)  # includes the classifier, which the feature model drops
    backbone = TIMMBackbone(model_name="resnet18", pretrained_model_path=str(path), out_indices=(2, 4)).eval()
    x = images(1, 64)
    with torch.no_grad():
        outputs = backbone(x)
        expected = plain.forward_features(x)
    assert len(outputs) == 2 and [i["reduction"] for i in backbone.feature_info] == [8, 32]
    assert torch.allclose(outputs[-1], expected, atol=1e-5)


def test_channels_last_models_are_returned_as_nchw():
    backbone = TIMMBackbone(model_name="swin_tiny_patch4_window7_224", extra_args={
        "img_size": 64, "window_size": 4, "embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)})
    outputs = backbone(images(1, 64))
    for output, info in zip(outputs, backbone.feature_info, strict=True):
        assert output.shape == (1, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ArgumentError, match=r"model_name: unknown timm model 'resnet81'; did you mean 'resnet18'"):
        TIMMBackbone(model_name="resnet81")


def test_features_only_is_required():
    with pytest.raises(ArgumentError, match="features_only"):
        TIMMBackbone(model_name="resnet18", features_only=False)
