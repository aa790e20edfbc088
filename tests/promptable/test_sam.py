"""SAM's prompt encoder, two-way transformer, mask decoder and predictor against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segkit.promptable.predictor import SamPredictor
from segkit.promptable.transformer import Attention
from segkit.promptable.transforms import ResizeLongestSide, preprocess_shape

from .conftest import TINY_SIZE


def fourier(coords: torch.Tensor, gaussian: torch.Tensor) -> torch.Tensor:
    projected = 2 * math.pi * ((2 * coords - 1) @ gaussian)
    return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)


def test_prompt_encoder_points_boxes_and_dense_follow_the_formulas(small_sam):
    encoder = small_sam.prompt_encoder
    gaussian = encoder.pe_layer.positional_encoding_gaussian_matrix
    points = torch.tensor([[[10.0, 20.0], [40.0, 5.0]]])
    labels = torch.tensor([[1, 0]])
    box = torch.tensor([[3.0, 4.0, 50.0, 60.0]])
    with torch.no_grad():
        sparse, dense = encoder((points, labels), None, None)
        sparse_box, _ = encoder((points, labels), box, None)
    expected = fourier((points[0] + 0.5) / TINY_SIZE, gaussian)
    expected[0] += encoder.point_embeddings[1].weight[0]
    expected[1] += encoder.point_embeddings[0].weight[0]
    pad = encoder.not_a_point_embed.weight[0]  # no box: a padding point is appended
    assert sparse.shape == (1, 3, 256)
    torch.testing.assert_close(sparse[0, :2], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse[0, 2], pad)
    corners = fourier((box.reshape(2, 2) + 0.5) / TINY_SIZE, gaussian)
    corners[0] += encoder.point_embeddings[2].weight[0]
    corners[1] += encoder.point_embeddings[3].weight[0]
    assert sparse_box.shape == (1, 4, 256)  # with a box: no padding point
    torch.testing.assert_close(sparse_box[0, 2:], corners, rtol=1e-5, atol=1e-5)
    grid = TINY_SIZE // 16
    torch.testing.assert_close(dense, encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, grid, grid))
    centres = (torch.arange(grid) + 0.5) / grid
    cell = torch.stack([centres[2], centres[1]])  # x of column 2, y of row 1
    torch.testing.assert_close(encoder.get_dense_pe()[0, :, 1, 2], fourier(cell, gaussian), rtol=1e-5, atol=1e-5)


def test_prompt_encoder_mask_prompt_uses_the_downscaling_convs(small_sam):
    encoder = small_sam.prompt_encoder
    mask = torch.randn(2, 1, *encoder.mask_input_size)
    with torch.no_grad():
        _, dense = encoder(None, None, mask)
        expected = encoder.mask_downscaling(mask)
    assert dense.shape == (2, 256, TINY_SIZE // 16, TINY_SIZE // 16)
    torch.testing.assert_close(dense, expected)


def test_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    attention = Attention(64, num_heads=4, downsample_rate=2).eval()
    q, k, v = torch.randn(2, 5, 64), torch.randn(2, 9, 64), torch.randn(2, 9, 64)
    with torch.no_grad():
        heads = [t.reshape(2, -1, 4, 8).transpose(1, 2) for t in
                 (attention.q_proj(q), attention.k_proj(k), attention.v_proj(v))]
        weights = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(8), dim=-1)
        expected = attention.out_proj((weights @ heads[2]).transpose(1, 2).reshape(2, 5, 32))
        torch.testing.assert_close(attention(q, k, v), expected, rtol=1e-5, atol=1e-5)


def test_decoding_a_batch_of_prompts_equals_decoding_each(small_sam):
    image = torch.rand(1, 3, TINY_SIZE, 48) * 255
    embedding = small_sam.encode_image(image)
    points = torch.tensor([[[5.0, 7.0]], [[30.0, 40.0]], [[20.0, 10.0]]])
    labels = torch.ones(3, 1, dtype=torch.int32)
    with torch.no_grad():
        batched, iou = small_sam.decode(embedding, points, labels)
        singles = [small_sam.decode(embedding, points[i:i + 1], labels[i:i + 1]) for i in range(3)]
        every, every_iou = small_sam.mask_decoder.predict_masks(
            embedding.image_embeddings, small_sam.prompt_encoder.get_dense_pe(),
            *small_sam.prompt_encoder((points, labels), None, None))
        single_mask, single_iou = small_sam.decode(embedding, points, labels, multimask_output=False)
    assert batched.shape == (3, 3, TINY_SIZE // 4, TINY_SIZE // 4) and iou.shape == (3, 3)
    for index, (mask, score) in enumerate(singles):
        torch.testing.assert_close(batched[index:index + 1], mask, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(iou[index:index + 1], score, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched, every[:, 1:])  # multimask: tokens 1..3
    torch.testing.assert_close(single_mask, every[:, :1])  # single: token 0
    torch.testing.assert_close(single_iou, every_iou[:, :1])
    assert batched.std() > 1.0  # masks are not constant: the comparison above means something


def test_predictor_maps_prompts_into_the_resized_frame_and_back(small_sam):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    predictor = SamPredictor(small_sam)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    predictor.set_image(image)
    assert predictor.input_size == preprocess_shape(30, 50, TINY_SIZE) == (38, 64)
    assert predictor.original_size == (30, 50)
    point, box = np.array([[20.0, 12.0]]), np.array([4.0, 3.0, 40.0, 25.0])
    masks, iou, low_res = predictor.predict(point, np.array([1]), box=box, return_logits=True)
    binary, _, _ = predictor.predict(point, np.array([1]), box=box)
    assert masks.shape == (3, 30, 50) and iou.shape == (3,) and low_res.shape == (3, 16, 16)
    np.testing.assert_array_equal(binary, masks > 0)
    scale = torch.tensor([64 / 50, 38 / 30])
    resized = torch.tensor(image).permute(2, 0, 1)[None].float()
    resized = torch.nn.functional.interpolate(resized, (38, 64), mode="bilinear", antialias=True)
    with torch.no_grad():
        low, _ = small_sam.decode(predictor.embedding, torch.tensor(point, dtype=torch.float32)[None] * scale,
                                  torch.ones(1, 1, dtype=torch.int32),
                                  torch.tensor(box, dtype=torch.float32).reshape(2, 2).mul(scale).reshape(1, 4))
    np.testing.assert_allclose(low_res, low[0].numpy(), rtol=1e-4, atol=1e-4)
    full = torch.nn.functional.interpolate(low, (TINY_SIZE, TINY_SIZE), mode="bilinear")[..., :38, :64]
    full = torch.nn.functional.interpolate(full, (30, 50), mode="bilinear")
    np.testing.assert_allclose(masks, full[0].numpy(), rtol=1e-4, atol=1e-4)
    again, _, _ = predictor.predict(point, np.array([1]), mask_input=low_res[:1], multimask_output=False)
    assert again.shape == (1, 30, 50)
    bgr = SamPredictor(small_sam)
    bgr.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    torch.testing.assert_close(bgr.features, predictor.features)


def test_resize_longest_side():
    transform = ResizeLongestSide(64)
    image = np.zeros((30, 50, 3), np.uint8)
    assert transform.apply_image(image).shape == (38, 64, 3)
    np.testing.assert_allclose(transform.apply_coords(np.array([[50.0, 30.0]]), (30, 50)), [[64.0, 38.0]])
    np.testing.assert_allclose(transform.apply_boxes(np.array([0, 0, 25, 15]), (30, 50)), [[0, 0, 32, 19]])
    assert preprocess_shape(1000, 1500, 1024) == (683, 1024)


def test_set_torch_image_checks_its_input(small_sam):
    predictor = SamPredictor(small_sam)
    with pytest.raises(ValueError, match="long side of 64"):
        predictor.set_torch_image(torch.zeros(1, 3, 32, 32), (32, 32))
    with pytest.raises(ValueError, match="HxWx3"):
        predictor.set_image(np.zeros((10, 10), np.uint8))
