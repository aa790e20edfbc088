"""Necks (``NECKS``): features in, features out, between the backbone and the heads (recipe table ``neck``).

A neck takes ``in_channels`` (the channels of every feature it receives, derived by the model builder) and declares
its outputs in ``feature_info`` (timm's dict format) once constructed, so heads derive their channels from it.
"""

from ...registry import import_submodules as _import_submodules

_import_submodules(__name__)  # every module here registers its components
