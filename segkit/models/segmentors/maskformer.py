"""``MaskFormer`` (Cheng et al. 2021): semantic segmentation as mask classification, as SSSegmentation builds it.

The head predicts ``num_queries`` (class, mask) pairs; training matches them to the ground-truth class masks
(:class:`~segkit.models.criteria.SetCriterion`, the default criterion: recipes have no ``[losses]``). In eval mode
the pairs become a semantic map of class *probabilities* at the input size (SSSegmentation's semantic inference)::

    out[b, k] = sum_q softmax(pred_logits[b, q])[k] * sigmoid(upsample(pred_masks[b, q]))   (k < num_classes)

so evaluation, TTA, slide inference and export read ``"out"`` as for any segmentor (its values are probabilities,
not logits: SSSegmentation's configs keep ``use_probs_before_resize = false``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ...errors import RecipeError
from ...registry import SEGMENTORS
from .base import EncoderDecoder


def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor, size: tuple[int, int] | torch.Size,
                       align_corners: bool = False) -> torch.Tensor:
    """``[B, Q, K + 1]`` class logits and ``[B, Q, h, w]`` mask logits -> ``[B, K, H, W]`` class probabilities: the
    mask logits are resized to ``size`` first, then ``einsum(softmax(cls)[..., :-1], sigmoid(masks))``."""
    masks = F.interpolate(pred_masks, size=tuple(size), mode="bilinear", align_corners=align_corners)
    return torch.einsum("bqc,bqhw->bchw", pred_logits.softmax(-1)[..., :-1], masks.sigmoid())


class QuerySegmentor(EncoderDecoder):
    """Backbone -> (neck) -> a query head returning ``pred_logits``/``pred_masks`` (+ deep supervision); the shared
    base of MaskFormer and Mask2Former. No auxiliary heads (SSSegmentation builds them but never trains them)."""

    criterion_type = "SetCriterion"
    set_criterion_defaults: ClassVar[dict[str, Any]] = {}
    """SetCriterion's defaults for this segmentor (SSSegmentation's values); a recipe's ``[criterion]`` overrides."""
    ssseg_dropped_keys: ClassVar[tuple[str, ...]] = ("criterion.empty_weight",)
    """SSSegmentation keeps the criterion's no-object class weights in its checkpoints; segkit rebuilds them."""

    @classmethod
    def from_recipe(cls, builder: Any) -> QuerySegmentor:
        if getattr(builder.recipe, "auxiliary", None):
            raise RecipeError("auxiliary", f"{cls.__name__} takes no auxiliary heads (its decoder layers are "
                              "deep-supervised instead; SSSegmentation builds them but never trains them): remove "
                              "the auxiliary table")
        head_table = getattr(builder.recipe, "head", None)
        for key, where in (("matcher", "[criterion.matcher] (HungarianMatcher: cost_class, cost_mask, cost_dice, "
                                       "num_points)"),
                           ("criterion", "[criterion] (eos_coef, losses; pixelsampler_cfg's num_points, "
                                         "oversample_ratio and importance_sample_ratio -> point_sampling)")):
            if isinstance(head_table, dict) and key in head_table:
                raise RecipeError(f"head.{key}", f"SSSegmentation keeps this table in the head; segkit's SetCriterion "
                                  f"reads it from {where}")
        backbone, features = builder.backbone()
        neck, features = builder.neck(features)
        head = builder.head(features, default_type=cls.head_type)
        return cls(backbone=backbone, neck=neck, head=head, selected_indices=builder.selected_indices,
                   align_corners=builder.align_corners)

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        predictions = self.head(self.extract_features(images))
        if self.training:
            return predictions
        return {"out": semantic_inference(predictions["pred_logits"], predictions["pred_masks"], images.shape[-2:],
                                          self.align_corners)}

    def output_names(self, training: bool = True) -> list[str]:
        return self.head.training_outputs() if training else ["out"]


@SEGMENTORS.register("MaskFormer")
class MaskFormer(QuerySegmentor):
    """Backbone -> :class:`~segkit.models.heads.maskformer.MaskFormerHead` (UPerNet-style pixel decoder, DETR
    decoder), trained by SetCriterion with SSSegmentation's MaskFormer settings: class/mask/dice weights 1/20/1,
    focal mask loss on every pixel, no-object weight 0.1."""

    head_type = "MaskFormerHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "ppm_net": "head.ppm_net", "lateral_convs": "head.lateral_convs",
        "fpn_convs": "head.fpn_convs", "decoder_mask": "head.decoder_mask",
        "decoder_predictor": "head.decoder_predictor", "auxiliary_decoder": "aux_heads",
    }
    set_criterion_defaults = {
        "eos_coef": 0.1,
        "mask_loss": "focal",
        "losses": ("labels", "masks"),
        "point_sampling": {"num_points": 0},
        "matcher": {"cost_class": 1.0, "cost_mask": 20.0, "cost_dice": 1.0, "num_points": 0, "mask_cost": "focal"},
    }
