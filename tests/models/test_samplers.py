"""Pixel samplers (OHEM, uncertainty-guided) and point sampling.

OHEM is checked on a hand-built case whose kept pixels are worked out by hand; point sampling against bilinear
interpolation written out; the uncertain points against the uncertainties of the oversampled draws. Where
SSSegmentation's own samplers import (``/work/ssseg``, torch only), they are a second reference.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segkit.errors import RecipeError
from segkit.models.layers.point_sample import calculate_uncertainty, point_sample, uncertainty_point_coords
from segkit.models.samplers import OHEMPixelSampler, UGSampler
from segkit.registry import SAMPLERS

from ..ssseg_reference import ssseg_module


def ssseg(module_name: str, attribute: str):
    """An attribute of SSSegmentation's ``samplers/<module_name>.py`` (tests marked ``ssseg``; ``nox -s parity``)."""
    return getattr(ssseg_module("samplers", module_name), attribute)


# ------------------------------------------------------------------------------------------------------- OHEM
# one image, one row of 6 pixels, ground truth class 1, whose probabilities are PROBS; the last pixel is ignored
PROBS = [0.1, 0.9, 0.3, 0.6, 0.05, 0.5]


def hand_built(ignore_index: int = -100):
    logit_of_class1 = torch.tensor([math.log(p / (1 - p)) for p in PROBS])
    logits = torch.stack([torch.zeros(6), logit_of_class1]).view(1, 2, 1, 6).requires_grad_()
    target = torch.tensor([[[1, 1, 1, 1, 1, ignore_index]]])
    return logits, target


@pytest.mark.parametrize("thresh,min_kept,kept", [
    (0.5, 2, [0, 2, 4]),      # sorted valid probs [.05 .1 .3 .6 .9]; p_(2) = .3 < thresh .5: keep p < .5
    (0.2, 3, [0, 2, 4]),      # p_(3) = .6 > thresh: keep p < .6
    (0.2, 10, [0, 2, 3, 4]),  # k past the end: p_(4) = .9, and the strict < drops the .9 pixel
    (0.95, 2, [0, 1, 2, 3, 4]),
])
def test_ohem_thresh_keeps_the_expected_pixels(thresh, min_kept, kept):
    logits, target = hand_built()
    sampler = OHEMPixelSampler(thresh=thresh, min_kept_per_image=min_kept)
    assert sampler.select(logits, target).view(-1).nonzero().view(-1).tolist() == kept
    point_logits, point_target = sampler.sample(logits, target)
    assert point_logits.shape == (len(kept), 2) and point_target.tolist() == [1] * len(kept)
    assert torch.allclose(point_logits, logits.detach()[0, :, 0, kept].t())
    point_logits.sum().backward()  # the sampled logits keep their gradient
    assert logits.grad[0, 1, 0].nonzero().view(-1).tolist() == kept


def test_ohem_loss_func_keeps_the_largest_losses():
    logits, target = hand_built(ignore_index=255)
    sampler = OHEMPixelSampler(loss_func={"type": "CrossEntropyLoss"}, min_kept_per_image=2, ignore_index=255)
    assert sampler.loss_func.reduction == "none" and sampler.loss_func.ignore_index == 255
    # the largest cross-entropies -log p are at the smallest probabilities: pixels 4 (.05) and 0 (.1)
    point_logits, point_target = sampler.sample(logits, target)
    assert sampler.select(logits, target).view(-1).nonzero().view(-1).tolist() == [0, 4]
    assert torch.allclose(point_logits, logits.detach()[0, :, 0, [0, 4]].t()) and point_target.tolist() == [1, 1]
    everything = OHEMPixelSampler(loss_func={"type": "CrossEntropyLoss", "reduction": "mean"}, min_kept_per_image=50,
                                  ignore_index=255)
    assert everything.select(logits, target).view(-1).tolist() == [True] * 5 + [False]


def test_ohem_arguments():
    with pytest.raises(ValueError, match="needs 'thresh' or 'loss_func'"):
        OHEMPixelSampler()
    with pytest.raises(ValueError, match="not both"):
        OHEMPixelSampler(thresh=0.7, loss_func={"type": "CrossEntropyLoss"})
    with pytest.raises(ValueError, match="min_kept_per_image"):
        OHEMPixelSampler(thresh=0.7, min_kept_per_image=1)
    with pytest.raises(RecipeError):
        OHEMPixelSampler(loss_func={"type": "CrossEntropyLos"})
    built = SAMPLERS.build({"type": "OHEMPixelSampler", "thresh": 0.7, "min_kept_per_image": 1000})
    assert isinstance(built, OHEMPixelSampler) and built.thresh == 0.7 and "thresh=0.7" in repr(built)
    logits, target = hand_built()
    with pytest.raises(ValueError, match="one value per pixel"):
        OHEMPixelSampler(loss_func={"type": "DiceLoss"}).sample(logits, target)
    with pytest.raises(ValueError, match="resize the logits"):
        OHEMPixelSampler(thresh=0.7).sample(logits, target[:, :, :3])


def test_ohem_with_every_pixel_ignored_keeps_none():
    logits, target = hand_built()
    point_logits, point_target = OHEMPixelSampler(thresh=0.7).sample(logits, torch.full_like(target, -100))
    assert point_logits.shape == (0, 2) and point_target.shape == (0,)


@pytest.mark.ssseg
@pytest.mark.parametrize("mode", ["thresh", "loss_func"])
def test_ohem_matches_ssseg(mode):
    reference_cls = ssseg("ohempixelsampler", "OHEMPixelSampler")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, generator=generator)
    target = torch.randint(0, 3, (2, 6, 6), generator=generator)
    target[0, :2] = 255
    if mode == "thresh":
        ours = OHEMPixelSampler(thresh=0.4, min_kept_per_image=10, ignore_index=255)
        theirs = reference_cls(thresh=0.4, min_kept_per_image=10, ignore_index=255)
    else:
        ours = OHEMPixelSampler(loss_func={"type": "CrossEntropyLoss"}, min_kept_per_image=10, ignore_index=255)
        theirs = reference_cls(loss_func=lambda x, t: F.cross_entropy(x, t, reduction="none", ignore_index=255),
                               min_kept_per_image=10, ignore_index=255)
    our_logits, our_target = ours.sample(logits, target)
    their_logits, their_target = theirs.sample(logits, target)
    assert torch.equal(our_logits, their_logits) and torch.equal(our_target, their_target)


# ------------------------------------------------------------------------------------------------------- point_sample
def bilinear_by_hand(image: torch.Tensor, x: float, y: float) -> float:
    """``image`` [H, W]; (x, y) in [0, 1] over the whole map, pixel centres at (i + 0.5) / size; zero outside."""
    height, width = image.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    value = 0.0
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < width and 0 <= yi < height:
                value += wx * wy * float(image[yi, xi])
    return value


def test_point_sample_is_bilinear_interpolation():
    image = (torch.arange(12, dtype=torch.float32).view(3, 4) + 1) ** 1.5
    features = torch.stack([image, -image]).unsqueeze(0)  # [1, 2, 3, 4]
    points = [(0.5, 0.5), (0.125, 1 / 6), (0.3, 0.7), (0.9, 0.2), (0.01, 0.99)]
    sampled = point_sample(features, torch.tensor([points]))
    assert sampled.shape == (1, 2, len(points))
    for k, (x, y) in enumerate(points):
        assert sampled[0, 0, k].item() == pytest.approx(bilinear_by_hand(image, x, y), rel=1e-5, abs=1e-5)
        assert sampled[0, 1, k].item() == pytest.approx(-bilinear_by_hand(image, x, y), rel=1e-5, abs=1e-5)
    # (0.125, 1/6) is the centre of pixel (0, 0): exactly its value
    assert sampled[0, 0, 1].item() == pytest.approx(float(image[0, 0]))
    grid = point_sample(features, torch.tensor([points]).view(1, 1, 5, 2))
    assert grid.shape == (1, 2, 1, 5) and torch.allclose(grid.view(1, 2, 5), sampled)
    nearest = point_sample(features, torch.tensor([[(0.3, 0.7)]]), mode="nearest")
    assert nearest[0, 0, 0].item() == float(image[2, 1])
    # a float64 map sampled at float32 points (PointRend's test points): float64 values, the points as given
    double = point_sample(features.double(), torch.tensor([points]))
    assert double.dtype == torch.float64
    assert torch.equal(double, point_sample(features.double(), torch.tensor([points]).double()))
    assert torch.allclose(double.float(), sampled)


def test_uncertain_points_are_the_most_uncertain_draws():
    logits = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    num_points, oversample, importance = 10, 3.0, 0.6
    coords = uncertainty_point_coords(logits, None, num_points, oversample, importance,
                                      generator=torch.Generator().manual_seed(7))
    assert coords.shape == (3, 10, 2) and coords.min() >= 0 and coords.max() <= 1
    # replay the draws: the first 6 points are the 6 most uncertain of the 30 oversampled ones, the rest uniform
    replay = torch.Generator().manual_seed(7)
    drawn = torch.rand(3, 30, 2, generator=replay)
    uncertainty = calculate_uncertainty(point_sample(logits, drawn))[:, 0]
    for n in range(3):
        most = uncertainty[n].argsort(descending=True)[:6]
        assert torch.equal(coords[n, :6], drawn[n, most])
        chosen = -point_sample(logits[n:n + 1], coords[n:n + 1, :6]).abs()
        assert chosen.min() >= uncertainty[n].sort(descending=True).values[5] - 1e-6
    assert torch.equal(coords[:, 6:], torch.rand(3, 4, 2, generator=replay))
    again = uncertainty_point_coords(logits, None, num_points, oversample, importance,
                                     generator=torch.Generator().manual_seed(7))
    other = uncertainty_point_coords(logits, None, num_points, oversample, importance,
                                     generator=torch.Generator().manual_seed(8))
    assert torch.equal(coords, again) and not torch.equal(coords, other)
    custom = uncertainty_point_coords(logits, lambda x: x, 4, 2.0, 1.0, generator=torch.Generator().manual_seed(2))
    assert custom.shape == (3, 4, 2)
    with pytest.raises(ValueError):
        uncertainty_point_coords(logits, None, 4, 0.5, 0.5)
    with pytest.raises(ValueError):
        uncertainty_point_coords(logits, None, 4, 2.0, 1.5)


@pytest.mark.ssseg
def test_uncertain_points_match_ssseg_under_the_same_seed():
    reference = ssseg("ugsampler", "UGSampler")
    logits = torch.randn(4, 1, 7, 9, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    theirs = reference.getuncertainpointcoordswithrandomness(logits, reference.calculateuncertainty, 12, 3.0, 0.75)
    torch.manual_seed(11)
    ours = uncertainty_point_coords(logits, None, 12, 3.0, 0.75)
    assert torch.equal(ours, theirs)
    points = torch.rand(4, 5, 2)
    assert torch.equal(point_sample(logits, points), reference.pointsample(logits, points, align_corners=False))


# ------------------------------------------------------------------------------------------------------- UGSampler
def test_ug_sampler_reformats_labels_into_class_masks():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 6, 6, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 6, 6), generator=generator)
    target[0, 0] = 255
    sampler = UGSampler(num_points=8, num_classes=3)
    point_logits, point_target = sampler.sample(logits, target, generator=torch.Generator().manual_seed(5))
    assert point_logits.shape == (6, 8) and point_target.shape == (6, 8)
    assert point_target.min() >= 0 and point_target.max() <= 1
    # the same points, by hand: per-class masks, then point_sample
    masks = torch.stack([(target == k).float() for k in range(3)], dim=1).flatten(0, 1).unsqueeze(1)
    coords = uncertainty_point_coords(logits.detach().flatten(0, 1).unsqueeze(1), None, 8, 3.0, 0.75,
                                      generator=torch.Generator().manual_seed(5))
    assert torch.allclose(point_target, point_sample(masks, coords).squeeze(1))
    assert torch.allclose(point_logits, point_sample(logits.detach().flatten(0, 1).unsqueeze(1), coords).squeeze(1))
    point_logits.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_classes"):
        UGSampler(num_points=8)
    with pytest.raises(ValueError, match=r"\[B, 4, h, w\]"):
        UGSampler(num_points=8, num_classes=4).sample(logits, target)


def test_ug_sampler_on_mask_logits_of_another_size():
    generator = torch.Generator().manual_seed(6)
    mask_logits = torch.randn(5, 4, 4, generator=generator)
    masks = (torch.rand(5, 16, 16, generator=generator) > 0.5).float()
    sampler = SAMPLERS.build({"type": "UGSampler", "num_points": 12, "reformat_target": False})
    first = sampler.sample(mask_logits, masks, generator=torch.Generator().manual_seed(1))
    second = sampler.sample(mask_logits, masks, generator=torch.Generator().manual_seed(1))
    assert first[0].shape == (5, 12) and first[1].shape == (5, 12)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.ssseg
def test_ug_sampler_matches_ssseg_without_reformatting():
    reference_cls = ssseg("ugsampler", "UGSampler")
    generator = torch.Generator().manual_seed(7)
    mask_logits = torch.randn(3, 5, 5, generator=generator)
    masks = (torch.rand(3, 10, 10, generator=generator) > 0.5).float()
    torch.manual_seed(3)
    theirs = reference_cls(12, 3.0, 0.75, reformat_target=False).sample(mask_logits, masks)
    torch.manual_seed(3)
    ours = UGSampler(12, 3.0, 0.75, reformat_target=False).sample(mask_logits, masks)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    # SSSegmentation's reformat_target=True path builds long masks that F.grid_sample rejects; ours samples floats
    labels = torch.randint(0, 2, (1, 5, 5), generator=generator)
    with pytest.raises(RuntimeError):
        reference_cls(4, 3.0, 0.75, num_classes=2).sample(mask_logits[:1].repeat(2, 1, 1).unsqueeze(0), labels)
