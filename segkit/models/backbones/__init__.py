"""Backbones: ``forward(x) -> list[Tensor]`` plus ``feature_info`` (channels, reduction, module per output)."""

from .resnet import PRETRAINED_URLS, ResNet
from .timm_backbone import TIMMBackbone

__all__ = ["PRETRAINED_URLS", "ResNet", "TIMMBackbone"]
