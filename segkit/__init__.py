"""segkit: semantic segmentation for PyTorch, configured by TOML recipes.

The registries are importable from here, as SSSegmentation's builders are from ``ssseg.modules``::

    from segkit import BACKBONES, SEGMENTORS, DATASETS
    BACKBONES.build({"type": "ResNet", "depth": 50, "structure_type": "resnet50conv3x3stem", "pretrained": False})

``import segkit`` itself is instant: the registries (filled with every built-in component), ``build_model``,
``load_recipe`` and the subpackages are imported on first access (PEP 562), so ``segkit --help`` never loads torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy attributes are, for type checkers and IDEs
    from .api import build_model, load
    from .recipe import load_recipe
    from .registry import (
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

# albumentations asks PyPI for a newer version when it is imported (a network call, and "Error fetching version
# info" offline). Every segkit module is imported after this package's __init__, so this is the one place to
# turn it off; a user who sets the variable keeps their value.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

_REGISTRY_ATTRS = (
    "ACTIVATIONS", "BACKBONES", "CRITERIA", "DATASETS", "HEADS", "LOSSES", "NECKS", "NORMS", "OPTIMIZERS",
    "PREPARERS", "REGISTRIES", "SAMPLERS", "SCHEDULERS", "SEGMENTORS", "TARGETS", "TRANSFORMS",
)
_LAZY_ATTRS = {"Registry": "segkit.registry", "build_model": "segkit.api", "load": "segkit.api",
               "load_recipe": "segkit.recipe"}

__all__ = [  # a literal list, for linters and type checkers (the names above plus the version)
    "ACTIVATIONS", "BACKBONES", "CRITERIA", "DATASETS", "HEADS", "LOSSES", "NECKS", "NORMS", "OPTIMIZERS",
    "PREPARERS", "REGISTRIES", "SAMPLERS", "SCHEDULERS", "SEGMENTORS", "TARGETS", "TRANSFORMS",
    "Registry", "build_model", "load", "load_recipe", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_ATTRS:
        from . import registry

        registry.load_builtin_components()
        value = getattr(registry, name)
    elif name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a subpackage: segkit.models, segkit.api, ...
    else:
        raise AttributeError(f"module 'segkit' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
