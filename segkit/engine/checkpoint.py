"""Checkpoints: one plain dict, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def atomic_write_bytes(path: Path, writer) -> None:
    """Call ``writer(file_object)`` on a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    atomic_write_bytes(path, lambda fh: torch.save(state, fh))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a segkit checkpoint (or a bare state dict, returned as ``{"model": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first[:200]})") from None
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        return data
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return {"model": data}
    raise CheckpointError(f"{path} is not a segkit checkpoint (expected a dict with a 'model' state dict)")


def load_model_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load weights strictly; a mismatch names the checkpoint and the first differing keys.

    A state dict in SSSegmentation 1.7's layout (``backbone_net.``, ``decoder.`` keys) is converted to the model's
    names first (:func:`segkit.models.ssseg_checkpoint.convert_ssseg_state_dict`), with one line on stderr.
    """
    import sys

    from ..models.ssseg_checkpoint import convert_ssseg_state_dict, looks_like_ssseg
    from .accel import strip_compile_prefix, unwrap_model

    model, state = unwrap_model(model), strip_compile_prefix(state)  # compile/DDP wrappers never reach the keys
    own = model.state_dict()
    if looks_like_ssseg(state) and not any(k in own for k in state):
        try:
            state = convert_ssseg_state_dict(state, model)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        print(f"{path}: an SSSegmentation checkpoint; converted its {len(state)} tensors to segkit's names",
              file=sys.stderr)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{path} does not fit this model: " + "; ".join(parts))
    model.load_state_dict(state)
