"""Layer-wise learning-rate decay: SSSegmentation's ``LearningRateDecayParamsConstructor``.

``params_rules = {type = "LearningRateDecayParamsConstructor", num_layers = L, decay_rate = d, decay_type = ...}``
gives every trainable parameter a layer id from its name and the learning-rate multiplier ``d ** (L + 2 - id - 1)``:
the backbone's first layers learn slowest, the heads (id ``L + 1``) at the full rate.

* ``layer_wise_vit`` (ViT/BEiT/MAE): ``backbone.patch_embed``, ``cls_token``, ``mask_token``, ``pos_embed`` -> 0;
  ``backbone.layers.{i}`` (or timm's ``blocks.{i}``) -> ``i + 1``; everything else -> ``L + 1``.
* ``layer_wise`` (ConvNeXt; a ViT-like backbone falls back to the ViT rule, as SSSegmentation picks by class):
  ``downsample_layers.{s}`` -> 0, 2, 3, ``L`` for s = 0..3; ``stages.{s}.{b}`` -> 1, 2, ``3 + b // 3``, ``L``;
  tokens -> 0; everything else -> ``L + 1``.
* ``stage_wise`` (ConvNeXt): tokens and ``downsample_layers`` -> 0; ``stages.{s}`` -> ``s + 1``; the rest ``L + 1``.

timm's ConvNeXt names (``stem``, ``stages.{s}.downsample``, ``stages.{s}.blocks.{b}``) are read as the official
ones (``downsample_layers.0``, ``downsample_layers.{s}``, ``stages.{s}.{b}``).

Weight decay is 0 for 1-D parameters, biases, ``pos_embed`` and ``cls_token``. SSSegmentation compares the *full*
name (``backbone_net.pos_embed``) with ``"pos_embed"``, so its position embedding and class token do get weight decay
(facts §12.2); segkit exempts them by their own name, as intended (and as mmseg does). Frozen parameters are left
out (SSSegmentation forces ``filter_params``).
"""

from __future__ import annotations

import re
from typing import Literal

from torch import nn

DecayType = Literal["layer_wise_vit", "layer_wise", "stage_wise"]
NO_DECAY_NAMES = ("pos_embed", "cls_token")
_TOKENS = ("cls_token", "mask_token", "pos_embed")


def _backbone_name(name: str, prefix: str) -> str | None:
    """The name inside the backbone (``None`` for parameters outside it)."""
    return name[len(prefix):] if name.startswith(prefix) else None


def vit_layer_id(name: str | None, num_layers: int) -> int:
    """Layer id of a ViT/BEiT/MAE parameter (``name`` relative to the backbone; ``None``: outside it)."""
    if name is None:
        return num_layers + 1
    if name in _TOKENS or name.startswith("patch_embed"):
        return 0
    match = re.match(r"(?:layers|blocks)\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def _convnext_position(name: str) -> tuple[str, int, int] | None:
    """``("downsample", stage, 0)`` or ``("stage", stage, block)`` for official and timm ConvNeXt names."""
    if name.startswith("stem"):
        return "downsample", 0, 0
    match = re.match(r"(?:downsample_layers\.(\d+)|stages\.(\d+)\.downsample)\.", name)
    if match:
        return "downsample", int(match.group(1) or match.group(2)), 0
    match = re.match(r"stages\.(\d+)\.(?:blocks\.)?(\d+)\.", name)
    return ("stage", int(match.group(1)), int(match.group(2))) if match else None


def convnext_layer_id(name: str | None, num_layers: int) -> int:
    """SSSegmentation's layer-wise id of a ConvNeXt parameter (12 "layers" for ConvNeXt-T/S/B/L's 3 x 9 or 27)."""
    if name is None:
        return num_layers + 1
    if name in _TOKENS:
        return 0
    position = _convnext_position(name)
    if position is None:
        return num_layers + 1
    kind, stage, block = position
    if kind == "downsample":
        return (0, 2, 3, num_layers)[min(stage, 3)]
    return (1, 2, 3 + block // 3, num_layers)[min(stage, 3)]


def convnext_stage_id(name: str | None, num_layers: int) -> int:
    """SSSegmentation's stage-wise id of a ConvNeXt parameter."""
    if name is None:
        return num_layers + 1
    if name in _TOKENS:
        return 0
    position = _convnext_position(name)
    if position is None:
        return num_layers + 1
    kind, stage, _ = position
    return 0 if kind == "downsample" else stage + 1


def _is_convnext(model: nn.Module, names: list[str]) -> bool:
    backbone = getattr(model, "backbone", model)
    if "ConvNeXt" in type(backbone).__name__:
        return True
    return any(n.startswith("downsample_layers.") or re.match(r"stages\.\d+\.", n) for n in names if n)


def lr_decay_param_groups(model: nn.Module, lr: float, weight_decay: float, num_layers: int, decay_rate: float,
                          decay_type: DecayType = "layer_wise_vit", backbone_prefix: str = "backbone.") -> list[dict]:
    """Param groups (one per layer id and decay/no-decay) with ``lr = lr_multiplier * lr``.

    Each group: ``params``, ``param_names``, ``group_name`` (``layer_{id}_{decay|no_decay}``), ``layer_id``,
    ``lr_multiplier`` (``decay_rate ** (num_layers + 2 - layer_id - 1)``), ``lr``, ``weight_decay``. A model
    without a ``backbone_prefix`` (a bare backbone) is read as the backbone itself.
    """
    if decay_type not in ("layer_wise_vit", "layer_wise", "stage_wise"):
        raise ValueError(f"decay_type must be layer_wise_vit, layer_wise or stage_wise, got {decay_type!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not any(n.startswith(backbone_prefix) for n, _ in named):
        backbone_prefix = ""
    inner = [_backbone_name(n, backbone_prefix) for n, _ in named]
    convnext = decay_type != "layer_wise_vit" and _is_convnext(model, inner)
    if decay_type == "stage_wise" and not convnext:
        raise ValueError("decay_type 'stage_wise' is defined for ConvNeXt backbones only (as in SSSegmentation)")
    layer_id = convnext_stage_id if decay_type == "stage_wise" else (convnext_layer_id if convnext else vit_layer_id)
    groups: dict[str, dict] = {}
    for (name, param), inner_name in zip(named, inner, strict=True):
        no_decay = param.ndim == 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
        index = layer_id(inner_name, num_layers)
        group_name = f"layer_{index}_{'no_decay' if no_decay else 'decay'}"
        if group_name not in groups:
            multiplier = decay_rate ** (num_layers + 2 - index - 1)
            groups[group_name] = {"params": [], "param_names": [], "group_name": group_name, "layer_id": index,
                                  "lr_multiplier": multiplier, "lr": multiplier * lr,
                                  "weight_decay": 0.0 if no_decay else weight_decay}
        groups[group_name]["params"].append(param)
        groups[group_name]["param_names"].append(name)
    return list(groups.values())
