"""Mask2Former-R50 training step on the GPU (issue 10's figure): 640x640, batch 2, bf16 autocast, AdamW, and the
share of it spent in multi-scale deformable attention (forward in place, backward replayed on the same shapes) and
in the Hungarian matcher. The model, head defaults and labels are those of benchmarks/mask2former_step.py (the CPU
version). The clean step is timed without instrumentation; the shares come from a second, instrumented pass whose
timers synchronise the GPU around each timed call (so the shares are of that pass's step time)."""

from __future__ import annotations

import copy
import statistics
import time
from types import SimpleNamespace

import torch


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_mask2former(device: torch.device, quick: bool = False, batch: int = 2, size: int = 640,
                    repeats: int = 5) -> dict:
    from mask2former_step import RECIPE, voronoi_labels

    from segkit.models import build_criterion, build_segmentor
    from segkit.models.criteria import matcher as matcher_module
    from segkit.models.layers import ms_deform_attn

    if quick:
        size, repeats = 128, 1
    torch.manual_seed(0)
    recipe = SimpleNamespace(**copy.deepcopy(RECIPE))
    model = build_segmentor(recipe, pretrained=False).to(device).train()
    criterion = build_criterion(recipe, model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    targets = {"seg_target": voronoi_labels(batch, size, recipe.num_classes).to(device)}
    dtype = torch.bfloat16

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype):
            outputs = model(images)
            terms = criterion(outputs, targets)
            total = torch.stack(list(terms.values())).sum()
        total.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    step()
    _sync(device)
    clean = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        clean.append(time.perf_counter() - t0)

    timings = {"deform": 0.0, "matcher": 0.0}
    calls: list[tuple] = []
    core = ms_deform_attn.ms_deform_attn_core
    matcher_forward = matcher_module.HungarianMatcher.forward

    def timed_core(value, shapes, locations, weights):
        _sync(device)
        t = time.perf_counter()
        out = core(value, shapes, locations, weights)
        _sync(device)
        timings["deform"] += time.perf_counter() - t
        calls.append((tuple(value.shape), value.dtype, list(shapes), tuple(locations.shape)))
        return out

    def timed_matcher(self, *args, **kwargs):
        _sync(device)
        t = time.perf_counter()
        out = matcher_forward(self, *args, **kwargs)
        _sync(device)
        timings["matcher"] += time.perf_counter() - t
        return out

    ms_deform_attn.ms_deform_attn_core = timed_core
    matcher_module.HungarianMatcher.forward = timed_matcher
    rows = []
    try:
        for _ in range(repeats):
            timings.update(deform=0.0, matcher=0.0)
            calls.clear()
            t0 = time.perf_counter()
            step()
            _sync(device)
            rows.append({"step_s": time.perf_counter() - t0, "deform_forward_s": timings["deform"],
                         "matcher_s": timings["matcher"]})
    finally:
        ms_deform_attn.ms_deform_attn_core = core
        matcher_module.HungarianMatcher.forward = matcher_forward

    backward = []
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(repeats):
        elapsed = 0.0
        for value_shape, value_dtype, shapes, location_shape in calls:
            value = torch.randn(value_shape, generator=g, device=device, dtype=value_dtype, requires_grad=True)
            locations = torch.rand(location_shape, generator=g, device=device, dtype=value_dtype,
                                   requires_grad=True)
            weights = torch.rand(location_shape[:-1], generator=g, device=device,
                                 dtype=value_dtype).softmax(-1).requires_grad_()
            with torch.autocast(device.type, dtype=dtype):
                out = core(value, shapes, locations, weights)
            probe = torch.randn(out.shape, generator=g, device=device, dtype=out.dtype)
            _sync(device)
            t = time.perf_counter()
            out.backward(probe)
            _sync(device)
            elapsed += time.perf_counter() - t
        backward.append(elapsed)

    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    deform = med["deform_forward_s"] + statistics.median(backward)
    summary = {"step_s": round(statistics.median(clean), 4), "imgs_per_s": round(batch / statistics.median(clean), 2),
               "first_step_s": round(first, 2), "instrumented_step_s": round(med["step_s"], 4),
               "deform_attn_forward_s": round(med["deform_forward_s"], 4),
               "deform_attn_backward_s": round(statistics.median(backward), 4),
               "deform_attn_share": round(deform / med["step_s"], 3),
               "matcher_s": round(med["matcher_s"], 4), "matcher_share": round(med["matcher_s"] / med["step_s"], 3)}
    if device.type == "cuda":
        summary["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return {"summary": summary, "setup": {"model": "Mask2Former-R50 (SSSeg default head)", "batch": batch,
                                          "size": size, "dtype": "bf16", "repeats": repeats,
                                          "deform_attn_calls_per_step": len(calls)}}
