"""SAM 2 / 2.1 image models: registry, predictor behaviour, SAM 2's decoder rules, checkpoints (small inputs)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from segkit.errors import CheckpointError, DownloadError
from segkit.promptable import CHECKPOINT_URLS, PROMPTABLES, SamPredictor, build_promptable, load_promptable
from segkit.promptable.checkpoint import IGNORED_CHECKPOINT_KEYS, load_checkpoint

SIZE = 64
VARIANTS = [f"{version}_hiera_{size}" for version in ("sam2", "sam2.1")
            for size in ("tiny", "small", "base_plus", "large")]


@pytest.fixture(scope="module")
def sam2():
    torch.manual_seed(0)
    model = build_promptable("sam2.1_hiera_tiny", image_size=SIZE)
    with torch.no_grad():  # random weights of a useful scale: masks of both signs, an active no-memory embedding
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.normal_(0, 2.0)
        model.no_mem_embed.normal_(0, 0.5)
    return model


def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.full((48, 80, 3), 30, np.uint8)
    out[10:30, 20:50] = (220, 60, 40)
    return (out + rng.integers(0, 20, out.shape)).astype(np.uint8)


def test_every_variant_is_registered_with_its_official_checkpoint():
    for name in VARIANTS:
        assert name in PROMPTABLES
        folder = "072824" if name.startswith("sam2_") else "092824"
        assert CHECKPOINT_URLS[name] == f"https://dl.fbaipublicfiles.com/segment_anything_2/{folder}/{name}.pt"


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_promptable("sam2_hiera_tiny", image_size=48)


def test_predictor_encodes_once_and_decodes_prompts_in_original_pixels(sam2):
    predictor = SamPredictor(sam2)
    assert type(predictor).__name__ == "Sam2Predictor"
    predictor.set_image(image())
    embedding = predictor.embedding
    assert embedding.image_embeddings.shape == (1, 256, SIZE // 16, SIZE // 16)
    assert [tuple(f.shape) for f in embedding.extras["high_res_features"]] == [
        (1, 32, SIZE // 4, SIZE // 4), (1, 64, SIZE // 8, SIZE // 8)]
    masks, iou, low_res = predictor.predict(point_coords=np.array([[35, 20]]), point_labels=np.array([1]))
    assert masks.shape == (3, 48, 80) and masks.dtype == bool and low_res.shape == (3, SIZE // 4, SIZE // 4)
    assert ((iou > 0) & (iou < 1)).all()  # SAM 2 predicts IoU through a sigmoid
    assert masks.any() and not masks.all()
    assert np.abs(low_res).max() <= 32.0  # clamped as the official predictor
    assert predictor.embedding is embedding  # prompts reuse the encoding
    logits, _, _ = predictor.predict(point_coords=np.array([[35, 20]]), point_labels=np.array([1]),
                                     return_logits=True)
    np.testing.assert_array_equal(logits > 0, masks)
    single, single_iou, _ = predictor.predict(box=np.array([20, 10, 50, 30]), multimask_output=False)
    assert single.shape == (1, 48, 80) and single_iou.shape == (1,)


def test_no_memory_embedding_is_added_to_the_image_embedding(sam2):
    images = torch.rand(1, 3, SIZE, SIZE) * 255
    with torch.no_grad():
        with_embed = sam2.encode_image(images).image_embeddings
        saved = sam2.no_mem_embed.clone()
        sam2.no_mem_embed.zero_()
        without = sam2.encode_image(images).image_embeddings
        sam2.no_mem_embed.copy_(saved)
    torch.testing.assert_close(with_embed - without, saved.reshape(1, -1, 1, 1).expand_as(without))


def test_a_box_is_two_points_labelled_2_and_3_before_the_clicks(sam2):
    embedding = sam2.encode_image(torch.rand(1, 3, SIZE, SIZE) * 255)
    box = torch.tensor([[8.0, 6.0, 40.0, 30.0]])
    click, click_label = torch.tensor([[[20.0, 15.0]]]), torch.tensor([[1]])
    with torch.no_grad():
        from_box = sam2.decode(embedding, click, click_label, boxes=box)
        corners = torch.cat([box.reshape(1, 2, 2), click], dim=1)
        from_points = sam2.decode(embedding, corners, torch.tensor([[2, 3, 1]]))
        reordered = sam2.decode(embedding, torch.cat([click, box.reshape(1, 2, 2)], dim=1), torch.tensor([[1, 2, 3]]))
        sparse, _ = sam2.prompt_encoder((corners, torch.tensor([[2, 3, 1]])), None, None)
    for a, b in zip(from_box, from_points, strict=True):
        torch.testing.assert_close(a, b)
    assert sparse.shape[1] == 4  # a padding point is always appended (boxes go in as points)
    with torch.no_grad():  # labels 2 and 3 embed exactly as SAM's box corners
        torch.testing.assert_close(sparse[:, :2], sam2.prompt_encoder.embed_boxes(box))
    assert not torch.allclose(from_box[0], reordered[0])  # the order is part of the prompt


def test_single_mask_falls_back_to_the_best_multimask_output_when_unstable(sam2):
    decoder = sam2.mask_decoder
    stable = torch.full((1, 1, 4, 4), -20.0)
    stable[..., :2, :] = 20.0  # margins far from 0: stability 1
    unstable = torch.full((1, 1, 4, 4), -20.0)
    unstable[..., :2, :] = 0.01  # inside +-delta: area above +delta 0 of 8 above -delta
    others = torch.randn(1, 3, 4, 4)
    iou = torch.tensor([[0.2, 0.1, 0.9, 0.3]])
    masks, scores = decoder.stable_single_mask(torch.cat([stable, others], dim=1), iou)
    torch.testing.assert_close(masks, stable)
    assert scores.item() == pytest.approx(0.2)
    masks, scores = decoder.stable_single_mask(torch.cat([unstable, others], dim=1), iou)
    torch.testing.assert_close(masks, others[:, 1:2])
    assert scores.item() == pytest.approx(0.9)


def test_object_score_and_batched_prompts(sam2):
    embedding = sam2.encode_image(torch.rand(1, 3, SIZE, SIZE) * 255)
    points = torch.tensor([[[10.0, 10.0]], [[50.0, 40.0]]])
    with torch.no_grad():
        masks, iou, scores = sam2.decode(embedding, points, torch.ones(2, 1, dtype=torch.int32),
                                         return_object_scores=True)
        first = sam2.decode(embedding, points[:1], torch.ones(1, 1, dtype=torch.int32))
    assert masks.shape == (2, 3, SIZE // 4, SIZE // 4) and iou.shape == (2, 3) and scores.shape == (2, 1)
    torch.testing.assert_close(masks[:1], first[0], rtol=1e-4, atol=1e-4)


def to_official_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """segkit's names -> the official SAM 2 checkpoint's."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^(prompt_encoder|mask_decoder)\.", r"sam_\1.", key)
        key = re.sub(r"\.mlp\.(fc|lin)([12])\.", lambda m: f".mlp.layers.{int(m.group(2)) - 1}.", key)
        out[key] = value
    return out


def test_official_layout_checkpoint_round_trip(sam2, tmp_path):
    official = to_official_layout(sam2.state_dict())
    assert any(".mlp.layers.0." in k and k.startswith("image_encoder.trunk.") for k in official)
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": official}, path)
    loaded = load_promptable("sam2.1_hiera_tiny", checkpoint=path, image_size=SIZE)
    assert "sam2.1_hiera_tiny" not in IGNORED_CHECKPOINT_KEYS  # memory modules included: nothing skipped
    torch.testing.assert_close(loaded.maskmem_tpos_enc, sam2.maskmem_tpos_enc)
    assert "no_obj_embed_spatial" in official and "no_obj_embed_spatial" not in build_promptable(
        "sam2_hiera_tiny", image_size=SIZE).state_dict()  # a SAM 2.1 addition
    predictor_a, predictor_b = SamPredictor(sam2), SamPredictor(loaded)
    for predictor in (predictor_a, predictor_b):
        predictor.set_image(image())
    out_a = predictor_a.predict(point_coords=np.array([[35, 20]]), point_labels=np.array([1]), return_logits=True)
    out_b = predictor_b.predict(point_coords=np.array([[35, 20]]), point_labels=np.array([1]), return_logits=True)
    for a, b in zip(out_a, out_b, strict=True):
        np.testing.assert_array_equal(a, b)
    del official["sam_mask_decoder.conv_s0.weight"]
    official["sam_mask_decoder.unknown.weight"] = torch.zeros(1)
    torch.save({"model": official}, path)
    with pytest.raises(CheckpointError, match="conv_s0.weight") as info:
        load_checkpoint(build_promptable("sam2.1_hiera_tiny", image_size=SIZE), "sam2.1_hiera_tiny", path)
    assert "unknown.weight" in str(info.value)


def test_offline_without_a_cached_sam2_checkpoint_says_where_to_put_it(no_network, hub_dir):
    with pytest.raises(DownloadError) as info:
        load_promptable("sam2.1_hiera_tiny", image_size=SIZE)
    message = str(info.value)
    assert "sam2.1_hiera_tiny.pt" in message and "--checkpoint" in message and str(hub_dir) in message


def test_high_resolution_features_enter_the_decoder(sam2):
    embedding = sam2.encode_image(torch.rand(1, 3, SIZE, SIZE) * 255)
    points, labels = torch.tensor([[[20.0, 20.0]]]), torch.ones(1, 1, dtype=torch.int32)
    with torch.no_grad():
        masks = sam2.decode(embedding, points, labels)[0]
        embedding.extras["high_res_features"] = [f + 1.0 for f in embedding.extras["high_res_features"]]
        shifted = sam2.decode(embedding, points, labels)[0]
    assert (masks - shifted).abs().max() > 1e-3
