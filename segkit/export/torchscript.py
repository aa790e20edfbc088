"""TorchScript backend of :func:`segkit.export.export_model`: ``torch.jit.trace`` and ``torch.jit.load``.

Tracing (rather than scripting) is used because it works for timm and hand-written backbones alike; data-dependent
control flow is frozen at trace time, which the verification against eager PyTorch is there to catch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

SUFFIX = ".ts"


def check_available() -> None:
    """TorchScript ships with PyTorch: nothing to check."""


def save(module: nn.Module, example: torch.Tensor, path: Path, opset: int | None = None) -> None:
    """Trace ``module`` on ``example`` and save it to ``path`` (``opset`` is ONNX-only and ignored)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")  # torch.jit is deprecated in PyTorch 2.10+
        with torch.no_grad():
            traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path))


def run(path: Path, images: torch.Tensor) -> torch.Tensor:
    """Load the saved module on the CPU and run it on ``images``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(images.detach().cpu())
