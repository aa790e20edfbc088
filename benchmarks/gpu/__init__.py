"""Helpers of benchmarks/bench_gpu.py and the device script (benchmarks/gpu/device_run.sh)."""
