"""Pieces of the GPU benchmark: the plain hand-written step, synthetic labels, timing and memory helpers, a
time budget that saves results as it goes, and the JSON + Markdown writer."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
GIB = 2**30


def gib(n: int | float) -> float:
    return round(n / GIB, 3)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_snapshot(device: torch.device) -> dict:
    """Peak allocated / reserved since the last reset (None on the CPU)."""
    if device.type != "cuda":
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": gib(torch.cuda.max_memory_allocated(device)),
            "peak_reserved_gib": gib(torch.cuda.max_memory_reserved(device))}


def block_labels(batch: int, size: int, num_classes: int, seed: int = 0, block: int = 32) -> torch.Tensor:
    """Label maps of ``block``-pixel squares of random classes (segmentation-like runs, every class possible)."""
    g = torch.Generator().manual_seed(seed)
    cells = -(-size // block)
    coarse = torch.randint(0, num_classes, (batch, cells, cells), generator=g)
    return coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :size, :size].contiguous()


def plain_loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
    """What a person writes: logits resized to the labels, cross-entropy on ``out`` + 0.4 x on ``aux``."""
    size = target.shape[-2:]
    loss = F.cross_entropy(F.interpolate(outputs["out"], size, mode="bilinear", align_corners=False), target,
                           ignore_index=255)
    if "aux" in outputs:
        loss = loss + 0.4 * F.cross_entropy(F.interpolate(outputs["aux"], size, mode="bilinear",
                                                          align_corners=False), target, ignore_index=255)
    return loss


def plain_step(model, optimizer, scaler, images, target, dtype, channels_last: bool) -> torch.Tensor:
    """One hand-written training step: forward under autocast, loss, scaled backward, SGD step."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = plain_loss(model(images), target)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


class Budget:
    """Wall-clock budget: ``left()`` says whether another measurement may start; ``save()`` writes the results
    so far (atomically), so a run killed from outside keeps what it measured."""

    def __init__(self, seconds: float | None, result: dict, out: Path | None, reserve_s: float = 25.0,
                 finalize=None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.result, self.out, self.reserve_s, self.finalize = result, out, reserve_s, finalize

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def left(self) -> bool:
        return self.remaining() > self.reserve_s

    def save(self) -> None:
        """Write the JSON and the Markdown table of what is measured so far (summary and ratios refreshed)."""
        if self.finalize is not None:
            self.finalize(self.result)
        if self.out is not None:
            write_outputs(self.result, self.out)


def write_json(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, out)


def table(result: dict) -> str:
    """The measured rows as a Markdown table."""
    lines = [f"# GPU training step ({result.get('machine', {}).get('device')}, torch "
             f"{result.get('machine', {}).get('torch')})", ""]
    ceiling = (result.get("ceiling") or {}).get("tflops")
    if ceiling:
        lines += [f"bf16 matmul ceiling (8192^3): {ceiling} TFLOP/s", ""]
    setup = result.get("setup", {})
    lines += [f"batch {setup.get('batch')}, {setup.get('size')}x{setup.get('size')}, {setup.get('num_classes')} "
              "classes, synthetic tensors on the GPU", "",
              "| runner | model | dtype | channels_last | compile | img/s | step ms | % bf16 ceiling | peak alloc GiB |"
              " peak reserved GiB | first step s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*result.get("core", []), *result.get("precisions", [])]:
        if "imgs_per_s" not in row:
            lines.append(f"| {row.get('runner')} | {row.get('model', 'fcn')} | {row.get('dtype')} | "
                         f"{row.get('channels_last')} | {row.get('compile')} | "
                         f"{row.get('skipped') or row.get('error', '')[:60]} | | | | | |")
            continue
        lines.append(f"| {row['runner']} | {row['model']} | {row['dtype']} | {row['channels_last']} | "
                     f"{row['compile']} | {row['imgs_per_s']} | {row['step_s'] * 1000:.1f} | "
                     f"{row.get('pct_of_bf16_ceiling', '')} | {row['peak_allocated_gib']} | "
                     f"{row['peak_reserved_gib']} | {row['first_step_s']} |")
    if result.get("ratios"):
        lines += ["", "| segkit setting | img/s | / plain, same settings | / plain best (same dtype) |", "|---|---|---|---|"]
        for key, r in result["ratios"].items():
            lines.append(f"| {key} | {r['segkit_imgs_per_s']} | {r['vs_plain_same_settings']} | {r['vs_plain_best']} |")
    mem = result.get("fp32mem")
    if mem:
        lines += ["", "FCN-R50-D8 float32, batch 16 (segkit, NCHW):", "",
                  "| setting | first-step peak alloc GiB | first-step peak reserved GiB | steady peak alloc GiB |"
                  " steady peak reserved GiB | step ms |", "|---|---|---|---|---|---|"]
        for key, r in mem.items():
            if isinstance(r, dict) and "step_s" in r:
                lines.append(f"| {key} | {r['first_step_peak_allocated_gib']} | {r['first_step_peak_reserved_gib']} | "
                             f"{r['peak_allocated_gib']} | {r['peak_reserved_gib']} | {r['step_s'] * 1000:.1f} |")
    if result.get("criterion"):
        lines += ["", f"criterion alone (forward + backward on the step's logits): {result['criterion']}"]
    if result.get("mask2former"):
        m2f = result["mask2former"]
        size = (m2f.get("setup") or {}).get("size")
        lines += ["", f"Mask2Former-R50 {size}x{size} bf16, batch 2: {m2f.get('summary', m2f)}"]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: Path) -> None:
    write_json(result, out)
    out.with_suffix(".md").write_text(table(result))
