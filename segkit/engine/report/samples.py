"""A fixed set of validation samples drawn as image | ground truth | prediction at each evaluation.

The same samples (evenly spaced over the validation split) are predicted once per evaluation, with the recipe's
inference settings, and shared by every consumer (TensorBoard, W&B, MLflow, ``vis/epoch_N/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..trainer import Trainer


def raw_rgb(dataset, index: int, tensor: torch.Tensor) -> np.ndarray:
    """The sample's untransformed image as RGB; without a ``read``-able dataset, the network input rescaled
    to 0..255 (it is normalised)."""
    ids = getattr(dataset, "imageids", None)
    if ids and hasattr(dataset, "read"):
        try:
            bgr = dataset.read(ids[index % len(ids)])["image"]
            return np.ascontiguousarray(bgr[:, :, ::-1])
        except Exception:  # noqa: BLE001  (a dataset whose read needs more: fall back to the tensor)
            pass
    image = tensor.detach().float().cpu().permute(1, 2, 0).numpy()
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    return (image * 255).round().astype(np.uint8)


class ValidationSamples:
    """``get(trainer)`` -> ``[(name, panel RGB)]`` for the latest evaluation, computed once per evaluation."""

    def __init__(self, count: int = 4) -> None:
        self.count = max(int(count), 0)
        self._key: tuple | None = None
        self._panels: list[tuple[str, np.ndarray]] = []

    def indices(self, size: int) -> list[int]:
        if self.count == 0 or size == 0:
            return []
        return sorted({int(round(i)) for i in np.linspace(0, size - 1, min(self.count, size))})

    @torch.no_grad()
    def get(self, trainer: Trainer) -> list[tuple[str, np.ndarray]]:
        key = (trainer.last_eval_epoch, trainer.iteration)
        if key == self._key:
            return self._panels
        from ...evaluation.inference import predict_logits
        from ...viz.draw import sample_panel
        from ..evaluator import inference_kwargs

        recipe, dataset, model = trainer.recipe, trainer.val_set, trainer.model
        classnames = list(getattr(dataset, "classnames", None) or [str(i) for i in range(recipe.num_classes)])
        palette = getattr(dataset, "palette", None)
        if palette is None:
            from ...data.datasets.base import voc_palette

            palette = voc_palette(recipe.num_classes)
        kwargs = inference_kwargs(recipe.inference, recipe.num_classes, recipe.align_corners)
        was_training = model.training
        model.eval()
        panels = []
        try:
            for index in self.indices(len(dataset)):
                sample = dataset[index]
                target = sample["seg_target"]
                image = sample["image"].unsqueeze(0).to(trainer.ctx.device)
                with trainer.amp.autocast():
                    logits = predict_logits(model, image, output_size=tuple(target.shape[-2:]), **kwargs)
                labels = logits.argmax(1)[0].cpu().numpy()
                rgb = raw_rgb(dataset, index, sample["image"])
                if rgb.shape[:2] != labels.shape:
                    import cv2

                    rgb = cv2.resize(rgb, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_LINEAR)
                name = str(sample.get("id", index))
                panels.append((name, sample_panel(rgb, labels, palette, classnames, target.numpy())))
        finally:
            model.train(was_training)
        self._key, self._panels = key, panels
        return panels
