"""Whole / slide inference and TTA against models whose answers are known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.errors import SegkitError
from segkit.evaluation.inference import (
    MULTISCALE,
    predict_labels,
    predict_logits,
    slide_windows,
    swap_channel_pairs,
    tta_preset,
)

NUM_CLASSES = 4


class Pointwise(nn.Module):
    """1x1 convolutions only: translation- and flip-equivariant, no border effects."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, NUM_CLASSES, 1))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(images)}


class Downsampling(Pointwise):
    """Logits at 1/2 resolution, like a segmentor's head."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(F.avg_pool2d(images, 2))}


class Pattern(nn.Module):
    """Ignores the image content and returns a fixed pattern: channel c is ``c + column / width``."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        ramp = torch.arange(w, dtype=torch.float32) / w
        channels = torch.arange(NUM_CLASSES, dtype=torch.float32)[:, None, None]
        return {"out": (channels + ramp).expand(b, NUM_CLASSES, h, w).clone()}


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 23, 31, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
@pytest.mark.parametrize("cropsize,stride", [(8, 5), ((12, 7), (6, 4)), (40, 30), (23, 1)])
def test_slide_equals_whole_for_a_translation_equivariant_model(images, cropsize, stride):
    model = Pointwise().eval()
    whole = predict_logits(model, images, num_classes=NUM_CLASSES)
    slide = predict_logits(model, images, num_classes=NUM_CLASSES, mode="slide", cropsize=cropsize, stride=stride)
    assert slide.shape == whole.shape == (2, NUM_CLASSES, 23, 31)
    torch.testing.assert_close(slide, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("height,width", [(23, 31), (10, 10), (11, 9), (3, 5), (4, 4)])
@pytest.mark.parametrize("cropsize,stride", [(4, 3), ((6, 4), (5, 2)), (4, 4)])
def test_slide_windows_follow_the_ssseg_grid_and_cover_the_image(height, width, cropsize, stride):
    boxes = slide_windows(height, width, cropsize, stride)
    ch, cw = (cropsize, cropsize) if isinstance(cropsize, int) else cropsize
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    grids_h = max(height - ch + sh - 1, 0) // sh + 1
    grids_w = max(width - cw + sw - 1, 0) // sw + 1
    assert len(boxes) == grids_h * grids_w
    count = torch.zeros(height, width)
    for y1, y2, x1, x2 in boxes:
        assert 0 <= y1 < y2 <= height and 0 <= x1 < x2 <= width
        assert (y2 - y1, x2 - x1) == (min(ch, height), min(cw, width))  # (h, w) order
        count[y1:y2, x1:x2] += 1
    assert bool((count > 0).all())


def test_slide_window_positions_for_a_known_case():
    # H = 11, crop 4, stride 3: grids = (11 - 4 + 2) // 3 + 1 = 4; the last window is shifted back to end at 11
    rows = sorted({(y1, y2) for y1, y2, _, _ in slide_windows(11, 4, 4, 3)})
    assert rows == [(0, 4), (3, 7), (6, 10), (7, 11)]


@torch.no_grad()
def test_slide_averages_overlaps_with_the_count_matrix(images):
    constant = Pattern().eval()
    out = predict_logits(constant, images, num_classes=NUM_CLASSES, mode="slide", cropsize=9, stride=4)
    # every window holds c + ramp over the window; averaged values stay within [c, c + 1)
    for c in range(NUM_CLASSES):
        assert float(out[:, c].min()) >= c and float(out[:, c].max()) < c + 1
    probs = predict_logits(constant, images, num_classes=NUM_CLASSES, mode="slide", cropsize=9, stride=4,
                           use_probs_before_resize=True)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 23, 31))


@torch.no_grad()
def test_flip_tta_is_a_no_op_for_a_flip_equivariant_model(images):
    model = Pointwise().eval()
    plain = predict_logits(model, images, num_classes=NUM_CLASSES)
    flipped = predict_logits(model, images, num_classes=NUM_CLASSES, flip=True)
    torch.testing.assert_close(flipped, plain, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_flip_pass_is_flipped_back(images):
    model = Pattern()
    plain = predict_logits(model, images, num_classes=NUM_CLASSES)
    flipped = predict_logits(model, images, num_classes=NUM_CLASSES, flip=True)
    torch.testing.assert_close(flipped, (plain + plain.flip(3)) / 2)


@torch.no_grad()
def test_flip_pass_swaps_channel_pairs(images):
    model = Pattern()
    plain = predict_logits(model, images, num_classes=NUM_CLASSES)
    swapped = predict_logits(model, images, num_classes=NUM_CLASSES, flip=True, fixed_seg_target_pairs=[(1, 3)])
    flip_pass = plain[:, [0, 3, 2, 1]].flip(3)
    torch.testing.assert_close(swapped, (plain + flip_pass) / 2)
    ramp_mean = 30 / 62  # mean of column / width over 31 columns
    assert float(swapped[:, 1].mean()) == pytest.approx((1 + 3) / 2 + ramp_mean)  # left/right classes averaged


def test_swap_channel_pairs():
    logits = torch.arange(5.0).view(1, 5, 1, 1)
    assert swap_channel_pairs(logits, [(0, 4), (1, 2)]).flatten().tolist() == [4, 2, 1, 3, 0]


@torch.no_grad()
def test_multiscale_resizes_every_scale_to_the_output_size(images):
    model = Downsampling().eval()
    out = predict_logits(model, images, num_classes=NUM_CLASSES, multiscale=(0.5, 1.0, 1.5), align_corners=True)
    expected = []
    for scale in (0.5, 1.0, 1.5):
        scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=True)
        logits = model(scaled)["out"]
        expected.append(F.interpolate(logits, size=(23, 31), mode="bilinear", align_corners=True))
    torch.testing.assert_close(out, torch.stack(expected).mean(0))


@torch.no_grad()
def test_output_size_probs_and_labels(images):
    model = Downsampling().eval()
    probs = predict_logits(model, images, num_classes=NUM_CLASSES, output_size=(40, 50),
                           use_probs_before_resize=True, flip=True)
    assert probs.shape == (2, NUM_CLASSES, 40, 50)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 40, 50))
    labels = predict_labels(model, images, num_classes=NUM_CLASSES, output_size=(40, 50))
    assert labels.shape == (2, 40, 50) and labels.dtype == torch.int64
    head = predict_logits(model, images, num_classes=NUM_CLASSES, output_size=(11, 15))
    torch.testing.assert_close(head, model(images)["out"])  # already at the output size: not resized


def test_argument_errors(images):
    model = Pointwise()
    with pytest.raises(SegkitError, match="cropsize"):
        predict_logits(model, images, num_classes=NUM_CLASSES, mode="slide")
    with pytest.raises(SegkitError, match="'whole' or 'slide'"):
        predict_logits(model, images, num_classes=NUM_CLASSES, mode="sliding")
    with pytest.raises(SegkitError, match=r"expected \(B, 5"):
        predict_logits(model, images, num_classes=5)


def test_tta_presets():
    assert tta_preset("none") == {"multiscale": (1.0,), "flip": False}
    assert tta_preset("flip") == {"multiscale": (1.0,), "flip": True}
    assert tta_preset("MS") == {"multiscale": MULTISCALE, "flip": False}
    assert tta_preset("ms+flip") == {"multiscale": (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), "flip": True}
    with pytest.raises(SegkitError, match=r"did you mean 'flip'.*known: none, flip, ms, ms\+flip"):
        tta_preset("flp")


@torch.no_grad()
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(images):
    model = Downsampling().eval()
    kwargs = {"num_classes": NUM_CLASSES, "mode": "slide", "cropsize": 12, "stride": 8, "flip": True,
              "multiscale": (0.75, 1.0)}
    cpu = predict_logits(model, images, **kwargs)
    cuda = predict_logits(model.cuda(), images.cuda(), **kwargs)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=1e-4)
