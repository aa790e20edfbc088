"""MixVisionTransformer: structure types, Segformer parameter counts, official and mmseg checkpoint layouts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segkit.errors import CheckpointError
from segkit.models.backbones.mit import (
    PRETRAINED_URLS,
    STRUCTURES,
    MixVisionTransformer,
    convert_official_mit_keys,
)
from segkit.models.layers import ArgumentError
from segkit.models.pretrained import load_pretrained

from ..helpers import count_parameters, images

LN = {"type": "LayerNorm", "eps": 1e-6}
OFFICIAL_KEYS = Path(__file__).parents[1] / "data" / "mit_keys.txt"

# Encoder parameters of MiT-B0..B5 in the Segformer paper (Xie et al. 2021, Table 1 / the official repo), in millions.
PAPER_MILLIONS = {"mit-b0": 3.4, "mit-b1": 13.1, "mit-b2": 24.2, "mit-b3": 44.0, "mit-b4": 60.8, "mit-b5": 81.4}


def mit(structure_type: str | None = "mit-b0", **kwargs) -> MixVisionTransformer:
    return MixVisionTransformer(structure_type=structure_type, pretrained=False, **kwargs)


def official_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor of the official NVlabs mit_b0.pth (tests/models/data/mit_keys.txt)."""
    lines = [line.split() for line in OFFICIAL_KEYS.read_text().splitlines() if line and not line.startswith("#")]
    return {key: tuple(int(n) for n in shape.split(",")) for key, shape in lines}


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: 0.1 * torch.randn(shape, generator=generator) for key, shape in official_shapes().items()}


@pytest.mark.parametrize("structure_type", sorted(STRUCTURES))
def test_every_structure_type_builds_with_the_segformer_encoder_size(structure_type):
    with torch.device("meta"):
        model = mit(structure_type)
    wide = structure_type != "mit-b0"
    assert model.out_channels == ([64, 128, 320, 512] if wide else [32, 64, 160, 256])
    assert model.strides == [4, 8, 16, 32]
    # the paper's rounded figures; the exact official count is checked against the official key list below
    assert abs(count_parameters(model) / 1e6 - PAPER_MILLIONS[structure_type]) < 0.1
    assert PRETRAINED_URLS[structure_type].endswith(f"/ssseg_segformer/mit_b{structure_type[-1]}.pth")


def test_mit_b0_has_exactly_the_official_parameter_count():
    official = sum(math.prod(shape) for key, shape in official_shapes().items() if not key.startswith("head."))
    assert official == 3_319_392
    assert count_parameters(mit("mit-b0")) == official


def test_official_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path):
    state_dict = official_state_dict()
    path = tmp_path / "mit_b0.pth"
    torch.save(state_dict, path)
    model = mit("mit-b0")
    report = load_pretrained(model, url=None, path=str(path))
    assert report.ok, report
    ours = model.state_dict()
    block = "layers.0.1.0."
    assert torch.equal(ours[f"{block}attn.attn.in_proj_weight"],
                       torch.cat([state_dict["block1.0.attn.q.weight"], state_dict["block1.0.attn.kv.weight"]]))
    assert torch.equal(ours[f"{block}ffn.layers.0.weight"][:, :, 0, 0], state_dict["block1.0.mlp.fc1.weight"])
    assert torch.equal(ours["layers.3.2.bias"], state_dict["norm4.bias"])
    assert torch.equal(ours["layers.1.0.projection.weight"], state_dict["patch_embed2.proj.weight"])


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """MiT-B0 as NVlabs' mix_transformer.py computes it, written out with the official tensors."""

    def norm(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, t.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-6)

    def linear(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(t, sd[f"{name}.weight"], sd[f"{name}.bias"])

    outputs, heads, sr_ratios = [], [1, 2, 5, 8], [8, 4, 2, 1]
    for stage in range(1, 5):
        x = F.conv2d(x, sd[f"patch_embed{stage}.proj.weight"], sd[f"patch_embed{stage}.proj.bias"],
                     stride=4 if stage == 1 else 2, padding=3 if stage == 1 else 1)
        batch, channels, height, width = x.shape
        x = norm(x.flatten(2).transpose(1, 2), f"patch_embed{stage}.norm")
        head_dims, sr = channels // heads[stage - 1], sr_ratios[stage - 1]
        for index in range(2):
            b = f"block{stage}.{index}"
            h = norm(x, f"{b}.norm1")
            q = linear(h, f"{b}.attn.q").reshape(batch, -1, heads[stage - 1], head_dims).transpose(1, 2)
            if sr > 1:
                h = h.transpose(1, 2).reshape(batch, channels, height, width)
                h = F.conv2d(h, sd[f"{b}.attn.sr.weight"], sd[f"{b}.attn.sr.bias"], stride=sr)
                h = norm(h.flatten(2).transpose(1, 2), f"{b}.attn.norm")
            kv = linear(h, f"{b}.attn.kv").reshape(batch, -1, 2, heads[stage - 1], head_dims).permute(2, 0, 3, 1, 4)
            attention = ((q @ kv[0].transpose(-2, -1)) * head_dims**-0.5).softmax(dim=-1)
            x = x + linear((attention @ kv[1]).transpose(1, 2).reshape(batch, -1, channels), f"{b}.attn.proj")
            h = linear(norm(x, f"{b}.norm2"), f"{b}.mlp.fc1")
            h = h.transpose(1, 2).reshape(batch, -1, height, width)
            h = F.conv2d(h, sd[f"{b}.mlp.dwconv.dwconv.weight"], sd[f"{b}.mlp.dwconv.dwconv.bias"], padding=1,
                         groups=h.shape[1])
            x = x + linear(F.gelu(h.flatten(2).transpose(1, 2)), f"{b}.mlp.fc2")
        x = norm(x, f"norm{stage}").transpose(1, 2).reshape(batch, channels, height, width)
        outputs.append(x)
    return outputs


def test_converted_official_weights_compute_what_the_official_model_computes():
    state_dict = official_state_dict(seed=3)
    model = mit("mit-b0").eval()
    model.load_state_dict(convert_official_mit_keys(state_dict), strict=True)
    x = images(1, 64)
    with torch.no_grad():
        ours, expected = model(x), official_forward(state_dict, x)
    for output, reference in zip(ours, expected, strict=True):
        assert torch.allclose(output, reference, atol=1e-4), (output - reference).abs().max()


def test_load_state_dict_converts_official_keys_also_under_a_prefix():
    state_dict = official_state_dict()
    wrapper = torch.nn.ModuleDict({"backbone": mit("mit-b0")})
    result = wrapper.load_state_dict({f"backbone.{k}": v for k, v in state_dict.items()}, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_mmseg_layout_checkpoints_load_unchanged(tmp_path):
    source = mit("mit-b0")
    path = tmp_path / "mit_b0_mmseg.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    model = MixVisionTransformer(structure_type="mit-b0", pretrained=True, pretrained_model_path=str(path))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())


def test_wrong_size_weights_are_a_checkpoint_error(tmp_path):
    path = tmp_path / "mit_b0.pth"
    torch.save(official_state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit"):
        MixVisionTransformer(structure_type="mit-b1", pretrained=True, pretrained_model_path=str(path))


def test_structure_type_implies_the_architecture_and_refuses_conflicts():
    with torch.device("meta"):
        model = mit("mit-b2")
        assert mit("mit-b2", num_layers=(3, 4, 6, 3), drop_path_rate=0.3).arch["drop_path_rate"] == 0.3
    assert model.arch["num_layers"] == [3, 4, 6, 3] and model.arch["num_heads"] == [1, 2, 5, 8]
    assert model.arch["drop_path_rate"] == 0.1 and len(model.layers[2][1]) == 6
    assert model.layers[2][1][5].attn.dropout_layer.drop_prob == pytest.approx(0.1 * 12 / 15)  # torch.linspace(0, 0.1, 16)[3 + 4 + 5]
    with pytest.raises(ArgumentError, match="embed_dims=64 conflicts with structure_type 'mit-b0'") as info:
        mit("mit-b0", embed_dims=64)
    assert str(info.value.at("backbone")).startswith("backbone.embed_dims:")
    with pytest.raises(ArgumentError, match="unknown MixVisionTransformer structure_type 'mit-b6'"):
        mit("mit-b6")


def test_without_structure_type_the_ssseg_defaults_apply():
    with torch.device("meta"):
        model = mit(None)
    assert model.arch["num_heads"] == [1, 2, 4, 8] and model.out_channels == [64, 128, 256, 512]
    assert model.arch["drop_path_rate"] == 0.0


def test_batch_norm_is_refused_with_a_hint():
    with pytest.raises(ArgumentError, match='LayerNorm') as info:
        mit("mit-b0", norm_cfg={"type": "SyncBatchNorm"})
    assert info.value.argument == "norm_cfg"


def test_out_indices_and_in_channels():
    model = mit("mit-b0", out_indices=(1, 3), in_channels=4)
    outputs = model(images(1, 64, channels=4))
    assert [o.shape[1:] for o in outputs] == [(64, 8, 8), (256, 2, 2)]
    assert [i["module"] for i in model.feature_info] == ["layers.1", "layers.3"]
    with pytest.raises(ArgumentError, match="out_indices"):
        mit("mit-b0", out_indices=(4,))


def test_use_checkpoint_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = mit("mit-b0", drop_path_rate=0.0)
    checkpointed = mit("mit-b0", drop_path_rate=0.0, use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model(images(2, 32))).backward()
        grads.append(model.layers[0][0].projection.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("structure_type", [
    "mit-b1", *(pytest.param(f"mit-b{i}", marks=pytest.mark.slow) for i in range(2, 6))])
def test_larger_structure_types_forward(structure_type):
    model = mit(structure_type).eval()
    with torch.no_grad():
        outputs = model(images(1, 64))
    assert [o.shape[1:] for o in outputs] == [(64, 16, 16), (128, 8, 8), (320, 4, 4), (512, 2, 2)]
