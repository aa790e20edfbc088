"""Models: backbones, heads, segmentors, losses and the layers they share.

Importing this package registers every built-in component; ``segkit.models.build`` turns recipe tables into modules.
"""

from . import backbones, criteria, heads, layers, losses, necks, samplers, segmentors  # noqa: F401  (registration)
from .build import ModelPlan, build_criterion, build_segmentor, validate_model
from .pretrained import LoadReport, load_pretrained

__all__ = [
    "LoadReport",
    "ModelPlan",
    "build_criterion",
    "build_segmentor",
    "load_pretrained",
    "validate_model",
]
