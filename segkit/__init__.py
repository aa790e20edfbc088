"""segkit: semantic segmentation for PyTorch, configured by TOML recipes.

The registries are importable from here, as SSSegmentation's builders are from ``ssseg.modules``::

    from segkit import BACKBONES, SEGMENTORS, DATASETS
    BACKBONES.build({"type": "ResNet", "depth": 50, "structure_type": "resnet50conv3x3stem", "pretrained": False})
"""

from .registry import (  # noqa: F401
    ACTIVATIONS,
    BACKBONES,
    CRITERIA,
    DATASETS,
    HEADS,
    LOSSES,
    NECKS,
    NORMS,
    OPTIMIZERS,
    PREPARERS,
    REGISTRIES,
    SAMPLERS,
    SCHEDULERS,
    SEGMENTORS,
    TARGETS,
    TRANSFORMS,
    Registry,
)

__version__ = "0.1.0"

from . import data, models  # noqa: E402,F401  (registers the built-in components)
from .api import build_model  # noqa: E402,F401
from .engine import optim as _optim  # noqa: E402,F401
from .recipe import load_recipe  # noqa: E402,F401
