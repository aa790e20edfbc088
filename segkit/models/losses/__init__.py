"""Losses (registered in ``LOSSES``) and the ``Criterion`` that maps segmentor outputs to them."""

from .criterion import Criterion, loss_for_output, output_for_loss
from .cross_entropy import CrossEntropyLoss

__all__ = ["Criterion", "CrossEntropyLoss", "loss_for_output", "output_for_loss"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
