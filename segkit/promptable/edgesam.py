"""EdgeSAM: SAM's prompt encoder and mask decoder on a RepViT-M1 image encoder (distilled with prompts in the loop).

Its decoder can return 1 (token 0), 3 (tokens 1-3, SAM's multimask) or 4 (all) masks, and can score masks by the
stability of their low-resolution logits instead of the IoU head (``use_stability_score``; EdgeSAM's automatic
mask generator does so).
"""

from __future__ import annotations

import torch

from ..models.backbones.edgesam_repvit import PRETRAINED_URLS, EdgeSAMRepViT
from .amg_utils import stability_score
from .models import check_image_size, sam_mask_decoder, sam_prompt_encoder
from .registry import CHECKPOINT_URLS, PROMPTABLES
from .sam import ImageEmbedding, Sam

_SLICES = {1: slice(0, 1), 3: slice(1, None), 4: slice(0, None)}


class EdgeSam(Sam):
    """SAM with EdgeSAM's decoding options (``num_multimask_outputs``, ``use_stability_score``)."""

    automatic_decode_options = {"use_stability_score": True}
    """What EdgeSAM's automatic mask generator passes to ``decode``: masks ranked by stability."""

    def __init__(self, *args, stability_score_offset: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stability_score_offset = stability_score_offset

    def decode(self, embedding: ImageEmbedding, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None, multimask_output: bool = True,
               num_multimask_outputs: int | None = None,
               use_stability_score: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`Sam.decode`; ``num_multimask_outputs`` (1, 3 or 4) overrides ``multimask_output``, and
        ``use_stability_score`` replaces the IoU predictions by the masks' stability scores."""
        count = num_multimask_outputs if num_multimask_outputs is not None else 3 if multimask_output else 1
        if count not in _SLICES:
            raise ValueError(f"num_multimask_outputs must be 1, 3 or 4, got {count}")
        sparse, dense = self.prompt_encoder(None if points is None else (points, point_labels), boxes, mask_input)
        masks, iou = self.mask_decoder.predict_masks(embedding.image_embeddings, self.prompt_encoder.get_dense_pe(),
                                                     sparse, dense)
        masks, iou = masks[:, _SLICES[count]], iou[:, _SLICES[count]]
        if use_stability_score:
            iou = stability_score(masks, self.mask_threshold, self.stability_score_offset)
        return masks, iou

    def convert_checkpoint(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """EdgeSAM's layout: the encoder's ``fuse_stage3.op_list.0`` is segkit's ``fuse_stage3.0``."""
        renamed = {k.replace("image_encoder.fuse_stage3.op_list.", "image_encoder.fuse_stage3."): v
                   for k, v in state_dict.items()}
        return super().convert_checkpoint(renamed)


def _build(image_size: int) -> EdgeSam:
    check_image_size(image_size, 32)
    encoder = EdgeSAMRepViT(arch="m1", img_size=image_size, upsample_mode="bicubic")
    return EdgeSam(encoder, sam_prompt_encoder(image_size), sam_mask_decoder(), image_size=image_size).eval()


@PROMPTABLES.register("edge_sam")
def edge_sam(image_size: int = 1024) -> EdgeSam:
    """EdgeSAM: RepViT-M1 image encoder + SAM's prompt encoder and mask decoder (10M parameters)."""
    return _build(image_size)


@PROMPTABLES.register("edge_sam_3x")
def edge_sam_3x(image_size: int = 1024) -> EdgeSam:
    """EdgeSAM trained 3x longer (same architecture as ``edge_sam``)."""
    return _build(image_size)


CHECKPOINT_URLS.update(PRETRAINED_URLS)
