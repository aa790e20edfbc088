"""ONNX backend of :func:`segkit.export.export_model`: ``torch.onnx.export`` and an onnxruntime CPU session."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import SegkitError

SUFFIX = ".onnx"
INSTALL_HINT = 'ONNX export needs onnx, onnxscript and onnxruntime: pip install "segkit[onnx]"'

log = logging.getLogger(__name__)


def check_available() -> None:
    """Raise :class:`SegkitError` with the install command when an ONNX package is missing."""
    for module in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SegkitError(f"{INSTALL_HINT} ({module} is not importable: {exc})") from None


def save(module: nn.Module, example: torch.Tensor, path: Path, opset: int | None = None) -> None:
    """Export ``module`` (one image tensor in, one logits tensor out) to ``path``.

    The ``torch.export``-based exporter (``dynamo=True``, needs onnxscript) is tried first; if it fails, the
    legacy TorchScript-based exporter is used. Weights are stored inside the file (no external data), so the
    file can be renamed after verification.
    """
    kwargs = {"input_names": ["images"], "output_names": ["logits"], "opset_version": opset}
    try:
        importlib.import_module("onnxscript")
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False, verbose=False, **kwargs)
        return
    except Exception as exc:  # any dynamo failure: fall back to the legacy exporter
        log.warning("torch.export-based ONNX export failed (%s); using the TorchScript-based exporter", exc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), dynamo=False, **kwargs)


def run(path: Path, images: torch.Tensor) -> torch.Tensor:
    """Run the exported file on ``images`` with onnxruntime's CPU provider; returns a CPU tensor."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (output,) = session.run(None, {name: images.detach().cpu().numpy()})
    return torch.from_numpy(output)
