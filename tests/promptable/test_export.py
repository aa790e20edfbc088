"""ONNX export of SAM's prompt encoder + mask decoder: any number of points, equal to eager decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.errors import SegkitError
from segkit.promptable.export import SamPromptDecoder, export_prompt_decoder

from .conftest import tiny_sam

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (in segkit[dev])")


def test_exported_decoder_matches_sam_decode_for_points_and_boxes(tmp_path):
    model = tiny_sam()
    report = export_prompt_decoder(model, tmp_path / "decoder.onnx")
    assert report["max_abs_diff"] < 1e-4
    session = onnxruntime.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    embedding = model.encode_image(torch.rand(1, 3, 64, 48) * 255)
    grid = embedding.image_embeddings.numpy()
    no_mask = {"mask_input": np.zeros((1, 1, 16, 16), np.float32), "has_mask_input": np.zeros(1, np.float32)}
    for count in (1, 2, 5):
        points = torch.rand(1, count, 2) * 60
        labels = torch.randint(0, 2, (1, count), dtype=torch.int32)
        with torch.no_grad():
            expected, expected_iou = model.decode(embedding, points, labels)
        padded = np.concatenate([points.numpy(), np.zeros((1, 1, 2), np.float32)], axis=1)  # eager's padding
        padded_labels = np.concatenate([labels.numpy(), -np.ones((1, 1))], axis=1).astype(np.float32)
        masks, iou = session.run(None, {"image_embeddings": grid, "point_coords": padded,
                                        "point_labels": padded_labels, **no_mask})
        np.testing.assert_allclose(masks, expected.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(iou, expected_iou.numpy(), rtol=1e-4, atol=1e-4)
    low_res = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        expected, _ = model.decode(embedding, points, labels, mask_input=low_res)
    masks, _ = session.run(None, {"image_embeddings": grid, "point_coords": padded, "point_labels": padded_labels,
                                  "mask_input": low_res.numpy(), "has_mask_input": np.ones(1, np.float32)})
    np.testing.assert_allclose(masks, expected.numpy(), rtol=1e-4, atol=1e-4)
    box = torch.tensor([[5.0, 6.0, 40.0, 50.0]])
    point = torch.tensor([[[20.0, 30.0]]])
    with torch.no_grad():
        expected, _ = model.decode(embedding, point, torch.ones(1, 1, dtype=torch.int32), box)
    coords = np.concatenate([point.numpy(), box.reshape(1, 2, 2).numpy()], axis=1)
    masks, _ = session.run(None, {"image_embeddings": grid, "point_coords": coords,
                                  "point_labels": np.array([[1, 2, 3]], np.float32), **no_mask})
    np.testing.assert_allclose(masks, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_hq_models_are_refused():
    from segkit.promptable import build_promptable

    with pytest.raises(SegkitError, match="SamHQ"):
        SamPromptDecoder(build_promptable("sam_hq_vit_tiny", image_size=64))
