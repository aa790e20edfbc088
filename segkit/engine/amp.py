"""Mixed precision from ``fp16_cfg`` (SSSegmentation's ``type = "pytorch"``: autocast + GradScaler)."""

from __future__ import annotations

import contextlib

import torch

from ..errors import RecipeError
from ..recipe.schema import Fp16Cfg

_DTYPES = {"float16": torch.float16, "torch.float16": torch.float16, "bfloat16": torch.bfloat16,
           "torch.bfloat16": torch.bfloat16}


class Amp:
    """``autocast()`` context and loss scaling; a no-op when ``fp16_cfg.type`` is None."""

    def __init__(self, cfg: Fp16Cfg, device: torch.device) -> None:
        if cfg.type == "apex":
            raise RecipeError("fp16_cfg.type", "apex is not supported; use type = \"pytorch\" (torch.autocast)")
        self.enabled = cfg.type == "pytorch"
        self.device_type = device.type
        autocast = dict(cfg.autocast)
        name = str(autocast.pop("dtype", "float16" if device.type == "cuda" else "bfloat16"))
        if name not in _DTYPES:
            raise RecipeError("fp16_cfg.autocast.dtype", f"expected one of {sorted(set(_DTYPES))}, got {name!r}")
        self.dtype = _DTYPES[name]
        self.autocast_kwargs = autocast
        use_scaler = self.enabled and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler, **cfg.grad_scaler)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype, **self.autocast_kwargs)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip=None) -> None:
        self.scaler.scale(loss).backward()
        if clip is not None:
            self.scaler.unscale_(optimizer)
            clip()
        self.scaler.step(optimizer)
        self.scaler.update()
