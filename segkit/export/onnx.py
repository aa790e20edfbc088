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


DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
"""The image axes an export with ``dynamic=True`` leaves free (the logits share them)."""


def save(module: nn.Module, example: torch.Tensor, path: Path, opset: int | None = None,
         dynamic: bool = False) -> None:
    """Export ``module`` (one image tensor in, one logits tensor out) to ``path``.

    The ``torch.export``-based exporter (``dynamo=True``, needs onnxscript) is tried first; if it fails, the
    legacy TorchScript-based exporter is used. Weights are stored inside the file (no external data), so the
    file can be renamed after verification. ``dynamic`` leaves batch, height and width free (named ``batch``,
    ``height``, ``width`` in the file); the caller verifies the file at a second size.
    """
    kwargs = {"input_names": ["images"], "output_names": ["logits"], "opset_version": opset}
    try:
        importlib.import_module("onnxscript")
        shapes = {"images": {axis: torch.export.Dim.DYNAMIC for axis in DYNAMIC_AXES}} if dynamic else None
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=shapes, **kwargs)
        if dynamic:
            name_dynamic_axes(path)
        return
    except Exception as exc:  # any dynamo failure: fall back to the legacy exporter
        log.warning("torch.export-based ONNX export failed (%s); using the TorchScript-based exporter", exc)
    axes = {"images": DYNAMIC_AXES, "logits": DYNAMIC_AXES} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=axes, **kwargs)


def name_dynamic_axes(path: Path) -> None:
    """Rename the exporter's symbolic sizes (``s34``...) of the input's free axes to ``batch``, ``height``,
    ``width``, in the input and wherever the output uses the same symbols."""
    import onnx

    model = onnx.load(str(path))
    names: dict[str, str] = {}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for axis, name in DYNAMIC_AXES.items():
        if dims[axis].dim_param:
            names[dims[axis].dim_param] = name
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(model, str(path))


def dynamic_axes_of(path: Path) -> dict[str, list[str | int]]:
    """``{"images": [batch, 3, height, width], "logits": [...]}`` as stored (names for free axes)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Store ``metadata`` (string values) in the file's ``metadata_props`` (onnxruntime: ``get_modelmeta()``)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    onnx.save(model, str(path))


def run(path: Path, images: torch.Tensor) -> torch.Tensor:
    """Run the exported file on ``images`` with onnxruntime's CPU provider; returns a CPU tensor."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (output,) = session.run(None, {name: images.detach().cpu().numpy()})
    return torch.from_numpy(output)
