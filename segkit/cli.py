"""The ``segkit`` command: a thin Typer adapter over :mod:`segkit.api`, rendered with rich.

Start-up is instant: this module imports only Typer and rich. Each command imports its machinery (``segkit.api``,
torch, the registries) inside its function, so ``segkit --help``, ``segkit CMD --help``, shell completion and
``segkit list-registry`` (answered from the registry manifest) never import torch. Keep it so:
``tests/cli/test_startup.py`` fails when a heavy module is imported at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="segkit: semantic segmentation for PyTorch, configured by TOML recipes.")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a recipe key: KEY.PATH=VALUE (TOML value).")]
CkptOpt = Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Weights to use (default: run dir's best.pt, else last.pt).")]
TTA_CHOICES = ("none", "flip", "ms", "ms+flip")  # segkit.evaluation.inference.TTA_PRESETS (a test keeps them equal)
EXPORT_FORMATS = ("onnx", "torchscript")


def _complete_from(choices):
    """A Typer completion function offering ``choices`` that start with what was typed."""
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def _complete_kind(incomplete: str) -> list[str]:
    from .manifest import kinds

    with contextlib.suppress(OSError, ValueError):  # no manifest: no suggestions, never an error
        return [k for k in kinds() if k.startswith(incomplete)]
    return []


def _complete_component(ctx: typer.Context, incomplete: str) -> list[str]:
    from .manifest import kinds, names

    with contextlib.suppress(OSError, ValueError):
        # while completing an option's value, click may leave the KIND argument unparsed in ctx.args
        kind = ctx.params.get("kind") or next((a for a in ctx.args if a in kinds()), None)
        return [n for n in names(kind) if n.lower().startswith(incomplete.lower())]
    return []


TTAOpt = Annotated[str | None, typer.Option("--tta", help="Test-time augmentation: none, flip, ms, ms+flip.",
                                            autocompletion=_complete_from(TTA_CHOICES))]
_ARGV: list[str] = []
LAUNCH_OPTS = {"--gpus", "--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint"}


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"segkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(plugin: Annotated[list[str] | None, typer.Option("--plugin", metavar="MODULE", help="Import a module that registers components.")] = None,
          debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for unexpected errors.")] = False,
          version: Annotated[bool, typer.Option("--version", help="Print segkit's version and exit.", is_eager=True,
                                                callback=_print_version)] = False) -> None:
    from .plugins import load_plugins

    with _stdout_to_stderr():  # what a plugin prints on import must not mix with a command's (JSON) output
        load_plugins(plugin or [])


def _launch_processes(gpus: int, nproc: int, device: str | None) -> int:
    """How many processes to run: ``--gpus N`` (one per visible GPU) or ``--nproc N`` (CPU processes, gloo)."""
    from .errors import SegkitError

    if gpus and nproc:
        raise SegkitError(f"--gpus {gpus} and --nproc {nproc}: give one (--gpus: GPU processes; --nproc: CPU ones)")
    if gpus < 0 or nproc < 0:
        raise SegkitError("--gpus and --nproc take a process count >= 1")
    if nproc and device and device != "cpu":
        raise SegkitError(f"--nproc runs CPU processes, not --device {device}; use --gpus N for GPU processes")
    if gpus:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise SegkitError(f"--gpus {gpus}: no CUDA GPU is visible; use --nproc {gpus} for CPU processes")
        if gpus > visible:
            raise SegkitError(f"--gpus {gpus}: only {visible} CUDA GPU{'s are' if visible > 1 else ' is'} visible "
                              f"on this machine; use --gpus {visible} or fewer (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return gpus or nproc


def _strip_launch_options(argv: list[str]) -> list[str]:
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in LAUNCH_OPTS:
            skip = "=" not in tok
            continue
        out.append(tok)
    return out


@app.command()
def train(recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")],
          set_: SetOpt = None,
          work_dir: Annotated[str | None, typer.Option("--work-dir", metavar="DIR", help="Override the recipe's work_dir.")] = None,
          resume: Annotated[str | None, typer.Option("--resume", metavar="PATH", help="Resume from PATH, or from work_dir's last.pt when given alone.")] = None,
          seed: Annotated[int | None, typer.Option(help="Random seed (recipe key `seed`).")] = None,
          deterministic: Annotated[bool, typer.Option("--deterministic", help="Deterministic algorithms: bit-identical reruns.")] = False,
          gpus: Annotated[int, typer.Option("--gpus", help="Run N processes, one per GPU (torchrun, NCCL).")] = 0,
          nproc: Annotated[int, typer.Option("--nproc", help="Run N processes (torchrun; gloo on CPU).")] = 0,
          nnodes: Annotated[int, typer.Option("--nnodes", help="Number of machines (torchrun rendezvous).")] = 1,
          node_rank: Annotated[int, typer.Option("--node-rank")] = 0,
          rdzv_endpoint: Annotated[str | None, typer.Option("--rdzv-endpoint", metavar="HOST:PORT", help="HOST:PORT of the rendezvous, for several nodes.")] = None,
          device: Annotated[str | None, typer.Option("--device", metavar="DEVICE", help="cpu or cuda (default: cuda when available).")] = None,
          print_recipe: Annotated[bool, typer.Option("--print-recipe", help="Print the resolved recipe and exit.")] = False,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Build model, data and optimizer, print a summary, exit.")] = False,
          report_to: Annotated[str | None, typer.Option("--report-to", metavar="NAMES", help="Experiment trackers, comma-separated: tensorboard, wandb, mlflow, or none (default: tensorboard when installed).")] = None,
          channels_last: Annotated[bool | None, typer.Option("--channels-last/--no-channels-last", help="NHWC memory format for weights and batches (recipe key channels_last).")] = None,
          compile_mode: Annotated[str | None, typer.Option("--compile", metavar="MODE", help="torch.compile the model: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs, or off (recipe table compile_cfg).")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Train a recipe: rich progress, evaluation and checkpoints in its work_dir."""
    from . import api

    if report_to is not None:
        names = [n.strip() for n in report_to.split(",") if n.strip() and n.strip().lower() != "none"]
        set_ = [*(set_ or []), "report_to=[" + ", ".join(json.dumps(n) for n in names) + "]"]
    if channels_last is not None:
        set_ = [*(set_ or []), f"channels_last={str(channels_last).lower()}"]
    if compile_mode is not None:
        on = ["compile_cfg.enabled=true", f"compile_cfg.mode={json.dumps(compile_mode)}"]
        set_ = [*(set_ or []), *(["compile_cfg.enabled=false"] if compile_mode == "off" else on)]

    if print_recipe:
        console.print(api.print_recipe(recipe, set_ or [], work_dir, sources=True), markup=False, highlight=False)
        return
    procs = _launch_processes(gpus, nproc, device)
    if procs > 1 and "LOCAL_RANK" not in os.environ:
        from .engine.distributed import DEVICE_KIND_ENV, relaunch

        api.load_recipe(recipe, set_ or [], work_dir=work_dir)  # report recipe errors once, before launching
        os.environ[DEVICE_KIND_ENV] = "cuda" if gpus else "cpu"  # the children's device; they never see --nproc
        raise typer.Exit(relaunch(_strip_launch_options(_ARGV), procs, nnodes, node_rank, rdzv_endpoint))
    result = api.train(recipe, set_ or [], work_dir=work_dir, resume=resume, seed=seed,
                       deterministic=True if deterministic else None, dry_run=dry_run,
                       device=device or ("cpu" if nproc else None), console=console)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    if as_json:
        print(json.dumps(result, indent=2))
    elif dry_run:
        _kv_table("dry run", result)
    else:
        from .evaluation.metrics import metric_summary

        shown = metric_summary({k: v for k, v in result.items() if k != "work_dir"})
        console.print(f"[bold green]done[/]: {escape(shown)}; run dir {result['work_dir']}")


@app.command("eval")
def eval_(target: Annotated[Path, typer.Argument(help="Run dir, or a recipe with --checkpoint.")],
          checkpoint: CkptOpt = None, set_: SetOpt = None, tta: TTAOpt = None,
          ema: Annotated[bool, typer.Option("--ema", help="Evaluate the EMA weights.")] = False,
          device: Annotated[str | None, typer.Option("--device", metavar="DEVICE")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Evaluate on the recipe's test split; writes eval/<checkpoint>[_<tta>].json and a line in eval/history.jsonl."""
    import time

    from . import api

    started = time.perf_counter()
    metrics = api.evaluate(target, checkpoint=checkpoint, overrides=set_ or [], tta=tta, ema=ema, device=device,
                           console=err_console)
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    from .evaluation.metrics import PER_CLASS_KEYS, result_keys

    columns = [k for k in metrics if k in PER_CLASS_KEYS]  # inference.evaluate.metric_list's, in its order
    if columns:
        table = Table("class", *columns, title=f"evaluation of {metrics['checkpoint']}")
        for name in metrics[columns[0]]:
            table.add_row(escape(name), *(_fmt(metrics[k][name]) for k in columns))
        console.print(table)
    means = [k for k in metrics if k in result_keys() and k not in PER_CLASS_KEYS]
    if means:
        console.print("  ".join(f"{k} {_fmt(metrics[k])}" for k in means))
    console.print(f"wrote {metrics['result_file']} in {time.perf_counter() - started:.1f}s", highlight=False)


@app.command()
def infer(target: Annotated[Path, typer.Argument(help="Run dir, or a recipe with --checkpoint (with --model: an image or folder).")],
          inputs: Annotated[list[Path] | None, typer.Argument(help="Image files and/or folders.")] = None,
          out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("predictions"),
          checkpoint: CkptOpt = None, set_: SetOpt = None, tta: TTAOpt = None,
          alpha: Annotated[float, typer.Option(help="Overlay opacity of the colour mask.")] = 0.5,
          side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Also write <name>_side.png: image | [ground truth |] prediction.")] = False,
          gt_dir: Annotated[Path | None, typer.Option("--gt-dir", metavar="DIR", help="Ground-truth label maps (<name>.png, same layout) for --side-by-side.")] = None,
          device: Annotated[str | None, typer.Option("--device", metavar="DEVICE")] = None,
          model: Annotated[str | None, typer.Option("--model", metavar="NAME", help="A promptable model (sam_vit_b, mobile_sam, edge_sam, sam_hq_vit_b, ...): every positional is an input; --checkpoint is its weights (default: the official file).")] = None,
          everything: Annotated[bool, typer.Option("--everything", help="--model: automatic masks for the whole image.")] = False,
          point: Annotated[list[str] | None, typer.Option("--point", metavar="X,Y[,LABEL]", help="--model: a prompt point X,Y[,LABEL] (repeatable; LABEL 0 = background).")] = None,
          box: Annotated[list[str] | None, typer.Option("--box", metavar="X0,Y0,X1,Y1", help="--model: a prompt box X0,Y0,X1,Y1 (repeatable: one mask each).")] = None,
          prompts: Annotated[Path | None, typer.Option("--prompts", metavar="JSON", help="--model: JSON of prompts per image name.")] = None,
          amg: Annotated[list[str] | None, typer.Option("--amg", metavar="KEY=VALUE", help="--everything: a mask generator option KEY=VALUE, e.g. points_per_side=16, pred_iou_thresh=0.8, crop_n_layers=1, min_mask_region_area=100 (repeatable).")] = None,
          video: Annotated[bool, typer.Option("--video", help="--model sam2*: track the prompted objects through one video file or frame folder (--point/--box prompt frame 0; --prompts maps frame indices to prompts).")] = False,
          video_option: Annotated[list[str] | None, typer.Option("--video-option", metavar="KEY=VALUE", help="--video: a tracking option KEY=VALUE: fill_hole_area=8 (0: off), non_overlap_masks=true, non_overlap_masks_for_mem_enc=true, offload_video_to_cpu=true, offload_state_to_cpu=true (repeatable).")] = None) -> None:
    """Predict label maps: <name>.png (palette PNG of class ids), <name>_overlay.png (with a legend),
    predictions.jsonl; folders are searched recursively and their structure kept under --out.
    With --model: promptable masks (<name>_masks.png ids, <name>_overlay.png, <name>.json)."""
    from . import api
    from .errors import SegkitError

    if model is not None:
        from .promptable.cli import infer_promptable

        found = infer_promptable(model, [target, *(inputs or [])], out, checkpoint=checkpoint, device=device,
                                 everything=everything, points=point, boxes=box, prompts_file=prompts,
                                 amg_options=amg, alpha=alpha, console=err_console, video=video,
                                 video_options=video_option)
        console.print(f"wrote masks of {len(found)} {'frames' if video else 'images'} to {out} (index: "
                      f"{out / 'masks.jsonl'})", highlight=False)
        return
    if not inputs:
        raise SegkitError("give image files or folders after the run dir / recipe")

    records = api.infer(target, inputs, out, checkpoint=checkpoint, overrides=set_ or [], tta=tta,
                        device=device, alpha=alpha, side_by_side=side_by_side, gt_dir=gt_dir,
                        console=err_console)
    console.print(f"wrote {len(records)} label maps and overlays to {out} (index: {out / 'predictions.jsonl'})",
                  highlight=False)


@app.command()
def export(target: Annotated[Path, typer.Argument(help="Run dir, or a recipe with --checkpoint.")],
           format: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.",
                                               autocompletion=_complete_from(EXPORT_FORMATS))] = "onnx",
           out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file.")] = None,
           checkpoint: CkptOpt = None, set_: SetOpt = None,
           input_size: Annotated[str | None, typer.Option("--input-size", metavar="HxW", help="HxW, e.g. 512x512.")] = None,
           atol: Annotated[float, typer.Option(help="Largest accepted |exported - eager| difference.")] = 1e-4,
           static: Annotated[bool, typer.Option("--static", help="ONNX: fix batch, height and width to --input-size (default: free where the model allows).")] = False,
           bake_preprocessing: Annotated[bool, typer.Option("--bake-preprocessing", help="Put the test pipeline's normalisation in the graph: input RGB 0..255.")] = False,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Export to ONNX/TorchScript; refused unless it matches eager PyTorch within --atol. ONNX files carry
    class names, palette, mean/std, channel order and align_corners (also in model.json beside them)."""
    from . import api
    from .errors import SegkitError

    size = None
    if input_size:
        try:
            size = tuple(int(v) for v in input_size.lower().split("x"))
            assert len(size) == 2
        except (ValueError, AssertionError):
            raise SegkitError(f"--input-size {input_size!r}: expected HxW, e.g. 512x512") from None
    report = api.export(target, format=format, out=out, checkpoint=checkpoint, input_size=size, atol=atol,
                        overrides=set_ or [], dynamic=not static, bake_preprocessing=bake_preprocessing)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    shapes = ", ".join("x".join(map(str, s)) for s in report["verified_shapes"])
    console.print(f"exported {report['format']} to {report['path']}: max |diff| vs eager "
                  f"{report['max_abs_diff']:.2e} (atol {report['atol']:.0e}) at {shapes}", highlight=False)
    if report.get("axes"):
        console.print(f"axes: {report['axes']}", highlight=False, markup=False)
    if report.get("dynamic_error"):
        console.print(f"note: fixed size (the model does not allow free sizes: {report['dynamic_error']})",
                      highlight=False, markup=False)
    if report.get("metadata_file"):
        console.print(f"metadata: {report['metadata_file']}", highlight=False)


@app.command()
def benchmark(target: Annotated[Path, typer.Argument(help="Run dir (its checkpoint), or a recipe (random weights).")],
              checkpoint: CkptOpt = None, set_: SetOpt = None,
              device: Annotated[str | None, typer.Option("--device", metavar="DEVICE", help="cpu or cuda (default: cuda when available).")] = None,
              batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 1,
              input_size: Annotated[str | None, typer.Option("--input-size", metavar="HxW", help="HxW (default: the training crop).")] = None,
              iters: Annotated[int, typer.Option("--iters", min=1, help="Timed calls (after 3 warm-up calls).")] = 20,
              no_train: Annotated[bool, typer.Option("--no-train", help="Only the eval forward.")] = False,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Speed and memory of the eval forward and one training step, on random inputs.

    segkit benchmark runs/quickstart\n
    segkit benchmark recipes/fcn_r50_voc.toml --device cuda --batch-size 8
    """
    from . import api
    from .errors import SegkitError

    size = None
    if input_size:
        try:
            size = tuple(int(v) for v in input_size.lower().split("x"))
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise SegkitError(f"--input-size {input_size!r}: expected HxW, e.g. 512x512") from None
    report = api.benchmark(target, checkpoint=checkpoint, overrides=set_ or [], device=device,
                           batch_size=batch_size, input_size=size, iters=iters, train=not no_train)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console.print(escape(f"{report['model']} on {report['device']}, batch {report['batch_size']} at "
                         f"{report['input_size'][0]}x{report['input_size'][1]} ({report['weights']})"))
    console.print(escape(report["cpu"]), highlight=False)
    table = Table("", "img/s", "p50 ms", "p95 ms", "peak MiB")
    for name in ("eval", "train_step"):
        row = report.get(name)
        if row is None:
            continue
        if "error" in row:
            table.add_row(name, escape(row["error"]), "", "", "")
        else:
            table.add_row(name, f"{row['imgs_per_s']:.1f}", f"{row['latency_ms_p50']:.1f}",
                          f"{row['latency_ms_p95']:.1f}", f"{row['peak_memory_mib']:.0f}" if "peak_memory_mib" in row
                          else f"(RSS {report['peak_rss_mib']:.0f})")
    console.print(table)


@app.command("browse-data")
def browse_data(recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")], set_: SetOpt = None,
                split: Annotated[str, typer.Option("--split", help="train (augmented) or test.",
                                                   autocompletion=_complete_from(("train", "test")))] = "train",
                n: Annotated[int, typer.Option("--n", min=1, help="How many samples.")] = 16,
                out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("browse"),
                seed: Annotated[int, typer.Option("--seed", help="Which training samples are drawn.")] = 0) -> None:
    """Write samples as the network receives them, labels drawn over them: see what augmentation does.

    segkit browse-data recipes/quickstart.toml --n 8 --out browse/
    """
    from . import api

    files = api.browse_data(recipe, set_ or [], split=split, n=n, out=out, seed=seed)
    console.print(f"wrote {len(files)} samples to {out}", highlight=False)


@app.command()
def plot(runs: Annotated[list[Path], typer.Argument(help="Run dirs (each with its metrics.jsonl).")],
         out: Annotated[Path | None, typer.Option("--out", "-o", help="Output PNG (several runs; default runs_compare.png).")] = None) -> None:
    """Draw curves: one run's plots/ again, or several runs compared in one picture.

    segkit plot runs/quickstart\n
    segkit plot runs/a runs/b --out compare.png
    """
    from . import api

    for path in api.plot([str(r) for r in runs], out):
        console.print(f"wrote {path}", highlight=False)


@app.command("prepare-data")
def prepare_data(name: Annotated[str | None, typer.Argument(help="Dataset name (see --list).")] = None,
                 root: Annotated[Path, typer.Option("--root", help="Folder to put the dataset in.")] = Path("data"),
                 from_archive: Annotated[Path | None, typer.Option("--from-archive", help="Use an archive you already have.")] = None,
                 list_: Annotated[bool, typer.Option("--list", help="List the datasets.")] = False) -> None:
    """Download (or take --from-archive), extract, convert and check a dataset."""
    from . import api
    from .errors import SegkitError

    if list_ or name is None:
        table = Table("name", "size", "licence", "description", title="datasets")
        for row in api.list_datasets():
            table.add_row(*(escape(str(row[k])) for k in ("name", "size", "license", "description")))
        console.print(table)
        if name is None and not list_:
            raise SegkitError("give a dataset NAME (listed above)")
        return
    from .data.prepare.download import PROGRESS_HOOK
    from .engine.report.display import ByteProgress

    with ByteProgress(err_console, f"download {name}") as bar:
        token = PROGRESS_HOOK.set(bar)
        try:
            summary = api.prepare_data(name, root, from_archive)
        finally:
            PROGRESS_HOOK.reset(token)
    _kv_table(f"prepared {name}", summary)


@app.command()
def info(recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")], set_: SetOpt = None,
         flops: Annotated[bool, typer.Option("--flops", help="Also count GFLOPs of one forward at the crop size.")] = False,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Describe a recipe's model without data or weights: parameters, features, outputs, losses."""
    from . import api

    data = api.model_info(recipe, set_ or [], flops=flops)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    head = f"{data['type']}: {data['parameters']:,} parameters ({data['trainable_parameters']:,} trainable)"
    console.print(escape(head))
    _kv_table("parameters by module", {k: f"{v:,}" for k, v in data["modules"].items()}, ("module", "parameters"))
    features = ", ".join(f"{f['channels']}@/{f['stride']}" for f in data["features"])
    console.print(escape(f"features (channels@/stride): {features}"))
    routes = {name: "; ".join(f"{t['type']}: {t['output']} <- {t['target']} ({t['resize']})" for t in terms)
              for name, terms in data["losses"].items()}
    _kv_table(f"losses ({data['criterion']})", routes, ("loss", "route"))
    if flops:
        size = "x".join(map(str, data["input_size"]))
        value = f"{data['gflops']:.2f}" if data["gflops"] is not None else f"n/a ({data['gflops_error']})"
        console.print(escape(f"GFLOPs at {size}: {value}"))


@app.command("list-registry")
def list_registry(kind: Annotated[str | None, typer.Argument(help="A registry: backbones, heads, segmentors, necks, losses, datasets, transforms, optimizers, schedulers, norms, activations, ... (all when omitted).", autocompletion=_complete_kind)] = None,
                  filter_: Annotated[str | None, typer.Option("--filter", help="Case-insensitive glob on names ('res*'); plain text matches anywhere in a name.")] = None,
                  info: Annotated[str | None, typer.Option("--info", help="Show one component's arguments (a backbone's outputs too).", autocompletion=_complete_component)] = None,
                  wide: Annotated[bool, typer.Option("--wide", "-w", help="Also show where each component is defined and backbones' structure types.")] = False,
                  as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON alone on stdout).")] = False) -> None:
    """List registered components: name and one-line summary (from the registry manifest; --info imports)."""
    if info:
        from . import api

        with _stdout_to_stderr(as_json):
            data = api.registry_info(kind or _kind_of(info), info)
        if as_json:
            print(json.dumps(data, indent=2))
            return
        _kv_table(f"{data['name']} ({data['where']})", data["arguments"], ("argument", "default"))
        if data.get("structure_types"):
            outputs = {t: f if isinstance(f, str) else ", ".join(f"{o['channels']}@/{o['stride']}" for o in f)
                       for t, f in data["structure_types"].items()}
            _kv_table("structure types: outputs as channels@/stride", outputs, ("structure_type", "outputs"))
        return
    with _stdout_to_stderr(as_json):
        listing = _registry_listing(kind, filter_)
    if as_json:
        print(json.dumps(listing, indent=2))
        return
    _print_listing(listing, filter_, wide)


def _registry_listing(kind: str | None, pattern: str | None) -> dict[str, list[dict]]:
    """From the live registries when plugins are loaded (their components are only there) or the registries are
    imported in this process anyway; else from the manifest (no torch import; a test keeps it identical)."""
    from .manifest import MANIFEST_PATH, listing
    from .plugins import loaded_plugins

    registry = sys.modules.get("segkit.registry")
    live = registry is not None and registry.builtin_components_loaded()
    if loaded_plugins() or live or not MANIFEST_PATH.is_file():  # (an install without the manifest still works)
        from . import api

        return api.list_registry(kind, pattern)
    return listing(kind, pattern)


def _kind_of(name: str) -> str:
    """The registry holding ``name``, for ``--info NAME`` without a kind."""
    from .errors import SegkitError, did_you_mean
    from .manifest import kinds_of

    source = _registry_listing(None, None)
    found = kinds_of(name, source)
    if len(found) == 1:
        return found[0]
    if found:
        raise SegkitError(f"--info {name}: registered as {' and '.join(found)}; give the kind, e.g. "
                          f"`segkit list-registry {found[0]} --info {name}`")
    known = {row["name"] for rows in source.values() for row in rows}
    raise SegkitError(f"--info {name}: no registered component has that name{did_you_mean(name, known)}; "
                      "`segkit list-registry` lists them")


def _print_listing(listing: dict[str, list[dict]], pattern: str | None, wide: bool) -> None:
    """One table per kind, readable at 80 columns: name and summary (cut with an ellipsis), one line each."""
    for k, rows in listing.items():
        if not rows:
            console.print(escape(f"{k}: none matches '{pattern}'" if pattern else f"{k}: none registered"))
            continue
        table = Table(title=f"{k} ({len(rows)})", title_justify="left")
        name_width = max(len(row["name"]) for row in rows)
        table.add_column("name", no_wrap=True, style="bold", min_width=name_width)
        if wide:
            table.add_column("defined in", overflow="fold")
            table.add_column("summary", overflow="fold")
        else:  # the rest of the line (7 = the borders and padding), the summary cut with an ellipsis
            table.add_column("summary", no_wrap=True, overflow="ellipsis",
                             max_width=max(12, console.width - name_width - 7))
        show_types = wide and k == "backbones"
        if show_types:
            table.add_column("structure types", overflow="fold")
        for row in rows:
            cells = [row["name"], *([row["where"]] if wide else []), row["summary"] or "-"]
            if show_types:
                cells.append(", ".join(row.get("structure_types", [])) or "-")
            table.add_row(*map(escape, cells))
        console.print(table)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool = True):
    """While a ``--json`` answer is computed, anything else written to stdout (a plugin's or library's print, a
    C extension's message on file descriptor 1) goes to stderr, so that stdout holds the JSON alone."""
    if not active:
        yield
        return
    saved = None
    try:
        out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured or replaced stream: redirect in Python only
        out_fd = err_fd = None
    if out_fd is not None:
        sys.stdout.flush()
        saved = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, out_fd)
            os.close(saved)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _kv_table(title: str, data: dict, columns: tuple[str, str] = ("key", "value")) -> None:
    table = Table(*columns, title=title)
    for k, v in data.items():
        table.add_row(escape(str(k)), escape(str(v)))
    console.print(table)


def _normalise_argv(argv: list[str]) -> list[str]:
    """``--resume`` given alone (last, or followed by another option) means: resume from work_dir's last.pt."""
    out = []
    for i, tok in enumerate(argv):
        if tok == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            tok = "--resume=auto"
        out.append(tok)
    return out


def _rank_tag() -> str:
    """`` [rank N]`` inside a multi-process run, so the failing process is known."""
    return escape(f" [rank {os.environ['RANK']}]") if int(os.environ.get("WORLD_SIZE", 1)) > 1 else ""


# Typer >= 0.20 ships its own copy of click, whose exceptions are not the ``click`` package's; take the classes
# from Typer's public BadParameter (a UsageError subclass in either case) so both kinds of Typer are covered.
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ABORTS = tuple({typer.Abort, *(getattr(sys.modules[c.__module__], "Abort", typer.Abort) for c in _USAGE_ERRORS)})


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors exit 2 with a one-line message; anything else exits 1 (traceback with --debug)."""
    from .engine.rank_errors import record_rank_error  # no torch: the error path of every command
    from .errors import SegkitError

    argv = _normalise_argv(list(sys.argv[1:] if argv is None else argv))
    _ARGV[:] = argv
    debug = "--debug" in argv
    try:
        code = app(args=argv, prog_name="segkit", standalone_mode=False)
    except _USAGE_ERRORS as exc:  # unknown option or command, missing or bad argument: segkit's exit code 2
        exc.show()
        code = 2
    except _ABORTS:
        code = 130
    except SegkitError as exc:
        if not record_rank_error(exc):  # in a --nproc/--gpus child the launcher prints it, once
            err_console.print(f"[bold red]error:[/]{_rank_tag()} {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: BLE001
        if debug:
            traceback.print_exc()
        elif not record_rank_error(exc):
            err_console.print(f"[bold red]error:[/]{_rank_tag()} {type(exc).__name__}: {escape(str(exc))}\n"
                              "(run with --debug for the traceback)", highlight=False, soft_wrap=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


@app.command("check-data")
def check_data(recipe: Annotated[Path, typer.Argument(help="Recipe TOML file.")], set_: SetOpt = None,
               split: Annotated[str, typer.Option("--split", help="train, test or both.",
                                                  autocompletion=_complete_from(("train", "test", "both")))] = "both",
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Read every sample once: report unreadable files, image/mask size mismatches, labels outside the classes."""
    from . import api
    from .engine.report.display import SplitProgress
    from .errors import DataError


    with SplitProgress(err_console) as progress:
        report = api.check_data(recipe, set_ or [], split=split, progress=progress)
    if as_json:
        print(json.dumps(report, indent=2))
    for name, part in ({} if as_json else report["splits"]).items():
        title = f"{name}: {part['dataset']} set '{part['set']}', {part['checked']} samples read"
        table = Table("problem", "file", "details", title=title)
        table.columns[1].overflow = table.columns[2].overflow = "fold"
        for found in part["problems"]:
            table.add_row(found["kind"], escape(found["file"]), escape(found["message"]))
        console.print(table if part["problems"] else f"{title}: no problems")
    if report["num_problems"]:
        raise DataError(report["summary"])
    if not as_json:
        console.print(f"[bold green]ok[/]: {report['summary']}")
