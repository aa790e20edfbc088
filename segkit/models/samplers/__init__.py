"""Pixel samplers (registered in ``SAMPLERS``): which pixels or points of a prediction a loss sees."""

from .ohem_pixel_sampler import OHEMPixelSampler
from .ug_sampler import UGSampler

__all__ = ["OHEMPixelSampler", "UGSampler"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
