"""Criteria other than the dense one (``segkit.models.losses.criterion.DenseCriterion``), registered in ``CRITERIA``:
``SetCriterion`` (Hungarian-matched query losses of MaskFormer and Mask2Former) and its ``HungarianMatcher``."""

from .matcher import HungarianMatcher
from .set_criterion import SetCriterion, format_targets

__all__ = ["HungarianMatcher", "SetCriterion", "format_targets"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
