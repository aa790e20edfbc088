"""Exponential moving average of a segmentor (SSSegmentation's ``ema_cfg``), kept by timm's ``ModelEmaV3``.

SSSegmentation's ``EMASegmentor`` updates every state-dict entry after each optimizer step with
``ema = ema * (1 - momentum) + momentum * current`` (no warm-up, constant momentum) and keeps the copy on
``ema_cfg.device`` (``"cpu"`` in its configs), copying the whole state dict to that device at every step.
timm's ``ModelEmaV3`` computes the same average (``decay = 1 - momentum``; floating-point entries are
interpolated with one fused ``torch._foreach_lerp_`` when the copy shares the model's device, integer buffers
such as BatchNorm's ``num_batches_tracked`` are copied), so by default (``device = ""``) the average lives on the
model's device and nothing crosses to the host. ``device = "cpu"`` keeps SSSegmentation's placement.
"""

from __future__ import annotations

import torch
from torch import nn

from .accel import strip_compile_prefix, unwrap_model


def ema_device(model: nn.Module, device: str | None) -> torch.device:
    """Where the average lives: ``device`` (``""``/None: the model's own device; ``"cuda"`` means the model's GPU
    when the model is on one)."""
    own = next((p.device for p in model.parameters()), torch.device("cpu"))
    if not device:
        return own
    wanted = torch.device(device)
    if wanted.type == own.type and wanted.index is None:
        return own
    return wanted


class ModelEMA:
    """The averaged copy of a segmentor: ``update(model)`` after each step, ``module`` to evaluate it."""

    def __init__(self, model: nn.Module, momentum: float, device: str | None = "") -> None:
        from timm.utils.model_ema import ModelEmaV3

        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"ema_cfg.momentum must be in (0, 1], got {momentum}")
        model = unwrap_model(model)
        self.momentum = momentum
        self.device = ema_device(model, device)
        own = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._ema = ModelEmaV3(model, decay=1.0 - momentum, device=None if self.device == own else self.device)
        for p in self._ema.module.parameters():
            p.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self._ema.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights (wrappers are looked through)."""
        self._ema.update(unwrap_model(model))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(strip_compile_prefix(state))
