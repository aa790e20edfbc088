"""One Mask2Former-R50 training step on the CPU (512x512, batch 2, 150 classes, SSSegmentation's default head and
criterion: 100 queries, 6 deformable encoder layers, 9 masked-attention layers, 12,544 matching and loss points), and
the share of it spent in multi-scale deformable attention and in the Hungarian matcher.

* ``step_s``: forward + SetCriterion + backward + AdamW step (median of the measured repeats);
* ``deform_attn_forward_s``: time inside ``ms_deform_attn_core`` during the step's forward (timed in place);
* ``deform_attn_backward_s``: its backward, replayed separately on tensors of the same shapes (autograd does not
  attribute backward time to a function), so ``deform_attn_share = (forward + backward) / step_s``;
* ``matcher_s``: the 10 matchings of the step (one per prediction, two images each), of which
  ``linear_sum_assignment_s`` in scipy; ``matcher_share = matcher_s / step_s``.

Labels are 12 random classes per image on Voronoi regions (ADE20k images hold about 10-20 classes). Run with
``python benchmarks/mask2former_step.py`` (writes benchmarks/results/mask2former_step.json) or through run.py.
"""

from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch

HERE = Path(__file__).resolve().parent

RECIPE = {
    "type": "Mask2Former",
    "num_classes": 150,
    "align_corners": False,
    "norm_cfg": {"type": "BatchNorm2d"},
    "act_cfg": {"type": "ReLU", "inplace": True},
    "backbone": {"type": "ResNet", "depth": 50, "structure_type": "resnet50", "outstride": 32, "pretrained": False,
                 "selected_indices": [0, 1, 2, 3]},
    "head": {},  # SSSegmentation's defaults (segkit's Mask2FormerHead defaults are its base config's values)
    "auxiliary": None,
    "losses": {},
    "criterion": None,
    "is_freeze_norm": False,
}


def voronoi_labels(batch: int, size: int, num_classes: int, regions: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = []
    for _ in range(batch):
        centres = torch.rand(regions * 2, 2, generator=g) * size
        classes = torch.randperm(num_classes, generator=g)[:regions].repeat(2)
        distance = (ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2
        labels.append(classes[distance.argmin(0)])
    return torch.stack(labels)


def run(repeats: int = 3, batch: int = 2, size: int = 512) -> dict:
    from segkit.models import build_criterion, build_segmentor
    from segkit.models.criteria import matcher as matcher_module
    from segkit.models.layers import ms_deform_attn

    torch.manual_seed(0)
    recipe = SimpleNamespace(**copy.deepcopy(RECIPE))
    model = build_segmentor(recipe, pretrained=False).train()
    criterion = build_criterion(recipe, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    targets = {"seg_target": voronoi_labels(batch, size, recipe.num_classes)}

    timings = {"deform_forward": 0.0, "matcher": 0.0, "lsa": 0.0}
    calls: list[tuple] = []
    core = ms_deform_attn.ms_deform_attn_core

    def timed_core(value, shapes, locations, weights):
        t0 = time.perf_counter()
        out = core(value, shapes, locations, weights)
        timings["deform_forward"] += time.perf_counter() - t0
        calls.append((tuple(value.shape), list(shapes), tuple(locations.shape)))
        return out

    matcher_forward = matcher_module.HungarianMatcher.forward

    def timed_matcher(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = matcher_forward(self, *args, **kwargs)
        timings["matcher"] += time.perf_counter() - t0
        return out

    import scipy.optimize

    lsa = scipy.optimize.linear_sum_assignment

    def timed_lsa(cost):
        t0 = time.perf_counter()
        out = lsa(cost)
        timings["lsa"] += time.perf_counter() - t0
        return out

    ms_deform_attn.ms_deform_attn_core = timed_core
    matcher_module.HungarianMatcher.forward = timed_matcher
    scipy.optimize.linear_sum_assignment = timed_lsa
    rows = []
    try:
        for repeat in range(repeats + 1):  # the first is a warm-up
            for key in timings:
                timings[key] = 0.0
            calls.clear()
            t0 = time.perf_counter()
            outputs = model(images)
            t1 = time.perf_counter()
            terms = criterion(outputs, targets)
            total = torch.stack(list(terms.values())).sum()
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            t3 = time.perf_counter()
            optimizer.step()
            t4 = time.perf_counter()
            if repeat:
                rows.append({"step_s": t4 - t0, "forward_s": t1 - t0, "criterion_s": t2 - t1, "backward_s": t3 - t2,
                             "optimizer_s": t4 - t3, "deform_attn_forward_s": timings["deform_forward"],
                             "matcher_s": timings["matcher"], "linear_sum_assignment_s": timings["lsa"]})
    finally:
        ms_deform_attn.ms_deform_attn_core = core
        matcher_module.HungarianMatcher.forward = matcher_forward
        scipy.optimize.linear_sum_assignment = lsa

    # the deformable attention's backward, replayed on the shapes the step used
    backward_times = []
    g = torch.Generator().manual_seed(0)
    for _ in range(repeats):
        elapsed = 0.0
        for value_shape, shapes, location_shape in calls:
            value = torch.randn(value_shape, generator=g, requires_grad=True)
            locations = torch.rand(location_shape, generator=g, requires_grad=True)
            weights = torch.rand(location_shape[:-1], generator=g).softmax(-1).requires_grad_()
            out = core(value, shapes, locations, weights)
            probe = torch.randn(out.shape, generator=g)
            t0 = time.perf_counter()
            out.backward(probe)
            elapsed += time.perf_counter() - t0
        backward_times.append(elapsed)

    summary = {key: round(statistics.median(row[key] for row in rows), 3) for key in rows[0]}
    summary["deform_attn_backward_s"] = round(statistics.median(backward_times), 3)
    deform = summary["deform_attn_forward_s"] + summary["deform_attn_backward_s"]
    summary["deform_attn_share"] = round(deform / summary["step_s"], 3)
    summary["matcher_share"] = round(summary["matcher_s"] / summary["step_s"], 3)
    value_shape, shapes, location_shape = calls[0]
    return {
        "summary": summary,
        "setup": {"model": "Mask2Former-R50 (SSSeg default head)", "batch": batch, "size": size,
                  "num_classes": recipe.num_classes, "parameters": sum(p.numel() for p in model.parameters()),
                  "terms": len(terms), "deform_attn_calls_per_step": len(calls),
                  "deform_attn_value_shape": list(value_shape), "deform_attn_levels": shapes,
                  "deform_attn_locations_shape": list(location_shape), "repeats": repeats},
        "steps": [{k: round(v, 3) for k, v in row.items()} for row in rows],
    }


if __name__ == "__main__":
    result = run()
    result["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    out = HERE / "results" / "mask2former_step.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"]), "->", out)
