"""What the backbones built from timm modules share: structure types, norm/act factories, weights, outputs.

The SSSegmentation backbones that timm also implements (ConvNeXt, Swin, Twins, MobileNet, MobileViT, ResNeSt, HRNet)
take timm's modules, so their parameter names are timm's and a plain timm state dict loads as it is. Each backbone
file keeps its own forward (SSSegmentation's padding, dilation and per-output norms), a URL table of the weights
SSSegmentation publishes, and a function converting that checkpoint layout (mmcls, mmseg, the official repositories)
into timm's names. This module holds the pieces they have in common:

* :func:`resolve_structure`: ``structure_type`` implies architecture arguments; explicit ones must agree;
* :func:`act_factory`, :func:`norm_factory`, :func:`batch_norm_layer`, :func:`require_layer_norm`: recipe ``act_cfg`` /
  ``norm_cfg`` tables in the form timm's constructors take;
* loading goes through :func:`~segkit.models.pretrained.load_published_weights` with a ``convert`` function
  (key renames and reshapes) per backbone;
* :func:`rename_keys`, :func:`select_out_indices`, :func:`replace_modules`, :func:`run_maybe_checkpointed`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from timm.layers import Conv2dSame
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import ArgumentError, build_act, build_norm, validate_act_cfg, validate_norm_cfg

logger = logging.getLogger("segkit.models")

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict], StateDict]

BATCH_NORMS = ("BatchNorm2d", "SyncBatchNorm")
"""``norm_cfg`` types built as :class:`torch.nn.BatchNorm2d` (``SyncBatchNorm`` is converted by the engine under DDP)."""


# ----------------------------------------------------------------------------------------------- structure types


def resolve_structure(family: str, structure_type: str | None, implied: Mapping[str, Mapping[str, Any]],
                      given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Architecture arguments from the explicit ones (``None``: not given), ``structure_type`` and the defaults.

    ``implied[structure_type]`` holds the values a structure type fixes (its published weights need them); an explicit
    value that disagrees is an :class:`ArgumentError` (SSSegmentation asserts the same in
    ``AUTO_ASSERT_STRUCTURE_TYPES``, for fewer arguments and without saying which). An unknown ``structure_type`` is an
    error listing the known ones. Without ``structure_type`` the explicit values or SSSegmentation's defaults apply.
    """
    resolved = dict(defaults)
    if structure_type is not None:
        if structure_type not in implied:
            known = ", ".join(implied)
            raise ArgumentError("structure_type", f"unknown {family} structure_type '{structure_type}' "
                                f"(known: {known})")
        for name, value in implied[structure_type].items():
            explicit = given.get(name)
            if explicit is not None and _normalise(explicit) != _normalise(value):
                raise ArgumentError(name, f"{name}={explicit!r} conflicts with structure_type '{structure_type}' "
                                    f"({name}={value!r}); drop one of them")
            resolved[name] = value
    resolved.update({name: value for name, value in given.items() if value is not None})
    return resolved


def _normalise(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def select_out_indices(out_indices: Sequence[int], num_outputs: int) -> tuple[int, ...]:
    """SSSegmentation's ``out_indices`` as sorted non-negative indices (negative ones count from the end).

    Outputs come in forward order whatever the order given; duplicates and indices out of range are errors.
    """
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    resolved = [index + num_outputs if index < 0 else index for index in out_indices]
    if not resolved or any(not 0 <= index < num_outputs for index in resolved) or len(set(resolved)) != len(resolved):
        raise ArgumentError("out_indices", f"out_indices must be distinct indices into the {num_outputs} outputs "
                            f"(0..{num_outputs - 1}, or negative from the end), got {tuple(out_indices)}")
    return tuple(sorted(resolved))


def feature(num_chs: int, reduction: int, module: str) -> dict:
    """One ``feature_info`` entry (timm's format)."""
    return {"num_chs": int(num_chs), "reduction": int(reduction), "module": module}


# ----------------------------------------------------------------------------------------------- norm / act for timm


def act_factory(act_cfg: dict | None, path: str = "act_cfg") -> Callable[..., nn.Module]:
    """A function building the activation of ``act_cfg`` (checked now), in the form timm's ``act_layer`` takes.

    timm calls it with or without ``inplace``; the recipe's table decides (``act_cfg.inplace``).
    """
    validate_act_cfg(act_cfg, path)

    def make_act(*_: Any, **__: Any) -> nn.Module:
        return build_act(act_cfg, path)

    return make_act


def norm_factory(norm_cfg: dict | None, path: str = "norm_cfg") -> Callable[..., nn.Module]:
    """A function building the norm of ``norm_cfg`` for a channel count, as timm's ``norm_layer(channels)`` is called."""
    validate_norm_cfg(norm_cfg, path)

    def make_norm(channels: int, *_: Any, **__: Any) -> nn.Module:
        return build_norm(norm_cfg, channels, path)

    return make_norm


def batch_norm_layer(norm_cfg: dict | None, family: str) -> functools.partial:
    """``norm_cfg`` of the BatchNorm family as ``partial(nn.BatchNorm2d, ...)``, which timm fuses with activations.

    timm's MobileNet/ResNeSt blocks need a norm type they know (BatchNorm2d becomes BatchNormAct2d); the recipe's
    ``eps``/``momentum``/``affine``/``track_running_stats`` are kept.
    """
    kwargs = validate_norm_cfg(norm_cfg, "norm_cfg")
    if norm_cfg is None or norm_cfg.get("type") not in BATCH_NORMS:
        raise ArgumentError("norm_cfg", f"{family} supports norm_cfg types {', '.join(BATCH_NORMS)} (its published "
                            f"weights are batch-normalised), got {norm_cfg!r}")
    kwargs = {k: v for k, v in (kwargs or {}).items() if k != "process_group"}
    return functools.partial(nn.BatchNorm2d, **kwargs)


def require_layer_norm(norm_cfg: dict | None, family: str, allowed: Iterable[str]) -> dict:
    """Check that ``norm_cfg`` is one of the LayerNorm types ``allowed``; return its keyword arguments.

    Transformer and ConvNeXt blocks normalise over channels only; a recipe that gives no ``backbone.norm_cfg`` gets
    the segmentor's (usually ``SyncBatchNorm``, as SSSegmentation injects it), hence the hint.
    """
    allowed = tuple(allowed)
    kwargs = validate_norm_cfg(norm_cfg, "norm_cfg")
    if norm_cfg is None or norm_cfg.get("type") not in allowed:
        raise ArgumentError("norm_cfg", f"{family} needs a channel LayerNorm: norm_cfg = {{type = \"{allowed[0]}\", "
                            f"eps = 1e-6}} ({' or '.join(allowed)}), got {norm_cfg!r}")
    return kwargs or {}


def layer_norm_eps(norm_cfg: dict | None, family: str, allowed: Iterable[str]) -> float:
    """The ``eps`` of a LayerNorm ``norm_cfg`` (ConvNeXt's timm modules build their LayerNorms themselves)."""
    kwargs = require_layer_norm(norm_cfg, family, allowed)
    unsupported = set(kwargs or {}) - {"eps"}
    if unsupported:
        raise ArgumentError(f"norm_cfg.{sorted(unsupported)[0]}", f"{family} takes only eps from its LayerNorm "
                            "norm_cfg")
    return float(kwargs.get("eps", 1e-5))


def replace_modules(root: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...],
                    build: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule of exactly type ``kind`` by ``build(old)``; return how many were replaced."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    targets = [(name, module) for name, module in root.named_modules() if type(module) in kinds and name]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, build(module))
    return len(targets)


def set_stride_and_dilation(conv: nn.Conv2d, stride: int, dilation: int) -> None:
    """Give a built convolution another stride and dilation (SSSegmentation's outstride conversions).

    A statically padded convolution gets the symmetric padding of its new dilation; timm's ``Conv2dSame`` (TF "same"
    padding, SSSegmentation's ``AdptivePaddingConv2d``) computes its padding from stride and dilation at run time.
    """
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    if not isinstance(conv, Conv2dSame):
        conv.padding = tuple(dilation * (size - 1) // 2 for size in conv.kernel_size)


def run_maybe_checkpointed(module: nn.Module, x: Any, enabled: bool) -> Any:
    """``module(x)``, recomputed in the backward pass when ``enabled`` and training (SSSeg's ``use_checkpoint``)."""
    if enabled and module.training and torch.is_grad_enabled():
        return checkpoint(module, x, use_reentrant=False)
    return module(x)


# ----------------------------------------------------------------------------------------------- weights


Replacement = str | Callable[[re.Match], str]


def rename_keys(state_dict: StateDict, rules: Sequence[tuple[str, Replacement]], drop: Sequence[str] = ()) -> StateDict:
    """Apply the regular-expression renames ``rules`` (``re.sub`` pattern, replacement) in order to every key; keys
    matching a ``drop`` pattern go."""
    renamed: StateDict = {}
    for key, value in state_dict.items():
        if any(re.search(pattern, key) for pattern in drop):
            continue
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def fit_singleton_dims(state_dict: StateDict, module: nn.Module) -> StateDict:
    """Reshape values that differ from ``module``'s only by size-1 dimensions (GRN ``(1, 1, 1, C)`` -> ``(C,)``, a
    linear weight ``(O, I)`` -> a 1x1 convolution's ``(O, I, 1, 1)``); the others are left to be reported."""
    own = module.state_dict()
    fitted: StateDict = {}
    for key, value in state_dict.items():
        target = own.get(key)
        if target is not None and target.shape != value.shape and _squeezed(target.shape) == _squeezed(value.shape):
            value = value.reshape(target.shape)
        fitted[key] = value
    return fitted


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    return tuple(size for size in shape if size != 1)


def strip_prefix(state_dict: StateDict, prefix: str = "backbone.") -> StateDict:
    """Keys without ``prefix`` (mmcls/mmseg checkpoints nest the backbone under ``backbone.``)."""
    return {key[len(prefix):] if key.startswith(prefix) else key: value for key, value in state_dict.items()}


