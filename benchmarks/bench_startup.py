"""Start-up cost of the ``segkit`` command against ``python -c pass`` and ``python -c "import torch"``, same run.

Rows (each a fresh subprocess, bytecode cached by one unmeasured warm-up run into a temporary
``PYTHONPYCACHEPREFIX``, also where the environment sets ``PYTHONDONTWRITEBYTECODE``; the rows interleaved
round-robin so a shared machine's load falls on all of them alike; median of ``repeats``):

- ``python -c pass`` (the interpreter's floor) and ``python -c "import torch"`` (what segkit paid before)
- ``python -c "import segkit"``
- ``segkit --help``, ``segkit train --help``, ``segkit list-registry backbones`` (the console script)

Peak memory is the child's maximum resident set size, from the rusage of that child alone (``os.wait4``; the
same figure ``resource.getrusage(RUSAGE_CHILDREN)`` accumulates), and its CPU seconds (user + system: less
sensitive than wall time to other processes on a shared machine). Each row is started, timed and reaped by a small
launcher interpreter, so that the peak is the row's own: a child forked from a big parent (``benchmarks/run.py``
has torch loaded) reports the parent's pages as its peak. The launcher's own size (about 12 MiB) is thus the floor
of that column: ``python -c pass`` and ``import segkit`` read as it. ``imports_torch`` says whether the row imported
torch (from a ``PYTHONPROFILEIMPORTTIME`` run). Target: the CLI rows under 0.5 s (``cli_rows_under_target_wall``;
``..._cpu`` checks the CPU seconds, the figure to trust when ``load_average`` exceeds ``cpu_count``).

summary: per row the median wall and CPU seconds, ``x_pass`` (wall / ``python -c pass``), ``x_torch``
(wall / ``import torch``), peak RSS in MiB.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_S = 0.5
CLI_ROWS = ("segkit --help", "segkit train --help", "segkit list-registry backbones")


def _segkit() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m segkit``."""
    script = Path(sys.executable).with_name("segkit")
    if script.is_file():
        return [str(script)]
    found = shutil.which("segkit")
    return [found] if found else [sys.executable, "-m", "segkit"]


def rows() -> dict[str, list[str]]:
    py, seg = sys.executable, _segkit()
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "python -c 'import segkit'": [py, "-c", "import segkit"],
        "segkit --help": [*seg, "--help"],
        "segkit train --help": [*seg, "train", "--help"],
        "segkit list-registry backbones": [*seg, "list-registry", "backbones"],
    }


def _env(pycache: str, **extra: str) -> dict[str, str]:
    drop = ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("_SEGKIT") and k not in drop}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="80", PYTHONPYCACHEPREFIX=pycache, **extra)
    return env


LAUNCHER = r"""
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - start
print(json.dumps({"wall": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_kib": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status), "stderr": err[-2000:].decode(errors="replace")}))
"""


def timed(cmd: list[str], pycache: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one run of ``cmd`` (through :data:`LAUNCHER`)."""
    env = _env(pycache)
    launcher = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, env=env,
                              check=True)
    result = json.loads(launcher.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result['code']}: {result['stderr']}")
    return result["wall"], result["cpu"], result["rss_kib"] / 1024  # Linux: ru_maxrss in KiB


def imports_torch(cmd: list[str], pycache: str) -> bool:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env=_env(pycache, PYTHONPROFILEIMPORTTIME="1"))
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in proc.stderr.splitlines())


def run(repeats: int = 5) -> dict:
    commands = rows()
    with tempfile.TemporaryDirectory(prefix="segkit-pycache-") as pycache:
        for cmd in commands.values():  # warm-up: bytecode written, files in the page cache
            timed(cmd, pycache)
        wall: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        peak: dict[str, float] = dict.fromkeys(commands, 0.0)
        for _ in range(repeats):
            for name, cmd in commands.items():
                seconds, cpu_seconds, rss = timed(cmd, pycache)
                wall[name].append(round(seconds, 4))
                cpu[name].append(round(cpu_seconds, 4))
                peak[name] = max(peak[name], rss)
        torch_flags = {name: imports_torch(cmd, pycache) for name, cmd in commands.items()}
    median = {name: statistics.median(values) for name, values in wall.items()}
    floor, torch_s = median["python -c pass"], median["python -c 'import torch'"]
    table = {name: {"median_s": round(median[name], 3), "cpu_s": round(statistics.median(cpu[name]), 3),
                    "x_pass": round(median[name] / floor, 2), "x_torch": round(median[name] / torch_s, 3),
                    "peak_rss_mb": round(peak[name], 1), "imports_torch": torch_flags[name],
                    "runs_s": wall[name]}
             for name in commands}
    keys = ("median_s", "cpu_s", "x_pass", "x_torch", "peak_rss_mb", "imports_torch")
    summary: dict = {name: {k: row[k] for k in keys} for name, row in table.items()}
    # wall time is what a user waits on a quiet machine; on a shared one CPU seconds are the steadier figure
    summary["cli_rows_under_target_wall"] = all(table[name]["median_s"] < TARGET_S for name in CLI_ROWS)
    summary["cli_rows_under_target_cpu"] = all(table[name]["cpu_s"] < TARGET_S for name in CLI_ROWS)
    return {"summary": summary, "rows": table, "target_s": TARGET_S, "repeats": repeats,
            "segkit": " ".join(_segkit()), "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
