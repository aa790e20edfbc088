"""Fast paths of :class:`~segkit.data.transforms.compose.Compose` that give the samples of running its transforms
one by one (same random draws, same arrays and tensors; the windowed resize below within a level of the image),
with less work and memory traffic.

- **Compact label maps.** When every transform before ``ToTensor`` is one of :data:`LABEL_AGNOSTIC` (their label
  work is nearest-neighbour resizing, cropping, flipping, padding and value comparisons, exact for every integer
  type), ``int64`` label maps whose values (and every fill value and swapped pair) fit ``int16`` travel as ``int16``
  (``img2aug_pos_mapper`` as ``int32``) and become ``int64`` at ``ToTensor``: a quarter of the bytes to resize, count,
  crop, flip and pad.
- **Resize -> RandomCrop [-> RandomFlip] in one step.** Where the crop keeps at most 90% of the resized image, only
  the kept window is computed: the label maps by gathering the source rows and columns that
  ``cv2.INTER_NEAREST_EXACT`` picks (exact: the same pixels), the image by ``cv2.warpAffine`` with the same
  pixel-centre mapping as ``cv2.resize``. This is the one fast path that is not bit-identical: ``warpAffine``
  quantises sampling positions to 1/32 pixel where ``resize`` uses 1/2048, so about one pixel in eight differs by one
  level (never more in the tests, uniform noise images included; a later PhotoMetricDistortion may amplify that).
  The random draws, window and labels are the same. Upscaled ADE20k-style samples (scale up to 2.1x, then a 512x512
  crop) cost a quarter of the resize they replace. RandomCrop's class check counts each window it tries from the
  source block it covers, every source pixel weighted by how often its row and column are picked
  (:func:`resampled_label_counts`), so only the window kept is gathered. A ``RandomFlip`` right after the crop joins
  the step: the window is computed mirrored (the image's sampling positions and the labels' column indices read
  right to left), the same draw deciding it.
- **PhotoMetricDistortion's level tables folded into Normalize's.** Brightness and contrast are tables of the 256
  levels; those not followed by the HSV step are composed with the normalisation tables instead of passing over the
  image (the same floats).
- **Normalize -> ToTensor [-> Padding(tensor)] in one step.** The normalised planes of a ``uint8`` image are
  written by ``cv2.LUT`` straight into the (padded) ``CxHxW`` buffer (its border filled with the padding value), and
  each label map is copied once into its (padded) ``int64`` tensor: no padded copy of the float image, no separate
  conversion.
- **Or that tail left to the device** (a training loader on CUDA, ``normalize_on_device``): the image is padded as
  ``uint8`` and the level table still to apply travels with it, the label maps stay in their compact type, and
  :class:`DeviceNormalize` makes the same ``float32`` batch where the model runs (MMSegmentation and detectron2
  normalise there too): no float work in the workers, a quarter of the bytes to collate, pin and copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .compose import LABEL_KEYS
from .geometric import RandomCrop, RandomFlip, Resize, label_counts, long_runs, run_counts
from .ops import resize_sample
from .photometric import _IDENTITY, Normalize, PhotoMetricDistortion
from .tensor import Padding, ToTensor

LABEL_AGNOSTIC = (Resize, RandomCrop, RandomFlip, PhotoMetricDistortion, Normalize, Padding)
"""Transforms whose results do not depend on the integer type of the label maps (exact types, not subclasses)."""

COMPACT_TYPES = {"seg_target": np.int16, "edge_target": np.int16, "img2aug_pos_mapper": np.int32}


@dataclass(frozen=True)
class FastPlan:
    """Where a transform list can take the fast paths: ``compact`` label bounds, and the start of a fusable tail."""

    compact: tuple[int, int] | None  # every int constant a label map meets before ToTensor (lo, hi); None: off
    tail: int | None  # index of a Normalize followed by ToTensor (and maybe Padding(data_type="tensor"))
    crops: frozenset[int] = frozenset()  # indices of a Resize (bilinear image) directly followed by a RandomCrop
    photometric: int | None = None  # index of a PhotoMetricDistortion directly before the tail
    flips: frozenset[int] = frozenset()  # those of ``crops`` whose RandomCrop is directly followed by a RandomFlip
    padded_tail: bool = False  # the tail ends with a Padding(data_type="tensor")


def make_plan(transforms: Sequence) -> FastPlan:
    """The fast paths that apply to ``transforms`` (decided once, from their types and arguments)."""
    kinds = [type(t) for t in transforms]
    compact = None
    if ToTensor in kinds:
        before = transforms[: kinds.index(ToTensor)]
        if before and all(type(t) in LABEL_AGNOSTIC for t in before):
            constants = [-100, -1]
            for t in before:
                if isinstance(t, Padding):
                    constants += [int(v) for v in t.fill_values.values()]
                if isinstance(t, RandomFlip):
                    constants += [int(v) for pair in t.fixed_seg_target_pairs for v in pair]
            compact = (min(constants), max(constants))
    tail, padded_tail = None, False
    for i in range(len(kinds) - 1):
        if kinds[i : i + 2] == [Normalize, ToTensor]:
            tail = i
            padded_tail = kinds[i + 2 : i + 3] == [Padding] and transforms[i + 2].data_type == "tensor"
            break
    crops = frozenset(
        i for i in range(len(kinds) - 1)
        if kinds[i] is Resize and kinds[i + 1] is RandomCrop and transforms[i].image_interpolation == "bilinear"
    )
    flips = frozenset(i for i in crops if i + 2 < len(kinds) and kinds[i + 2] is RandomFlip)
    photometric = tail - 1 if tail and kinds[tail - 1] is PhotoMetricDistortion else None
    return FastPlan(compact, tail, crops, photometric, flips, padded_tail)


def fits_compact(key: str, lo: int, hi: int, bounds: tuple[int, int]) -> bool:
    """Whether label values in ``[lo, hi]`` and the chain's constants ``bounds`` fit ``COMPACT_TYPES[key]``."""
    info = np.iinfo(COMPACT_TYPES[key])
    return info.min <= min(lo, bounds[0]) and max(hi, bounds[1]) <= info.max


def compact_labels(sample: dict, bounds: tuple[int, int]) -> None:
    """Store the sample's ``int64`` label maps in :data:`COMPACT_TYPES` where their values and ``bounds`` fit."""
    for key, kind in COMPACT_TYPES.items():
        labels = sample.get(key)
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 2 or not labels.size:
            continue
        if fits_compact(key, int(labels.min()), int(labels.max()), bounds):
            sample[key] = labels.astype(kind)


def _tail_takes(image, normalize: Normalize) -> bool:
    """Whether :func:`normalize_to_padded_tensor` takes this image: a ``uint8`` array of the normaliser's channels."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        return False
    channels = 1 if image.ndim == 2 else image.shape[2]
    return channels <= 4 and channels == len(normalize.tables)


def _padded_window(padding: Padding | None, height: int, width: int) -> tuple[int, int, tuple[slice, slice]]:
    """The padded size of a ``height x width`` image and the window of it the image fills (``Padding``'s centring;
    no padding where ``padding`` is ``None``)."""
    out_h, out_w = (height, width) if padding is None else padding._target(height, width)
    pad_h, pad_w = max(out_h - height, 0), max(out_w - width, 0)
    top, left = pad_h // 2, pad_w // 2
    return height + pad_h, width + pad_w, (slice(top, top + height), slice(left, left + width))


def normalize_to_padded_tensor(sample: dict, normalize: Normalize, padding: Padding | None,
                               levels: np.ndarray | None = None, deferred: bool = False) -> dict | None:
    """``Normalize``, ``ToTensor`` and ``Padding(data_type="tensor")`` (when ``padding`` is given) at once; ``None``
    where the image is not a ``uint8`` array of at most 4 channels (the caller then runs the transforms).
    ``levels``: a ``uint8`` table still to apply to every channel (folded into the normalisation tables).
    ``deferred``: leave the normalisation to :class:`DeviceNormalize` (see :func:`_deferred_tail`)."""
    image = sample["image"]
    if not _tail_takes(image, normalize):
        return None
    if deferred:
        return _deferred_tail(sample, padding, levels)
    channels = 1 if image.ndim == 2 else image.shape[2]
    full_h, full_w, window = _padded_window(padding, *image.shape[:2])
    padded = (full_h, full_w) != image.shape[:2]
    buffer = np.empty((channels, full_h, full_w), np.float32)
    if padded:
        _fill_around(buffer, window, np.float32(padding.image_fill_value))
    normalize._lookup(image, out=buffer[(slice(None), *window)], levels=levels)
    sample["image"] = torch.from_numpy(buffer)
    _pad_labels(sample, padding, (full_h, full_w), window, np.int64)
    return sample


def _pad_labels(sample: dict, padding: Padding | None, size: tuple[int, int], window: tuple[slice, slice],
                dtype=None) -> None:
    """Each label map of ``sample`` as a tensor of ``size``, itself in ``window`` and ``padding``'s fill value
    around it, of ``dtype`` (``None``: its own), copied once (NumPy's ``int16 -> int64`` copy is about 30% faster
    than torch's ``.long()``)."""
    for key in LABEL_KEYS:
        if key not in sample:
            continue
        value = sample[key]
        value = value.numpy() if torch.is_tensor(value) else value
        kind = value.dtype if dtype is None else dtype
        if value.shape != size:
            value = _on_canvas(value, size, window, padding.fill_values[key], kind)
        sample[key] = torch.from_numpy(np.ascontiguousarray(value, kind))


def _on_canvas(array: np.ndarray, size: tuple[int, int], window: tuple[slice, slice], fill, dtype) -> np.ndarray:
    """A ``dtype`` array of ``size`` (plus ``array``'s channel axis, if any) holding ``array`` in ``window`` and
    ``fill`` around it; each element written once."""
    canvas = np.empty((*size, *array.shape[2:]), dtype)
    _fill_around(np.moveaxis(canvas, (0, 1), (-2, -1)), window, fill)
    canvas[window] = array
    return canvas


DEFERRED_KEYS = ("image_levels", "image_window")
"""What a deferred sample carries besides its ``uint8`` image: the level table still to apply and the window of
the padded image that holds it (``top, left, height, width``)."""

_IDENTITY_LEVELS = torch.arange(256, dtype=torch.uint8)


def _deferred_tail(sample: dict, padding: Padding | None, levels: np.ndarray | None) -> dict:
    """The tail for a training loader that normalises on the device: the image padded as a ``uint8`` HxWxC tensor
    (a quarter of the bytes to collate and copy), the label maps padded in the integer type they travel in, and
    what :class:`DeviceNormalize` needs to make the very tensors :func:`normalize_to_padded_tensor` would."""
    image = sample["image"]
    image = image[:, :, None] if image.ndim == 2 else image
    height, width = image.shape[:2]
    full_h, full_w, window = _padded_window(padding, height, width)
    if (full_h, full_w) != (height, width):
        image = _on_canvas(image, (full_h, full_w), window, 0, np.uint8)  # any level around: DeviceNormalize fills it
    sample["image"] = torch.from_numpy(np.ascontiguousarray(image))
    sample["image_levels"] = _IDENTITY_LEVELS if levels is None else torch.from_numpy(levels)
    sample["image_window"] = torch.tensor((window[0].start, window[1].start, height, width))
    _pad_labels(sample, padding, (full_h, full_w), window)
    return sample


class DeviceNormalize:
    """Finish a batch of deferred samples (:func:`_deferred_tail`) where the model runs, as MMSegmentation's
    ``SegDataPreProcessor`` and detectron2's ``pixel_mean``/``pixel_std`` do: ``uint8`` images cross to the device,
    and there each level is looked up in the sample's normalisation table (``Normalize``'s tables composed with the
    sample's level table, channels reordered as ``to_rgb`` asks) and the padding is filled. The result is equal,
    bit for bit, to the batch of :func:`normalize_to_padded_tensor` (the same ``float32`` table entries)."""

    def __init__(self, normalize: Normalize, padding: Padding | None) -> None:
        self.tables = torch.from_numpy(np.stack(normalize.tables))  # C x 256, output channel order
        self.to_rgb = normalize.to_rgb and len(normalize.tables) == 3
        self.fill = float(np.float32(0 if padding is None else padding.image_fill_value))
        self._on: dict[torch.device, torch.Tensor] = {}

    def __call__(self, batch: dict, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """The ``[B, C, H, W]`` ``float32`` image batch on ``device`` (NHWC memory order when ``channels_last``)."""
        images = batch["image"].to(device, non_blocking=True)  # B x H x W x C uint8
        count, height, width, channels = images.shape
        if device not in self._on:
            self._on[device] = self.tables.to(device)
        levels = batch["image_levels"].to(device, non_blocking=True).long()  # B x 256
        tables = self._on[device][:, levels].transpose(0, 1).reshape(-1)  # (b, c, level) flattened
        if self.to_rgb:
            images = images.flip(-1)
        offsets = torch.arange(count * channels, device=device).view(count, 1, 1, channels) * 256
        out = tables.take(images.long() + offsets)
        windows = batch["image_window"]
        if not bool((windows == torch.tensor([0, 0, height, width])).all()):  # some were padded: fill around them
            windows = windows.to(device, non_blocking=True)
            rows = torch.arange(height, device=device)
            cols = torch.arange(width, device=device)
            inside_rows = (rows >= windows[:, :1]) & (rows < windows[:, :1] + windows[:, 2:3])  # B x H
            inside_cols = (cols >= windows[:, 1:2]) & (cols < windows[:, 1:2] + windows[:, 3:4])  # B x W
            inside = inside_rows[:, :, None, None] & inside_cols[:, None, :, None]
            out = out.masked_fill(~inside, self.fill)
        out = out.permute(0, 3, 1, 2)  # NCHW, channels-last in memory
        return out if channels_last else out.contiguous()


def _fill_around(buffer: np.ndarray, window: tuple[slice, slice], value) -> None:
    """Fill ``buffer`` (its last two axes) with ``value`` outside ``window``, which is written next: each pixel once."""
    rows, cols = window
    height, width = buffer.shape[-2:]
    for strip in ((slice(0, rows.start), slice(None)), (slice(rows.stop, height), slice(None)),
                  (rows, slice(0, cols.start)), (rows, slice(cols.stop, width))):
        buffer[(..., *strip)] = value


def photometric_then_tail(sample: dict, distortion: PhotoMetricDistortion, normalize: Normalize,
                          padding: Padding | None,
                          rng: np.random.Generator, deferred: bool = False) -> dict | None:
    """``PhotoMetricDistortion`` and the tail at once: its level tables that are not followed by the HSV step (the
    last contrast; all of them when the HSV step is skipped) fold into the normalisation tables instead of passing
    over the image. ``None`` (nothing drawn) where the tail would not take the image."""
    if not _tail_takes(sample["image"], normalize):
        return None
    lut, saturation, hue, last = distortion.draw(rng)
    if saturation is None and hue is None:
        levels = None if lut is _IDENTITY and last is _IDENTITY else last[lut]
    else:
        sample["image"] = distortion.apply(sample["image"], lut, saturation, hue)
        levels = None if last is _IDENTITY else last
    return normalize_to_padded_tensor(sample, normalize, padding, levels, deferred)


WINDOW_MAX_SHARE = 0.9
"""The fused Resize -> RandomCrop computes only the window when it keeps at most this share of the resized image."""


def _nearest_indices(size: int, new_size: int) -> np.ndarray:
    """The source index ``cv2.INTER_NEAREST_EXACT`` reads for each of ``new_size`` outputs (it is separable)."""
    return cv2.resize(np.arange(size, dtype=np.int32)[None], (new_size, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0]


def resampled_label_counts(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, ignore_index: int) -> np.ndarray | None:
    """:func:`~.geometric.label_counts` of ``labels.take(rows, 0).take(cols, 1)`` (``rows`` and ``cols`` non-decreasing
    source indices, as a nearest-neighbour resize then a crop pick them) without building that window: each source
    pixel of the covered block counts as many times as its row and column are picked, and the block's runs of one
    value (broken at row ends) are counted with those weights. ``None`` where the block's runs are short (noise-like
    labels), for which gathering the window and counting it is as fast."""
    r0, c0 = int(rows[0]), int(cols[0])
    block = labels[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]
    row_weight = np.bincount(rows - r0, minlength=block.shape[0])
    col_cumweight = np.concatenate(([0], np.cumsum(np.bincount(cols - c0, minlength=block.shape[1]))))
    flat = np.ascontiguousarray(block).ravel()
    width = block.shape[1]
    change = flat[1:] != flat[:-1]
    change[width - 1 :: width] = True  # a run ends with its row
    if not long_runs(change):
        return None
    lo = int(block.min())
    span = int(block.max()) - lo + 1
    if span > 1 << 16:
        return None

    def weigh(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:  # a run never crosses a row end
        row = starts // width
        return row_weight[row] * (col_cumweight[ends - row * width] - col_cumweight[starts - row * width])

    counts = run_counts(flat, change, lo, span, weigh)
    if 0 <= ignore_index - lo < span:
        counts[ignore_index - lo] = 0
    return counts


def resize_then_crop(sample: dict, resize: Resize, crop: RandomCrop, rng: np.random.Generator,
                     flip: RandomFlip | None = None) -> dict:
    """``crop(resize(sample))``, then ``flip`` when given, with the same random draws, computing only the cropped
    window where that saves work (module docstring): a flip is then the mirrored window, read right to left (no pass
    of its own). Otherwise the transforms as they are."""
    image = sample["image"]
    height, width = image.shape[:2]
    new_w, new_h = resize.target_size(height, width, rng)
    crop_h, crop_w = min(crop.crop_size[0], new_h), min(crop.crop_size[1], new_w)
    labels = [key for key in LABEL_KEYS if key in sample]
    usable = (
        isinstance(image, np.ndarray) and image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] <= 4)
        and all(isinstance(sample[k], np.ndarray) and sample[k].ndim == 2 for k in labels)
        and (new_w, new_h) != (width, height) and crop_h * crop_w <= WINDOW_MAX_SHARE * new_h * new_w
    )
    if not usable:
        sample = crop(resize_sample(sample, (new_w, new_h), resize.image_interpolation), rng)
        return sample if flip is None else flip(sample, rng)
    rows, cols = _nearest_indices(height, new_h), _nearest_indices(width, new_w)
    seg = sample.get("seg_target")
    check = seg is not None and crop.one_category_max_ratio < 1
    window_seg = None
    for _ in range(crop.max_tries if check else 1):  # the draws of RandomCrop.__call__
        top = int(rng.integers(0, new_h - crop_h + 1))
        left = int(rng.integers(0, new_w - crop_w + 1))
        if check:
            window_rows, window_cols = rows[top : top + crop_h], cols[left : left + crop_w]
            counts = resampled_label_counts(seg, window_rows, window_cols, crop.ignore_index)
            if counts is None:  # short runs: gather the window and count it
                window_seg = seg.take(window_rows, axis=0).take(window_cols, axis=1)
                counts = label_counts(window_seg, crop.ignore_index)
            else:
                window_seg = None
            if crop.accepts(counts):
                break
    flipped = flip is not None and flip.draw(rng)
    scale_x, scale_y = width / new_w, height / new_h
    # output column x samples the resized image's column left + x (mirrored: left + crop_w - 1 - x), pixel centres
    # mapped as cv2.resize maps them
    x_row = ([-scale_x, 0.0, (left + crop_w - 0.5) * scale_x - 0.5] if flipped
             else [scale_x, 0.0, (left + 0.5) * scale_x - 0.5])
    matrix = np.array([x_row, [0.0, scale_y, (top + 0.5) * scale_y - 0.5]])
    sample["image"] = cv2.warpAffine(image, matrix, (crop_w, crop_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE)
    window_cols = cols[left : left + crop_w]
    if flipped:
        window_cols = window_cols[::-1]
    for key in labels:
        if key == "seg_target" and window_seg is not None and not flipped:
            sample[key] = window_seg
        else:
            sample[key] = sample[key].take(rows[top : top + crop_h], axis=0).take(window_cols, axis=1)
    if flipped:
        flip.swap_pairs(sample)
    return sample
