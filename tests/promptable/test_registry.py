"""Every registered promptable model builds, encodes an image once and decodes prompts of every kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.promptable import PROMPTABLES, SamPredictor, build_promptable
from segkit.promptable.registry import CHECKPOINT_URLS

LARGE = {"sam_vit_l", "sam_vit_h", "sam_hq_vit_l", "sam_hq_vit_h"}  # forward-tested through their B siblings
SMALL = [name for name in PROMPTABLES.names() if name not in LARGE]


def test_every_model_has_an_official_checkpoint_url():
    assert set(PROMPTABLES.names()) == set(CHECKPOINT_URLS)
    assert all(url.startswith("https://") for url in CHECKPOINT_URLS.values())


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_models_build_on_the_meta_device(name):
    with torch.device("meta"):
        model = build_promptable(name)
    assert sum(p.numel() for p in model.parameters()) > 300e6


@pytest.mark.parametrize("name", SMALL)
def test_model_encodes_once_and_decodes_points_boxes_and_masks(name):
    torch.manual_seed(0)
    model = build_promptable(name, image_size=64)
    predictor = SamPredictor(model)
    image = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    predictor.set_image(image)
    embedding = predictor.get_image_embedding()
    assert embedding.shape == (1, 256, 4, 4) and torch.isfinite(embedding).all()
    expected_count = 1 if name.startswith("sam_hq") else 3
    masks, scores, low_res = predictor.predict(np.array([[30.0, 20.0]]), np.array([1]))
    assert masks.shape == (expected_count, 40, 64) and masks.dtype == bool
    assert scores.shape == (expected_count,) and np.isfinite(scores).all()
    assert low_res.shape == (expected_count, 16, 16)
    single, _, _ = predictor.predict(box=np.array([5, 5, 50, 35]), mask_input=low_res[:1], multimask_output=False)
    assert single.shape == (1, 40, 64)
    assert predictor.get_image_embedding() is embedding  # prompts never re-run the encoder
