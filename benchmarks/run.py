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


def main(names: list[str]) -> None:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
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
        path = out_dir / f"{file.stem.removeprefix('bench_')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{file.stem}: {json.dumps(result.get('summary', result))}  -> {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
