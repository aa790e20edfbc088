"""Test-time inference as SSSegmentation does it: whole or sliding-window forward, multi-scale and flip TTA.

``predict_logits`` runs the segmentor (``model(images)["out"]``, logits at head resolution) for every TTA
variant, resizes each result to ``output_size`` and averages them (facts §5.2, §5.3)::

    for each scale in multiscale:                       # F.interpolate(images, scale_factor=scale)
        whole: logits = model(x)["out"]                 # head resolution
        slide: logits = sliding windows over x          # x's resolution
        [softmax if use_probs_before_resize]
        if flip: the same on the flipped image, channel pairs swapped, flipped back
    average of the results, each resized (bilinear) to output_size

Pure torch: runs on any device; the caller wraps it in ``torch.no_grad()`` (or ``torch.inference_mode()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SegkitError, did_you_mean

MULTISCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""SSSegmentation's multi-scale TTA factors (the MCIBI/MCIBI++ Cityscapes configs)."""

TTA_PRESETS: dict[str, dict] = {
    "none": {"multiscale": (1.0,), "flip": False},
    "flip": {"multiscale": (1.0,), "flip": True},
    "ms": {"multiscale": MULTISCALE, "flip": False},
    "ms+flip": {"multiscale": MULTISCALE, "flip": True},
}
"""Named TTA settings for ``segkit eval --tta NAME``."""

Size = int | Sequence[int]


def tta_preset(name: str) -> dict:
    """The ``multiscale`` and ``flip`` arguments of :func:`predict_logits` for a named preset."""
    key = name.strip().lower()
    if key not in TTA_PRESETS:
        raise SegkitError(
            f"unknown TTA preset '{name}'{did_you_mean(key, TTA_PRESETS)} (known: {', '.join(TTA_PRESETS)})"
        )
    preset = TTA_PRESETS[key]
    return {"multiscale": tuple(preset["multiscale"]), "flip": preset["flip"]}


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    num_classes: int,
    mode: str = "whole",
    cropsize: Size | None = None,
    stride: Size | None = None,
    multiscale: Sequence[float] = (1.0,),
    flip: bool = False,
    use_probs_before_resize: bool = False,
    align_corners: bool = False,
    fixed_seg_target_pairs: Sequence[Sequence[int]] | None = None,
    output_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Averaged TTA logits (probabilities if ``use_probs_before_resize``) of shape ``(B, C, *output_size)``.

    ``images`` is a normalised ``(B, 3, H, W)`` batch; ``output_size`` defaults to ``(H, W)``. ``mode`` is
    ``"whole"`` (one forward) or ``"slide"`` (windows of ``cropsize`` every ``stride``, both ``(h, w)`` or an int).
    ``fixed_seg_target_pairs`` lists channel pairs (e.g. left/right arm) swapped in the flipped pass.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if mode not in ("whole", "slide"):
        raise SegkitError(f"inference mode must be 'whole' or 'slide', got '{mode}'")
    scales = tuple(float(s) for s in multiscale)
    if not scales or any(s <= 0 for s in scales):
        raise SegkitError(f"multiscale needs positive scale factors, got {list(multiscale)}")
    size = tuple(output_size) if output_size is not None else tuple(images.shape[-2:])
    total: torch.Tensor | None = None
    count = 0
    for scale in scales:
        scaled = images
        if scale != 1.0:
            scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=align_corners)
        passes = [False, True] if flip else [False]
        for flipped in passes:
            logits = _single_pass(
                model, scaled, flipped, num_classes=num_classes, mode=mode, cropsize=cropsize, stride=stride,
                use_probs=use_probs_before_resize, align_corners=align_corners, pairs=fixed_seg_target_pairs,
            )
            logits = _resize(logits, size, align_corners)
            total = logits if total is None else total + logits
            count += 1
    assert total is not None
    return total / count


def predict_labels(model: nn.Module, images: torch.Tensor, **kwargs) -> torch.Tensor:
    """``(B, *output_size)`` int64 label maps: the argmax of :func:`predict_logits` (same arguments)."""
    return predict_logits(model, images, **kwargs).argmax(dim=1)


def slide_windows(
    height: int, width: int, cropsize: Size, stride: Size
) -> list[tuple[int, int, int, int]]:
    """SSSegmentation's sliding-window grid over an ``height x width`` image as ``(y1, y2, x1, x2)`` boxes.

    ``num_grids = max(H - crop + stride - 1, 0) // stride + 1`` per axis; the last window of a row/column is
    shifted back so that it ends at the border (and is clipped to the image when the image is smaller).
    """
    crop_h, crop_w = _pair(cropsize, "cropsize")
    stride_h, stride_w = _pair(stride, "stride")
    grids_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    grids_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    boxes = []
    for i in range(grids_h):
        for j in range(grids_w):
            y2 = min(i * stride_h + crop_h, height)
            x2 = min(j * stride_w + crop_w, width)
            boxes.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return boxes


def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    num_classes: int,
    cropsize: Size,
    stride: Size,
    use_probs: bool = False,
    align_corners: bool = False,
) -> torch.Tensor:
    """Sliding-window logits at the input resolution: each window's logits resized to the window, summed, averaged."""
    batch, _, height, width = images.shape
    dtype = torch.promote_types(images.dtype, torch.float32)
    summed = images.new_zeros((batch, num_classes, height, width), dtype=dtype)
    counts = images.new_zeros((1, 1, height, width), dtype=dtype)
    for y1, y2, x1, x2 in slide_windows(height, width, cropsize, stride):
        logits = _forward(model, images[:, :, y1:y2, x1:x2], num_classes)
        logits = _resize(logits, (y2 - y1, x2 - x1), align_corners)
        if use_probs:
            logits = logits.softmax(dim=1)
        summed[:, :, y1:y2, x1:x2] += logits
        counts[:, :, y1:y2, x1:x2] += 1
    if bool((counts == 0).any()):  # cannot happen with the grid above; kept as SSSegmentation's assert
        raise RuntimeError("sliding windows do not cover the image")
    return summed / counts


def _single_pass(
    model: nn.Module,
    images: torch.Tensor,
    flipped: bool,
    *,
    num_classes: int,
    mode: str,
    cropsize: Size | None,
    stride: Size | None,
    use_probs: bool,
    align_corners: bool,
    pairs: Sequence[Sequence[int]] | None,
) -> torch.Tensor:
    """One TTA variant (``SSSegmentation``'s ``inference``) on a possibly flipped image, mapped back unflipped."""
    if flipped:
        images = images.flip(dims=[3])
    if mode == "slide":
        if cropsize is None or stride is None:
            raise SegkitError("slide inference needs 'cropsize' and 'stride' (inference.forward)")
        logits = slide_logits(
            model, images, num_classes=num_classes, cropsize=cropsize, stride=stride,
            use_probs=use_probs, align_corners=align_corners,
        )
    else:
        logits = _forward(model, images, num_classes)
        if use_probs:
            logits = logits.softmax(dim=1)
    if flipped:
        if pairs:
            logits = swap_channel_pairs(logits, pairs)
        logits = logits.flip(dims=[3])
    return logits


def swap_channel_pairs(logits: torch.Tensor, pairs: Sequence[Sequence[int]]) -> torch.Tensor:
    """A copy of ``logits`` with the channels of each ``(a, b)`` pair exchanged (left/right classes)."""
    order = list(range(logits.shape[1]))
    for pair in pairs:
        a, b = (int(c) for c in pair)
        order[a], order[b] = b, a
    return logits[:, order]


def _forward(model: nn.Module, images: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The segmentor's ``"out"`` logits (a plain tensor output is accepted too)."""
    output = model(images)
    logits = output["out"] if isinstance(output, dict) else output
    if logits.dim() != 4 or logits.shape[1] != num_classes:
        raise SegkitError(
            f"the model returned logits of shape {tuple(logits.shape)}; expected (B, {num_classes}, h, w)"
        )
    return logits


def _resize(logits: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


def _pair(value: Size, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise SegkitError(f"{name} must be a positive int or (h, w), got {value!r}")
    return pair  # type: ignore[return-value]
