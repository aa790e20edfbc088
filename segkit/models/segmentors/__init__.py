"""Segmentors: ``forward(images) -> {"out": logits, "aux"...: logits while training}``, built from objects."""

from .base import EncoderDecoder, aux_output_names
from .fcn import FCN

__all__ = ["FCN", "EncoderDecoder", "aux_output_names"]
