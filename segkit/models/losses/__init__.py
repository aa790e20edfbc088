"""Losses (registered in ``LOSSES``) and the ``Criterion`` that maps segmentor outputs to them."""

from .cosine_similarity import CosineSimilarityLoss
from .criterion import Criterion, loss_for_output, output_for_loss
from .cross_entropy import CrossEntropyLoss
from .dice import DiceLoss
from .focal import FocalLoss
from .kldiv import KLDivLoss
from .l1 import L1Loss
from .lovasz import LovaszLoss
from .mse import MSELoss

__all__ = [
    "CosineSimilarityLoss",
    "Criterion",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "KLDivLoss",
    "L1Loss",
    "LovaszLoss",
    "MSELoss",
    "loss_for_output",
    "output_for_loss",
]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
