"""BEiT and MAE (SSSeg layout): official releases convert with no missing/unexpected keys, outputs equal the
reference architectures (timm's Beit / ViT), relative position tables and position embeddings are resized with
torch, published structure types build with the published parameter counts."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer as TimmViT

from segkit.models.backbones.beit import (
    MAE,
    MAE_PRETRAINED_URLS,
    PRETRAINED_URLS,
    STRUCTURE_ARGUMENTS,
    BEiT,
    relative_position_index,
    resize_relative_position_table,
)
from segkit.models.layers import ArgumentError
from segkit.models.pretrained import hub_cache_path

from ..helpers import count_parameters, images
from .test_vit import DATA, official_state_dict

TINY = {"patch_size": 8, "embed_dims": 32, "num_layers": 3, "num_heads": 2, "out_indices": (0, 2),
        "drop_path_rate": 0.0, "pretrained": False}


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.1)
    return model.eval()


def official_beit(img_size: int = 32) -> tuple[Beit, dict[str, torch.Tensor]]:
    """A small BEiT in the reference architecture and its state dict in the official release's layout."""
    model = randomized(Beit(img_size=img_size, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=5,
                            use_abs_pos_emb=False, use_rel_pos_bias=True, init_values=0.1))
    state = dict(model.state_dict())
    for index in range(3):  # the official files also hold the (derived) index buffers
        state[f"blocks.{index}.attn.relative_position_index"] = relative_position_index((img_size // 8,) * 2)
    return model, state


@pytest.mark.parametrize(("structure_type", "keys"), [("beit_base_patch16_224_pt22k_ft22k", "beit_keys.txt"),
                                                      ("beit_large_patch16_224_pt22k_ft22k", "beit_large_keys.txt")])
def test_official_beit_keys_convert_to_exactly_this_layout(structure_type, keys):
    with torch.device("meta"):
        model = BEiT(structure_type=structure_type, pretrained=False, **STRUCTURE_ARGUMENTS[structure_type])
    converted = model.convert_official(official_state_dict(DATA / keys))
    own = model.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}
    # 224 px (14x14 window) -> 640 px (40x40): (2*40-1)^2 + 3 relative positions
    assert converted["layers.0.attn.relative_position_bias_table"].shape[0] == 79 * 79 + 3


def test_official_mae_keys_convert_with_the_gammas_and_tables_it_lacks_kept_at_their_initial_values():
    with torch.device("meta"):
        model = MAE(structure_type="mae_pretrain_vit_base", pretrained=False)
    official = official_state_dict(DATA / "mae_keys.txt")
    converted = model.convert_official(official)
    own = model.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}
    assert converted["pos_embed"].shape == (1, 40 * 40 + 1, 768)
    assert not any(k.startswith(("norm.", "head.")) for k in converted)


def test_beit_outputs_equal_the_reference_after_loading_an_official_file(tmp_path):
    reference, state = official_beit()
    path = tmp_path / "beit.pth"
    torch.save({"model": state}, path)
    model = BEiT(img_size=32, **TINY).eval()
    report = model.load_official_weights(str(path))
    assert report.ok
    x = images(2, 32)
    with torch.no_grad():
        outputs, expected = model(x), reference.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
    for output, target in zip(outputs, expected, strict=True):
        torch.testing.assert_close(output, target, atol=1e-5, rtol=1e-5)


def test_relative_position_tables_are_resized_on_load_and_at_run_time_alike():
    _, state = official_beit(img_size=32)  # 4x4 window
    large = BEiT(img_size=64, **TINY).eval()  # 8x8 window: tables resized on load
    large.load_state_dict(large.convert_official(state))
    small = BEiT(img_size=32, **TINY).eval()  # 4x4 window: tables resized on the fly for a 64 px input
    small.load_state_dict(small.convert_official(state))
    assert large.layers[0].attn.relative_position_bias_table.shape == (15 * 15 + 3, 2)
    with torch.no_grad():
        for a, b in zip(large(images(1, 64)), small(images(1, 64)), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_table_resize_keeps_class_token_entries_and_constants():
    table = torch.randn(7 * 7 + 3, 2)
    assert resize_relative_position_table(table, (4, 4)) is table
    resized = resize_relative_position_table(table, (6, 6))
    assert resized.shape == (11 * 11 + 3, 2) and torch.equal(resized[-3:], table[-3:])
    constant = resize_relative_position_table(torch.full((7 * 7 + 3, 1), 0.5), (6, 6))
    torch.testing.assert_close(constant, torch.full_like(constant, 0.5))
    index = relative_position_index((2, 3))
    assert index.shape == (7, 7) and index[0, 0] == 5 * 3 + 2 and index[1, 1] == index[2, 2] == (2 - 1) * 5 + 2


def test_mae_outputs_equal_the_reference_vit_and_the_missing_parameters_keep_their_initial_values(tmp_path):
    reference = randomized(TimmViT(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=0))
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": reference.state_dict()}, path)
    model = MAE(img_size=32, **{**TINY, "pretrained": True}, pretrained_model_path=str(path)).eval()
    report = model.load_official_weights(str(path))
    assert report.ok
    assert all(torch.all(layer.gamma_1 == 1.0) and not layer.attn.relative_position_bias_table.any()
               for layer in model.layers)
    x = images(2, 32)
    with torch.no_grad():
        outputs, expected = model(x), reference.forward_intermediates(x, indices=[0, 2], intermediates_only=True)
    for output, target in zip(outputs, expected, strict=True):
        torch.testing.assert_close(output, target, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert model(images(1, 48))[0].shape == (1, 32, 6, 6)  # position embedding resized on the fly


def test_pretrained_loads_the_published_file_from_the_hub_cache(no_network, hub_dir, tmp_path):
    _, state = official_beit(img_size=32)
    cached = hub_cache_path(PRETRAINED_URLS["beit_base_patch16_224_pt22k_ft22k"])
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(state, cached)
    model = BEiT("beit_base_patch16_224_pt22k_ft22k", img_size=32, **{**TINY, "pretrained": True})
    torch.testing.assert_close(model.layers[1].gamma_2, state["blocks.1.gamma_2"])
    assert MAE_PRETRAINED_URLS["mae_pretrain_vit_base"].startswith("https://dl.fbaipublicfiles.com/mae/pretrain/")


@pytest.mark.parametrize(("name", "reference"), [("beit_base_patch16_224_pt22k_ft22k", "beit_base_patch16_224"),
                                                 ("beit_large_patch16_224_pt22k_ft22k", "beit_large_patch16_224")])
def test_beit_parameters_match_the_reference_without_head(name, reference):
    with torch.device("meta"):
        model = BEiT(name, img_size=224, pretrained=False, **STRUCTURE_ARGUMENTS[name])
        plain = timm.create_model(reference, num_classes=0)  # keeps fc_norm, which this backbone has not
    assert count_parameters(model) == count_parameters(plain) - count_parameters(plain.fc_norm)
    if "base" in name:  # BEiT paper (Bao et al. 2022), Table 1: BEiT-B has 86M parameters
        assert round(count_parameters(model) / 1e6) == 86


def test_mae_base_parameters():
    with torch.device("meta"):
        model = MAE("mae_pretrain_vit_base", img_size=224, pretrained=False)
        plain = timm.create_model("vit_base_patch16_224.mae", num_classes=0)
    extra = sum(layer.gamma_1.numel() * 2 + layer.attn.relative_position_bias_table.numel() for layer in model.layers)
    assert count_parameters(model) == count_parameters(plain) - count_parameters(plain.norm) + extra
    assert round(count_parameters(plain) / 1e6) == 86  # MAE (He et al. 2022) fine-tunes ViT-B: 86M (ViT paper)


def test_structure_type_checks():
    with pytest.raises(ArgumentError, match=r"embed_dims=768 does not match .*embed_dims=1024"):
        BEiT("beit_large_patch16_224_pt22k_ft22k", pretrained=False)
    with pytest.raises(ArgumentError, match="unknown structure_type"):
        MAE("beit_base_patch16_224_pt22k_ft22k", pretrained=False)
