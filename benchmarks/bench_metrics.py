"""Confusion-matrix accumulation on one CPU thread: segkit's ``ConfusionMatrix.update`` against the floor, a bare
``numpy.bincount(target * K + pred)`` on the same arrays, and torchmetrics' ``MulticlassConfusionMatrix`` (with
``ignore_index``) when torchmetrics is installed (reported as missing otherwise).

Data: 150 classes (ADE20k), 512x512 int64 label maps as ``argmax`` and a dataset give them, ~10% of the targets
the ignore label 255. The numpy floor knows nothing about the ignore label (its result is not a valid matrix), so it
is the cost of one bincount over the pixels and nothing else. segkit, up to 255 classes, counts a 16-bit index
with OpenCV's ``calcHist`` (one pass where ``bincount`` makes two), so it can come out below that floor. The
contenders run in turn, round after round (the first alternates), so that load from other processes falls on all
alike; figures are medians over the rounds of the per-image milliseconds, and the ratio is the median of the
per-round ratios.

summary: ``segkit_ms``, ``numpy_bincount_ms``, ``torchmetrics_ms`` (or ``"missing"``), and the ratios
``segkit_over_numpy`` (target <= 1.3) and ``torchmetrics_over_segkit``.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

NUM_CLASSES, SIZE, IGNORE = 150, 512, 255


def _contenders(pred: torch.Tensor, target: torch.Tensor) -> dict[str, Callable[[], object]]:
    from segkit.evaluation.metrics import ConfusionMatrix

    k = NUM_CLASSES
    pred_np, target_np = pred.numpy().ravel(), target.numpy().ravel()
    matrix = ConfusionMatrix(k)
    contenders: dict[str, Callable[[], object]] = {
        "segkit": lambda: matrix.update(pred, target),
        "numpy_bincount": lambda: np.bincount(target_np * k + pred_np, minlength=k * k),
    }
    if importlib.util.find_spec("torchmetrics") is not None:
        from torchmetrics.classification import MulticlassConfusionMatrix

        metric = MulticlassConfusionMatrix(num_classes=k, ignore_index=IGNORE, validate_args=False)
        contenders["torchmetrics"] = lambda: metric.update(pred, target)
    return contenders


def run(rounds: int = 41, per_round: int = 10) -> dict:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.integers(0, NUM_CLASSES, (SIZE, SIZE)))
    target = torch.from_numpy(rng.integers(0, NUM_CLASSES, (SIZE, SIZE)))
    target[torch.from_numpy(rng.random((SIZE, SIZE)) < 0.1)] = IGNORE
    contenders = _contenders(pred, target)
    for fn in contenders.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            fn = contenders[name]
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append(1e3 * (time.perf_counter() - t0) / per_round)
    ms = {name: statistics.median(values) for name, values in times.items()}
    ratios = sorted(s / b for s, b in zip(times["segkit"], times["numpy_bincount"], strict=True))
    summary: dict[str, object] = {
        "segkit_ms": round(ms["segkit"], 3),
        "numpy_bincount_ms": round(ms["numpy_bincount"], 3),
        "torchmetrics_ms": round(ms["torchmetrics"], 3) if "torchmetrics" in ms else "missing",
        "segkit_over_numpy": round(statistics.median(ratios), 3),
        "segkit_over_numpy_range": [round(ratios[0], 3), round(ratios[-1], 3)],
    }
    if "torchmetrics" in ms:
        summary["torchmetrics_over_segkit"] = round(ms["torchmetrics"] / ms["segkit"], 2)
    return {
        "benchmark": "metrics",
        "data": f"{NUM_CLASSES} classes, {SIZE}x{SIZE} int64 label maps, ~10% targets = {IGNORE} (ignored)",
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "ms_per_round": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "summary": summary,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
