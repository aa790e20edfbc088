"""Data transforms, registered in ``TRANSFORMS`` under SSSegmentation's names (all 20 of its 1.7.0 transforms).

Each transform is ``transform(sample: dict, rng: numpy.random.Generator) -> dict``; see :mod:`.compose`.
Geometric transforms move the image and every label map (``seg_target``, ``edge_target``,
``img2aug_pos_mapper``) together; images stay ``uint8`` BGR until ``Normalize``.
"""

from .albumentations_wrapper import AlbumentationsWrapper
from .blur import PILRandomGaussianBlur, RandomGaussianBlur
from .compose import LABEL_FILL_VALUES, LABEL_KEYS, Compose, Transform, build_pipeline
from .cutout import RandomCutOut
from .edge import EdgeExtractor
from .geometric import RandomCrop, RandomFlip, Resize
from .intensity import CLAHE, AdjustGamma, Rerange, RGB2Gray
from .photometric import Normalize, PhotoMetricDistortion
from .resize_variants import RandomChoiceResize, RandomShortestEdgeResize, ResizeShortestEdge
from .rotation import RandomRotation
from .tensor import Padding, ToTensor

__all__ = [
    "CLAHE",
    "LABEL_FILL_VALUES",
    "LABEL_KEYS",
    "AdjustGamma",
    "AlbumentationsWrapper",
    "Compose",
    "EdgeExtractor",
    "Normalize",
    "PILRandomGaussianBlur",
    "Padding",
    "PhotoMetricDistortion",
    "RGB2Gray",
    "RandomChoiceResize",
    "RandomCrop",
    "RandomCutOut",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomRotation",
    "RandomShortestEdgeResize",
    "Rerange",
    "Resize",
    "ResizeShortestEdge",
    "ToTensor",
    "Transform",
    "build_pipeline",
]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
