"""Backbones: ``forward(x) -> list[Tensor]`` plus ``feature_info`` (channels, reduction, module per output)."""

from .resnet import PRETRAINED_URLS, ResNet
from .timm_backbone import TIMMBackbone

__all__ = ["PRETRAINED_URLS", "ResNet", "TIMMBackbone"]

from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
