"""``segkit benchmark RUN|RECIPE``: speed and memory of the eval forward and of one training step.

Inputs are random (no data needed) at the training crop size (or ``input_size``). A run dir uses its checkpoint;
a recipe a freshly built model (no pretrained download: speed does not depend on the weights). Latencies are the
wall time of each call, synchronised on CUDA; percentiles over ``iters`` calls after ``warmup`` calls.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float], batch: int, device: torch.device) -> dict[str, Any]:
    ms = np.asarray(times) * 1000.0
    out: dict[str, Any] = {"imgs_per_s": batch * len(times) / float(np.sum(times)),
                           "latency_ms_p50": float(np.percentile(ms, 50)),
                           "latency_ms_p95": float(np.percentile(ms, 95)), "calls": len(times)}
    if device.type == "cuda":
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def benchmark(target: str | Path, *, checkpoint: str | Path | None = None, overrides: list[str] = (),
              device: str | None = None, batch_size: int = 1, input_size: tuple[int, int] | None = None,
              warmup: int = 3, iters: int = 20, train: bool = True) -> dict[str, Any]:
    """``{"eval": {...}, "train_step": {...} | {"error": ...}, ...}``: img/s, latency p50/p95 (ms), peak memory
    (CUDA) for the eval forward (``model(images)["out"]``) and one training step (forward, criterion, backward,
    SGD step), with the CPU threads and memory settings ``segkit train``/``eval`` use (``cpu``: the header line)."""
    from ...api import default_input_size, load_model, pick_device, resolve_run
    from ...models.build import build_criterion, build_segmentor
    from ...recipe import load_recipe

    path = Path(target)
    dev = pick_device(device)
    if path.is_dir() or checkpoint is not None:
        rec, ckpt = resolve_run(target, checkpoint, list(overrides))
        model, source = load_model(rec, ckpt, dev), str(ckpt)
    else:
        rec = load_recipe(path, list(overrides))
        model, source = build_segmentor(rec, pretrained=False).to(dev), "random weights (recipe)"
    from ..threads import configure_cpu

    plan = configure_cpu(rec)  # the threads (and retained memory) segkit train/eval would run with
    height, width = input_size or default_input_size(rec)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, height, width, generator=generator).to(dev)
    report: dict[str, Any] = {"model": rec.type, "weights": source, "device": str(dev), "batch_size": batch_size,
                              "input_size": [height, width], "parameters": sum(p.numel() for p in model.parameters()),
                              "cpu": plan.describe()}
    model.eval()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.no_grad():
        report["eval"] = _summary(_timed(lambda: model(images)["out"], dev, warmup, iters), batch_size, dev)
    if train:
        report["train_step"] = train_step_speed(rec, model, images, dev, warmup, iters, build_criterion)
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def train_step_speed(rec, model, images, dev, warmup, iters, build_criterion) -> dict[str, Any]:
    """Timing of forward + criterion + backward + SGD step on random labels; an error (a segmentor that needs
    other targets, or memory) is reported, not raised."""
    try:
        criterion = build_criterion(rec, model).to(dev)
        targets = {"seg_target": torch.randint(0, rec.num_classes, (images.shape[0], *images.shape[-2:]),
                                               generator=torch.Generator().manual_seed(1)).to(dev)}
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
        model.train()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            outputs = model(images, targets) if getattr(model, "uses_targets", False) else model(images)
            torch.stack(list(criterion(outputs, targets).values())).sum().backward()
            optimizer.step()

        return _summary(_timed(step, dev, max(warmup, 1), iters), images.shape[0], dev)
    except Exception as exc:  # noqa: BLE001  (reported in the result)
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    finally:
        model.eval()
