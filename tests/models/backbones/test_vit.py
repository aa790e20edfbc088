"""VisionTransformer (SSSeg/mmseg layout) and Feature2Pyramid: official checkpoints convert, outputs match timm's ViT,
position embeddings are interpolated, the published structure type builds, the pyramid has the declared strides."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer as TimmViT

from segkit.errors import DownloadError
from segkit.models.backbones.vit import (
    PRETRAINED_URLS,
    STRUCTURE_ARGUMENTS,
    VisionTransformer,
    resize_pos_embed,
)
from segkit.models.layers import ArgumentError
from segkit.models.layers.feature2pyramid import Feature2Pyramid

from ..helpers import count_parameters, images

DATA = Path(__file__).parent.parent / "data"
TINY = {"patch_size": 8, "embed_dims": 32, "num_layers": 3, "num_heads": 2, "pretrained": False}


def official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors with the key names, shapes and dtypes of a committed official-checkpoint key list (large ones on the
    meta device: only their shapes matter; small ones real, as resizing them is faster on the CPU)."""
    state = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            size = tuple(int(s) for s in shape.split(","))
            device = "cpu" if torch.Size(size).numel() <= 100_000 else "meta"
            state[key] = torch.zeros(size, dtype=getattr(torch, dtype), device=device)
    return state


def plain_timm_vit(img_size: int = 32) -> TimmViT:
    """A small ViT in the official (timm/JAX) layout, with a classifier, random non-trivial weights."""
    torch.manual_seed(0)
    model = TimmViT(img_size=img_size, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=5).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    return model


def vit_large(**overrides) -> VisionTransformer:
    args = {**STRUCTURE_ARGUMENTS["jx_vit_large_p16_384"], "pretrained": False, **overrides}
    return VisionTransformer(structure_type="jx_vit_large_p16_384", **args)


def test_official_vit_large_keys_convert_to_exactly_this_layout():
    with torch.device("meta"):
        model = vit_large(img_size=512)  # SETR's 512 crops: the 24x24 position grid becomes 32x32
    converted = model.convert_official(official_state_dict(DATA / "vit_keys.txt"))
    own = model.state_dict()
    assert set(converted) == set(own)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}


def test_vit_large_parameters_match_timm_without_head():
    # The ViT paper's Table 1 says ViT-L has 307M parameters, which its architecture does not reproduce (timm: 304M
    # with the 1000-class head), so the reference is timm's vit_large_patch16_384 without head at the same size,
    # less its final norm (SSSeg's jx_vit_large_p16_384 has final_norm=False).
    with torch.device("meta"):
        model = vit_large(img_size=384)
        reference = timm.create_model("vit_large_patch16_384", num_classes=0)
    assert count_parameters(model) == count_parameters(reference) - count_parameters(reference.norm) == 303_688_704


def test_outputs_equal_timm_vit_after_loading_an_official_layout_file(tmp_path):
    plain = plain_timm_vit()
    path = tmp_path / "vit.pth"
    torch.save({"model": plain.state_dict()}, path)
    model = VisionTransformer(img_size=32, out_indices=(0, 2), final_norm=True, **{**TINY, "pretrained": True},
                              pretrained_model_path=str(path)).eval()
    report = model.load_official_weights(str(path))
    assert report.ok and not report.skipped
    x = images(2, 32)
    with torch.no_grad():
        first, last = model(x)
        expected_first = plain.forward_intermediates(x, indices=[0], intermediates_only=True)[0]
        expected_last = plain.forward_features(x)[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)
    torch.testing.assert_close(first, expected_first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, expected_last, atol=1e-5, rtol=1e-5)


def test_position_embedding_is_interpolated_on_load_and_at_run_time():
    plain = plain_timm_vit()
    model = VisionTransformer(img_size=64, out_indices=2, **TINY).eval()
    converted = model.convert_official(plain.state_dict())
    assert converted["pos_embed"].shape == (1, 8 * 8 + 1, 32)
    torch.testing.assert_close(converted["pos_embed"][:, 0], plain.pos_embed[:, 0])  # class token's kept
    grid = plain.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(converted["pos_embed"][:, 1:], expected)
    model.load_state_dict(converted)
    with torch.no_grad():
        outputs = model(images(1, 96))  # a 12x12 grid: the 8x8 embedding is resized again
    assert outputs[0].shape == (1, 32, 12, 12)
    assert resize_pos_embed(model.pos_embed, (8, 8), (8, 8)) is model.pos_embed


def test_out_origin_pre_norm_cls_tokens_and_padding():
    model = VisionTransformer(img_size=32, out_indices=(1, 2), out_origin=True, pre_norm=True,
                              output_cls_token=True, **TINY).eval()
    assert [i["module"] for i in model.feature_info] == ["patch_embed", "layers.1", "layers.2"]
    with torch.no_grad():
        outputs = model(images(1, 36))  # 36 is padded to 40 at the bottom/right ("corner")
        pairs = model.forward_with_cls_tokens(images(1, 36))
    assert [o.shape for o in outputs] == [(1, 32, 5, 5)] * 3
    assert [(m.shape, c.shape) for m, c in pairs] == [((1, 32, 5, 5), (1, 32))] * 3
    assert "pre_ln.weight" in model.state_dict()
    with pytest.raises(ArgumentError, match="output_cls_token"):
        VisionTransformer(with_cls_token=False, output_cls_token=True, **TINY)


def test_structure_type_fixes_its_arguments_and_unknown_ones_are_refused():
    with pytest.raises(ArgumentError, match=r"embed_dims=768 does not match structure_type 'jx_vit_large_p16_384'"):
        VisionTransformer(structure_type="jx_vit_large_p16_384", pretrained=False)
    with pytest.raises(ArgumentError, match="unknown structure_type 'jx_vit_huge'"):
        VisionTransformer(structure_type="jx_vit_huge", pretrained=False)
    with pytest.raises(ArgumentError, match="no official weights for structure_type None"):
        VisionTransformer(out_indices=2, **{**TINY, "pretrained": True})


def test_pretrained_uses_the_published_url_and_fails_fast_offline(no_network, hub_dir):
    with torch.device("meta"), pytest.raises(DownloadError, match="jx_vit_large_p16_384-b3be5167.pth"):
        vit_large(pretrained=True)
    assert PRETRAINED_URLS["jx_vit_large_p16_384"].endswith("/v0.1-vitjx/jx_vit_large_p16_384-b3be5167.pth")


# ----------------------------------------------------------------------------------------------- Feature2Pyramid


def test_feature2pyramid_turns_four_stride16_maps_into_strides_4_to_32():
    backbone = VisionTransformer(img_size=64, patch_size=16, embed_dims=16, num_layers=4, num_heads=2,
                                 out_indices=(0, 1, 2, 3), pretrained=False)
    neck = Feature2Pyramid(16, rescales=(4, 2, 1, 0.5), norm_cfg={"type": "BatchNorm2d"})
    described = neck.describe(backbone.feature_info)
    assert [(d["num_chs"], d["reduction"]) for d in described] == [(16, 4), (16, 8), (16, 16), (16, 32)]
    outputs = neck(backbone(images(2, 64)))
    assert [o.shape for o in outputs] == [(2, 16, 64 // d["reduction"], 64 // d["reduction"]) for d in described]
    names = {k.split(".")[0] for k in neck.state_dict()}
    assert names == {"upsample_4x", "upsample_2x"}  # SSSeg's module names; identity/max-pool hold no weights
    assert isinstance(neck.upsample_4x[1], torch.nn.BatchNorm2d) and isinstance(neck.downsample_2x,
                                                                                 torch.nn.MaxPool2d)


def test_feature2pyramid_checks_its_inputs():
    with pytest.raises(ArgumentError, match="rescales"):
        Feature2Pyramid(8, rescales=(4, 3))
    neck = Feature2Pyramid(8, rescales=(1, 0.25))
    with pytest.raises(ArgumentError, match="embed_dim=8 but an input has 16 channels"):
        neck.describe([{"num_chs": 16, "reduction": 16, "module": "a"}] * 2)
    outputs = neck([images(1, 16, channels=8)] * 2)
    assert [o.shape[-1] for o in outputs] == [16, 4]


def test_use_checkpoint_recomputes_layers_with_the_same_gradients():
    torch.manual_seed(0)
    plain = VisionTransformer(img_size=32, out_indices=2, **TINY)
    checkpointed = VisionTransformer(img_size=32, out_indices=2, use_checkpoint=True, **TINY)
    checkpointed.load_state_dict(plain.state_dict())
    for model in (plain, checkpointed):
        model.train()(images(2, 32))[0].square().mean().backward()
    torch.testing.assert_close(checkpointed.layers[0].ffn.layers[0][0].weight.grad,
                               plain.layers[0].ffn.layers[0][0].weight.grad)
