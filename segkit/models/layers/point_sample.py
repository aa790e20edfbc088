"""Point sampling as in PointRend / Mask2Former (Detectron2's ``point_sample`` and
``get_uncertain_point_coords_with_randomness``; SSSegmentation's ``UGSampler.pointsample`` and
``UGSampler.getuncertainpointcoordswithrandomness``).

Points are normalised coordinates ``(x, y)`` in ``[0, 1] x [0, 1]`` over the whole feature map (``(0, 0)`` is
its top-left corner, ``(1, 1)`` its bottom-right corner, as ``F.grid_sample`` sees them with
``align_corners=False``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` ``[B, C, H, W]`` at ``points`` ``[B, P, 2]`` -> ``[B, C, P]`` (bilinear by default).

    ``points`` may also be ``[B, Hp, Wp, 2]`` (-> ``[B, C, Hp, Wp]``). ``kwargs`` go to ``F.grid_sample``
    (``mode``, ``padding_mode``). ``points`` are cast to ``input``'s dtype (PointRend makes its test points in
    float32, as SSSeg does, and a float64 model must still sample them).
    """
    points = points.to(input.dtype)
    squeeze = points.dim() == 3
    if squeeze:
        points = points.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return output.squeeze(3) if squeeze else output


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """The uncertainty of one-channel logits ``[N, 1, ...]``: ``-|logit|`` (highest at the decision boundary)."""
    if logits.size(1) != 1:
        raise ValueError(f"calculate_uncertainty expects one channel, got {logits.size(1)}")
    return -logits.abs()


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


@torch.no_grad()
def uncertainty_point_coords(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor] | None,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Points ``[N, num_points, 2]`` in ``[0, 1]`` chosen where ``coarse_logits`` ``[N, C, H, W]`` is uncertain.

    Draws ``int(num_points * oversample_ratio)`` uniform random points, samples the logits there, and keeps the
    ``int(importance_sample_ratio * num_points)`` points of highest ``uncertainty_func`` (which maps the sampled
    ``[N, C, P]`` logits to ``[N, 1, P]`` uncertainties; default ``calculate_uncertainty``, ``-|logit|`` of one
    channel), in decreasing uncertainty; the remaining points are drawn uniformly at random and appended.
    ``generator`` (on any device) makes the draws reproducible.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    uncertainty_func = uncertainty_func or calculate_uncertainty
    num_boxes = coarse_logits.size(0)
    num_sampled = int(num_points * oversample_ratio)
    coords_like = coarse_logits if coarse_logits.is_floating_point() else coarse_logits.float()
    point_coords = _rand((num_boxes, num_sampled, 2), coords_like, generator)
    point_logits = point_sample(coarse_logits, point_coords, align_corners=False)
    point_uncertainties = uncertainty_func(point_logits)
    num_uncertain_points = int(importance_sample_ratio * num_points)
    num_random_points = num_points - num_uncertain_points
    idx = torch.topk(point_uncertainties[:, 0, :], k=num_uncertain_points, dim=1)[1]
    point_coords = torch.gather(point_coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random_points > 0:
        point_coords = torch.cat([point_coords, _rand((num_boxes, num_random_points, 2), coords_like, generator)],
                                 dim=1)
    return point_coords
