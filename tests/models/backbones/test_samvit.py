"""SAMViT (timm's VisionTransformerSAM behind the backbone contract): plain timm and SAM checkpoints load and give
identical outputs, SAM's ViT-B/L/H build with timm's parameter counts, inputs of other sizes work."""

from __future__ import annotations

import pytest
import timm
import torch

from segkit.models.backbones.samvit import (
    PRETRAINED_URLS,
    STRUCTURE_ARGUMENTS,
    SAMViT,
    convert_sam_checkpoint,
)
from segkit.models.layers import ArgumentError

from ..helpers import count_parameters, images

SMALL = {"img_size": 64, "embed_dim": 32, "depth": 2, "num_heads": 2, "out_chans": 16, "use_rel_pos": True,
         "window_size": 2, "global_attn_indexes": (1,)}


def plain_samvit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("samvit_base_patch16", pretrained=False, num_classes=0, img_size=64, embed_dim=32,
                              depth=2, num_heads=2, neck_chans=16, window_size=2, global_attn_indexes=(1,),
                              norm_layer=lambda dim, **kw: torch.nn.LayerNorm(dim, eps=1e-6, **kw)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    return model


def test_a_plain_timm_state_dict_loads_and_gives_identical_outputs(tmp_path):
    plain = plain_samvit()
    path = tmp_path / "samvit.pth"
    torch.save(plain.state_dict(), path)
    model = SAMViT(**SMALL, pretrained=True, pretrained_model_path=str(path)).eval()
    assert model.load_official_weights(str(path)).ok
    x = images(2, 64)
    with torch.no_grad():
        (output,) = model(x)
        torch.testing.assert_close(output, plain.forward_features(x))
    assert output.shape == (2, 16, 4, 4) and model.feature_info == [{"num_chs": 16, "reduction": 16,
                                                                      "module": "neck"}]


def test_a_sam_checkpoint_converts_to_the_encoder_with_no_missing_or_unexpected_keys(tmp_path):
    plain = plain_samvit()
    sam = {f"image_encoder.{k}".replace("mlp.fc", "mlp.lin"): v for k, v in plain.state_dict().items()}
    sam.update({"prompt_encoder.point_embeddings.0.weight": torch.zeros(1, 8), "mask_decoder.iou_token.weight":
                torch.zeros(1, 8)})
    assert "image_encoder.blocks.0.mlp.lin1.weight" in sam
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(sam, path)
    model = SAMViT(**SMALL).eval()
    assert model.load_official_weights(str(path)).ok
    with torch.no_grad():
        torch.testing.assert_close(model(images(1, 64))[0], plain.forward_features(images(1, 64)))
    assert set(convert_sam_checkpoint(sam)) == set(plain.state_dict())


def test_loading_resizes_position_embedding_and_relative_tables_to_the_configured_size():
    plain = plain_samvit()  # 64 px: 4x4 grid, global block tables of 2*4-1 = 7 rows
    model = SAMViT(**{**SMALL, "img_size": 128})  # 8x8 grid: 15 rows
    converted = model.convert_checkpoint(plain.state_dict())
    assert converted["pos_embed"].shape == (1, 8, 8, 32)
    assert converted["blocks.1.attn.rel_pos_h"].shape == (15, 16)
    assert converted["blocks.0.attn.rel_pos_h"].shape == (3, 16)  # windowed block: unchanged
    model.load_state_dict(converted)
    with torch.no_grad():
        assert model(images(1, 96))[0].shape == (1, 16, 6, 6)


@pytest.mark.parametrize(("structure_type", "reference"), [("sam_vit_b", "samvit_base_patch16"),
                                                           ("sam_vit_l", "samvit_large_patch16"),
                                                           ("sam_vit_h", "samvit_huge_patch16")])
def test_sam_encoders_have_timms_parameter_counts(structure_type, reference):
    # SAM's paper gives rounded totals; the comparison is timm's SAM encoder (no head), which loads SAM's files.
    with torch.device("meta"):
        model = SAMViT(structure_type=structure_type, **STRUCTURE_ARGUMENTS[structure_type])
        plain = timm.create_model(reference, num_classes=0)
    assert count_parameters(model) == count_parameters(plain)
    assert PRETRAINED_URLS[structure_type].startswith("https://dl.fbaipublicfiles.com/segment_anything/")


def test_options():
    zero = SAMViT(**SMALL)
    assert not zero.blocks[1].attn.rel_pos_h.any()
    random = SAMViT(**SMALL, rel_pos_zero_init=False)
    assert random.blocks[1].attn.rel_pos_h.abs().sum() > 0
    assert SAMViT(**{**SMALL, "use_abs_pos": False}).pos_embed is None
    with pytest.raises(ArgumentError, match="embed_dim=768 does not match structure_type 'sam_vit_l'"):
        SAMViT(structure_type="sam_vit_l", **{**STRUCTURE_ARGUMENTS["sam_vit_b"], "img_size": 64})
