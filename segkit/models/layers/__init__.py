"""Shared building blocks: norm/activation factories, conv-norm-act."""

from .conv import ConvNormAct
from .dsconv import DepthwiseSeparableConv2d
from .errors import ArgumentError
from .norm_act import (
    GRN,
    HardSigmoid,
    LayerNorm2d,
    Swish,
    build_act,
    build_norm,
    is_norm,
    validate_act_cfg,
    validate_norm_cfg,
)

DEFAULT_NORM_CFG: dict = {"type": "SyncBatchNorm"}
"""SSSegmentation's default ``norm_cfg`` (built as BatchNorm2d in one process; see ``norm_act``). Never mutated."""

DEFAULT_ACT_CFG: dict = {"type": "ReLU", "inplace": True}
"""SSSegmentation's default ``act_cfg``. Never mutated."""

__all__ = [
    "ArgumentError",
    "ConvNormAct",
    "DEFAULT_ACT_CFG",
    "DEFAULT_NORM_CFG",
    "DepthwiseSeparableConv2d",
    "GRN",
    "HardSigmoid",
    "LayerNorm2d",
    "Swish",
    "build_act",
    "build_norm",
    "is_norm",
    "validate_act_cfg",
    "validate_norm_cfg",
]
