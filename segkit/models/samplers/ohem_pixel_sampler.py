"""``OHEMPixelSampler``: online hard example mining over pixels (SSSegmentation's ``ohempixelsampler.py``).

``sample(logits [B, C, H, W], target [B, H, W]) -> (logits [N, C], target [N])`` keeps the hard pixels, flattened
in ``(b, h, w)`` order; the selection runs without gradient, the returned logits keep theirs. The caller resizes
the logits to the target's size first. Pixels equal to ``ignore_index`` are never kept. With
``k = min_kept_per_image * B``:

* ``thresh`` mode: ``p`` is the softmax probability of each valid pixel's ground-truth class, and the pixels kept
  are those with ``p < max(thresh, p_(k))``, ``p_(k)`` being the valid probabilities sorted increasingly and
  indexed at ``min(k, n_valid - 1)`` (0 without valid pixels). So at least about ``k`` pixels are kept, more when
  ``thresh`` is larger. Note the strict ``<``, as in SSSegmentation (and mmsegmentation): with ``n_valid <= k``
  the threshold is the largest probability and the pixels at that probability are dropped.
* ``loss_func`` mode: the ``k`` valid pixels of largest per-pixel loss (all of them when fewer). ``loss_func`` is a
  loss table (``{"type": "CrossEntropyLoss", ...}``) built with ``LOSSES`` and ``reduction = "none"``; it must
  give one value per pixel (``[B, H, W]``), and gets the sampler's ``ignore_index`` when the table does not set
  one. (In SSSegmentation ``loss_func`` is a callable that no config can give.)

Exactly one of ``thresh`` and ``loss_func`` must be set (SSSegmentation fails later, in ``sample``, with neither).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...registry import LOSSES, SAMPLERS
from .. import losses as _losses  # noqa: F401  (registers the losses loss_func may name)


@SAMPLERS.register("OHEMPixelSampler")
class OHEMPixelSampler:
    """Keeps the hard pixels: low ground-truth probability (``thresh``) or high loss (``loss_func``)."""

    def __init__(
        self,
        thresh: float | None = None,
        min_kept_per_image: int = 100000,
        ignore_index: int = -100,
        loss_func: dict | None = None,
    ) -> None:
        if thresh is None and loss_func is None:
            raise ValueError("OHEMPixelSampler needs 'thresh' or 'loss_func' (a loss table); neither is set")
        if thresh is not None and loss_func is not None:
            raise ValueError("OHEMPixelSampler takes 'thresh' or 'loss_func', not both")
        if min_kept_per_image <= 1:
            raise ValueError(f"OHEMPixelSampler: min_kept_per_image must be > 1, got {min_kept_per_image}")
        self.thresh = thresh
        self.min_kept_per_image = min_kept_per_image
        self.ignore_index = ignore_index
        self.loss_func = None
        if loss_func is not None:
            table = {**loss_func, "reduction": "none"}
            if "type" in table and table["type"] in LOSSES and "ignore_index" in LOSSES.parameters(table["type"]):
                table.setdefault("ignore_index", ignore_index)
            self.loss_func = LOSSES.build(table, path="loss_func")

    def __repr__(self) -> str:
        mode = f"thresh={self.thresh}" if self.thresh is not None else f"loss_func={self.loss_func!r}"
        return (f"OHEMPixelSampler({mode}, min_kept_per_image={self.min_kept_per_image}, "
                f"ignore_index={self.ignore_index})")

    @torch.no_grad()
    def select(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The boolean ``[B, H, W]`` mask of the pixels ``sample`` keeps."""
        if logits.dim() != 4 or target.dim() != 3 or logits.size(0) != target.size(0) \
                or logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"OHEMPixelSampler: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                             "must be [B, C, H, W] and [B, H, W] (resize the logits to the target first)")
        target = target.long()
        batch_kept = self.min_kept_per_image * target.size(0)
        valid = target != self.ignore_index
        keep = torch.zeros_like(valid)
        if self.thresh is not None:
            probs = F.softmax(logits, dim=1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
            valid_probs = probs[valid]
            if valid_probs.numel() > 0:
                sorted_probs = valid_probs.sort().values
                min_threshold = sorted_probs[min(batch_kept, sorted_probs.numel() - 1)].item()
            else:
                min_threshold = 0.0
            keep[valid] = valid_probs < max(min_threshold, self.thresh)
        else:
            losses = self.loss_func(logits, target)
            if losses.shape != target.shape:
                raise ValueError(f"OHEMPixelSampler: loss_func gave a loss of shape {tuple(losses.shape)}; it must "
                                 f"give one value per pixel {tuple(target.shape)} with reduction 'none'")
            order = losses[valid].sort(descending=True).indices
            kept = torch.zeros_like(order, dtype=torch.bool)
            kept[order[:batch_kept]] = True
            keep[valid] = kept
        return keep

    def sample(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, C], target [N])`` of the kept pixels; the logits keep their gradient."""
        keep = self.select(logits, target)
        return logits.permute(0, 2, 3, 1)[keep], target[keep]
