"""``UGSampler``: uncertainty-guided point sampling (SSSegmentation's ``ugsampler.py``, used by Mask2Former).

``sample(logits, target) -> (point_logits [N, P], point_target [N, P])`` with ``P = num_points``:

* ``reformat_target=True`` (default): ``logits`` ``[B, K, H, W]`` and an index ``target`` ``[B, H, W]`` become
  ``B * K`` per-class masks: the logits ``[B * K, H, W]`` and the binary targets ``target == k`` for
  ``k < num_classes`` (``num_classes`` must then be given and equal ``K``);
* ``reformat_target=False``: ``logits`` and ``target`` are already ``[N, h, w]`` mask logits and ``[N, H, W]``
  (float) masks.

The sizes may differ (Mask2Former's masks are at a quarter of the target's size): points are normalised
coordinates, sampled in each tensor at its own resolution.

The points (``segkit.models.layers.point_sample.uncertainty_point_coords``) are the ``importance_sample_ratio``
share of ``num_points`` most uncertain (``-|logit|``) of ``num_points * oversample_ratio`` uniform draws, the rest
uniform draws. Logits and targets are then sampled there bilinearly (``align_corners=False``); the target masks
are sampled as floats (SSSegmentation's per-class masks are ``long``, which ``F.grid_sample`` rejects: its
``reformat_target=True`` path fails; that bug is fixed here). The point choice runs without gradient, the point
logits keep theirs. ``generator`` (in ``sample``) makes the draws reproducible.

``ignore_index`` is accepted and, as in SSSegmentation, not used: an ignored pixel is in no class mask.
"""

from __future__ import annotations

import torch

from ...registry import SAMPLERS
from ..layers.point_sample import calculate_uncertainty, point_sample, uncertainty_point_coords


@SAMPLERS.register("UGSampler")
class UGSampler:
    """Samples mask logits and targets at uncertain points (PointRend / Mask2Former)."""

    def __init__(
        self,
        num_points: int,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        ignore_index: int = -100,
        num_classes: int | None = None,
        reformat_target: bool = True,
    ) -> None:
        if num_points < 1:
            raise ValueError(f"UGSampler: num_points must be >= 1, got {num_points}")
        if oversample_ratio < 1:
            raise ValueError(f"UGSampler: oversample_ratio must be >= 1, got {oversample_ratio}")
        if not 0 <= importance_sample_ratio <= 1:
            raise ValueError(f"UGSampler: importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
        if reformat_target and num_classes is None:
            raise ValueError("UGSampler: reformat_target=True needs num_classes")
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.reformat_target = reformat_target

    def __repr__(self) -> str:
        return (f"UGSampler(num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
                f"importance_sample_ratio={self.importance_sample_ratio}, num_classes={self.num_classes}, "
                f"reformat_target={self.reformat_target})")

    def reformat(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, K, H, W]`` logits and ``[B, H, W]`` labels -> ``[B * K, H, W]`` mask logits and binary masks."""
        if logits.dim() != 4 or target.dim() != 3 or logits.size(1) != self.num_classes \
                or logits.size(0) != target.size(0):
            raise ValueError(f"UGSampler: logits {tuple(logits.shape)} and target {tuple(target.shape)} must be "
                             f"[B, {self.num_classes}, h, w] and [B, H, W]")
        classes = torch.arange(self.num_classes, device=target.device).view(1, -1, 1, 1)
        masks = (target.unsqueeze(1) == classes).to(logits.dtype)
        return logits.flatten(0, 1), masks.flatten(0, 1)

    def sample(self, logits: torch.Tensor, target: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reformat_target:
            logits, target = self.reformat(logits, target)
        if logits.dim() != 3 or target.dim() != 3 or target.size(0) != logits.size(0):
            raise ValueError(f"UGSampler: logits {tuple(logits.shape)} and target {tuple(target.shape)} must be "
                             "[N, h, w] mask logits and [N, H, W] masks")
        logits, target = logits.unsqueeze(1), target.unsqueeze(1)
        coords = uncertainty_point_coords(logits.detach(), calculate_uncertainty, self.num_points,
                                          self.oversample_ratio, self.importance_sample_ratio, generator=generator)
        point_target = point_sample(target.to(logits.dtype), coords, align_corners=False).squeeze(1)
        point_logits = point_sample(logits, coords, align_corners=False).squeeze(1)
        return point_logits, point_target
