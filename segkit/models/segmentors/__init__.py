"""Segmentors: ``forward(images) -> {"out": logits, "aux"...: logits while training}``, built from objects."""

from .base import EncoderDecoder, aux_output_names
from .fcn import FCN

__all__ = ["FCN", "EncoderDecoder", "aux_output_names"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
