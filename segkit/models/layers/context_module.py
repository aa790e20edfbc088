"""``build_context_module``: the ASPP or PPM "context within image" module of MCIBI, MCIBI++ and IDRNet.

SSSegmentation picks it by a ``type`` (``"aspp"`` -> :class:`~segkit.models.layers.aspp.ASPP` with ``dilations``,
``"ppm"`` -> :class:`~segkit.models.layers.ppm.PPM` with ``pool_scales`` and its 3x3 bottleneck) and a table of that
module's own keys; MCIBI++'s base table carries both keys and each type ignores the other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .aspp import ASPP
from .errors import ArgumentError
from .ppm import PPM

CONTEXT_KEYS: dict[str, str] = {"aspp": "dilations", "ppm": "pool_scales"}
"""The key each context type reads."""


def build_context_module(kind: str, cfg: Mapping[str, Any], in_channels: int, out_channels: int, *,
                         align_corners: bool = False, norm_cfg: dict | None = None, act_cfg: dict | None = None,
                         argument: str = "context_within_image") -> nn.Module:
    """An ``ASPP`` (``kind="aspp"``) or ``PPM`` (``kind="ppm"``) from ``in_channels`` to ``out_channels``.

    ``cfg`` may hold ``dilations`` and ``pool_scales``; the key of the other type is ignored, any other key is an
    :class:`ArgumentError` on ``argument``.
    """
    if kind not in CONTEXT_KEYS:
        raise ArgumentError(argument, f"unknown context type '{kind}' (choose 'aspp' or 'ppm')")
    unknown = sorted(set(cfg) - set(CONTEXT_KEYS.values()))
    if unknown:
        raise ArgumentError(argument, f"the {kind} context takes '{CONTEXT_KEYS[kind]}', not {', '.join(unknown)}")
    common = {"align_corners": align_corners, "norm_cfg": norm_cfg, "act_cfg": act_cfg}
    if kind == "aspp":
        return ASPP(in_channels, out_channels, dilations=tuple(cfg.get("dilations", (1, 12, 24, 36))), **common)
    return PPM(in_channels, out_channels, pool_scales=tuple(cfg.get("pool_scales", (1, 2, 3, 6))), **common)
