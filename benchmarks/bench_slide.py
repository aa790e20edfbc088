"""Sliding-window inference against the windows' own forward time, and its peak memory.

Segformer-B0 (SSSegmentation's ADE20k recipe with 19 classes, as on Cityscapes), eval mode, one 1024x2048 image,
512x512 windows every 341 pixels (3 x 6 = 18 windows), one CPU thread (CUDA: the current device). In turn, round
after round:

- ``slide``: :func:`segkit.evaluation.inference.slide_logits` on the image, ``window_batch`` windows a forward;
- ``forward``: the bare model forward of the same window batches, cut out of the image beforehand (nothing else).

``overhead = slide / forward`` (median of the per-round ratios; target <= 1.05). Times are the thread's CPU time on
the CPU (one thread; what other processes on a shared machine do does not count) and wall time on CUDA.

Each measurement runs in a fresh process that keeps freed memory for reuse, as ``segkit eval`` and ``segkit
infer`` do (``runtime.retain_freed_memory``). ``retention`` measures what that saves: the bare forward of the 18
windows, round after round, in a process with it and in one without (their median round times, and the page faults
of one round).

Peak memory: ``tracemalloc`` does not see torch's CPU allocator, so on the CPU each figure is the peak resident set
(``VmHWM``) of a fresh process that builds the model and the image and then runs either one slide pass or one
bare forward of one window batch; on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the
pass. Slide inference is bounded by the window batch when its peak is the forward's plus its output plus what
does not grow with the number of windows: on the CPU one grid row's logits resized across (``B x h x W x C``
floats, 20 MiB here) and the allocator's slack. These peaks are taken with the system allocator's default
behaviour, which hands freed memory back, so that the resident set follows what is live;
``slide_with_retained_memory`` is the slide peak as ``segkit eval`` runs, where freed blocks the next allocation
does not fit stay mapped (some tens of MiB more).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/segformer/segformer_mitb0_ade20k.toml"
NUM_CLASSES, HEIGHT, WIDTH, CROP, STRIDE = 19, 1024, 2048, 512, 341


def _model(device: torch.device):
    from segkit import build_model, load_recipe

    recipe = load_recipe(REPO / RECIPE, [f"num_classes={NUM_CLASSES}"])
    torch.manual_seed(0)
    return build_model(recipe, pretrained=False).eval().to(device)


def _image(device: torch.device) -> torch.Tensor:
    return torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _timings(device: torch.device, window_batch: int, rounds: int) -> dict:
    from segkit.evaluation.inference import slide_logits, slide_windows

    model, image = _model(device), _image(device)
    boxes = slide_windows(HEIGHT, WIDTH, CROP, STRIDE)
    batches = [torch.cat([image[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes[i : i + window_batch]])
               for i in range(0, len(boxes), window_batch)]

    def slide() -> None:
        slide_logits(model, image, num_classes=NUM_CLASSES, cropsize=CROP, stride=STRIDE, window_batch=window_batch)

    def forward() -> None:
        for batch in batches:
            model(batch)["out"]

    # one CPU thread: its CPU time, which load from other processes on a shared machine does not inflate
    clock = time.perf_counter if device.type == "cuda" else time.thread_time
    slide(), forward()  # warm-up
    times: dict[str, list[float]] = {"slide": [], "forward": []}
    for index in range(rounds):
        order = [("slide", slide), ("forward", forward)]
        for name, fn in order if index % 2 == 0 else order[::-1]:
            _sync(device)
            t0 = clock()
            fn()
            _sync(device)
            times[name].append(clock() - t0)
    ratios = [s / f for s, f in zip(times["slide"], times["forward"], strict=True)]
    return {"windows": len(boxes), "window_batch": window_batch,
            "slide_s": [round(t, 4) for t in times["slide"]], "forward_s": [round(t, 4) for t in times["forward"]],
            "overhead": round(statistics.median(ratios), 4), "overhead_range": [round(min(ratios), 4),
                                                                                 round(max(ratios), 4)]}


def _timings_child(window_batch: int, rounds: int) -> None:
    """In a fresh process, as ``segkit eval`` runs: :func:`_timings`, printed as JSON."""
    from segkit.engine.threads import retain_freed_memory

    torch.set_num_threads(1)
    retain_freed_memory()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps(_timings(device, window_batch, rounds)))


def _retention_child(retain: bool, rounds: int) -> None:
    """In a fresh process: median CPU seconds of a round of the 18 bare window forwards, with or without freed
    memory kept for reuse, and the minor page faults of the last round, printed as JSON."""
    import resource

    from segkit.engine.threads import retain_freed_memory
    from segkit.evaluation.inference import slide_windows

    torch.set_num_threads(1)
    applied = retain_freed_memory() if retain else False
    model, image = _model(torch.device("cpu")), _image(torch.device("cpu"))
    crops = [image[:, :, y1:y2, x1:x2].contiguous() for y1, y2, x1, x2 in slide_windows(HEIGHT, WIDTH, CROP, STRIDE)]
    seconds, faults = [], 0
    with torch.inference_mode():
        for _ in range(rounds + 1):  # the first round warms up (and grows the heap)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.thread_time()
            for crop in crops:
                model(crop)["out"]
            seconds.append(time.thread_time() - t0)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"applied": applied, "round_s": statistics.median(seconds[1:]), "faults_last_round": faults}))


def _peak_child(what: str, window_batch: int, retain: bool = False) -> None:
    """In a fresh process: the peak memory of one ``what`` pass ("slide" or "forward"), printed as JSON."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(1)
    from segkit.engine.threads import retain_freed_memory
    from segkit.evaluation.inference import slide_logits, slide_windows

    if retain:
        retain_freed_memory()
    model, image = _model(device), _image(device)
    with torch.inference_mode():
        y1, y2, x1, x2 = slide_windows(HEIGHT, WIDTH, CROP, STRIDE)[0]
        batch = torch.cat([image[:, :, y1:y2, x1:x2]] * window_batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        if what == "slide":
            out = slide_logits(model, image, num_classes=NUM_CLASSES, cropsize=CROP, stride=STRIDE,
                               window_batch=window_batch)
            out_bytes = out.numel() * out.element_size()
        else:
            model(batch)["out"]
            out_bytes = 0
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = _peak_rss()
    print(json.dumps({"peak_bytes": int(peak), "output_bytes": out_bytes}))


def _peak_rss() -> int:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` would carry over the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(call: str) -> dict:
    """``bench_slide.<call>`` in a fresh Python process; its last line of output, as JSON."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_slide; bench_slide.{call}"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _peak(what: str, window_batch: int, retain: bool = False) -> dict:
    return _child(f"_peak_child({what!r}, {window_batch}, {retain})")


def run(rounds: int = 7, window_batches: tuple[int, ...] = (1, 4)) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for window_batch in window_batches:
        result = _child(f"_timings_child({window_batch}, {rounds})")
        slide_peak, forward_peak = _peak("slide", window_batch), _peak("forward", window_batch)
        result["peak_mib"] = {"slide": round(slide_peak["peak_bytes"] / 2**20, 1),
                              "one_window_batch_forward": round(forward_peak["peak_bytes"] / 2**20, 1),
                              "output": round(slide_peak["output_bytes"] / 2**20, 1)}
        if device.type == "cpu":
            result["peak_mib"]["slide_with_retained_memory"] = round(
                _peak("slide", window_batch, retain=True)["peak_bytes"] / 2**20, 1)
        results.append(result)
    retention = None
    if device.type == "cpu":
        kept, system = _child("_retention_child(True, 3)"), _child("_retention_child(False, 3)")
        retention = {"kept": kept, "system": system,
                     "forward_speedup": round(system["round_s"] / kept["round_s"], 3)}
    return {
        "benchmark": "slide_inference",
        "model": f"Segformer-B0 ({RECIPE}, num_classes={NUM_CLASSES})",
        "image": [1, 3, HEIGHT, WIDTH], "crop": CROP, "stride": STRIDE, "device": str(device),
        "memory_note": "CPU: peak RSS of a fresh process (model, image and all); CUDA: peak allocated during the pass",
        "runs": results,
        "summary": {f"window_batch_{r['window_batch']}": {
            "overhead": r["overhead"], "slide_s": round(statistics.median(r["slide_s"]), 3),
            "forward_s": round(statistics.median(r["forward_s"]), 3),
            "peak_mib_slide_forward_output": [r["peak_mib"]["slide"], r["peak_mib"]["one_window_batch_forward"],
                                              r["peak_mib"]["output"]]} for r in results}
        | ({"forward_speedup_from_retained_memory": retention["forward_speedup"]} if retention else {}),
        "retention": retention,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
