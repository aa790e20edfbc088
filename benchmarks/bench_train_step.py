"""Framework overhead of a training step: FCN-ResNet50 (D8, V1c stem) through segkit's Trainer.train_step
against a plain hand-written PyTorch step on the same model, batch and optimizer settings.

ratio = segkit step time / plain step time (median of alternating repeats); 1.00 means no overhead.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["backbone.depth=50", 'backbone.structure_type="resnet50conv3x3stem"', "backbone.use_conv3x3_stem=true",
             "head.feats_channels=512", "auxiliary.out_channels=512", 'norm_cfg={type="BatchNorm2d"}',
             "dataloader.train.num_workers_per_gpu=0", "dataloader.test.num_workers_per_gpu=0"]


def plain_step(model, optimizer, images, targets, lr):
    """What a person writes by hand: forward, resize, weighted CE on both outputs, backward, step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    out = model(images)
    size = targets.shape[-2:]
    loss = F.cross_entropy(F.interpolate(out["out"], size, mode="bilinear"), targets, ignore_index=-100)
    loss = loss + 0.4 * F.cross_entropy(F.interpolate(out["aux"], size, mode="bilinear"), targets,
                                        ignore_index=-100)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run(repeats: int = 15, batch: int = 2, size: int = 128) -> dict:
    from segkit.engine.distributed import DistContext
    from segkit.engine.trainer import Trainer
    from segkit.recipe import load_recipe

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        rec = load_recipe(REPO / "recipes/quickstart.toml",
                          [*OVERRIDES, f'dataset.rootdir="{tmp}/synthetic"', "dataset.num_train=16",
                           "dataset.num_val=2", f"dataset.image_size={size}"], work_dir=f"{tmp}/run")
        trainer = Trainer(rec, DistContext())
        data = next(iter(trainer.train_loader))
        data = {"image": data["image"][:batch], "seg_target": data["seg_target"][:batch]}
        plain_model = copy.deepcopy(trainer.model).train()
        plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        trainer.model.train()
        seg_times, plain_times = [], []
        for _ in range(2):  # warm-up
            trainer.train_step(data)
            plain_step(plain_model, plain_opt, data["image"], data["seg_target"], 0.01)
        for _ in range(repeats):
            t0 = time.perf_counter()
            trainer.train_step(data)
            seg_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plain_step(plain_model, plain_opt, data["image"], data["seg_target"], 0.01)
            plain_times.append(time.perf_counter() - t0)
    seg, plain = statistics.median(seg_times), statistics.median(plain_times)
    return {
        "benchmark": "train_step_overhead",
        "model": "FCN ResNet-50-D8 (V1c stem)",
        "batch": [batch, 3, size, size],
        "segkit_step_s": seg_times,
        "plain_step_s": plain_times,
        "summary": {"segkit_median_s": round(seg, 4), "plain_median_s": round(plain, 4),
                    "overhead_ratio": round(seg / plain, 4)},
    }
