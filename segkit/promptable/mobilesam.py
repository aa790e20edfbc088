"""MobileSAM: SAM's prompt encoder and mask decoder on a TinyViT-5M image encoder (distilled from SAM ViT-H).

The official checkpoint (``mobile_sam.pt``) keeps TinyViT's unused ImageNet classifier (``image_encoder.head``,
``image_encoder.norm_head``); those four keys are not loaded (SSSegmentation loads it with ``strict=False`` for
that reason). Every other key must match.
"""

from __future__ import annotations

from ..models.backbones.mobilesam_tinyvit import MobileSAMTinyViT
from .checkpoint import IGNORED_CHECKPOINT_KEYS
from .models import check_image_size, sam_mask_decoder, sam_prompt_encoder
from .registry import CHECKPOINT_URLS, PROMPTABLES
from .sam import Sam

TINY_VIT_5M = {"embed_dims": (64, 128, 160, 320), "depths": (2, 2, 6, 2), "num_heads": (2, 4, 5, 10),
               "window_sizes": (7, 7, 14, 7)}
CLASSIFIER_KEYS = (r"image_encoder\.(head|norm_head)\..*",
                   "TinyViT's ImageNet classifier (head, norm_head), which SAM never runs")


def tiny_vit_encoder(image_size: int) -> MobileSAMTinyViT:
    """MobileSAM's TinyViT-5M encoder (stride 16, 256-channel neck)."""
    return MobileSAMTinyViT(img_size=image_size, drop_path_rate=0.0, **TINY_VIT_5M)


@PROMPTABLES.register("mobile_sam")
def mobile_sam(image_size: int = 1024) -> Sam:
    """MobileSAM: TinyViT-5M image encoder + SAM's prompt encoder and mask decoder (10M parameters)."""
    check_image_size(image_size, 32)
    return Sam(tiny_vit_encoder(image_size), sam_prompt_encoder(image_size), sam_mask_decoder(),
               image_size=image_size).eval()


CHECKPOINT_URLS["mobile_sam"] = "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/master/weights/mobile_sam.pt"
IGNORED_CHECKPOINT_KEYS["mobile_sam"] = CLASSIFIER_KEYS
