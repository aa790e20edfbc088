"""The registered promptable models: SAM ViT-B/L/H (more families register in their own modules).

Builders take ``image_size`` (1024 for the official checkpoints; smaller sizes resize the encoder's position
embeddings on load, useful for tests and quick CPU runs) and return a model with random weights in eval mode.
"""

from __future__ import annotations

from torch import nn

from ..models.backbones.samvit import PRETRAINED_URLS as SAM_URLS
from ..models.backbones.samvit import STRUCTURE_ARGUMENTS as SAM_ENCODERS
from ..models.backbones.samvit import SAMViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .registry import CHECKPOINT_URLS, PROMPTABLES
from .sam import Sam
from .transformer import TwoWayTransformer

EMBED_DIM = 256
"""Prompt and mask-decoder width of every SAM-family model."""


def sam_prompt_encoder(image_size: int, stride: int = 16) -> PromptEncoder:
    grid = image_size // stride
    return PromptEncoder(EMBED_DIM, (grid, grid), (image_size, image_size), mask_in_chans=16)


def sam_mask_decoder(num_multimask_outputs: int = 3) -> MaskDecoder:
    transformer = TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8)
    return MaskDecoder(EMBED_DIM, transformer, num_multimask_outputs=num_multimask_outputs)


def check_image_size(image_size: int, multiple: int = 16) -> None:
    if image_size <= 0 or image_size % multiple:
        raise ValueError(f"image_size must be a positive multiple of {multiple}, got {image_size}")


def sam_vit_encoder(structure_type: str, image_size: int) -> nn.Module:
    """SAM's ViT image encoder (segkit's ``SAMViT``) for ``sam_vit_b``/``l``/``h``."""
    return SAMViT(img_size=image_size, structure_type=structure_type, **SAM_ENCODERS[structure_type])


def _build_sam(structure_type: str, image_size: int) -> Sam:
    check_image_size(image_size)
    model = Sam(sam_vit_encoder(structure_type, image_size), sam_prompt_encoder(image_size), sam_mask_decoder(),
                image_size=image_size)
    return model.eval()


@PROMPTABLES.register("sam_vit_b")
def sam_vit_b(image_size: int = 1024) -> Sam:
    """SAM with the ViT-B image encoder (91M parameters)."""
    return _build_sam("sam_vit_b", image_size)


@PROMPTABLES.register("sam_vit_l")
def sam_vit_l(image_size: int = 1024) -> Sam:
    """SAM with the ViT-L image encoder (308M parameters)."""
    return _build_sam("sam_vit_l", image_size)


@PROMPTABLES.register("sam_vit_h")
def sam_vit_h(image_size: int = 1024) -> Sam:
    """SAM with the ViT-H image encoder (636M parameters)."""
    return _build_sam("sam_vit_h", image_size)


CHECKPOINT_URLS.update({name: SAM_URLS[name] for name in ("sam_vit_b", "sam_vit_l", "sam_vit_h")})
