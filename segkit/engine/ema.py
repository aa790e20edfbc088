"""Exponential moving average of a segmentor (SSSegmentation's ``ema_cfg``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """``ema = ema * (1 - momentum) + momentum * current`` for every state-dict entry, after each step."""

    def __init__(self, model: nn.Module, momentum: float, device: str = "cpu") -> None:
        self.momentum = momentum
        self.device = torch.device(device)
        self.module = copy.deepcopy(model).to(self.device).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for key, ema_value in self.module.state_dict().items():
            value = current[key].detach().to(self.device)
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(1.0 - self.momentum).add_(value, alpha=self.momentum)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
