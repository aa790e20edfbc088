"""Checkpoints: one plain dict, written atomically, loaded with ``weights_only=True``; what a run keeps; resuming.

A run dir's ``checkpoints/`` holds ``last.pt`` (the full state: model, optimizer, scaler, EMA, RNG, epoch, iteration,
rewritten every epoch) and ``best.pt`` (weights and EMA only, when the mIoU improves). ``epoch_N.pt`` (full state)
is kept only when ``save_interval_epochs`` is set, the newest ``max_keep_ckpts`` of them when that is set too
(MMSegmentation's names). With ``save_interval_iters`` (segkit's addition) ``last.pt`` is also rewritten every N
iterations inside an epoch: its ``epoch`` is then the last finished epoch and ``epoch_iter`` the iterations done in
the next one, which a resumed run skips (without loading their images: :func:`segkit.data.loader.remaining_batches`)
before it continues. ``--resume`` continues from the newest of these that loads, saying which it skipped.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, TrainingStopped
from ..fileio import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["atomic_write_bytes", "find_resume_checkpoint", "load_checkpoint", "load_model_weights",
           "save_checkpoint", "save_epoch_checkpoints", "save_iteration_checkpoint"]

EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
WEIGHT_KEYS = ("model", "ema", "epoch", "iteration", "best_miou", "recipe")
"""What ``best.pt`` keeps: enough to evaluate, infer, export or fine-tune, not to resume."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash never leaves a half-written checkpoint; a full disk raises
    :class:`~segkit.errors.DiskFullError` and leaves the previous file intact)."""
    path = Path(path)
    atomic_write_bytes(path, lambda fh: torch.save(state, fh), what="checkpoint")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    mmap: bool = False) -> dict[str, Any]:
    """Load a segkit checkpoint (or a bare state dict, returned as ``{"model": ...}``).

    Anything that is not one (a text file, a truncated or foreign file, a folder) raises
    :class:`CheckpointError` naming the file; ``mmap`` reads tensors lazily (a cheap check that it loads)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load it") from None
    except Exception as exc:  # noqa: BLE001  (torch raises KeyError, IndexError, EOFError ... for foreign files)
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        if mmap and "mmap can only be used" in text:
            first = "not a zip-format PyTorch file"
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}"
                              f"{': ' + first[:160] if first else ''})") from None
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        return data
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return {"model": data}
    raise CheckpointError(f"{path} is not a segkit checkpoint (expected a dict with a 'model' state dict)")


# ---------------------------------------------------------------------- what a run keeps
def epoch_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(N, path)`` of every ``epoch_N.pt``, newest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("epoch_*.pt") if (m := EPOCH_FILE.match(p.name))]
    return sorted(found, reverse=True)


def save_epoch_checkpoints(trainer, epoch: int, ckpt_dir: Path, save_interval: int | None = None,
                           max_keep: int | None = None) -> None:
    """At the end of ``epoch``: ``epoch_N.pt`` (when ``save_interval`` divides N, or at the last epoch when an
    interval is set), ``best.pt`` (weights and EMA) when the mIoU did not fall, then ``last.pt``; the oldest
    ``epoch_N.pt`` beyond ``max_keep`` are removed. ``last.pt`` is written last: a kill before it leaves the
    newer ``epoch_N.pt``, which ``--resume`` prefers."""
    state = trainer.state_dict()
    if save_interval and (epoch % save_interval == 0 or epoch == trainer.max_epochs):
        save_checkpoint(state, ckpt_dir / f"epoch_{epoch}.pt")
    if trainer.last_eval_epoch == epoch and trainer.metrics:
        miou = trainer.metrics.get("mIoU") or 0.0
        if miou >= trainer.best_miou:
            trainer.best_miou = miou
            state["best_miou"] = miou
            save_checkpoint({k: state[k] for k in WEIGHT_KEYS if k in state}, ckpt_dir / "best.pt")
    state["best_miou"] = trainer.best_miou
    save_checkpoint(state, ckpt_dir / "last.pt")
    if max_keep:
        for _, old in epoch_checkpoints(ckpt_dir)[max_keep:]:
            old.unlink(missing_ok=True)


def save_iteration_checkpoint(trainer, ckpt_dir: Path) -> bool:
    """Inside an epoch: rewrite ``last.pt`` with the full state after the current iteration, ``epoch`` being the
    last finished epoch and ``epoch_iter`` the iterations done in this one. Nothing is written after the epoch's
    last iteration (the end of the epoch writes ``last.pt`` once its evaluation is done). Returns whether it wrote."""
    done = trainer.iteration - (trainer.epoch - 1) * len(trainer.train_loader)
    if not 0 < done < len(trainer.train_loader):
        return False
    state = trainer.state_dict()
    state["epoch"], state["epoch_iter"] = trainer.epoch - 1, done
    save_checkpoint(state, ckpt_dir / "last.pt")
    return True


def describe_checkpoint(path: Path, end_of: bool = False) -> str | None:
    """What ``path`` holds (read memory-mapped): ``"epoch 3"`` (``"end of epoch 3"`` with ``end_of``), or
    ``"epoch 3 and 40 iterations of epoch 4"``; None when there is no loadable checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        done, part = int(state["epoch"]), int(state.get("epoch_iter", 0))
    except Exception:  # noqa: BLE001  (no checkpoint yet, or a foreign file)
        return None
    if part:
        return f"epoch {done} and {part} iterations of epoch {done + 1}"
    return f"{'end of ' if end_of else ''}epoch {done}"


def check_finite_losses(trainer, logs: dict, ckpt_dir: Path) -> None:
    """Stop training on a NaN or infinite loss, naming the iteration and every loss term, and the checkpoint that
    is kept (nothing is written after a bad step)."""
    terms = {k: v for k, v in logs.items() if k.startswith("loss") and isinstance(v, float)}
    if all(math.isfinite(v) for v in terms.values()):
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
    last = ckpt_dir / "last.pt"
    held = describe_checkpoint(last, end_of=True) if last.is_file() else None
    kept = f"the last good checkpoint {last} ({held}) is kept" if held else "no checkpoint was written yet"
    raise TrainingStopped(
        f"non-finite loss at epoch {logs['epoch']}, iteration {logs['iter']}: {shown}; training stopped and "
        f"{kept}. Lower scheduler.optimizer.lr, add scheduler.clipgrad_cfg, or check the data; continue with "
        "--resume after changing the recipe")


# ---------------------------------------------------------------------- resuming
def find_resume_checkpoint(ckpt_dir: Path, console: Console | None = None) -> Path | None:
    """The newest checkpoint under ``ckpt_dir`` that loads and holds a full training state: ``last.pt``, or a
    newer ``epoch_N.pt`` (written just before ``last.pt``), else the newest ``epoch_N.pt`` that loads. Files that
    are missing or do not load are named on ``console``. None when the folder holds no checkpoint at all (a run
    stopped before its first epoch ended: it starts from the beginning)."""
    skipped: list[str] = []

    def usable(path: Path) -> dict | None:
        try:
            state = load_checkpoint(path, mmap=True)
        except CheckpointError as exc:
            skipped.append(f"{path.name} does not load ({str(exc).split('(', 1)[-1].rstrip(')')})")
            return None
        missing = [k for k in ("optimizer", "epoch", "iteration") if k not in state]
        if missing:
            skipped.append(f"{path.name} holds no {missing[0]}")
            return None
        return state

    last = ckpt_dir / "last.pt"
    last_state = usable(last) if last.is_file() else None
    if not last.is_file():
        skipped.append("last.pt is missing")
    chosen, chosen_epoch = (last, int(last_state["epoch"])) if last_state is not None else (None, -1)
    for number, path in epoch_checkpoints(ckpt_dir):
        if number <= chosen_epoch:
            break
        state = usable(path)
        if state is not None:
            chosen, chosen_epoch = path, int(state["epoch"])
            break
    if chosen is None:
        if not last.is_file() and not epoch_checkpoints(ckpt_dir):
            return None  # at most a best.pt: the run stopped while its first epoch ended
        raise CheckpointError(f"--resume: no checkpoint in {ckpt_dir} loads ({'; '.join(skipped)}); train into "
                              "another --work-dir to start again")
    if console is not None and (chosen != last or skipped):
        notes = "; ".join(skipped) if skipped else f"{chosen.name} is newer than last.pt"
        console.print(f"resume: {notes}; resuming from {chosen}, the newest checkpoint that loads",
                      highlight=False, markup=False)
    return chosen


def trim_run_log(work_dir: Path, iteration: int) -> None:
    """Drop ``metrics.jsonl`` records after ``iteration`` (those of the interrupted attempt that a resumed run
    repeats), so the file stays one record per step."""
    path = work_dir / "metrics.jsonl"
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            dropped += 1
            continue
        step = record.get("iter") if isinstance(record, dict) else None
        if isinstance(step, (int, float)) and step > iteration:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def load_model_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load weights strictly; a mismatch names the checkpoint and the first differing keys.

    A state dict in SSSegmentation 1.7's layout (``backbone_net.``, ``decoder.`` keys) is converted to the model's
    names first (:func:`segkit.models.ssseg_checkpoint.convert_ssseg_state_dict`), with one line on stderr.
    """
    import sys

    from ..models.ssseg_checkpoint import convert_ssseg_state_dict, looks_like_ssseg
    from .accel import strip_compile_prefix, unwrap_model

    model, state = unwrap_model(model), strip_compile_prefix(state)  # compile/DDP wrappers never reach the keys
    own = model.state_dict()
    if looks_like_ssseg(state) and not any(k in own for k in state):
        try:
            state = convert_ssseg_state_dict(state, model)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        print(f"{path}: an SSSegmentation checkpoint; converted its {len(state)} tensors to segkit's names",
              file=sys.stderr)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{path} does not fit this model: " + "; ".join(parts))
    model.load_state_dict(state)
