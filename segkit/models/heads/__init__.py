"""Decode heads: take the backbone's feature list and return logits at feature resolution (one head per file)."""

from .auxiliary import AuxiliaryHead
from .fcn import FCNHead

__all__ = ["AuxiliaryHead", "FCNHead"]
