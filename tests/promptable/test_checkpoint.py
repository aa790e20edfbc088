"""Official checkpoint layouts load strictly; wrong files and an offline machine give clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from segkit.errors import CheckpointError, DownloadError, SegkitError
from segkit.promptable import PROMPTABLES, build_promptable, load_checkpoint, load_promptable
from segkit.promptable.checkpoint import IGNORED_CHECKPOINT_KEYS
from segkit.promptable.registry import CHECKPOINT_URLS

from .conftest import tiny_sam

LAYOUTS = json.loads((Path(__file__).with_name("data") / "official_layouts.json").read_text())
"""Key -> shape of every official checkpoint, written from the official packages by make_official_layouts.py."""

IMPLEMENTED = [name for name in LAYOUTS if name in PROMPTABLES]


def official_layout_state_dict(name: str) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in LAYOUTS[name].items()}


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_official_layout_loads_strictly(name):
    with torch.device("meta"):
        model = build_promptable(name)
    state_dict = official_layout_state_dict(name)
    ignored = IGNORED_CHECKPOINT_KEYS.get(name, (None, ""))[0]
    if ignored is not None:
        state_dict = {k: v for k, v in state_dict.items() if not re.fullmatch(ignored, k)}
    result = model.load_state_dict(model.convert_checkpoint(state_dict), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_every_sam_size_is_registered_with_its_official_checkpoint():
    for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h"):
        assert name in IMPLEMENTED
        assert CHECKPOINT_URLS[name].startswith("https://dl.fbaipublicfiles.com/segment_anything/")


def to_official_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """segkit's (timm's) encoder names -> the official SAM ones (``mlp.fc1`` -> ``mlp.lin1``)."""
    return {re.sub(r"^(image_encoder\.blocks\.\d+\.mlp)\.fc([12])\.", r"\1.lin\2.", k): v
            for k, v in state_dict.items()}


def test_checkpoint_file_loads_and_reproduces_the_model(tmp_path):
    source, target = tiny_sam(seed=1), tiny_sam(seed=2)
    path = tmp_path / "sam_official_layout.pth"
    official = to_official_layout(source.state_dict())
    assert any(".mlp.lin1." in k for k in official)
    torch.save(official, path)
    report = load_checkpoint(target, "tiny", path)
    assert report.ok
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)
    wrapped = tmp_path / "wrapped.pth"  # {'model': ...} as SAM 2 saves them
    torch.save({"model": official}, wrapped)
    assert load_checkpoint(tiny_sam(seed=3), "tiny", wrapped).ok


def test_a_checkpoint_of_another_model_is_refused_with_the_keys(tmp_path):
    state_dict = to_official_layout(tiny_sam().state_dict())
    state_dict["mask_decoder.hf_token.weight"] = torch.zeros(1, 256)
    del state_dict["mask_decoder.iou_token.weight"]
    state_dict["mask_decoder.mask_tokens.weight"] = torch.zeros(5, 256)
    path = tmp_path / "other.pth"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tiny_sam(), "tiny", path)
    message = str(info.value)
    assert "mask_decoder.hf_token.weight" in message and "unexpected" in message
    assert "mask_decoder.iou_token.weight" in message and "missing" in message
    assert "mask_decoder.mask_tokens.weight" in message and "other shapes" in message


def test_missing_file_and_unknown_name_are_user_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_promptable("sam_vit_b", checkpoint=tmp_path / "absent.pth", image_size=64)
    with pytest.raises(SegkitError, match="did you mean 'sam_vit_b'"):
        build_promptable("sam_vit_bb")


def test_offline_without_a_cached_checkpoint_says_where_to_put_it(no_network, hub_dir):
    with pytest.raises(DownloadError) as info:
        load_promptable("sam_vit_b", image_size=64)
    message = str(info.value)
    assert "sam_vit_b_01ec64.pth" in message and "--checkpoint" in message
    assert str(hub_dir) in message


def test_official_checkpoint_is_taken_from_the_hub_cache_without_network(no_network, hub_dir):
    source = tiny_sam(seed=4)
    cached = hub_dir / "checkpoints" / "sam_vit_b_01ec64.pth"  # the file name of sam_vit_b's official URL
    cached.parent.mkdir(parents=True)
    torch.save(to_official_layout(source.state_dict()), cached)
    model = tiny_sam(seed=5)
    assert load_checkpoint(model, "sam_vit_b").source == CHECKPOINT_URLS["sam_vit_b"]
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_mobile_sam_checkpoint_classifier_keys_are_listed_and_skipped(tmp_path, caplog):
    """MobileSAM's file keeps TinyViT's classifier; those keys (only those) are skipped, and said so."""
    model = build_promptable("mobile_sam", image_size=64)
    state_dict = {**model.state_dict(), "image_encoder.head.weight": torch.zeros(1000, 320),
                  "image_encoder.norm_head.bias": torch.zeros(320)}
    path = tmp_path / "mobile_sam.pt"
    torch.save(state_dict, path)
    with caplog.at_level("INFO", logger="segkit.promptable"):
        assert load_checkpoint(build_promptable("mobile_sam", image_size=64), "mobile_sam", path).ok
    assert "image_encoder.head.weight, image_encoder.norm_head.bias" in caplog.text and "classifier" in caplog.text
    state_dict["image_encoder.extra.weight"] = torch.zeros(1)
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError, match="image_encoder.extra.weight"):
        load_checkpoint(build_promptable("mobile_sam", image_size=64), "mobile_sam", path)
