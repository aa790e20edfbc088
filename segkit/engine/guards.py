"""Checks made before a run starts, so that it fails in seconds with a message rather than later with a trace.

* :func:`check_device`: ``--device`` names a device this machine has;
* :func:`prepare_work_dir`: the work dir can be written, does not hold another run's outputs (nothing is
  overwritten), and ``--resume`` finds the newest checkpoint that loads;
* :func:`check_before_training`: the training split gives at least one batch, ``num_classes`` fits the dataset's
  class names and the labels of a sample of its label maps, ``/dev/shm`` has room for the loader workers;
* :func:`check_model_size`: the model a recipe describes fits in memory (counted on the meta device).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, RecipeError, SegkitError

if TYPE_CHECKING:
    from rich.console import Console

    from ..recipe.schema import Recipe

RUN_OUTPUTS = ("recipe.toml", "log.txt", "metrics.jsonl", "eval/metrics.json")
LABEL_SAMPLE = 16
"""Label maps read at start to check that their values fit ``num_classes``."""


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` that does not parse or that this machine lacks (CUDA without a GPU, cuda:3 of 1)."""
    if not device:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise SegkitError(f"--device {device!r}: not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SegkitError(f"--device {device}: no CUDA GPU is visible on this machine (torch.cuda.is_available() "
                              "is False); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SegkitError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s) "
                              f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif dev.type not in ("cpu", "mps", "meta") and dev.type != "cuda":
        raise SegkitError(f"--device {device}: segkit runs on cpu or cuda")


def writable_dir(path: Path, option: str) -> None:
    """Create ``path`` (and parents) or explain why it cannot be: under a file, read-only, not a folder."""
    if path.exists() and not path.is_dir():
        raise SegkitError(f"{option} {path} is a file, not a folder; choose another folder")
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise SegkitError(f"{option} {path}: {parent} is a file, not a folder; choose another folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegkitError(f"{option} {path}: cannot create it ({exc.strerror or exc}); choose another folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SegkitError(f"{option} {path}: the folder is not writable; choose another folder")


def prepare_work_dir(rec: Recipe, resume: str | Path | None, dry_run: bool, console: Console | None,
                     is_main: bool = True) -> Path | None:
    """Check that the recipe trains at least one epoch, check the work dir and settle ``--resume``; returns the
    checkpoint to resume from (or None).

    ``resume="auto"`` (``--resume`` alone) picks the newest checkpoint that loads; when the folder has none yet
    (a run stopped in its first epoch) training starts from the beginning in the same folder, saying so. Without
    ``--resume`` a work dir that holds a run's outputs is refused: nothing is overwritten or appended to.
    """
    from .checkpoint import find_resume_checkpoint, load_checkpoint, trim_run_log

    work = Path(rec.work_dir)
    ckpt_dir = work / "checkpoints"
    if rec.scheduler.max_epochs < 1:  # 0 is the segmentor bases' placeholder; a run must set it
        raise RecipeError("scheduler.max_epochs", f"must be at least 1 to train (got {rec.scheduler.max_epochs})",
                          source=getattr(rec, "_source", None))
    if dry_run:
        return None if resume == "auto" else resume
    if is_main:
        writable_dir(work, "work_dir")
    if resume == "auto":
        chosen = find_resume_checkpoint(ckpt_dir, console)
        if chosen is None:
            if is_main:
                trim_run_log(work, 0)  # the earlier attempt's records go; log.txt keeps its lines
            if console is not None:
                console.print(f"resume: no checkpoint in {ckpt_dir} yet; starting from the beginning",
                              highlight=False, markup=False)
        return chosen
    if resume is not None:
        load_checkpoint(resume, mmap=True)  # a readable file, named in the message if not
        return Path(resume)
    found = sorted(p.name for p in ckpt_dir.glob("*.pt")) if ckpt_dir.is_dir() else []
    if found:
        raise SegkitError(f"{work} already holds a run ({', '.join(found[:3])}); continue it with --resume, or "
                          "train into another --work-dir (nothing is overwritten)")
    outputs = [name for name in RUN_OUTPUTS if (work / name).exists()]
    if outputs:
        raise SegkitError(f"{work} holds the outputs of another run ({', '.join(outputs)}) but no checkpoint (it "
                          "stopped before its first epoch ended?); start it again with --resume, which begins from "
                          "scratch in that folder, or train into another --work-dir (nothing is overwritten)")
    return None


# ---------------------------------------------------------------------- data
def check_before_training(trainer: Any) -> None:
    """Refuse a run that would train nothing or crash inside the loss: an empty epoch, ``num_classes`` that
    differs from the dataset's classes, labels (in a sample of label maps) beyond ``num_classes``."""
    rec = trainer.recipe
    if len(trainer.train_loader) == 0:
        dl = rec.dataloader.train
        raise DataError(
            f"dataset.train: the split has {len(trainer.train_set)} samples, fewer than one batch "
            f"(dataloader.train.batch_size_per_gpu = {dl.batch_size_per_gpu} x {trainer.ctx.world_size} process(es)) "
            f"with dataloader.train.drop_last = true: no iteration would run. Lower the batch size or set "
            "dataloader.train.drop_last = false")
    check_num_classes(rec, trainer.train_set)
    from ..data.workers import check_shared_memory, install_interrupt_guard

    check_shared_memory({"dataloader.train": trainer.train_loader, "dataloader.test": trainer.val_loader})
    install_interrupt_guard()


def check_num_classes(rec: Recipe, dataset: Any) -> None:
    names = getattr(dataset, "classnames", None)
    source = getattr(rec, "_source", None)
    if names and len(names) != rec.num_classes:
        shown = ", ".join(map(str, names[:8])) + (", ..." if len(names) > 8 else "")
        raise RecipeError("num_classes", f"is {rec.num_classes} but the dataset {type(dataset).__name__} has "
                          f"{len(names)} classes ({shown}); set num_classes = {len(names)}", source=source)
    ids = list(dict.fromkeys(getattr(dataset, "imageids", [])))
    read = getattr(dataset, "read", None)
    if not ids or not callable(read):
        return
    ignore = getattr(dataset, "ignore_index", None)
    step = max(len(ids) // LABEL_SAMPLE, 1)
    for imageid in ids[::step][:LABEL_SAMPLE]:
        seg = read(imageid).get("seg_target")
        if seg is None:
            continue
        import numpy as np

        values = np.unique(np.asarray(seg))
        bad = [int(v) for v in values if v != ignore and not 0 <= v < rec.num_classes]
        if bad:
            raise RecipeError("num_classes", f"is {rec.num_classes} but the label map of '{imageid}' holds the "
                              f"value(s) {bad[:5]} (classes are 0..{rec.num_classes - 1}, ignore_index {ignore}); "
                              "raise num_classes or map the labels (dataset clsid2label)", source=source)


# ---------------------------------------------------------------------- memory
def available_memory(device: Any) -> int | None:
    """Bytes free on ``device``: CUDA's free memory, else the host's MemAvailable (None when unknown)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def suspicious_values(table: Any, path: str) -> list[tuple[str, int]]:
    """``(TOML path, value)`` of integers in a component table, largest magnitude first."""
    found: list[tuple[str, int]] = []
    if isinstance(table, dict):
        for key, value in table.items():
            found += suspicious_values(value, f"{path}.{key}")
    elif isinstance(table, list):
        for i, value in enumerate(table):
            found += suspicious_values(value, f"{path}[{i}]")
    elif isinstance(table, int) and not isinstance(table, bool):
        found.append((path, table))
    return found


def check_model_size(rec: Recipe, device: Any = "cpu", factor: int = 4) -> int:
    """Count the model's parameters on the meta device (no memory) and refuse one whose weights, gradients and
    optimizer state (``factor`` x 4 bytes a parameter) exceed the free memory; a build that fails on the meta
    device (a negative or zero size) is reported naming the suspicious keys. Returns the parameter count."""
    import torch

    from ..models.build import ModelBuilder, segmentor_class

    tables = {name: getattr(rec, name) for name in ("backbone", "neck", "head", "auxiliary") if getattr(rec, name)}
    ints = [item for name, table in tables.items() for item in suspicious_values(table, name)]
    negative = [(p, v) for p, v in ints if v < 0 and p.rsplit(".", 1)[-1] not in ("in_index", "dim", "axis")]
    source = getattr(rec, "_source", None)
    if any(key in p.rsplit(".", 1)[-1] for p, _ in negative for key in ("channels", "dims", "num_", "depth")):
        path, value = next((p, v) for p, v in negative
                           if any(k in p.rsplit(".", 1)[-1] for k in ("channels", "dims", "num_", "depth")))
        raise RecipeError(path, f"must be positive (got {value})", source=source)
    try:
        with torch.device("meta"):
            model = segmentor_class(rec).from_recipe(ModelBuilder(rec, pretrained=False, probe=True))
    except (RecipeError, SegkitError):
        raise
    except Exception as exc:  # noqa: BLE001  (torch's own error for an impossible size)
        suspects = [f"{p} = {v}" for p, v in sorted(ints, key=lambda x: -abs(x[1])) if v <= 0 or abs(v) > 1 << 16]
        if not suspects:
            return -1  # a model that does not build on the meta device: nothing to estimate, nothing refused
        raise RecipeError("", f"the model cannot be built ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                          f"check {', '.join(suspects[:3])}", source=source) from None
    params = sum(p.numel() for p in model.parameters())
    free = available_memory(device)
    need = params * 4 * factor
    if free is not None and need > free:
        per_module = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
        biggest = max(per_module, key=per_module.get) if per_module else "backbone"
        large = sorted((item for item in ints if item[0].split(".")[0].split("[")[0] == biggest),
                       key=lambda x: -abs(x[1]))[:2]
        hint = f"; check {', '.join(f'{p} = {v}' for p, v in large)}" if large else ""
        raise RecipeError(biggest, f"the model has {params:,} parameters ({params / 1e9:.1f}G; "
                          f"{per_module.get(biggest, 0):,} in '{biggest}'): training needs about {need / 1e9:.0f} GB "
                          f"but {free / 1e9:.0f} GB is free{hint}", source=source)
    return params


# ---------------------------------------------------------------------- infer
def check_infer_outputs(inputs: list, out_dir: Path, alpha: float) -> None:
    """Before the model loads: ``--alpha`` within [0, 1]; ``--out`` neither an input folder nor inside one; no
    prediction, overlay or panel that would land on an input image; ``--out`` creatable."""
    import math

    from .predict import collect_images

    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise SegkitError(f"--alpha {alpha}: expected the overlay's opacity, from 0 to 1")
    out = out_dir.resolve()
    for item in map(Path, inputs):
        if item.is_dir():
            folder = item.resolve()
            if out == folder or folder in out.parents:
                where = "the" if out == folder else "inside the"
                raise SegkitError(f"--out {out_dir} is {where} input folder {item}: predictions would be written "
                                  "among (or over) the images; choose another --out")
    items = [entry if isinstance(entry, tuple) else (entry, Path(entry.stem)) for entry in collect_images(inputs)]
    sources = {Path(path).resolve(): path for path, _ in items}
    for _, rel in items:
        base = out / rel
        for suffix in (".png", "_overlay.png", "_side.png"):
            target = base.parent / f"{base.name}{suffix}"
            if target.resolve() in sources:
                raise SegkitError(f"--out {out_dir}: the prediction {target} would overwrite the input image "
                                  f"{sources[target.resolve()]}; choose another --out")
    writable_dir(out_dir, "--out")
