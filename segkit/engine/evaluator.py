"""Evaluating a segmentor on a loader: inference (whole | slide | TTA) -> confusion matrix on the device."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..evaluation.inference import predict_logits
from ..evaluation.metrics import ConfusionMatrix
from ..recipe.schema import InferenceCfg


def inference_kwargs(cfg: InferenceCfg, num_classes: int, align_corners: bool) -> dict:
    """The recipe's ``inference`` table as arguments of :func:`predict_logits`."""
    return {
        "num_classes": num_classes,
        "mode": cfg.forward.mode,
        "cropsize": cfg.forward.cropsize,
        "stride": cfg.forward.stride,
        "window_batch": cfg.forward.window_batch,
        "multiscale": tuple(cfg.tta.multiscale),
        "flip": cfg.tta.flip,
        "use_probs_before_resize": cfg.tta.use_probs_before_resize,
        "fixed_seg_target_pairs": cfg.tta.fixed_seg_target_pairs,
        "align_corners": align_corners,
    }


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, num_classes: int, classnames: list[str] | None, device: torch.device,
             infer_kwargs: dict, autocast: Callable | None = None, on_batch: Callable[[int], None] | None = None,
             matrix: ConfusionMatrix | None = None) -> dict:
    """Predict every sample at its original resolution and return SSSegmentation's metrics (all ranks agree).

    ``on_batch(n)`` is called after each batch of ``n`` samples (progress); pass ``matrix`` to keep the (summed)
    confusion matrix."""
    was_training = model.training
    model.eval()
    matrix = matrix if matrix is not None else ConfusionMatrix(num_classes, device=device)
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        targets = batch["seg_target"]
        for i, target in enumerate(targets):
            target = target.to(device)
            ctx = autocast() if autocast is not None else torch.autocast(device.type, enabled=False)
            with ctx:
                logits = predict_logits(model, images[i : i + 1], output_size=tuple(target.shape[-2:]),
                                        **infer_kwargs)
            matrix.update(logits.argmax(1)[0], target)
        if on_batch is not None:
            on_batch(len(targets))
    matrix.all_reduce()
    model.train(was_training)
    return matrix.compute(classnames)
