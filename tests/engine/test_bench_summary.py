"""benchmarks/run.py tabulates issue 12's rows from the JSON files of one run (and only that run)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def load_run():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_takes_the_rows_of_this_run_only(tmp_path):
    run = load_run()
    (tmp_path / "metrics.json").write_text(json.dumps({"run_id": "A", "summary": {
        "segkit_ms": 1.9, "segkit_over_numpy": 1.07, "torchmetrics_over_segkit": 5.5}}))
    (tmp_path / "data_pipeline.json").write_text(json.dumps({"run_id": "B", "summary": {"speedup": 9.9}}))
    (tmp_path / "threads.json").write_text(json.dumps({"run_id": "A", "summary": {
        "nproc_segkit": {"x_alone": 1.02}, "nproc_default": {"x_alone": 22.7},
        "workers_segkit": {"x_alone": 1.1}, "workers_default": {"x_alone": 20.4}}}))
    (tmp_path / "slide.json").write_text(json.dumps({"run_id": "A", "summary": {
        "window_batch_1": {"overhead": 1.031, "peak_mib_slide_forward_output": [1190.0, 1006.0, 152.0]},
        "forward_speedup_from_retained_memory": 1.21}}))
    text = run.write_summary(tmp_path, "A").read_text()
    assert ("| <= 1.05x; one window batch | window_batch_1: 1.031x, peak 1190 MiB = one window batch's forward 1006 "
            "+ output 152 +32 |") in text and "1.21x faster" in text
    assert "| `ConfusionMatrix.update`, 150 classes, 512², 1 thread | <= 1.3x numpy bincount | 1.9 ms = 1.07x" in text
    assert "segkit 1.02x alone, torch default 22.7x" in text and "segkit 1.1x alone" in text
    assert "9.9" not in text  # another run's figure is not mixed in
    assert text.count("not measured in this run") == 6 and "`metrics.json`, `slide.json`, `threads.json`" in text
