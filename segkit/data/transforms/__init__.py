"""Data transforms, registered in ``TRANSFORMS`` under SSSegmentation's names.

Each transform is ``transform(sample: dict, rng: numpy.random.Generator) -> dict``; see :mod:`.compose`.
"""

from .compose import LABEL_KEYS, Compose, Transform, build_pipeline
from .geometric import RandomCrop, RandomFlip, Resize
from .photometric import Normalize, PhotoMetricDistortion
from .tensor import Padding, ToTensor

__all__ = [
    "LABEL_KEYS",
    "Compose",
    "Normalize",
    "Padding",
    "PhotoMetricDistortion",
    "RandomCrop",
    "RandomFlip",
    "Resize",
    "ToTensor",
    "Transform",
    "build_pipeline",
]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
