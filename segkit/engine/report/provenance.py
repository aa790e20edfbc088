"""Where a result came from: ``env.json`` in each run folder and, for ``segkit eval``, one result file per
checkpoint and TTA (``eval/<checkpoint>[_<tta>][_ema].json``) plus a line in ``eval/history.jsonl``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..callbacks import write_json


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_epoch(path: str | Path) -> int | None:
    """The ``epoch`` a segkit checkpoint was saved at (memory-mapped read), ``None`` for bare weights."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001  (not a zip checkpoint: no mmap; the epoch is then unknown)
        return None
    value = state.get("epoch", state.get("cur_epoch")) if isinstance(state, dict) else None
    return int(value) if isinstance(value, int) else None


def git_commit(folder: Path) -> str | None:
    """The commit of the git checkout holding ``folder`` (segkit's source), if it is one; no network."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment(world_size: int = 1) -> dict[str, Any]:
    """Versions (segkit, torch, CUDA, cuDNN, timm, torchvision, numpy, Python), GPUs, git commit, argv, world
    size, host and start time."""
    import torch

    from ... import __version__

    cuda = torch.cuda.is_available()
    return {
        "segkit": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "timm": package_version("timm"),
        "torchvision": package_version("torchvision"),
        "numpy": package_version("numpy"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(Path(__file__).resolve().parents[3]),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "world_size": world_size,
        "hostname": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_env(work_dir: str | Path, world_size: int = 1) -> Path:
    """``work_dir/env.json`` (rewritten at each start, so a resumed run shows the environment that resumed it;
    earlier ones are kept in ``env_history.jsonl``)."""
    work_dir = Path(work_dir)
    env = environment(world_size)
    path = work_dir / "env.json"
    write_json(path, env)
    with (work_dir / "env_history.jsonl").open("a") as fh:
        fh.write(json.dumps(env) + "\n")
    return path


def result_name(checkpoint: Path, tta: str | None, ema: bool) -> str:
    """``best``, ``best_flip``, ``last_ms+flip_ema``: the checkpoint's stem, the TTA preset, the weights."""
    name = checkpoint.stem
    if tta and tta.strip().lower() != "none":
        name += f"_{tta.strip().lower()}"
    return name + ("_ema" if ema else "")


def record_evaluation(work_dir: str | Path, checkpoint: Path, metrics: dict, *, tta: str | None, ema: bool,
                      inference: dict, split: str | None, num_images: int) -> Path:
    """Write ``eval/<result_name>.json`` (the metrics with their provenance) and append the provenance and the
    means to ``eval/history.jsonl``; returns the result file."""
    eval_dir = Path(work_dir) / "eval"
    provenance = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpoint": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        "epoch": checkpoint_epoch(checkpoint),
        "weights": "ema" if ema else "model",
        "tta": (tta or "recipe").lower(),
        "inference": {k: list(v) if isinstance(v, tuple) else v for k, v in inference.items()},
        "split": split,
        "num_images": num_images,
    }
    path = eval_dir / f"{result_name(checkpoint, tta, ema)}.json"
    write_json(path, {**metrics, "provenance": provenance})
    means = {k: v for k, v in metrics.items() if k in ("mIoU", "mAcc", "aAcc", "mDice", "mFscore")}
    eval_dir.mkdir(parents=True, exist_ok=True)
    with (eval_dir / "history.jsonl").open("a") as fh:
        fh.write(json.dumps({**provenance, **means, "result": str(path)}) + "\n")
    return path
