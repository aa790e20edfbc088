"""Query-based segmentation (MaskFormer, Mask2Former): multi-scale deformable attention against a loop written from
its definition, the Hungarian matcher against brute force, SetCriterion's terms against formulas, parameter counts of
SSSegmentation's default configs, and SSSegmentation checkpoint layouts."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from segkit.models.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn_core

# ----------------------------------------------------------------------------------------------- deformable attention


def bilinear_at(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``image`` ``[D, H, W]`` read at normalised ``(x, y)`` (0-d tensors; pixel ``(i, j)`` centred at
    ``((j+.5)/W, (i+.5)/H)``), bilinearly, zero outside: the definition, one corner at a time."""
    _, height, width = image.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px.item()), math.floor(py.item())
    value = torch.zeros(image.shape[0], dtype=image.dtype)
    for xi, yi in itertools.product((x0, x0 + 1), (y0, y0 + 1)):
        if 0 <= xi < width and 0 <= yi < height:
            value = value + (1 - abs(px - xi)) * (1 - abs(py - yi)) * image[:, yi, xi]
    return value


def deform_attn_loop(value, shapes, locations, weights):
    """Multi-scale deformable attention by its definition: for every image, query and head, the weighted sum over
    levels and points of the level's value map read bilinearly at the location."""
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, queries, heads * channels, dtype=value.dtype)
    for n, q, m in itertools.product(range(batch), range(queries), range(heads)):
        total = torch.zeros(channels, dtype=value.dtype)
        for level, (h, w) in enumerate(shapes):
            image = value[n, starts[level]:starts[level + 1], m].T.reshape(channels, h, w)
            for p in range(points):
                x, y = locations[n, q, m, level, p]
                total = total + weights[n, q, m, level, p] * bilinear_at(image, x, y)
        out[n, q, m * channels:(m + 1) * channels] = total
    return out


SHAPES = [(5, 7), (3, 4), (2, 2)]


def _deform_inputs(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    batch, heads, channels, queries, points = 2, 2, 3, 4, 3
    positions = sum(h * w for h, w in SHAPES)
    value = torch.randn(batch, positions, heads, channels, generator=g, dtype=dtype)
    # locations beyond [0, 1] too: the zero padding is part of the definition
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=g, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, locations, weights


def test_deformable_attention_equals_its_definition_values_and_gradients():
    value, locations, weights = (t.requires_grad_() for t in _deform_inputs())
    fast = ms_deform_attn_core(value, SHAPES, locations, weights)
    slow = deform_attn_loop(value, SHAPES, locations, weights)
    assert fast.shape == (2, 4, 2 * 3)
    assert (fast - slow).abs().max().item() < 1e-12
    probe = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * probe).sum(), (value, locations, weights))
    grads_slow = torch.autograd.grad((slow * probe).sum(), (value, locations, weights))
    for fast_grad, slow_grad in zip(grads_fast, grads_slow, strict=True):
        assert (fast_grad - slow_grad).abs().max().item() < 1e-10


def test_deformable_attention_passes_gradcheck():
    value, locations, weights = _deform_inputs(seed=1)
    # keep the locations away from pixel centres, where bilinear interpolation is not differentiable
    assert torch.autograd.gradcheck(lambda v, lo, w: ms_deform_attn_core(v, SHAPES, lo, w),
                                    (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_()),
                                    eps=1e-6, atol=1e-5)


def test_msdeformattn_module_shapes_init_and_float32():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=3, n_heads=4, n_points=2)
    # the initial offsets point each head in its own direction at distances 1..n_points (pixels)
    bias = attn.sampling_offsets.bias.view(4, 3, 2, 2)
    assert torch.equal(bias[:, :, 1], 2 * bias[:, :, 0]) and torch.equal(bias[:, 0], bias[:, 2])
    assert bias[:, 0, 0].abs().max(-1).values.eq(1).all()
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.sampling_offsets.weight.abs().sum() == 0
    positions = sum(h * w for h, w in SHAPES)
    src = torch.randn(2, positions, 16)
    reference = torch.rand(1, positions, 1, 2)
    out = attn(src, reference, src, SHAPES)
    assert out.shape == (2, positions, 16) and out.dtype == torch.float32
    # in float64 the module is the projections around the core
    attn64 = attn.double()
    src64, ref64 = src.double(), reference.double()
    value = attn64.value_proj(src64).view(2, positions, 4, 4)
    offsets = attn64.sampling_offsets(src64).view(2, positions, 4, 3, 2, 2)
    weights = attn64.attention_weights(src64).view(2, positions, 4, 6).softmax(-1).view(2, positions, 4, 3, 2)
    normaliser = torch.tensor([[w, h] for h, w in SHAPES], dtype=torch.float64)
    locations = ref64[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
    expected = attn64.output_proj(deform_attn_loop(value.detach(), SHAPES, locations.detach(), weights.detach()))
    assert (attn64(src64, ref64, src64, SHAPES) - expected).abs().max().item() < 1e-10


def test_deformable_attention_rejects_mismatched_shapes():
    value, locations, weights = _deform_inputs()
    with pytest.raises(ValueError, match="positions"):
        ms_deform_attn_core(value, [(5, 7), (3, 4), (2, 3)], locations, weights)
    with pytest.raises(ValueError, match="levels"):
        ms_deform_attn_core(value, SHAPES[:2], locations, weights)
