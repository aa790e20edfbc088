"""CPU oversubscription: a small torch elementwise op (``torch.add`` on 1M floats, ~0.4 ms on one thread) timed in
every process of a job that shares this machine's CPUs, with torch's default thread count and with the threads
segkit chooses (:func:`segkit.engine.threads.plan_cpu`).

Scenarios, each run for a few seconds with all processes started together:

- ``alone``: one process, one thread (the reference).
- ``nproc``: as many processes as CPUs (a ``--nproc`` job filling the machine), each with torch's default threads
  (``torch.get_num_threads()`` = the CPU count: CPUs x CPUs threads in all) against segkit's plan.
- ``workers``: one training process beside busy DataLoader workers (the recipe asks for as many workers as CPUs;
  each worker one busy core), torch's default against segkit's plan (threads + workers within the CPUs).

summary: mean (and 90th percentile) op milliseconds of the slowest process per scenario, and its ratio to ``alone`` (the target: segkit's plan stays near 1x,
where the default is tens of times slower because OpenMP threads wait for descheduled siblings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

SECONDS = 3.0

WORKER = textwrap.dedent("""
    import json, sys, time, torch
    threads, seconds, start = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.rand(1 << 20), torch.rand(1 << 20)
    out = torch.empty_like(a)
    for _ in range(20):
        torch.add(a, b, out=out)
    late = time.time() - start
    while time.time() < start:
        time.sleep(0.001)
    times, end = [], max(start, time.time()) + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        torch.add(a, b, out=out)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"threads": torch.get_num_threads(), "median_ms": 1e3 * times[len(times) // 2],
                      "p90_ms": 1e3 * times[int(len(times) * 0.9)], "mean_ms": 1e3 * sum(times) / len(times),
                      "ops": len(times), "started_late_s": round(late, 2)}))
""")

BUSY = "import time, sys\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def _cpus() -> int:
    from segkit.engine.threads import available_cpus

    return available_cpus()


def _run(thread_counts: list[int], busy: int = 0) -> list[dict]:
    """Start one timing process per entry of ``thread_counts`` (0: torch's default) and ``busy`` spinning
    processes together; return the timing processes' results."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    start = time.time() + 8.0  # after every process has imported torch (started_late_s > 0 says one had not)
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY, str(8.0 + SECONDS + 3.0)]) for _ in range(busy)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(n), str(SECONDS), str(start)], env=env,
                              stdout=subprocess.PIPE, text=True) for n in thread_counts]
    results = [json.loads(p.communicate()[0]) for p in procs]
    for spinner in spinners:
        spinner.kill()
        spinner.wait()
    return results


def run() -> dict:
    from segkit.engine.threads import plan_cpu

    cpus = _cpus()
    alone = _run([1])[0]
    nproc_plan = plan_cpu(cpus, cpus, requested_workers=0)
    workers_plan = plan_cpu(cpus, 1, requested_workers=cpus)
    scenarios = {
        "alone": [alone],
        "nproc_default": _run([0] * cpus),
        "nproc_segkit": _run([nproc_plan.threads] * cpus),
        "workers_default": _run([0], busy=cpus),
        "workers_segkit": _run([workers_plan.threads], busy=workers_plan.workers),
    }
    reference = alone["mean_ms"]
    summary = {}
    for name, results in scenarios.items():
        worst = max(r["mean_ms"] for r in results)
        summary[name] = {"threads_per_process": results[0]["threads"], "processes": len(results),
                         "mean_ms": round(worst, 3), "p90_ms": round(max(r["p90_ms"] for r in results), 3),
                         "x_alone": round(worst / reference, 2)}
    summary["workers_segkit"]["busy_workers"] = workers_plan.workers
    summary["workers_default"]["busy_workers"] = cpus
    return {
        "benchmark": "threads",
        "op": "torch.add on 2**20 float32 (out=), timed for a few seconds; the slowest process of each scenario",
        "cpus": cpus,
        "plans": {"nproc": nproc_plan.describe(), "workers": workers_plan.describe()},
        "scenarios": scenarios,
        "summary": summary,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
