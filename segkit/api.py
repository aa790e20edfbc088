"""The functions behind the CLI commands, for notebooks and scripts. No Typer here."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .errors import SegkitError
from .plugins import load_plugins  # noqa: F401  (part of the API; defined in a light module for the CLI)
from .recipe import Recipe, load_recipe, recipe_to_toml
from .registry import REGISTRIES

__all__ = [
    "benchmark", "browse_data", "build_model", "check_data", "evaluate", "export", "infer", "list_datasets",
    "list_registry", "load",
    "load_model", "load_plugins", "model_info", "plot", "prepare_data", "print_recipe", "registry_info",
    "resolve_run", "train",
]
"""The public functions: each command's (train, evaluate, infer, export, prepare_data, check_data, plot,
list_registry, model_info) and the pieces for scripts (load, build_model, load_model, resolve_run ...)."""


# ---------------------------------------------------------------------- train
def train(recipe: str | Path, overrides: list[str] = (), *, work_dir: str | None = None,
          resume: str | Path | None = None, seed: int | None = None, deterministic: bool | None = None,
          dry_run: bool = False, device: str | None = None, console: Console | None = None) -> dict:
    """Train a recipe (or, with ``dry_run``, build everything and return a summary). Returns the final metrics."""
    from .engine.checkpoint import atomic_write_bytes, trim_run_log
    from .engine.distributed import cleanup, init_distributed
    from .engine.guards import check_before_training, check_device, check_model_size, prepare_work_dir
    from .engine.trainer import Trainer, default_callbacks

    extra = list(overrides)
    if seed is not None:
        extra.append(f"seed={seed}")
    if deterministic is not None:
        extra.append(f"deterministic={str(deterministic).lower()}")
    rec = load_recipe(recipe, extra, work_dir=work_dir)
    from .engine.report import resolve_report_to

    resolve_report_to(rec.report_to)  # a missing tracker package is reported before anything is built
    console = console or Console()
    check_device(device)
    ctx = init_distributed(rec.init_process_group_cfg, device=device)
    try:
        # reliability checks (segkit.engine.guards): work dir, --resume's checkpoint, model size, data
        check_model_size(rec, ctx.device)
        resume = prepare_work_dir(rec, resume, dry_run, console, ctx.is_main)
        trainer = Trainer(rec, ctx, console=console, resume=resume)
        check_before_training(trainer)
        if resume is not None and ctx.is_main and not dry_run:
            trim_run_log(Path(rec.work_dir), trainer.iteration)
        if dry_run:
            return dry_run_summary(trainer)
        if ctx.is_main:
            work = Path(rec.work_dir)
            work.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(work / "recipe.toml", lambda fh: fh.write(recipe_to_toml(rec).encode()))
            from .engine.report.provenance import write_env

            write_env(work, ctx.world_size)
        trainer.callbacks = default_callbacks(trainer, console)
        return {**trainer.fit(), "work_dir": rec.work_dir}
    finally:
        cleanup()


def dry_run_summary(trainer) -> dict:
    model = trainer.model
    return {
        "segmentor": trainer.recipe.type,
        "backbone": trainer.recipe.backbone.get("type"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_size": len(trainer.train_set),
        "val_size": len(trainer.val_set),
        "train_batch_size_per_process": trainer.train_loader.batch_size,
        "test_batch_size_per_process": trainer.val_loader.batch_size,
        "world_size": trainer.ctx.world_size,
        "device": str(trainer.ctx.device),
        "normalize": trainer.normalizes_on,
        "iters_per_epoch": len(trainer.train_loader),
        "max_epochs": trainer.max_epochs,
        "optimizer": type(trainer.optimizer).__name__,
        "param_groups": len(trainer.optimizer.param_groups),
        "work_dir": trainer.recipe.work_dir,
    }


def build_model(recipe: str | Path | Recipe, overrides: list[str] = (), *, pretrained: bool = True) -> torch.nn.Module:
    """The segmentor a recipe describes (``timm.create_model``'s role): a path or a loaded :class:`Recipe`.

    ``pretrained=False`` skips the backbone's pretrained weights (load a checkpoint next).
    """
    from .models.build import build_segmentor

    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides=list(overrides))
    if overrides and isinstance(recipe, Recipe):
        raise SegkitError("overrides apply to a recipe path; apply them before loading the Recipe")
    return build_segmentor(rec, pretrained=pretrained)


def model_info(recipe: str | Path, overrides: list[str] = (), *, flops: bool = False,
               input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """What a recipe's model is, without data or weights: parameters (total, trainable, per top-level module),
    the features the heads read, training outputs and the loss routes; with ``flops`` the GFLOPs of one eval forward
    at ``input_size`` (default: the training crop), counted by ``torch.utils.flop_counter`` on the meta device."""
    from .models.build import ModelBuilder, build_criterion, segmentor_class

    rec = load_recipe(recipe, overrides=list(overrides))
    builder = ModelBuilder(rec, pretrained=False, probe=True)
    model = segmentor_class(rec).from_recipe(builder)
    criterion = build_criterion(rec, model, probe=True)

    def count(module: torch.nn.Module, trainable: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)

    info: dict[str, Any] = {
        "recipe": str(recipe), "type": rec.type, "num_classes": rec.num_classes,
        "parameters": count(model), "trainable_parameters": count(model, trainable=True),
        "modules": {name: count(child) for name, child in model.named_children()},
        "features": [{"channels": f.channels, "stride": f.stride} for f in builder.backbone_info or []],
        "training_outputs": model.output_names(training=True),
        "losses": {name: [{"type": type(t.loss).__name__, "output": t.route.output, "target": t.route.target,
                           "resize": t.route.resize} for t in group]
                   for name, group in getattr(criterion, "terms", {}).items()},
        "criterion": type(criterion).__name__,
        "exportable": model.exportable,
    }
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        height, width = input_size or default_input_size(rec)
        info["input_size"] = [height, width]
        try:
            with torch.device("meta"), torch.no_grad(), FlopCounterMode(display=False) as counter:
                model.eval()(torch.empty(1, 3, height, width))
            info["gflops"] = counter.get_total_flops() / 1e9
        except Exception as exc:  # noqa: BLE001  (an op without a meta kernel)
            info["gflops"] = None
            info["gflops_error"] = f"{type(exc).__name__}: {exc}"
    return info


def print_recipe(recipe: str | Path, overrides: list[str] = (), work_dir: str | None = None,
                 sources: bool = False) -> str:
    """The fully resolved recipe as TOML; with ``sources``, each key followed by ``# <file that set it>``
    (``--set``, ``--work-dir`` or ``default`` when no file did)."""
    if sources:
        from .recipe.sources import annotated_recipe

        return annotated_recipe(recipe, list(overrides), work_dir=work_dir)
    return recipe_to_toml(load_recipe(recipe, list(overrides), work_dir=work_dir))


# ---------------------------------------------------------------------- loading a trained model
def resolve_run(target: str | Path, checkpoint: str | Path | None = None,
                overrides: list[str] = ()) -> tuple[Recipe, Path]:
    """A run dir (its ``recipe.toml`` and best, else last, checkpoint) or a recipe plus ``--checkpoint``."""
    target = Path(target)
    if target.is_dir():
        recipe_path = target / "recipe.toml"
        if not recipe_path.is_file():
            raise SegkitError(f"{target} is not a run dir (no recipe.toml); give a recipe and --checkpoint")
        work_dir = str(target)
    elif target.is_file():
        recipe_path, work_dir = target, None
    else:
        raise SegkitError(f"{target}: no such run dir or recipe file")
    rec = load_recipe(recipe_path, list(overrides), work_dir=work_dir)
    if checkpoint is None:
        if not target.is_dir():
            raise SegkitError(f"{target} is a recipe: give the weights with --checkpoint PATH")
        ckpt_dir = target / "checkpoints"
        checkpoint = next((p for p in (ckpt_dir / "best.pt", ckpt_dir / "last.pt") if p.is_file()), None)
        if checkpoint is None:
            raise SegkitError(f"{ckpt_dir} has no best.pt or last.pt; give --checkpoint PATH")
    return rec, Path(checkpoint)


def load_model(rec: Recipe, checkpoint: Path, device: torch.device, ema: bool = False) -> torch.nn.Module:
    """Build the recipe's segmentor and load a checkpoint's weights (``ema`` picks the EMA weights: segkit's
    ``ema``, or SSSegmentation's ``model_ema``)."""
    from .engine.checkpoint import load_checkpoint, load_model_weights
    from .errors import CheckpointError
    from .models.build import build_segmentor

    state = load_checkpoint(checkpoint)
    key = "ema" if ema else "model"
    if ema and key not in state and "model_ema" in state:
        key = "model_ema"  # SSSegmentation 1.7's name for them
    if key not in state:
        raise CheckpointError(f"{checkpoint} has no '{key}' weights")
    model = build_segmentor(rec, pretrained=False)  # the checkpoint supplies every weight
    load_model_weights(model, state[key], checkpoint)
    return model.to(device).eval()


def pick_device(device: str | None) -> torch.device:
    from .engine.guards import check_device

    check_device(device)
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- eval
def evaluate(target: str | Path, *, checkpoint: str | Path | None = None, overrides: list[str] = (),
             tta: str | None = None, ema: bool = False, device: str | None = None,
             console: Console | None = None) -> dict:
    """Evaluate a run dir (or recipe + checkpoint) on its test split.

    Writes ``work_dir/eval/<checkpoint>[_<tta>][_ema].json`` (metrics and provenance: checkpoint, its sha256,
    epoch, TTA, inference settings, split) and appends to ``eval/history.jsonl``; the training result
    (``eval/metrics.json``) is left alone. With a ``console``, a progress bar (images, img/s, ETA) is drawn on it.
    """
    from .data.datasets.build import build_dataset
    from .data.loader import build_dataloader
    from .engine.accel import apply_speed_settings
    from .engine.evaluator import evaluate as run_eval
    from .engine.evaluator import inference_kwargs
    from .engine.threads import configure_cpu
    from .evaluation.inference import tta_preset

    rec, ckpt = resolve_run(target, checkpoint, overrides)
    dev = pick_device(device)
    model = load_model(rec, ckpt, dev, ema=ema)
    apply_speed_settings(model, rec)  # the recipe's channels_last / compile_cfg, as in training
    dataset = build_dataset(rec.dataset.model_dump(), mode="TEST", seed=rec.seed)
    plan = configure_cpu(rec)  # torch threads + loader workers within this process's CPUs
    loader = build_dataloader(dataset, rec.dataloader.test.model_dump(), mode="TEST", seed=rec.seed,
                              num_workers=plan.workers_for(rec.dataloader.test.num_workers_per_gpu))
    kwargs = inference_kwargs(rec.inference, rec.num_classes, rec.align_corners)
    if tta:
        kwargs.update(tta_preset(tta))
    import contextlib

    from .engine.callbacks import ImageProgress
    from .engine.report.provenance import record_evaluation

    label = "eval" + (f" tta={tta}" if tta else "") + (" slide" if kwargs["mode"] == "slide" else "")
    bar = ImageProgress(console, len(dataset), label) if console is not None else contextlib.nullcontext()
    with bar as progress:
        metrics = run_eval(model, loader, num_classes=rec.num_classes,
                           classnames=getattr(dataset, "classnames", None), device=dev, infer_kwargs=kwargs,
                           on_batch=progress.advance if progress is not None else None)
    from .evaluation.metrics import filter_metrics

    metrics = filter_metrics(metrics, rec.inference.evaluate.metric_list)  # what is written and returned
    metrics["checkpoint"] = str(ckpt)
    metrics["result_file"] = str(record_evaluation(
        rec.work_dir, ckpt, metrics, tta=tta, ema=ema, inference=kwargs, num_images=len(dataset),
        split=getattr(dataset, "set", None)))
    return metrics


# ---------------------------------------------------------------------- infer
def infer(target: str | Path, inputs: list[str | Path], out_dir: str | Path, *,
          checkpoint: str | Path | None = None, overrides: list[str] = (), tta: str | None = None,
          device: str | None = None, alpha: float = 0.5, side_by_side: bool = False,
          gt_dir: str | Path | None = None, console: Console | None = None) -> list[dict]:
    """Predict label maps for image files and folders (searched recursively; their structure is kept under
    ``out_dir``): ``<name>.png`` palette PNGs (pixel values are class ids), ``<name>_overlay.png`` with a class
    legend, with ``side_by_side`` ``<name>_side.png`` (image | [ground truth from ``gt_dir`` |] prediction), and
    ``predictions.jsonl`` (classes present per image). Returns the records of ``predictions.jsonl``."""
    from .engine.accel import apply_speed_settings
    from .engine.predict import run_inference

    rec, ckpt = resolve_run(target, checkpoint, overrides)
    from .engine.guards import check_infer_outputs

    check_infer_outputs(inputs, Path(out_dir), alpha)  # never over the inputs; before the model loads
    from .engine.threads import configure_cpu

    configure_cpu(rec)  # torch threads within this process's CPUs, freed memory kept for reuse
    dev = pick_device(device)
    model = load_model(rec, ckpt, dev)
    apply_speed_settings(model, rec)  # the recipe's channels_last / compile_cfg, as in training
    import contextlib

    from .engine.predict import collect_images
    from .engine.report.display import ImageProgress

    total = len(collect_images(inputs))
    bar = ImageProgress(console, total, "infer") if console is not None else contextlib.nullcontext()
    with bar as progress:
        return run_inference(rec, model, inputs, Path(out_dir), device=dev, tta=tta, alpha=alpha,
                             side_by_side=side_by_side, gt_dir=gt_dir,
                             on_image=progress.advance if progress is not None else None)


def load(target: str | Path, checkpoint: str | Path | None = None, *, overrides: list[str] = (),
         device: str | None = None, tta: str | None = None, ema: bool = False):
    """A trained model for notebooks and scripts: ``seg = segkit.load("runs/quickstart")`` (a run dir: its recipe
    and best, else last, checkpoint) or ``segkit.load("recipe.toml", "weights.pt")``.

    ``seg.predict(image | [images])`` returns label maps at each input's size (ndarray RGB, PIL image or path),
    through the recipe's test pipeline and inference settings (whole/slide, TTA; ``tta`` picks a preset as
    ``segkit eval --tta`` does); ``seg.overlay(image)``, ``seg.classnames``, ``seg.palette``.
    Returns a :class:`segkit.engine.predict.Segmenter`.
    """
    from .engine.predict import load_segmenter

    return load_segmenter(target, checkpoint, overrides=overrides, device=device, tta=tta, ema=ema)


# ---------------------------------------------------------------------- export
def export(target: str | Path, *, format: str = "onnx", out: str | Path | None = None,
           checkpoint: str | Path | None = None, input_size: tuple[int, int] | None = None,
           atol: float = 1e-4, overrides: list[str] = (), dynamic: bool = True,
           bake_preprocessing: bool = False) -> dict:
    """Export to ONNX or TorchScript, verified against eager PyTorch before anything is written.

    ONNX: batch, height and width stay free where the model allows (``dynamic``; verified at two sizes); class
    names, palette, mean/std, channel order, ``align_corners`` and the segkit version go into the file and into
    ``model.json`` beside it; ``bake_preprocessing`` puts the normalisation into the graph. The default size is
    the test pipeline's (else the training crop). The recipe's ``align_corners`` is honoured.
    """
    from .export import export_model
    from .export.metadata import export_metadata, test_input_size, test_normalize

    if format not in ("onnx", "torchscript"):
        raise SegkitError(f"--format {format!r}: expected 'onnx' or 'torchscript'")
    rec, ckpt = resolve_run(target, checkpoint, overrides)
    model = load_model(rec, ckpt, torch.device("cpu"))
    if input_size is None:
        input_size = test_input_size(rec) or default_input_size(rec)
    suffix = ".onnx" if format == "onnx" else ".ts"
    out_path = Path(out) if out else Path(rec.work_dir) / "export" / f"model{suffix}"
    normalize = test_normalize(rec) if bake_preprocessing else None
    if bake_preprocessing and normalize is None:
        raise SegkitError("--bake-preprocessing: the recipe's test pipeline has no Normalize step to bake in")
    return export_model(model, out_path, format=format, input_shape=(1, 3, *input_size), atol=atol,
                        align_corners=rec.align_corners, dynamic=dynamic, normalize=normalize,
                        metadata=export_metadata(rec, str(ckpt), baked=normalize is not None))


def default_input_size(rec: Recipe) -> tuple[int, int]:
    """The training crop size when the pipeline has one, else 512x512."""
    for step in rec.dataset.train.get("data_pipelines", []):
        size = step.get("crop_size") or (step.get("output_size") if step.get("type") == "Padding" else None)
        if size:
            return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return (512, 512)


# ---------------------------------------------------------------------- benchmark, browse-data
def benchmark(target: str | Path, *, checkpoint: str | Path | None = None, overrides: list[str] = (),
              device: str | None = None, batch_size: int = 1, input_size: tuple[int, int] | None = None,
              warmup: int = 3, iters: int = 20, train: bool = True) -> dict[str, Any]:
    """img/s, latency p50/p95 and peak memory of the eval forward and of one training step, on random inputs
    (a run dir's checkpoint, or a recipe's freshly built model)."""
    from .engine.report.benchmark import benchmark as run_benchmark

    return run_benchmark(target, checkpoint=checkpoint, overrides=list(overrides), device=device,
                         batch_size=batch_size, input_size=input_size, warmup=warmup, iters=iters, train=train)


def browse_data(recipe: str | Path, overrides: list[str] = (), *, split: str = "train", n: int = 16,
                out: str | Path = "browse", seed: int = 0) -> list[Path]:
    """Write ``n`` samples of a split, as the network receives them (augmented), with their labels drawn over
    them: ``out/<index>_<id>.png``."""
    from .viz.browse import browse_data as run_browse

    return run_browse(recipe, list(overrides), split=split, n=n, out=out, seed=seed)


# ---------------------------------------------------------------------- plot
def plot(runs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Curves of one run (its ``plots/loss.png``, ``lr.png``, ``miou.png`` redrawn) or a comparison of several
    (total loss, mIoU, lr and throughput in one picture, default ``runs_compare.png``); needs matplotlib."""
    from .viz.plots import plot_compare, plot_run

    if len(runs) == 1 and out is None:
        return plot_run(runs[0])
    return [plot_compare(runs, out or "runs_compare.png")]


# ---------------------------------------------------------------------- prepare-data
def prepare_data(name: str, root: str | Path = "data", from_archive: str | Path | None = None) -> dict:
    """Download (or take ``from_archive``), extract, convert and check a dataset under ``root``."""
    from .data.prepare import prepare_dataset

    return prepare_dataset(name, Path(root), Path(from_archive) if from_archive else None)


def list_datasets() -> list[dict]:
    from .registry import PREPARERS

    return [{"name": n, "description": p.description, "size": p.size, "license": p.license}
            for n, p in PREPARERS.items()]


# ---------------------------------------------------------------------- registries
def list_registry(kind: str | None = None, pattern: str | None = None) -> dict[str, list[dict]]:
    """``{kind: [{name, where, summary}]}`` for one registry or all of them."""
    from .errors import did_you_mean

    if kind is not None and kind not in REGISTRIES:
        raise SegkitError(f"unknown registry '{kind}'{did_you_mean(kind, REGISTRIES)}; "
                          f"known: {', '.join(REGISTRIES)}")
    kinds = [kind] if kind else list(REGISTRIES)
    listing = {k: [{"name": n, "where": REGISTRIES[k].where(n), "summary": REGISTRIES[k].summary(n)}
                   for n in REGISTRIES[k].filter(pattern)] for k in kinds}
    for row in listing.get("backbones", []):
        row["structure_types"] = structure_types(REGISTRIES["backbones"].get(row["name"]))
    return listing


def registry_info(kind: str, name: str, features: bool = True) -> dict[str, Any]:
    """A component's arguments with their defaults; for a backbone also its structure types and, per type,
    the channels and strides of its outputs (built on the meta device: no memory, no download)."""
    from .errors import did_you_mean

    if kind not in REGISTRIES:
        raise SegkitError(f"unknown registry '{kind}'{did_you_mean(kind, REGISTRIES)}")
    reg = REGISTRIES[kind]
    reg.get(name, path="--info")
    params = {}
    for pname, p in reg.parameters(name).items():
        params[pname] = "(required)" if p.default is inspect.Parameter.empty else repr(p.default)
    info: dict[str, Any] = {"name": name, "where": reg.where(name), "summary": reg.summary(name),
                            "arguments": params}
    if kind == "backbones":
        types = structure_types(reg.get(name))
        info["structure_types"] = {t: backbone_features(name, t) if features else None for t in types}
    return info


def structure_types(cls: type) -> list[str]:
    """The ``structure_type`` values a backbone knows: its ``structure_types`` attribute, else its module's
    structure / pretrained-weights table."""
    names = getattr(cls, "structure_types", None)
    if names is None:
        module = importlib.import_module(cls.__module__)
        for attr in ("STRUCTURE_TYPES", "STRUCTURE_ARGUMENTS", "STRUCTURES", "PRETRAINED_URLS"):
            if getattr(module, attr, None):
                names = getattr(module, attr)
                break
    return list(names or [])


def backbone_features(name: str, structure_type: str) -> list[dict] | str:
    """``[{"channels", "stride"}]`` per output of one structure type, or why it could not be built alone."""
    from .registry import BACKBONES

    try:
        with torch.device("meta"):
            backbone = BACKBONES.build({"type": name, "structure_type": structure_type, "pretrained": False})
    except Exception as exc:  # noqa: BLE001  (a backbone that needs more arguments: say so, keep listing)
        return f"not built alone: {str(exc).splitlines()[0][:120]}"
    return [{"channels": i["num_chs"], "stride": i["reduction"]} for i in backbone.feature_info]


# ---------------------------------------------------------------------- check-data
def check_data(recipe: str | Path, overrides: list[str] = (), split: str = "both", *,
               progress=None) -> dict:
    """Read every sample of the recipe's ``train``/``test`` split (or both) once, before augmentation.

    Returns ``{"splits": {name: report}, "num_problems", "summary", ...}``; each report lists its ``problems``
    (``kind`` = ``unreadable`` | ``size_mismatch`` | ``label_out_of_range``, ``file``, ``message``). Nothing is
    raised for problems found: the CLI exits 2 when ``num_problems`` is not 0. ``progress(split, done, total)``
    is called after every sample.
    """
    from .data.check import check_recipe_data

    return check_recipe_data(load_recipe(recipe, list(overrides)), split, progress)
