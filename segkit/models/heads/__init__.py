"""Decode heads: take the backbone's feature list and return logits at feature resolution (one head per file)."""

from .auxiliary import AuxiliaryHead
from .base import Head
from .dsfcn import DepthwiseSeparableFCNHead
from .fcn import FCNHead

__all__ = ["AuxiliaryHead", "DepthwiseSeparableFCNHead", "FCNHead", "Head"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
