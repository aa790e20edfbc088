"""Segmentors: ``forward(images[, targets]) -> {"out": logits, ...}``; each builds itself from its recipe tables."""

from .base import EncoderDecoder, Route, Segmentor, aux_output_names
from .fcn import FCN, DepthwiseSeparableFCN

__all__ = ["FCN", "DepthwiseSeparableFCN", "EncoderDecoder", "Route", "Segmentor", "aux_output_names"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
