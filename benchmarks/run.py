"""Run every ``bench_*.py`` here (or those named on the command line); each writes results/<name>.json.

Figures are ratios against a baseline measured in the same run, so a shared, noisy machine still gives
comparable numbers.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _row(results: dict, name: str, pick) -> str:
    try:
        return pick(results[name]["summary"])
    except (KeyError, TypeError, IndexError):
        return "not measured in this run"


def write_summary(out_dir: Path, run_id: str) -> Path:
    """``results/summary.md``: issue 12's table re-measured, from the JSON files written by the run ``run_id``."""
    results = {}
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("run_id") == run_id:
            results[path.stem] = data
    startup = lambda s, key: f"{s[key]['median_s']:.3f} s wall, {s[key]['cpu_s']:.3f} s CPU"  # noqa: E731
    rows = [
        ("`segkit --help`", "< 0.5 s", _row(results, "startup", lambda s: startup(s, "segkit --help"))),
        ("`segkit train --help`", "< 0.5 s", _row(results, "startup", lambda s: startup(s, "segkit train --help"))),
        ("`segkit list-registry backbones`", "< 0.5 s",
         _row(results, "startup", lambda s: startup(s, "segkit list-registry backbones"))),
        ("`python -c pass` / `import torch` (same run)", "reference",
         _row(results, "startup", lambda s: startup(s, "python -c pass") + " / "
              + startup(s, "python -c 'import torch'"))),
        ("`ConfusionMatrix.update`, 150 classes, 512², 1 thread", "<= 1.3x numpy bincount",
         _row(results, "metrics", lambda s: f"{s['segkit_ms']} ms = {s['segkit_over_numpy']}x numpy bincount; "
              f"torchmetrics {s['torchmetrics_over_segkit']}x slower than segkit")),
        ("torch op (0.4 ms) in a `--nproc` job filling the CPUs", "no oversubscription",
         _row(results, "threads", lambda s: f"segkit {s['nproc_segkit']['x_alone']}x alone, torch default "
              f"{s['nproc_default']['x_alone']}x")),
        ("same, beside busy DataLoader workers", "no oversubscription",
         _row(results, "threads", lambda s: f"segkit {s['workers_segkit']['x_alone']}x alone, torch default "
              f"{s['workers_default']['x_alone']}x")),
        ("ADE20k train pipeline per core vs SSSegmentation-style", ">= 3x",
         _row(results, "data_pipeline", lambda s: f"{s['speedup']}x normalising on the device, "
              f"{s.get('speedup_normalized_in_worker', '-')}x in the worker ({s['segkit_ms']} ms vs {s['baseline_ms']} "
              f"ms per image; decoding alone {s['decode_ms']} ms, so at most {s['speedup_ceiling']}x; after "
              f"decoding {s['speedup_after_decode']}x)")),
        ("slide inference / the windows' own forward; peak memory", "<= 1.05x; one window batch",
         _row(results, "slide", lambda s: ", ".join(
             f"{k}: {v['overhead']}x, peak {v['peak_mib_slide_forward_output'][0]:.0f} MiB = one window batch's "
             f"forward {v['peak_mib_slide_forward_output'][1]:.0f} + output {v['peak_mib_slide_forward_output'][2]:.0f}"
             f" {_rest(v['peak_mib_slide_forward_output']):+.0f}" for k, v in s.items() if isinstance(v, dict)))),
        ("CPU forward with freed memory kept for reuse (segkit's default) / without", "(no target)",
         _row(results, "slide", lambda s: f"{s['forward_speedup_from_retained_memory']}x faster (Segformer-B0, "
              "18 windows of 512², 1 thread)")),
        ("GPU rows (FCN/DeepLabV3 vs plain loop, fp32 peak)", "CUDA machine",
         _row(results, "gpu", lambda s: s.get("status") or json.dumps(s)[:300])),
    ]
    lines = [f"# Benchmark run {run_id}", "", "| what | target | measured |", "|---|---|---|"]
    lines += [f"| {what} | {target} | {measured} |" for what, target, measured in rows]
    lines += ["", "Files of this run: " + ", ".join(f"`{name}.json`" for name in results), ""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path


def _rest(peaks: list[float]) -> float:
    """What a slide pass's peak holds beyond one window batch's forward and the output (MiB)."""
    slide, forward, output = peaks
    return slide - forward - output


def main(names: list[str]) -> None:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    files = sorted(HERE.glob("bench_*.py"))
    files.append(HERE / "mask2former_step.py")  # Mask2Former-R50 train step: deformable-attention and matcher shares
    if names:
        files = [f for f in files if f.stem in names or f.stem.removeprefix("bench_") in names]
    for file in files:
        spec = importlib.util.spec_from_file_location(file.stem, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        t0 = time.perf_counter()
        result = module.run()
        result["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                             "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        result["run_id"] = run_id
        path = out_dir / f"{file.stem.removeprefix('bench_')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{file.stem}: {json.dumps(result.get('summary', result))}  -> {path}")
    print(f"summary -> {write_summary(out_dir, run_id)}")


if __name__ == "__main__":
    main(sys.argv[1:])
