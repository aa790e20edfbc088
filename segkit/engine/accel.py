"""GPU speed settings of a recipe: ``channels_last`` and ``compile_cfg`` (``torch.compile``).

Both are segkit's own recipe keys (SSSegmentation has neither). They change how a step runs, never what it
computes, and never what is saved:

* ``channels_last = true`` stores the model's 4-d weights and the input batches in NHWC order
  (``torch.channels_last``), which lets cuDNN use its tensor-core convolution kernels without transposes.
  Convolutions given a channels-last weight return channels-last outputs, so evaluation, slide inference and
  TTA run in the same layout with no change to their code.
* ``compile_cfg.enabled = true`` compiles the segmentor **in place** with :meth:`torch.nn.Module.compile`: the
  module keeps its own class and parameter names, so its ``state_dict`` (checkpoints, EMA, export) has no
  ``_orig_mod.`` prefix, and DDP wraps it as usual. Checkpoints written by a model wrapped with
  ``torch.compile(model)`` (keys ``_orig_mod.*``) load too: :func:`strip_compile_prefix` removes the prefix.

:func:`unwrap_model` gives the plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``)
wrappers; everything that saves, averages or exports weights goes through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ..recipe.schema import CompileCfg, Recipe

COMPILE_PREFIX = "_orig_mod."


def unwrap_model(module: nn.Module) -> nn.Module:
    """The module under any DistributedDataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        else:
            return module


def strip_compile_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every ``_orig_mod.`` key segment removed (a ``torch.compile`` wrapper's prefix, also nested
    as ``head._orig_mod.conv.weight``). Keys without it are returned unchanged, in the same order."""
    if not any(COMPILE_PREFIX in key for key in state):
        return state
    return {key.replace(COMPILE_PREFIX, ""): value for key, value in state.items()}


def uncompiled(model: nn.Module) -> nn.Module:
    """The eager module for export: wrappers removed; a module compiled in place is shallow-copied (parameters
    and submodules shared) with its compiled call dropped."""
    import copy

    model = unwrap_model(model)
    if getattr(model, "_compiled_call_impl", None) is not None:
        model = copy.copy(model)  # nn.Module.__getstate__ leaves the compiled call out of the copy
        model._compiled_call_impl = None
    return model


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` (or a wrapper around it) runs through ``torch.compile``."""
    if getattr(module, "_orig_mod", None) is not None:
        return True
    return getattr(unwrap_model(module), "_compiled_call_impl", None) is not None


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the 4-d parameters and buffers of ``model`` channels-last (in place; others are unchanged)."""
    return model.to(memory_format=torch.channels_last)


def batch_to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Move an image batch ``[B, C, H, W]`` to ``device`` (in NHWC memory order when ``channels_last``)."""
    if channels_last and images.dim() == 4:
        return images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images.to(device, non_blocking=True)


def compile_kwargs(cfg: CompileCfg) -> dict[str, Any]:
    """``torch.compile`` arguments from the recipe's ``compile_cfg`` table."""
    kwargs: dict[str, Any] = {"mode": cfg.mode, "fullgraph": cfg.fullgraph, "backend": cfg.backend}
    if cfg.dynamic is not None:
        kwargs["dynamic"] = cfg.dynamic
    if cfg.options:
        kwargs["options"] = dict(cfg.options)
        kwargs.pop("mode")  # torch.compile takes either mode or options
    return kwargs


def compile_in_place(model: nn.Module, cfg: CompileCfg) -> nn.Module:
    """Compile ``model``'s forward in place (``nn.Module.compile``); its class, attributes and ``state_dict`` keys
    stay as they are. Returns ``model``."""
    model.compile(**compile_kwargs(cfg))
    return model


def apply_speed_settings(model: nn.Module, recipe: Recipe, *, compile_model: bool = True) -> nn.Module:
    """Apply the recipe's ``channels_last`` and (when ``compile_model``) ``compile_cfg`` to a model that is
    already on its device: what ``segkit eval``/``infer`` and the trainer share. Export never calls this."""
    if recipe.channels_last:
        to_channels_last(model)
    if compile_model and recipe.compile_cfg.enabled:
        compile_in_place(model, recipe.compile_cfg)
    return model


def describe(recipe: Recipe, device: torch.device) -> str:
    """One line for the run header: the speed settings in force."""
    parts = [f"channels_last={'on' if recipe.channels_last else 'off'}"]
    cc = recipe.compile_cfg
    parts.append(f"compile={cc.mode if cc.enabled else 'off'}")
    if device.type == "cuda":
        parts.append(f"cudnn.benchmark={'on' if torch.backends.cudnn.benchmark else 'off'}")
    return " ".join(parts)
