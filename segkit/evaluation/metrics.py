"""A confusion matrix kept on the device, summed across ranks, and SSSegmentation's metrics computed from it.

Rows are ground-truth classes, columns predicted classes (torchvision ``references/segmentation`` layout). Every
metric is computed from the *global* per-class areas accumulated over the whole split, as SSSegmentation's
built-in ``Evaluation`` does (facts §5.4)::

    intersect = diag(M)            label_area = M.sum(1)            pred_area = M.sum(0)
    union = pred_area + label_area - intersect

    IoU = I / U      Acc = Recall = I / label      Precision = I / pred      Dice = 2I / (pred + label)
    Fscore = (1 + b^2) P R / (b^2 P + R)           aAcc = sum(I) / sum(label)

A class absent from both ground truth and prediction has ``0/0 = NaN`` and is left out of the means; a class that
is predicted but never in the ground truth has IoU 0 and counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import SegkitError, did_you_mean

PER_CLASS_KEYS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")
"""Per-class entries of :meth:`ConfusionMatrix.compute`, each a ``{classname: value}`` dict."""

SSSEG_METRIC_KEYS: dict[str, str] = {
    "iou": "IoU",
    "miou": "mIoU",
    "dice": "Dice",
    "mdice": "mDice",
    "fscore": "Fscore",
    "mfscore": "mFscore",
    "recall": "Recall",
    "precision": "Precision",
    "accuracy": "Acc",
    "all_accuracy": "aAcc",
    # chainercv's names, which SSSegmentation also accepts when chainercv is installed
    "pixel_accuracy": "aAcc",
    "class_accuracy": "Acc",
    "mean_class_accuracy": "mAcc",
}
"""SSSegmentation's ``inference.evaluate.metric_list`` names -> keys of :meth:`ConfusionMatrix.compute`."""


class ConfusionMatrix:
    """An ``int64`` ``(num_classes, num_classes)`` confusion matrix accumulated on ``device``."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
        self._flat: tuple[torch.Tensor, np.ndarray] | None = None  # (self.mat, its flat numpy view) on the CPU

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and ground-truth label maps (integer tensors of the same shape).

        Target pixels outside ``[0, num_classes)`` are ignored (SSSegmentation maps them to -1 and drops them).
        A prediction outside that range is a bug in the caller and raises ``ValueError``.

        No boolean indexing: ignored targets land in histogram bins past the matrix, which are dropped. On the CPU
        the histogram is OpenCV's ``calcHist`` over a 16-bit index (up to 255 classes) or numpy's ``bincount``
        (see :func:`_histogram_numpy`); elsewhere it stays on the device.
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("pred and target must be integer label maps (take the argmax of the logits first)")
        if pred.numel() == 0:
            return
        if self.mat.device.type == "cpu":
            counts = _histogram_numpy(_as_int64_numpy(pred), _as_int64_numpy(target), self.num_classes)
            if self._flat is None or self._flat[0] is not self.mat:  # .numpy() costs tens of microseconds a call
                self._flat = (self.mat, self.mat.view(-1).numpy())  # shares memory with self.mat
            flat = self._flat[1]
            flat += counts
        else:
            self.mat += _histogram_torch(pred.to(self.mat.device), target.to(self.mat.device), self.num_classes)

    def all_reduce(self) -> None:
        """Sum the matrix over all ranks in place (a no-op unless ``torch.distributed`` is initialised).

        With the NCCL backend the matrix must live on the rank's CUDA device.
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)

    def areas(self) -> dict[str, torch.Tensor]:
        """Per-class ``intersect``, ``pred_area``, ``label_area`` and ``union`` as float64 CPU tensors."""
        mat = self.mat.detach().to("cpu", torch.float64)
        intersect = mat.diagonal().clone()
        pred_area = mat.sum(0)
        label_area = mat.sum(1)
        return {
            "intersect": intersect,
            "pred_area": pred_area,
            "label_area": label_area,
            "union": pred_area + label_area - intersect,
        }

    def compute(
        self, classnames: Sequence[str] | None = None, beta: float = 1.0, nan_to_num: float | None = None
    ) -> dict[str, Any]:
        """SSSegmentation's metrics as a JSON-safe dict (plain floats; NaN becomes ``None``).

        Keys: ``aAcc``, ``mIoU``, ``mAcc``, ``mDice``, ``mFscore``, ``mPrecision``, ``mRecall`` and the per-class
        dicts of :data:`PER_CLASS_KEYS` keyed by class name (``classnames`` or ``"0"``, ``"1"``, ...).
        ``nan_to_num``, as in SSSegmentation, replaces per-class NaNs *before* the means are taken.
        """
        names = _class_names(classnames, self.num_classes)
        areas = self.areas()
        per_class = per_class_metrics(areas, beta)
        if nan_to_num is not None:
            per_class = {k: torch.nan_to_num(v, nan=nan_to_num) for k, v in per_class.items()}
        total = float(areas["label_area"].sum())
        results: dict[str, Any] = {"aAcc": float(areas["intersect"].sum()) / total if total else math.nan}
        for key in PER_CLASS_KEYS:
            results[f"m{key}"] = nan_mean(per_class[key])
        for key in PER_CLASS_KEYS:
            results[key] = dict(zip(names, per_class[key].tolist(), strict=True))
        return to_json_safe(results)


_CHUNK = 32768
"""Pixels binned at a time: the chunk's labels and indices stay in the L2 cache between the passes over them."""

_MAX_ROWS = 1024
"""Targets up to ``num_classes + _MAX_ROWS`` are binned as they are (their rows dropped); larger ones are folded."""

_CALCHIST_PIXELS = 1 << 24
"""Pixels counted per ``cv2.calcHist`` call: its float32 bins count exactly up to 2**24."""


def _out_of_range_prediction(num_classes: int) -> ValueError:
    return ValueError(f"predictions must lie in [0, {num_classes}); got values outside it")


def _as_int64_numpy(labels: torch.Tensor) -> np.ndarray:
    """A flat int64 numpy view of a label map (a copy only when it is not already contiguous int64 on the CPU)."""
    return labels.detach().to("cpu", torch.int64).reshape(-1).numpy()


def _histogram_numpy(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """The flat ``n * n`` int64 confusion counts of flat int64 ``pred``/``target``; targets outside [0, n) ignored.

    No boolean indexing: the index ``target * n + pred`` of an ignored target falls past the ``n * n`` bins kept.
    The index is built chunk by chunk, so that each chunk's checks and arithmetic run in cache: viewed as uint64 a
    negative label is huge, so one unsigned ``max`` checks a chunk's predictions and another finds its largest
    target; where the index of a target that large would not fit (a negative or very large ignore label), one
    ``minimum`` first folds the chunk's ignored targets into row ``n``. Only when some prediction is out of range
    does the slower exact check run (an out-of-range prediction on an ignored pixel is allowed, as before).

    Up to 255 classes the index fits 16 bits and OpenCV's ``calcHist`` counts it: a quarter of the bytes to write
    and read, and one pass where ``bincount`` makes two (range, then counts), so the whole update costs less than a
    bare ``bincount`` of the index. Its float32 counts are exact below 2**24, so it counts at most
    :data:`_CALCHIST_PIXELS` pixels a call. More classes take ``bincount`` over an int64 index.
    """
    if n * (n + 1) > 1 << 16:
        return _bincount_histogram(pred, target, n)
    import cv2

    size, size16 = np.uint64(n), np.uint16(n)
    fits = ((1 << 16) - n) // n  # the largest target whose index fits 16 bits
    index = np.empty(pred.size, dtype=np.uint16)
    scratch = np.empty(min(_CHUNK, pred.size), dtype=np.uint16)
    for start in range(0, pred.size, _CHUNK):
        pred_u = _checked_predictions(pred[start : start + _CHUNK].view(np.uint64),
                                      target[start : start + _CHUNK].view(np.uint64), n)
        target_u = target[start : start + _CHUNK].view(np.uint64)
        if int(target_u.max()) > fits:
            target_u = np.minimum(target_u, size)
        chunk, low = index[start : start + _CHUNK], scratch[: pred_u.size]
        np.copyto(chunk, target_u, casting="unsafe")  # targets <= fits: exact
        chunk *= size16
        np.copyto(low, pred_u, casting="unsafe")  # predictions < n
        chunk += low
    counts = np.zeros(n * n, dtype=np.int64)
    for start in range(0, index.size, _CALCHIST_PIXELS):
        part = index[start : start + _CALCHIST_PIXELS]
        counts += cv2.calcHist([part.reshape(1, -1)], [0], None, [n * n], [0, n * n]).ravel().astype(np.int64)
    return counts


def _checked_predictions(pred_u: np.ndarray, target_u: np.ndarray, n: int) -> np.ndarray:
    """A chunk's predictions (uint64 views), an error if one outside [0, n) sits on a kept target; those on ignored
    targets are clipped into range (their bins are dropped anyway)."""
    if int(pred_u.max()) >= n:
        size = np.uint64(n)
        if bool(((pred_u >= size) & (target_u < size)).any()):
            raise _out_of_range_prediction(n)
        pred_u = np.minimum(pred_u, size - np.uint64(1))
    return pred_u


def _bincount_histogram(pred: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """:func:`_histogram_numpy` for more than 255 classes: numpy's ``bincount`` of an int64 index, whose rows past
    ``n`` (targets ``>= n``) are dropped."""
    size = np.uint64(n)
    index = np.empty(pred.size, dtype=np.uint64)
    for start in range(0, pred.size, _CHUNK):
        pred_u = _checked_predictions(pred[start : start + _CHUNK].view(np.uint64),
                                      target[start : start + _CHUNK].view(np.uint64), n)
        target_u = target[start : start + _CHUNK].view(np.uint64)
        if int(target_u.max()) >= n + _MAX_ROWS:
            target_u = np.minimum(target_u, size)
        chunk = index[start : start + _CHUNK]
        np.multiply(target_u, size, out=chunk)
        chunk += pred_u
    return np.bincount(index.view(np.int64), minlength=n * n)[: n * n]


def _histogram_torch(pred: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`_histogram_numpy` with torch ops on the tensors' device (one host sync, for the prediction check)."""
    pred = pred.reshape(-1).to(torch.int64)
    target = target.reshape(-1).to(torch.int64)
    valid = (target >= 0) & (target < n)
    if bool((valid & ((pred < 0) | (pred >= n))).any()):
        raise _out_of_range_prediction(n)
    index = torch.where(valid, target, n) * n + pred.clamp(0, n - 1)
    return torch.bincount(index, minlength=(n + 1) * n)[: n * n].reshape(n, n)


def per_class_metrics(areas: Mapping[str, torch.Tensor], beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-class IoU, Acc, Dice, Fscore, Precision and Recall from the areas of :meth:`ConfusionMatrix.areas`."""
    intersect, pred_area, label_area = areas["intersect"], areas["pred_area"], areas["label_area"]
    precision = intersect / pred_area
    recall = intersect / label_area
    b2 = beta**2
    return {
        "IoU": intersect / areas["union"],
        "Acc": recall,
        "Dice": 2 * intersect / (pred_area + label_area),
        "Fscore": (1 + b2) * precision * recall / (b2 * precision + recall),
        "Precision": precision,
        "Recall": recall,
    }


def nan_mean(values: torch.Tensor) -> float:
    """The mean of the non-NaN entries (NaN when there are none), like ``numpy.nanmean`` without the warning."""
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else math.nan


def to_json_safe(value: Any) -> Any:
    """Turn nested dicts/lists of numbers (Python, numpy or 0-d torch) into plain JSON values; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if callable(getattr(value, "tolist", None)):  # torch tensors, numpy arrays and scalars
        return to_json_safe(value.tolist())
    return value


def result_keys() -> list[str]:
    """Every key :meth:`ConfusionMatrix.compute` returns."""
    return ["aAcc", *(f"m{k}" for k in PER_CLASS_KEYS), *PER_CLASS_KEYS]


def filter_metrics(results: Mapping[str, Any], metric_list: Sequence[str]) -> dict[str, Any]:
    """Keep only the metrics named in ``metric_list`` (SSSegmentation names such as ``miou``, or segkit keys), in
    the list's order: what is printed and written (the epoch line, ``log.txt``, ``metrics.jsonl``, ``eval/*.json``,
    ``segkit eval``). Everything is still computed: the best checkpoint is chosen by ``mIoU`` whether or not it is
    listed, and the confusion matrix, ``eval/per_class.csv`` and the experiment trackers keep every metric.

    An unknown name raises :class:`~segkit.errors.SegkitError` listing the valid ones (SSSegmentation asserts).
    """
    selected: dict[str, Any] = {}
    for name in metric_list:
        key = SSSEG_METRIC_KEYS.get(name.lower(), name)
        if key not in results:
            known = sorted(set(SSSEG_METRIC_KEYS) | set(results))
            raise SegkitError(
                f"unknown metric '{name}'{did_you_mean(name, known)} (known: {', '.join(known)})"
            )
        selected[key] = results[key]
    return selected


def metric_summary(selected: Mapping[str, Any], digits: int = 4) -> str:
    """One line of selected metrics: each mean as ``mIoU 0.4321``; the per-class ones by name (``per-class IoU,
    Dice``) only when no mean is selected, so the line is never empty."""

    def number(value: Any) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    means = [f"{key} {number(value)}" for key, value in selected.items() if not isinstance(value, Mapping)]
    if means:
        return " ".join(means)
    per_class = [key for key, value in selected.items() if isinstance(value, Mapping)]
    return f"per-class {', '.join(per_class)}" if per_class else "no metric selected"


def _class_names(classnames: Sequence[str] | None, num_classes: int) -> list[str]:
    if classnames is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in classnames]
    if len(names) != num_classes or len(set(names)) != num_classes:
        raise SegkitError(f"expected {num_classes} distinct class names, got {len(names)}: {names}")
    return names
