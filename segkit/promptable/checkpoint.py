"""Building a promptable model by name and loading its official checkpoint strictly.

``load_promptable("sam_vit_b")`` loads the official checkpoint through the same mechanism as the backbones: from
torch.hub's cache when it is there, otherwise downloaded (an offline machine fails in seconds, saying where to put
the file). ``checkpoint=PATH`` loads a local file instead; ``pretrained=False`` keeps random weights. The
checkpoint is converted to segkit's layout and every key must match (missing, unexpected or mis-shaped keys are a
:class:`~segkit.errors.CheckpointError`), except the keys a model lists in ``IGNORED_CHECKPOINT_KEYS`` with a reason.
"""

from __future__ import annotations

import logging
import os
import re

import torch
from torch import nn

from ..errors import CheckpointError, DownloadError, SegkitError, did_you_mean
from ..models.pretrained import LoadReport, hub_cache_path, load_pretrained
from .registry import CHECKPOINT_URLS, PROMPTABLES

logger = logging.getLogger("segkit.promptable")

IGNORED_CHECKPOINT_KEYS: dict[str, tuple[str, str]] = {}
"""Model name -> (regular expression of checkpoint keys that are not loaded, why)."""


def ensure_registered() -> None:
    """Import the modules that register the promptable models."""
    from . import models  # noqa: F401
    for module in ("edgesam", "mobilesam", "samhq", "sam2"):
        try:
            __import__(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise


def promptable_names() -> list[str]:
    ensure_registered()
    return PROMPTABLES.names()


def build_promptable(name: str, **kwargs) -> nn.Module:
    """The model ``name`` with random weights (``kwargs``: the builder's arguments, e.g. ``image_size``)."""
    ensure_registered()
    if name not in PROMPTABLES:
        known = ", ".join(PROMPTABLES.names())
        raise SegkitError(f"unknown promptable model {name!r}{did_you_mean(name, PROMPTABLES.names())} "
                          f"(known: {known})")
    return PROMPTABLES.get(name)(**kwargs)


def load_promptable(name: str, checkpoint: str | os.PathLike | None = None, *, pretrained: bool = True,
                    device: str | torch.device = "cpu", **kwargs) -> nn.Module:
    """Build ``name`` and load ``checkpoint`` (a file) or, without it and with ``pretrained``, the official
    checkpoint. Returns the model in eval mode on ``device``."""
    model = build_promptable(name, **kwargs)
    if checkpoint is not None or pretrained:
        load_checkpoint(model, name, checkpoint)
    return model.to(device).eval()


def load_checkpoint(model: nn.Module, name: str, checkpoint: str | os.PathLike | None = None) -> LoadReport:
    """Load ``checkpoint`` (or the official one of ``name``) into ``model`` strictly; see the module docstring."""
    url = None if checkpoint is not None else CHECKPOINT_URLS.get(name)
    if checkpoint is None and url is None:
        raise CheckpointError(f"{name} has no published checkpoint; pass a checkpoint file")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise CheckpointError(f"checkpoint {checkpoint}: no such file")
    ignored, reason = IGNORED_CHECKPOINT_KEYS.get(name, (None, ""))

    def convert(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if ignored is not None:
            skipped = sorted(k for k in state_dict if re.fullmatch(ignored, k))
            if skipped:
                logger.info("%s: not loading %s: %s", name, ", ".join(skipped), reason)
            state_dict = {k: v for k, v in state_dict.items() if k not in skipped}
        return model.convert_checkpoint(state_dict)

    try:
        report = load_pretrained(model, url=url, path=None if checkpoint is None else str(checkpoint),
                                 convert=convert)
    except DownloadError as exc:
        reason = str(exc).split("\n", 1)[0]
        raise DownloadError(f"{reason}\nPlace the file at {hub_cache_path(url or '')} (torch.hub's cache; it is then "
                            f"used without network), or pass it: segkit infer --model {name} --checkpoint FILE "
                            f"(Python: load_promptable({name!r}, checkpoint=FILE)).") from None
    if not report.ok:
        raise CheckpointError(strict_mismatch_message(name, report))
    return report


def strict_mismatch_message(name: str, report: LoadReport) -> str:
    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
    parts = [f"{report.source} does not fit {name} (loaded strictly):"]
    if report.mismatched_keys:
        parts.append(f"  other shapes: {listed(report.mismatched_keys)}")
    missing = [k for k in report.missing_keys if k not in report.mismatched_keys]
    if missing:
        parts.append(f"  missing: {listed(missing)}")
    if report.unexpected_keys:
        parts.append(f"  unexpected: {listed(report.unexpected_keys)}")
    parts.append(f"Is it the checkpoint of another model? Promptable models: {', '.join(promptable_names())}")
    return "\n".join(parts)
