"""Export a segmentor to ONNX or TorchScript, verified against eager PyTorch before anything is written.

:func:`export_model` wraps the segmentor so that the exported graph maps a normalised ``(B, 3, H, W)`` image batch
to ``(B, num_classes, H, W)`` logits (the ``"out"`` logits resized bilinearly to the input size). The backend
(:mod:`segkit.export.onnx` or :mod:`segkit.export.torchscript`) writes a temporary file next to ``out_path``; the
file is loaded back and run on the same random inputs as the eager model, and only if the largest absolute
difference is within ``atol`` is it renamed onto ``out_path``. Otherwise nothing is left behind.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegkitError, did_you_mean
from . import onnx as onnx_backend
from . import torchscript as torchscript_backend

BACKENDS: dict[str, ModuleType] = {"onnx": onnx_backend, "torchscript": torchscript_backend}
"""Export formats -> backend modules, each with ``SUFFIX``, ``check_available()``, ``save()`` and ``run()``."""


class LogitsExportWrapper(nn.Module):
    """``images -> logits`` at the input resolution: what an exported segmentor computes."""

    def __init__(self, segmentor: nn.Module, align_corners: bool = False) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = align_corners

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.segmentor(images)
        logits = output["out"] if isinstance(output, dict) else output
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=self.align_corners)


def export_model(
    model: nn.Module,
    out_path: str | os.PathLike,
    *,
    format: str = "onnx",
    input_shape: Sequence[int] = (1, 3, 512, 512),
    atol: float = 1e-4,
    opset: int | None = None,
    align_corners: bool = False,
    seed: int = 0,
) -> dict:
    """Export ``model`` to ``out_path`` and return a report (``format``, ``path``, ``max_abs_diff``, ``atol``,
    ``input_shape``, ``opset`` (as requested; None = the exporter's default), ``passed``, ``size_bytes``).

    The model is exported on the CPU, in eval mode (a CPU copy is made if it lives elsewhere; its training flag is
    restored afterwards). Raises :class:`SegkitError` (and writes nothing) when the format is unknown, its packages
    are missing, or the exported model differs from eager PyTorch by more than ``atol``.
    """
    from ..engine.accel import uncompiled

    model = uncompiled(model)  # export traces the eager module, never a torch.compile wrapper
    backend = get_backend(format)
    if not getattr(model, "exportable", True):
        reason = getattr(model, "not_exportable_reason", "") or "it is marked not exportable"
        raise SegkitError(f"{type(model).__name__} cannot be exported: {reason}")
    backend.check_available()
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise SegkitError(f"input_shape must be (B, C, H, W) with positive sizes, got {tuple(input_shape)}")
    out_path = Path(out_path)
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(shape, generator=generator) for _ in range(2)]  # traced example + an unseen probe
    cpu_model, was_training = _on_cpu(model), model.training
    wrapper = LogitsExportWrapper(cpu_model, align_corners).eval()
    try:
        with torch.no_grad():
            expected = [wrapper(x) for x in inputs]
        max_diff = write_verified(
            out_path,
            save=lambda tmp: backend.save(wrapper, inputs[0], tmp, opset),
            run=lambda tmp: [backend.run(tmp, x) for x in inputs],
            expected=expected,
            atol=atol,
        )
    finally:
        model.train(was_training)
    return {
        "format": format,
        "path": str(out_path),
        "max_abs_diff": max_diff,
        "atol": atol,
        "input_shape": list(shape),
        "opset": opset if format == "onnx" else None,
        "passed": True,
        "size_bytes": out_path.stat().st_size,
    }


def get_backend(format: str) -> ModuleType:
    """The backend module for ``format``; an unknown format lists the known ones."""
    if format not in BACKENDS:
        raise SegkitError(
            f"unknown export format '{format}'{did_you_mean(format, BACKENDS)} (known: {', '.join(BACKENDS)})"
        )
    return BACKENDS[format]


def write_verified(out_path: Path, *, save, run, expected: Sequence[torch.Tensor], atol: float) -> float:
    """Write through ``save(tmp)`` to a temporary file beside ``out_path``, compare ``run(tmp)`` with ``expected``,
    and rename the file onto ``out_path`` only if the largest absolute difference is ``<= atol``.

    Returns that difference. On any failure the temporary file (and a parent directory this call created) is
    removed and the exception propagates; a mismatch raises :class:`SegkitError` naming the difference and atol.
    """
    parent = out_path.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(name)
    try:
        save(tmp)
        max_diff = max_abs_diff(run(tmp), expected)
        if not max_diff <= atol:  # also refuses NaN
            raise SegkitError(
                f"the exported model differs from eager PyTorch by {max_diff:.3g} (max abs difference), "
                f"more than atol={atol:g}; nothing was written to {out_path}"
            )
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for directory in created:  # innermost first; only directories this call made, if still empty
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()
        raise
    return max_diff


def max_abs_diff(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> float:
    """The largest absolute difference over pairs of tensors; ``inf`` on a shape mismatch, NaN propagates."""
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        if tuple(a.shape) != tuple(e.shape):
            return math.inf
        diff = (a.detach().cpu().double() - e.detach().cpu().double()).abs().max().item()
        if math.isnan(diff):
            return math.nan
        worst = max(worst, diff)
    return worst


def _on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself if all its tensors are on the CPU, else a CPU copy (the caller's model is not moved)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).cpu()
