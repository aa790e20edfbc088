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

import itertools
from collections.abc import Iterable, Iterator, Sequence

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
    window_batch: int = 1,
) -> torch.Tensor:
    """Averaged TTA logits (probabilities if ``use_probs_before_resize``) of shape ``(B, C, *output_size)``.

    ``images`` is a normalised ``(B, 3, H, W)`` batch; ``output_size`` defaults to ``(H, W)``. ``mode`` is
    ``"whole"`` (one forward) or ``"slide"`` (windows of ``cropsize`` every ``stride``, both ``(h, w)`` or an int).
    ``fixed_seg_target_pairs`` lists channel pairs (e.g. left/right arm) swapped in the flipped pass.
    ``window_batch`` windows go through the model together in slide mode (memory grows with it, results do not
    change beyond the model's own batch-size numerics).
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
                window_batch=window_batch,
            )
            logits = _resize(logits, size, align_corners)
            if total is None:
                total = logits
            else:  # in place: one output-sized buffer however many passes
                total = total.add_(logits) if not total.requires_grad else total + logits
            count += 1
    assert total is not None
    return total if count == 1 else total.div_(count) if not total.requires_grad else total / count


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
    rows, cols = _grid_axes(height, width, cropsize, stride)
    return [(y1, y2, x1, x2) for y1, y2 in rows for x1, x2 in cols]


def _grid_axes(height: int, width: int, cropsize: Size, stride: Size) -> tuple[list, list]:
    """The row intervals and the column intervals of :func:`slide_windows` (the windows are their product)."""
    crop_h, crop_w = _pair(cropsize, "cropsize")
    stride_h, stride_w = _pair(stride, "stride")
    return _axis_intervals(height, crop_h, stride_h), _axis_intervals(width, crop_w, stride_w)


def _axis_intervals(size: int, crop: int, stride: int) -> list[tuple[int, int]]:
    grids = max(size - crop + stride - 1, 0) // stride + 1
    ends = [min(i * stride + crop, size) for i in range(grids)]
    return [(max(end - crop, 0), end) for end in ends]


def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    num_classes: int,
    cropsize: Size,
    stride: Size,
    use_probs: bool = False,
    align_corners: bool = False,
    window_batch: int = 1,
) -> torch.Tensor:
    """Sliding-window logits at the input resolution: each window's logits resized to the window, summed, averaged.

    ``window_batch`` windows (of every image of the batch) go through the model at a time. The number of windows
    over each pixel is the product of the row and column coverage (the windows are a grid), divided out in place
    block by block (nothing to do where it is 1). Three ways to the same sum, chosen by what the windows need:

    - with gradients, a zero-filled sum autograd can follow (:func:`_sum_by_window`);
    - on the CPU, without gradients or probabilities, one grid row of windows at a time (:func:`_sum_by_row`):
      bilinear resizing is separable and linear, so each window is resized across (its width) only, the row's
      windows are summed at the logits' height, and the row is resized down (its height) once, straight into the
      output. The output is channels-last, where PyTorch's bilinear kernel is fastest on the CPU;
    - otherwise (CUDA, ``use_probs``, where the softmax of each resized window is summed) window by window, each
      resized into a reused buffer and copied or added into the output (:func:`_sum_by_window`).

    The three agree with SSSegmentation's loop to float32 rounding (the order of the sums differs).
    """
    if window_batch < 1:
        raise SegkitError(f"window_batch must be a positive int, got {window_batch!r}")
    _, _, height, width = images.shape
    boxes = slide_windows(height, width, cropsize, stride)
    layout = torch.channels_last if images.device.type == "cpu" else torch.contiguous_format
    windows = _window_logits(model, images, boxes, num_classes, window_batch, layout)
    first = next(windows)
    windows = itertools.chain([first], windows)
    grid = (height, width, cropsize, stride)
    if first[1].requires_grad or use_probs or layout != torch.channels_last:
        return _sum_by_window(windows, images, grid, num_classes, use_probs, align_corners, layout)
    return _sum_by_row(windows, images, grid, num_classes, align_corners)


def _window_logits(model: nn.Module, images: torch.Tensor, boxes: list[tuple[int, int, int, int]], num_classes: int,
                   window_batch: int, layout: torch.memory_format) -> Iterator[tuple[tuple, torch.Tensor]]:
    """``(box, logits)`` of each window in grid order (row by row), ``window_batch`` windows a forward; the
    logits of every image of the batch, in ``layout``."""
    batch = images.shape[0]
    for start in range(0, len(boxes), window_batch):
        group = boxes[start : start + window_batch]
        if len(group) == 1:
            y1, y2, x1, x2 = group[0]
            crops = images[:, :, y1:y2, x1:x2].contiguous()  # the model's first layers read it faster so
        else:
            crops = torch.cat([images[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in group])
        logits = _forward(model, crops, num_classes).contiguous(memory_format=layout)
        for k, box in enumerate(group):
            yield box, logits[k * batch : (k + 1) * batch]


def _sum_by_window(windows: Iterable[tuple[tuple, torch.Tensor]], images: torch.Tensor, grid: tuple,
                   num_classes: int, use_probs: bool, align_corners: bool,
                   layout: torch.memory_format) -> torch.Tensor:
    """The averaged windows, each resized to its box and copied or added into the output on its own."""
    height, width, cropsize, stride = grid
    batch = images.shape[0]
    dtype = torch.promote_types(images.dtype, torch.float32)
    firsts = _first_cover(height, width, cropsize, stride)
    summed = None
    buffers: dict[tuple, torch.Tensor] = {}  # resized-window buffers by shape, reused from window to window
    for (y1, y2, x1, x2), logits in windows:
        if summed is None:  # not zero-filled: each pixel's first window is copied in, the others added
            make = torch.zeros if logits.requires_grad else torch.empty
            if layout == torch.channels_last:
                summed = make((batch, height, width, num_classes), dtype=dtype, device=images.device)
                summed = summed.permute(0, 3, 1, 2)
            else:
                summed = make((batch, num_classes, height, width), dtype=dtype, device=images.device)
        if logits.requires_grad:  # zero-filled: summed in place, as autograd follows it
            window = _resize(logits, (y2 - y1, x2 - x1), align_corners)
            summed[:, :, y1:y2, x1:x2] += window.softmax(dim=1) if use_probs else window
            continue
        window = _resize_into(logits, (y2 - y1, x2 - x1), align_corners, buffers)
        window = window.softmax(dim=1) if use_probs else window
        ny, nx = firsts[(y1, x1)]  # [ny, y2) x [nx, x2) is new; the rest was covered by earlier windows
        summed[:, :, ny:y2, nx:x2].copy_(window[:, :, ny - y1 :, nx - x1 :])
        if ny > y1:
            summed[:, :, y1:ny, x1:x2] += window[:, :, : ny - y1]
        if nx > x1:
            summed[:, :, ny:y2, x1:nx] += window[:, :, ny - y1 :, : nx - x1]
    assert summed is not None
    if summed.requires_grad:
        return summed / _window_counts(height, width, cropsize, stride, summed)
    rows, cols = _grid_axes(height, width, cropsize, stride)
    for y1, y2, row_count in _coverage_runs(rows, height):  # the count is row cover x column cover: divide
        for x1, x2, col_count in _coverage_runs(cols, width):  # block by block, where it is not 1
            if row_count * col_count != 1:
                summed[:, :, y1:y2, x1:x2].div_(row_count * col_count)
    return summed


def _sum_by_row(windows: Iterable[tuple[tuple, torch.Tensor]], images: torch.Tensor, grid: tuple, num_classes: int,
                align_corners: bool) -> torch.Tensor:
    """The averaged windows, one grid row at a time, as a channels-last ``(B, C, H, W)`` tensor.

    The windows of a grid row share their rows, so their logits share the rows they are resized from. Each window is
    resized across only (``(h, w) -> (h, x2 - x1)``) and copied or added into the row's ``(B, h, W, C)`` strip, which
    is divided by the column coverage and then resized down (``h -> y2 - y1``) into the output rows in one call: in
    channels-last memory a run of whole rows is one contiguous block, and resizing down treats each row of
    ``W x C`` values as the channels of a one-pixel-wide image. Rows an earlier grid row wrote are set aside first
    and added back; rows are divided by their row coverage once no later grid row reaches them. Per pixel this
    writes the output once (plus the overlaps), where resizing each window whole writes a window-sized buffer and
    copies it: on the CPU the work beyond the windows' forward fell from 184 to 132 ms on a 1024x2048 image in 18
    windows (``nox -s bench -- slide``: 1.06x -> 1.03x the forward). Memory beyond the output: the strip (the
    logits' height x the image's width) and, while a strip is resized down, the rows set aside.
    """
    height, width, cropsize, stride = grid
    batch = images.shape[0]
    dtype = torch.promote_types(images.dtype, torch.float32)
    rows, cols = _grid_axes(height, width, cropsize, stride)
    row_runs, col_runs = _coverage_runs(rows, height), _coverage_runs(cols, width)
    next_row = {y1: following for (y1, _), (following, _) in zip(rows, [*rows[1:], (height, height)], strict=True)}
    firsts = _first_cover(height, width, cropsize, stride)
    summed = torch.empty((batch, height, width, num_classes), dtype=dtype, device=images.device)
    strip, strip_rows = None, None

    def finish(y1: int, y2: int) -> None:
        """Resize the strip of rows [y1, y2) into the output; divide the rows no later grid row reaches."""
        for x1, x2, col_count in col_runs:
            if col_count != 1:
                strip[:, :, x1:x2].div_(col_count)
        ny = firsts[(y1, 0)][0]  # [y1, ny) holds earlier grid rows' windows
        earlier = summed[:, y1:ny].clone() if ny > y1 else None
        for b in range(batch):
            _resize_rows(strip[b : b + 1], summed[b : b + 1, y1:y2], align_corners)
        if earlier is not None:
            summed[:, y1:ny] += earlier
        for a, z, row_count in row_runs:  # [y1, next row's y1): earlier strips are done with, later ones start below
            if y1 <= a and z <= next_row[y1] and row_count != 1:
                summed[:, a:z].div_(row_count)

    for (y1, y2, x1, x2), logits in windows:
        if strip_rows != (y1, y2):
            if strip is not None:
                finish(*strip_rows)
            strip_rows = (y1, y2)
            strip = torch.empty((batch, logits.shape[2], width, num_classes), dtype=dtype, device=images.device)
        across = _resize_across(logits, x2 - x1, align_corners)  # (B, h, x2 - x1, C)
        nx = firsts[(y1, x1)][1]  # [x1, nx) holds the row's earlier windows
        strip[:, :, nx:x2].copy_(across[:, :, nx - x1 :])
        if nx > x1:
            strip[:, :, x1:nx] += across[:, :, : nx - x1]
    finish(*strip_rows)
    return summed.permute(0, 3, 1, 2)


def _resize_across(logits: torch.Tensor, width: int, align_corners: bool) -> torch.Tensor:
    """Channels-last ``(B, C, h, w)`` logits resized bilinearly to ``(h, width)``, as a contiguous ``(B, h, width,
    C)`` tensor: each of the ``B x h`` rows is an image one pixel high (resizing ``1 -> 1`` rows is exact)."""
    batch, channels, h, w = logits.shape
    hwc = logits.permute(0, 2, 3, 1)  # contiguous
    if w == width:
        return hwc
    rows = hwc.reshape(batch * h, 1, w, channels).permute(0, 3, 1, 2)
    out = F.interpolate(rows, size=(1, width), mode="bilinear", align_corners=align_corners)
    return out.permute(0, 2, 3, 1).reshape(batch, h, width, channels)


def _resize_rows(strip: torch.Tensor, out: torch.Tensor, align_corners: bool) -> None:
    """Resize the contiguous ``(1, h, W, C)`` ``strip`` bilinearly to the ``(1, H, W, C)`` rows ``out`` (a contiguous
    block of the output), written in place: each row's ``W x C`` values are the channels of a one-pixel-wide image
    (resizing ``1 -> 1`` columns is exact)."""
    _, h, width, channels = strip.shape
    rows = out.shape[1]
    src = strip.reshape(1, h, 1, width * channels).permute(0, 3, 1, 2)
    dst = out.view(1, rows, 1, width * channels).permute(0, 3, 1, 2)  # a view: out is contiguous
    torch.ops.aten.upsample_bilinear2d.out(src, [rows, 1], align_corners, None, None, out=dst)


def _first_cover(height: int, width: int, cropsize: Size, stride: Size) -> dict[tuple[int, int], tuple[int, int]]:
    """For each window of :func:`slide_windows` (keyed by its top-left corner), the corner ``(ny, nx)`` of the part
    no earlier window (in that order) covers, which is ``[ny, y2) x [nx, x2)``: the earlier rows of the grid cover
    every column up to the previous row's end, and the earlier windows of its row every row of it up to the previous
    column's end."""
    rows, cols = _grid_axes(height, width, cropsize, stride)
    firsts = {}
    for r, (y1, _) in enumerate(rows):
        ny = max(y1, rows[r - 1][1]) if r else y1
        for c, (x1, _) in enumerate(cols):
            firsts[(y1, x1)] = (ny, max(x1, cols[c - 1][1]) if c else x1)
    return firsts


def _coverage_runs(intervals: list[tuple[int, int]], size: int) -> list[tuple[int, int, int]]:
    """``(start, end, count)`` runs of the number of ``intervals`` over each position of ``[0, size)``."""
    edges = sorted({0, size, *(a for a, _ in intervals), *(b for _, b in intervals)})
    runs = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        count = sum(1 for a, b in intervals if a <= start and end <= b)
        if count == 0:  # cannot happen with the grid; SSSegmentation asserts
            raise RuntimeError("sliding windows do not cover the image")
        runs.append((start, end, count))
    return runs


def _window_counts(height: int, width: int, cropsize: Size, stride: Size, like: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` number of windows over each pixel: the windows are a grid, so it is the outer product of the
    number of row intervals over each row and of column intervals over each column."""
    rows, cols = _grid_axes(height, width, cropsize, stride)
    cover = []
    for intervals, size in ((rows, height), (cols, width)):
        diff = torch.zeros(size + 1, dtype=torch.int64)
        for start, end in intervals:
            diff[start] += 1
            diff[end] -= 1
        cover.append(diff.cumsum(0)[:size])
    if bool((cover[0] == 0).any()) or bool((cover[1] == 0).any()):  # cannot happen; SSSegmentation's assert
        raise RuntimeError("sliding windows do not cover the image")
    return torch.outer(cover[0], cover[1]).to(device=like.device, dtype=like.dtype)


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
    window_batch: int = 1,
) -> torch.Tensor:
    """One TTA variant (``SSSegmentation``'s ``inference``) on a possibly flipped image, mapped back unflipped."""
    if flipped:
        images = images.flip(dims=[3])
    if mode == "slide":
        if cropsize is None or stride is None:
            raise SegkitError("slide inference needs 'cropsize' and 'stride' (inference.forward)")
        logits = slide_logits(
            model, images, num_classes=num_classes, cropsize=cropsize, stride=stride,
            use_probs=use_probs, align_corners=align_corners, window_batch=window_batch,
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


def _resize_into(logits: torch.Tensor, size: Sequence[int], align_corners: bool,
                 buffers: dict[tuple, torch.Tensor]) -> torch.Tensor:
    """:func:`_resize` without gradients, written into a buffer of ``buffers`` (made on first use of each shape and
    memory layout) instead of a new tensor: a fresh window-sized tensor per window is fresh memory for the system to
    map and zero each time (on the CPU, about 1.5 us per 4 KiB page: 20 MiB of 19-class logits at 512x512, ~8 ms)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    layout = torch.channels_last if logits.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    key = (*logits.shape[:2], *size, logits.dtype, logits.device, layout)
    if key not in buffers:
        buffers[key] = torch.empty((*logits.shape[:2], *size), dtype=logits.dtype, device=logits.device,
                                   memory_format=layout)
    return torch.ops.aten.upsample_bilinear2d.out(logits, list(size), align_corners, None, None, out=buffers[key])


def _pair(value: Size, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise SegkitError(f"{name} must be a positive int or (h, w), got {value!r}")
    return pair  # type: ignore[return-value]
