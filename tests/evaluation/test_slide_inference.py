"""slide_logits: the same logits as the per-window reference (SSSegmentation's loop), window batches, the window
count map, and memory bounded by the window batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.errors import SegkitError
from segkit.evaluation.inference import _window_counts, predict_logits, slide_logits, slide_windows

NUM_CLASSES = 5


class Head(nn.Module):
    """Conv 3x3 with padding (border effects, so windows matter) and logits at 1/``pool`` resolution."""

    def __init__(self, pool: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, NUM_CLASSES, 3, padding=1)
        self.pool = pool
        self.batch_sizes: list[int] = []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batch_sizes.append(images.shape[0])
        return {"out": self.conv(F.avg_pool2d(images, self.pool) if self.pool > 1 else images)}


def reference_slide(model, images, cropsize, stride, use_probs=False, align_corners=False) -> torch.Tensor:
    """The per-window loop slide inference used before (and SSSegmentation uses): channels-first, a count map."""
    b, _, h, w = images.shape
    summed = torch.zeros(b, NUM_CLASSES, h, w)
    counts = torch.zeros(1, 1, h, w)
    for y1, y2, x1, x2 in slide_windows(h, w, cropsize, stride):
        logits = model(images[:, :, y1:y2, x1:x2])["out"]
        logits = F.interpolate(logits, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=align_corners)
        if use_probs:
            logits = logits.softmax(1)
        summed[:, :, y1:y2, x1:x2] += logits
        counts[:, :, y1:y2, x1:x2] += 1
    return summed / counts


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 70, 101, generator=torch.Generator().manual_seed(0)) * 3


@torch.no_grad()
@pytest.mark.parametrize(("cropsize", "stride"), [(32, 21), ((40, 24), (16, 20)), (128, 64), (70, 1)])
@pytest.mark.parametrize("use_probs", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("pool", [4, 1])
def test_matches_the_per_window_reference(images, cropsize, stride, use_probs, align_corners, pool):
    model = Head(pool).eval()
    expected = reference_slide(model, images, cropsize, stride, use_probs, align_corners)
    ours = slide_logits(model, images, num_classes=NUM_CLASSES, cropsize=cropsize, stride=stride,
                        use_probs=use_probs, align_corners=align_corners)
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=2e-6)  # float32 rounding of the resize kernel
    assert torch.equal(ours.argmax(1), expected.argmax(1))


@torch.no_grad()
@pytest.mark.parametrize("window_batch", [2, 3, 64])
def test_window_batches_give_the_same_logits_and_bound_the_model_batch(images, window_batch):
    model = Head().eval()
    one = slide_logits(model, images, num_classes=NUM_CLASSES, cropsize=32, stride=21)
    windows = len(slide_windows(70, 101, 32, 21))
    assert model.batch_sizes == [2] * windows
    model.batch_sizes.clear()
    batched = predict_logits(model, images, num_classes=NUM_CLASSES, mode="slide", cropsize=32, stride=21,
                             window_batch=window_batch)
    torch.testing.assert_close(batched, one, rtol=1e-6, atol=1e-6)
    assert max(model.batch_sizes) == 2 * min(window_batch, windows)  # memory: one window batch at a time
    assert sum(model.batch_sizes) == 2 * windows


@pytest.mark.parametrize(("height", "width", "cropsize", "stride"),
                         [(70, 101, 32, 21), (11, 9, (4, 6), (3, 2)), (5, 5, 8, 3), (23, 31, 23, 1)])
def test_window_counts_equal_the_brute_force_count(height, width, cropsize, stride):
    boxes = slide_windows(height, width, cropsize, stride)
    brute = torch.zeros(height, width)
    for y1, y2, x1, x2 in boxes:
        brute[y1:y2, x1:x2] += 1
    assert torch.equal(_window_counts(height, width, cropsize, stride, brute), brute)


def test_bad_window_batch_is_an_error(images):
    with pytest.raises(SegkitError, match="window_batch"):
        slide_logits(Head(), images, num_classes=NUM_CLASSES, cropsize=32, stride=21, window_batch=0)


@torch.no_grad()
def test_tta_passes_accumulate_in_place_to_the_same_average(images):
    model = Head().eval()
    kwargs = {"num_classes": NUM_CLASSES, "mode": "slide", "cropsize": 32, "stride": 21}
    passes = [slide_logits(model, F.interpolate(images, scale_factor=s, mode="bilinear"), num_classes=NUM_CLASSES,
                           cropsize=32, stride=21) for s in (0.75, 1.0)]
    passes = [F.interpolate(p, size=(70, 101), mode="bilinear") if p.shape[-2:] != (70, 101) else p for p in passes]
    out = predict_logits(model, images, multiscale=(0.75, 1.0), **kwargs)
    torch.testing.assert_close(out, (passes[0] + passes[1]) / 2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_probs", [False, True])
def test_nothing_is_zero_filled_yet_every_pixel_is_written_and_gradients_still_flow(images, use_probs):
    """Without gradients neither the output nor the row strips are zero-filled (each pixel's first window is copied
    in, later ones added), so an uncovered pixel would keep garbage: with every fresh float tensor full of NaN the
    values still equal the reference on a grid with every kind of overlap, by row strips (``use_probs`` false) and
    window by window (true); with gradients the zero-filled sum is differentiable."""
    model = Head()
    original = torch.empty

    def garbage(*args, **kwargs):  # what torch.empty may hand out
        tensor = original(*args, **kwargs)
        return tensor.fill_(float("nan")) if tensor.is_floating_point() else tensor

    torch.empty = garbage
    try:
        with torch.no_grad():
            ours = slide_logits(model, images, num_classes=NUM_CLASSES, cropsize=(40, 24), stride=(16, 20),
                                use_probs=use_probs)
    finally:
        torch.empty = original
    with torch.no_grad():
        expected = reference_slide(model, images, (40, 24), (16, 20), use_probs=use_probs)
    assert not ours.isnan().any()
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=2e-6)
    with_grad = slide_logits(model, images, num_classes=NUM_CLASSES, cropsize=(40, 24), stride=(16, 20))
    assert with_grad.requires_grad
    with_grad.sum().backward()
    assert model.conv.weight.grad is not None and model.conv.weight.grad.abs().sum() > 0
