"""``Mask2Former`` (Cheng et al. 2022): masked-attention mask transformer, as SSSegmentation builds it for semantic
segmentation. Trained by :class:`~segkit.models.criteria.SetCriterion` (no ``[losses]``); eval returns SSSegmentation's
semantic class probabilities at the input size (see :mod:`segkit.models.segmentors.maskformer`)."""

from __future__ import annotations

from ...registry import SEGMENTORS
from .maskformer import QuerySegmentor


@SEGMENTORS.register("Mask2Former")
class Mask2Former(QuerySegmentor):
    """Backbone (4 levels) -> :class:`~segkit.models.heads.mask2former.Mask2FormerHead` (deformable-attention pixel
    decoder, masked-attention transformer decoder), trained with SSSegmentation's Mask2Former settings: Hungarian
    matching on 12,544 shared random points (class/BCE/dice costs 2/5/5), BCE and dice losses at 12,544 uncertain
    points (oversampling 3, importance 0.75), the same weights, no-object weight 0.1, deep supervision."""

    head_type = "Mask2FormerHead"
    ssseg_prefixes = {
        "backbone_net": "backbone", "pixel_decoder": "head.pixel_decoder", "predictor": "head.predictor",
        "auxiliary_decoder": "aux_heads",
    }
    set_criterion_defaults = {
        "eos_coef": 0.1,
        "mask_loss": "bce",
        "losses": ("labels", "masks"),
        "point_sampling": {"num_points": 12544, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75},
        "matcher": {"cost_class": 2.0, "cost_mask": 5.0, "cost_dice": 5.0, "num_points": 12544, "mask_cost": "bce"},
    }
