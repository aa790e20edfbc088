"""Export a segmentor to ONNX or TorchScript, verified against eager PyTorch before anything is written.

:func:`export_model` wraps the segmentor so that the exported graph maps a normalised ``(B, 3, H, W)`` image batch
to ``(B, num_classes, H, W)`` logits (the ``"out"`` logits resized bilinearly to the input size). The backend
(:mod:`segkit.export.onnx` or :mod:`segkit.export.torchscript`) writes a temporary file next to ``out_path``; the
file is loaded back and run on the same random inputs as the eager model, and only if the largest absolute
difference is within ``atol`` is it renamed onto ``out_path``. Otherwise nothing is left behind.
"""

from __future__ import annotations

import copy
import json
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
    """``images -> logits`` at the input resolution: what an exported segmentor computes.

    With ``normalize = (mean, std, to_rgb)`` (the test pipeline's ``Normalize``) the preprocessing is part of the
    graph: the input is then an RGB float batch in ``[0, 255]``, flipped to BGR first when the model was trained on
    BGR (``to_rgb = False``), then normalised.
    """

    def __init__(self, segmentor: nn.Module, align_corners: bool = False,
                 normalize: tuple[Sequence[float], Sequence[float], bool] | None = None) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = align_corners
        self.bgr_model = normalize is not None and not normalize[2]
        if normalize is not None:
            self.register_buffer("mean", torch.tensor(normalize[0], dtype=torch.float32).reshape(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(normalize[1], dtype=torch.float32).reshape(1, -1, 1, 1))
        self.normalize = normalize is not None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            if self.bgr_model:
                images = images.flip(1)
            images = (images - self.mean) / self.std
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
    dynamic: bool = False,
    metadata: dict | None = None,
    normalize: tuple[Sequence[float], Sequence[float], bool] | None = None,
) -> dict:
    """Export ``model`` to ``out_path`` and return a report (``format``, ``path``, ``max_abs_diff``, ``atol``,
    ``input_shape``, ``opset`` (as requested; None = the exporter's default), ``passed``, ``size_bytes``).

    The model is exported on the CPU, in eval mode (a CPU copy is made if it lives elsewhere; its training flag is
    restored afterwards). Raises :class:`SegkitError` (and writes nothing) when the format is unknown, its packages
    are missing, or the exported model differs from eager PyTorch by more than ``atol``.

    ONNX only: ``dynamic`` leaves batch, height and width free, verified at ``input_shape`` and at a second size
    (batch + 1, height + 32, width + 32); when the model does not allow it (the export fails or differs at the
    second size) the file is exported at ``input_shape`` alone and the report says why (``dynamic_error``).
    ``metadata`` goes into the file's ``metadata_props`` (JSON-encoded values) and, with the report, into
    ``model.json`` beside it. ``normalize`` bakes the preprocessing in (see :class:`LogitsExportWrapper`).
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
    check_export_memory(model, shape)
    generator = torch.Generator().manual_seed(seed)
    dynamic = dynamic and format == "onnx"
    shapes = [shape, shape] + ([(shape[0] + 1, shape[1], shape[2] + 32, shape[3] + 32)] if dynamic else [])
    scale = 255.0 if normalize is not None else 1.0  # baked preprocessing takes 0..255 images
    inputs = [torch.randn(s, generator=generator).abs().clamp(max=1) * scale if normalize is not None
              else torch.randn(s, generator=generator) for s in shapes]  # traced example + unseen probes
    cpu_model, was_training = _on_cpu(model), model.training
    wrapper = LogitsExportWrapper(cpu_model, align_corners, normalize).eval()
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}

    def save(tmp: Path, free: bool) -> None:
        backend.save(wrapper, inputs[0], tmp, opset, **({"dynamic": free} if format == "onnx" else {}))
        if props and format == "onnx":
            backend.add_metadata(tmp, props)

    dynamic_error = None
    try:
        with torch.no_grad():
            expected = [wrapper(x) for x in inputs[:2]]
        if dynamic:
            try:
                with torch.no_grad():  # the eager model itself may refuse another size
                    expected.append(wrapper(inputs[2]))
                max_diff = write_verified(out_path, save=lambda tmp: save(tmp, True),
                                          run=lambda tmp: [backend.run(tmp, x) for x in inputs],
                                          expected=expected, atol=atol)
            except Exception as exc:  # noqa: BLE001  (the model fixes a size somewhere: export it at one size)
                dynamic_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                dynamic = False
        if not dynamic:
            max_diff = write_verified(out_path, save=lambda tmp: save(tmp, False),
                                      run=lambda tmp: [backend.run(tmp, x) for x in inputs[:2]],
                                      expected=expected[:2], atol=atol)
    finally:
        model.train(was_training)
    report = {
        "format": format,
        "path": str(out_path),
        "max_abs_diff": max_diff,
        "atol": atol,
        "input_shape": list(shape),
        "opset": opset if format == "onnx" else None,
        "passed": True,
        "size_bytes": out_path.stat().st_size,
        "dynamic": dynamic,
        "dynamic_error": dynamic_error,
        "verified_shapes": [list(s) for s in (shapes[1:] if dynamic else shapes[:1])],
        "preprocessing_baked": normalize is not None,
    }
    if format == "onnx":
        report["axes"] = backend.dynamic_axes_of(out_path)
    if metadata is not None:
        from ..engine.callbacks import write_json

        # model.onnx -> model.json; model.ts -> model.ts.json (both formats can share an export folder)
        meta_path = out_path.with_suffix(".json") if format == "onnx" else out_path.with_name(out_path.name + ".json")
        report["metadata_file"] = str(meta_path)
        write_json(meta_path, {**metadata, "export": report})
    return report


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
    from ..engine.guards import writable_dir
    from ..fileio import default_mode, is_disk_full

    parent = out_path.parent
    if out_path.is_dir():
        raise SegkitError(f"--out {out_path} is a folder; give a file path, e.g. {out_path / ('model' + out_path.suffix)}"
                          if out_path.suffix else f"--out {out_path} is a folder; give a file path, e.g. "
                          f"{out_path / 'model.onnx'}")
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    writable_dir(parent, "--out")
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
        os.chmod(tmp, default_mode())  # the user's umask, not mkstemp's 0600
        os.replace(tmp, out_path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        for directory in created:  # innermost first; only directories this call made, if still empty
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()
        if isinstance(exc, (OSError, RuntimeError)) and is_disk_full(exc):
            raise SegkitError(f"disk full while writing {out_path}; nothing was written") from None
        raise
    return max_diff


def check_export_memory(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Refuse an input size whose inputs and logits alone (two random batches, their eager and exported outputs)
    exceed the free host memory: ``--input-size 100000x100000`` is reported, not an allocation error."""
    from ..engine.guards import available_memory

    batch, channels, height, width = shape
    classes = int(getattr(model, "num_classes", 0) or 1)
    need = 4 * batch * height * width * (2 * channels + 4 * classes)
    free = available_memory("cpu")
    if free is not None and need > free:
        raise SegkitError(f"--input-size {height}x{width}: exporting at that size needs more than {need / 1e9:.0f} GB "
                          f"(inputs and logits alone) but {free / 1e9:.0f} GB is free; use a smaller --input-size")


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
