"""Small recipes and inputs shared by the model tests."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import torch

BN = {"type": "BatchNorm2d"}
CE = {"type": "CrossEntropyLoss", "ignore_index": -100}

TINY_BACKBONE: dict[str, Any] = {
    "type": "ResNet", "structure_type": "resnet18", "base_channels": 8, "stem_channels": 8,
    "outstride": 8, "pretrained": False, "selected_indices": [2, 3],
}
"""A slim ResNet-18-D8: channels 8/16/32/64, fast on two CPU cores."""

FCN_R50_VOC_BACKBONE: dict[str, Any] = {
    "type": "ResNet", "depth": 50, "structure_type": "resnet50conv3x3stem", "pretrained": False,
    "outstride": 8, "use_conv3x3_stem": True, "selected_indices": [2, 3],
}


def make_recipe(**overrides: Any) -> SimpleNamespace:
    """A recipe object as ``segkit.recipe`` hands it to ``models.build``: FCN on a slim ResNet-18, 4 classes."""
    fields: dict[str, Any] = {
        "type": "FCN",
        "num_classes": 4,
        "align_corners": False,
        "norm_cfg": dict(BN),
        "act_cfg": {"type": "ReLU", "inplace": True},
        "backbone": dict(TINY_BACKBONE),
        "head": {"feats_channels": 16, "dropout": 0.1},
        "auxiliary": {"out_channels": 16, "dropout": 0.1},
        "losses": {"loss_cls": dict(CE), "loss_aux": {**CE, "scale_factor": 0.4}},
        "is_freeze_norm": False,
    }
    fields.update(copy.deepcopy(overrides))
    return SimpleNamespace(**fields)


def fcn_r50_voc_recipe() -> SimpleNamespace:
    """SSSegmentation's ``fcn_resnet50os8_voc``: ResNet-50-D8 (3x3 stem), FCN head 2048->512, aux 1024->512."""
    return make_recipe(
        num_classes=21,
        norm_cfg={"type": "SyncBatchNorm"},
        backbone=dict(FCN_R50_VOC_BACKBONE),
        head={"in_channels": 2048, "feats_channels": 512, "dropout": 0.1},
        auxiliary={"in_channels": 1024, "out_channels": 512, "dropout": 0.1},
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def images(batch: int = 2, size: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=generator)
