"""Fixtures: a small SAM (a 2-block ViT at 64x64 with the real prompt encoder and mask decoder), no network (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from segkit.models.backbones.samvit import SAMViT
from segkit.promptable.models import sam_mask_decoder, sam_prompt_encoder
from segkit.promptable.sam import Sam

TINY_SIZE = 64


def tiny_sam(seed: int = 0, image_size: int = TINY_SIZE) -> Sam:
    """SAM with a small ViT (dim 32, 2 blocks, window 2 and one global block); decoder and prompt encoder as
    published. Random weights of a useful scale: the mask MLPs are enlarged so masks are not all one sign."""
    torch.manual_seed(seed)
    encoder = SAMViT(img_size=image_size, embed_dim=32, depth=2, num_heads=2, window_size=2,
                     global_attn_indexes=(1,), use_rel_pos=True, rel_pos_zero_init=False)
    model = Sam(encoder, sam_prompt_encoder(image_size), sam_mask_decoder(), image_size=image_size).eval()
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(20)
    return model


@pytest.fixture
def small_sam() -> Sam:
    return tiny_sam()
