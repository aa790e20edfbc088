"""GPU training speed (issue 12): segkit's training step against a plain hand-written loop, in the same run.

Parts (``--parts``, in this order by default; each writes its results into the JSON as soon as it finishes, so a
run cut short keeps what it measured):

* ``ceiling``: the bf16 matmul ceiling (8192^3 ``torch.mm``), the yardstick for "% of peak";
* ``core``: FCN-R50-D8, 512x512, batch 16, bf16: segkit's ``Trainer.train_step`` with the recipe's defaults
  (NCHW, eager) and with ``channels_last`` (+ ``compile_cfg``); the plain loop with NCHW, ``channels_last`` and
  ``channels_last`` + ``torch.compile`` (the best settings); and the share of the step spent in segkit's
  criterion against ``F.cross_entropy`` on the same logits;
* ``fp32mem``: why FCN-R50-D8 batch 16 in float32 peaked at 83 GiB: the peak of the first step (when
  ``cudnn.benchmark`` times every convolution algorithm, some with huge workspaces) against the peak of the
  following steps, with benchmark on and off, TF32 convolutions off, and cuDNN's workspace capped with
  ``CUDNN_CONV_WSCAP_DBG`` (a child process: the variable is read when cuDNN starts); allocated memory after each
  step (flat = no leak) and the allocator's counters;
* ``precisions``: FCN-R50-D8 and DeepLabV3-R50-D8 in fp32 / fp16 (GradScaler) / bf16, segkit with channels_last
  (compiled for DeepLabV3-bf16) against the plain loop with the same settings;
* ``input``: handing a training batch (16 x 512 x 512) to the GPU: the ``float32`` batch normalised in the workers
  (pinned, copied, made channels-last) against the ``uint8`` batch that ``DeviceNormalize`` finishes there
  (``normalize_on_device``, on by default on CUDA), milliseconds per batch;
* ``mask2former``: Mask2Former-R50 (SSSegmentation's default head), 640x640, batch 2, bf16: step time and the
  share of multi-scale deformable attention (forward + backward) and of the Hungarian matcher (issue 10).

Each configuration: warm-up steps (the first also times cuDNN's search and any compilation), then ``repeats``
blocks of ``steps`` steps between CUDA synchronisations; img/s from the median block. Peak memory is
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` over the measured steps (``first_step_peak_*`` for the
first step). Synthetic tensors (random images, block labels) on the GPU: data loading is not measured.

``python benchmarks/bench_gpu.py [--parts core,fp32mem] [--out FILE] [--budget-s S]``; ``run()`` (used by
``benchmarks/run.py``) returns ``{"summary": {"status": "no CUDA ..."}}`` on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from gpu.common import (  # noqa: E402  (benchmarks/ is not a package)
    DTYPES,
    Budget,
    block_labels,
    gib,
    memory_snapshot,
    plain_step,
    synchronize,
)

PARTS = ("ceiling", "input", "core", "fp32mem", "precisions", "mask2former")
COMPILE_BACKEND = "inductor"  # --quick dry runs on a CPU use "aot_eager" (Inductor's C++ build takes minutes there)
GIB = 2**30

RECIPE = """
extends = ["{repo}/recipes/_base/segmentors/{base}.toml", "{repo}/recipes/_base/datasets/synthetic.toml"]
num_classes = {num_classes}
work_dir = "{tmp}/run"
norm_cfg = {{ type = "BatchNorm2d" }}
benchmark = {benchmark}
channels_last = {channels_last}
{fp16_line}
compile_cfg = {{ enabled = {compile}, backend = "{backend}" }}

[backbone]
structure_type = "resnet50conv3x3stem"
pretrained = false
{head}
[dataset]
rootdir = "{tmp}/synthetic"
num_train = {batch}
num_val = 1
image_size = 32

[scheduler]
max_epochs = 1000

[dataloader]
expected_total_train_bs_for_assert = {batch}

[dataloader.train]
batch_size_per_gpu = {batch}
num_workers_per_gpu = 0

[dataloader.test]
num_workers_per_gpu = 0
"""
MODELS = {"fcn": ("fcn", ""), "deeplabv3": ("deeplabv3", "[head]\ndilations = [1, 12, 24, 36]\n")}


def fp16_line(dtype: str) -> str:
    """The recipe's ``fp16_cfg`` for a precision (nothing for float32)."""
    if dtype == "fp32":
        return ""
    name = {"fp16": "float16", "bf16": "bfloat16"}[dtype]
    return f'fp16_cfg = {{ type = "pytorch", autocast = {{ dtype = "{name}" }} }}'


def make_trainer(tmp: str, *, model: str, dtype: str, batch: int, num_classes: int, channels_last: bool,
                 compile: bool, benchmark: bool, device):
    from segkit.engine.distributed import DistContext
    from segkit.engine.trainer import Trainer
    from segkit.recipe import load_recipe

    base, head = MODELS[model]
    text = RECIPE.format(repo=REPO, base=base, num_classes=num_classes, tmp=tmp, benchmark=str(benchmark).lower(),
                         channels_last=str(channels_last).lower(), fp16_line=fp16_line(dtype),
                         compile=str(compile).lower(), head=head, batch=batch,
                         backend=COMPILE_BACKEND)
    path = Path(tmp) / f"{model}.toml"
    path.write_text(text)
    return Trainer(load_recipe(path), DistContext(device=device))


def time_steps(step, *, warmup: int, steps: int, repeats: int, device) -> dict:
    """Run ``step()`` warm-up + repeats x steps times; per-step seconds of each block, first-step time and peaks."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - t0
    first_peak = memory_snapshot(device)
    for _ in range(warmup - 1):
        step()
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    blocks, allocated_after = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        blocks.append((time.perf_counter() - t0) / steps)
        if cuda:
            allocated_after.append(round(torch.cuda.memory_allocated(device) / GIB, 3))
    steady = memory_snapshot(device)
    return {"step_s": round(statistics.median(blocks), 5), "blocks_s": [round(b, 5) for b in blocks],
            "first_step_s": round(first, 3), "peak_allocated_gib": steady["peak_allocated_gib"],
            "peak_reserved_gib": steady["peak_reserved_gib"],
            "first_step_peak_allocated_gib": first_peak["peak_allocated_gib"],
            "first_step_peak_reserved_gib": first_peak["peak_reserved_gib"],
            "allocated_after_block_gib": allocated_after}


def release(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        torch._dynamo.reset()
    except Exception:  # noqa: BLE001
        pass


def synthetic_batch(batch: int, size: int, num_classes: int, device, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    labels = block_labels(batch, size, num_classes, seed)
    return {"image": images.to(device), "seg_target": labels.to(device)}


def measure_segkit(cfg: dict, data: dict, shape: dict, device) -> dict:
    """segkit's ``Trainer.train_step`` (lr update, autocast, criterion, GradScaler, optimizer) on ``data``."""
    result = _segkit_timing(cfg, data, shape, device)
    release(device)  # the trainer is gone once _segkit_timing returns
    return result


def _segkit_timing(cfg: dict, data: dict, shape: dict, device) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tmp, device=device, **model_shape(shape), **cfg)
    trainer.model.train()
    return time_steps(lambda: trainer.train_step(data), device=device, **shape_steps(shape))


def measure_plain(cfg: dict, data: dict, shape: dict, device) -> dict:
    """The plain loop on the same architecture (built by segkit, weights random), SGD as the recipe's."""
    result = _plain_timing(cfg, data, shape, device)
    release(device)
    return result


def _plain_timing(cfg: dict, data: dict, shape: dict, device) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tmp, device=device, **model_shape(shape),
                               **{**cfg, "compile": False, "channels_last": False})
        model = trainer.model
        del trainer
    if cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if cfg["compile"]:
        model.compile(backend=COMPILE_BACKEND)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    dtype = DTYPES[cfg["dtype"]]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    return time_steps(lambda: plain_step(model, optimizer, scaler, data["image"], data["seg_target"], dtype,
                                         cfg["channels_last"]), device=device, **shape_steps(shape))


def shape_steps(shape: dict) -> dict:
    return {k: shape[k] for k in ("warmup", "steps", "repeats")}


def model_shape(shape: dict) -> dict:
    return {k: shape[k] for k in ("model", "batch", "num_classes")}


def config_row(runner: str, cfg: dict, shape: dict, result: dict, ceiling_tflops: float | None,
               flops_per_img: float | None) -> dict:
    imgs = shape["batch"] / result["step_s"]
    row = {"runner": runner, "model": shape["model"], "dtype": cfg["dtype"], "channels_last": cfg["channels_last"],
           "compile": cfg["compile"], "benchmark": cfg.get("benchmark", True), "imgs_per_s": round(imgs, 1),
           **result}
    if flops_per_img and ceiling_tflops:
        row["tflops"] = round(imgs * flops_per_img / 1e12, 1)
        row["pct_of_bf16_ceiling"] = round(100 * row["tflops"] / ceiling_tflops, 1)
    return row


# ------------------------------------------------------------------------------------------------ parts
def part_input(device, shape: dict, reps: int = 20) -> dict:
    """Milliseconds per training batch to get it onto the device, channels-last: the ``float32`` batch the workers
    normalised, or the ``uint8`` one ``DeviceNormalize`` finishes there (some samples padded, so the fill runs)."""
    import torch

    from segkit.data.transforms.fused import DeviceNormalize
    from segkit.data.transforms.photometric import Normalize
    from segkit.data.transforms.tensor import Padding

    batch, size = shape["batch"], shape["size"]
    pin = (lambda t: t.pin_memory()) if device.type == "cuda" else (lambda t: t)
    g = torch.Generator().manual_seed(0)
    floats = pin(torch.randn(batch, 3, size, size, generator=g))
    deferred = {"image": pin(torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)),
                "image_levels": pin(torch.arange(256, dtype=torch.uint8).repeat(batch, 1)),
                "image_window": pin(torch.tensor([[size // 8, 0, size - size // 4, size]] * batch))}
    finish = DeviceNormalize(Normalize((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
                             Padding(size, data_type="tensor"))
    runs = {"float32_copy": lambda: floats.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last),
            "uint8_device_normalize": lambda: finish(deferred, device, channels_last=True)}
    result = {"batch": batch, "size": size}
    for name, fn in runs.items():
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        result[f"{name}_ms"] = round(1e3 * statistics.median(times), 3)
    result["uint8_over_float32"] = round(result["uint8_device_normalize_ms"] / result["float32_copy_ms"], 3)
    release(device)
    return result


def part_ceiling(device, quick: bool) -> dict:
    import torch

    n = 1024 if quick else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    reps = 3 if quick else 50
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    seconds = (time.perf_counter() - t0) / reps
    return {"n": n, "dtype": str(dtype), "tflops": round(2 * n**3 / seconds / 1e12, 1)}


def train_flops_per_image(shape: dict, device) -> float:
    """FLOPs of one forward + backward per image (torch.utils.flop_counter, batch 2), for '% of ceiling'."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tmp, device=device, **{**model_shape(shape), "batch": 2}, dtype="bf16",
                               channels_last=False, compile=False, benchmark=False)
        data = synthetic_batch(2, shape["size"], shape["num_classes"], device)
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(data)
        flops = counter.get_total_flops() / 2
        del trainer
    release(device)
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return flops


def part_core(device, shape: dict, result: dict, budget: Budget) -> list[dict]:
    ceiling = (result.get("ceiling") or {}).get("tflops")
    data = synthetic_batch(shape["batch"], shape["size"], shape["num_classes"], device)
    flops = result.setdefault("flops", {}).get(shape["model"])
    if flops is None and budget.left():
        flops = result["flops"][shape["model"]] = train_flops_per_image(shape, device)
    rows = result["core"] = []  # filled as measured: budget.save() writes each row as it comes
    plans = [("segkit", {"channels_last": False, "compile": False}),
             ("plain", {"channels_last": False, "compile": False}),
             ("plain", {"channels_last": True, "compile": False}),
             ("segkit", {"channels_last": True, "compile": False}),
             ("plain", {"channels_last": True, "compile": True}),
             ("segkit", {"channels_last": True, "compile": True})]
    for runner, settings in plans:
        if not budget.left():
            rows.append({"runner": runner, "model": shape["model"], "dtype": shape["dtype"], **settings,
                         "skipped": "time budget"})
            continue
        cfg = {"dtype": shape["dtype"], "benchmark": True, **settings}
        measure = measure_segkit if runner == "segkit" else measure_plain
        try:
            res = measure(cfg, data, shape, device)
            rows.append(config_row(runner, cfg, shape, res, ceiling, flops))
        except Exception as exc:  # noqa: BLE001  (record and go on: one failing setting must not hide the rest)
            rows.append({"runner": runner, **cfg, "error": f"{type(exc).__name__}: {str(exc)[:400]}"})
            release(device)
        budget.save()
    return rows


def criterion_share(device, shape: dict) -> dict:
    """segkit's criterion (forward + backward) on the step's logits against F.cross_entropy(F.interpolate(...))."""
    result = _criterion_timing(device, shape)
    release(device)
    return result


def _criterion_timing(device, shape: dict) -> dict:
    import torch
    from gpu.common import plain_loss

    data = synthetic_batch(shape["batch"], shape["size"], shape["num_classes"], device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(tmp, device=device, **model_shape(shape), dtype=shape["dtype"], channels_last=False,
                               compile=False, benchmark=True)
        with torch.no_grad(), trainer.amp.autocast():
            outputs = trainer.model.train()(data["image"])
        criterion = trainer.criterion
        del trainer
    targets = {"seg_target": data["seg_target"]}
    leaves = {k: v.detach().requires_grad_() for k, v in outputs.items()}

    def segkit_loss():
        with torch.autocast(device.type, dtype=DTYPES[shape["dtype"]] or torch.float32,
                            enabled=DTYPES[shape["dtype"]] is not None):
            terms = criterion(leaves, targets)
            total = torch.stack(list(terms.values())).sum()
        total.backward()

    def torch_loss():
        with torch.autocast(device.type, dtype=DTYPES[shape["dtype"]] or torch.float32,
                            enabled=DTYPES[shape["dtype"]] is not None):
            total = plain_loss(leaves, data["seg_target"])
        total.backward()

    steps = {"warmup": 2, "steps": 5, "repeats": 3}
    seg = time_steps(segkit_loss, device=device, **steps)
    ref = time_steps(torch_loss, device=device, **steps)
    return {"segkit_criterion_s": seg["step_s"], "torch_cross_entropy_s": ref["step_s"],
            "segkit_criterion_peak_allocated_gib": seg["peak_allocated_gib"],
            "torch_cross_entropy_peak_allocated_gib": ref["peak_allocated_gib"]}


def part_fp32mem(device, shape: dict, result: dict, budget: Budget) -> dict:
    import torch

    data = synthetic_batch(shape["batch"], shape["size"], shape["num_classes"], device)
    out = result["fp32mem"] = {"tf32": {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                          "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}}
    settings = [("benchmark_on", {"benchmark": True}), ("benchmark_off", {"benchmark": False})]
    for name, extra in settings:
        if not budget.left():
            out[name] = {"skipped": "time budget"}
            continue
        cfg = {"dtype": "fp32", "channels_last": False, "compile": False, **extra}
        try:
            out[name] = measure_segkit(cfg, data, shape, device)
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        budget.save()
    if budget.left():
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            out["benchmark_on_tf32_off"] = measure_segkit({"dtype": "fp32", "channels_last": False, "compile": False,
                                                           "benchmark": True}, data, shape,
                                                          device)
        finally:
            torch.backends.cudnn.allow_tf32 = old
        budget.save()
    if device.type == "cuda":
        out["memory_stats_after"] = {k: v for k, v in torch.cuda.memory_stats(device).items()
                                     if k in ("num_alloc_retries", "num_ooms", "num_device_alloc", "num_device_free")}
        out["memory_summary_head"] = torch.cuda.memory_summary(device, abbreviated=True).splitlines()[:30]
    for cap in (1024,):
        if not budget.left() or device.type != "cuda":
            break
        out[f"benchmark_on_wscap_{cap}mib"] = child_wscap(cap, shape, budget)
        budget.save()
    return out


def child_wscap(cap_mib: int, shape: dict, budget: Budget) -> dict:
    """The fp32 benchmark-on measurement in a child process with cuDNN's workspace capped at ``cap_mib``."""
    env = {**os.environ, "CUDNN_CONV_WSCAP_DBG": str(cap_mib)}
    cmd = [sys.executable, __file__, "--child-fp32", json.dumps({k: shape[k] for k in shape})]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(budget.remaining(), 30))
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": (proc.stderr or proc.stdout)[-600:]}


def part_precisions(device, shape: dict, result: dict, budget: Budget) -> list[dict]:
    ceiling = (result.get("ceiling") or {}).get("tflops")
    rows = result["precisions"] = []
    plans = [("fcn", "fp32", False), ("fcn", "fp16", False), ("deeplabv3", "bf16", False),
             ("deeplabv3", "bf16", True), ("deeplabv3", "fp16", False), ("deeplabv3", "fp32", False)]
    for model, dtype, compiled in plans:
        sh = {**shape, "model": model, "dtype": dtype}
        data = synthetic_batch(sh["batch"], sh["size"], sh["num_classes"], device)
        flops = result.setdefault("flops", {}).get(model)
        if flops is None and budget.left():
            flops = result["flops"][model] = train_flops_per_image(sh, device)
        for runner in ("plain", "segkit"):
            if not budget.left():
                rows.append({"runner": runner, "model": model, "dtype": dtype, "skipped": "time budget"})
                continue
            cfg = {"dtype": dtype, "channels_last": True, "compile": compiled, "benchmark": True}
            measure = measure_segkit if runner == "segkit" else measure_plain
            try:
                rows.append(config_row(runner, cfg, sh, measure(cfg, data, sh, device), ceiling,
                                       flops))
            except Exception as exc:  # noqa: BLE001
                rows.append({"runner": runner, "model": model, **cfg, "error": f"{type(exc).__name__}: {exc}"[:400]})
                release(device)
            budget.save()
    return rows


def ratios(rows: list[dict]) -> dict:
    """segkit img/s over the plain loop's, per (model, dtype, settings), and over the plain best of that dtype."""
    out = {}
    ok = [r for r in rows if "imgs_per_s" in r]
    for r in ok:
        if r["runner"] != "segkit":
            continue
        twin = next((p for p in ok if p["runner"] == "plain" and all(p[k] == r[k] for k in
                                                                     ("model", "dtype", "channels_last", "compile"))),
                    None)
        key = f"{r['model']}/{r['dtype']}/{'cl' if r['channels_last'] else 'nchw'}{'+compile' if r['compile'] else ''}"
        best = max((p["imgs_per_s"] for p in ok if p["runner"] == "plain" and p["model"] == r["model"]
                    and p["dtype"] == r["dtype"]), default=None)
        out[key] = {"segkit_imgs_per_s": r["imgs_per_s"],
                    "vs_plain_same_settings": round(r["imgs_per_s"] / twin["imgs_per_s"], 3) if twin else None,
                    "vs_plain_best": round(r["imgs_per_s"] / best, 3) if best else None}
    return out


def run(parts: tuple[str, ...] = PARTS, out: Path | None = None, budget_s: float | None = None,
        quick: bool = False, device_name: str | None = None) -> dict:
    import torch

    if device_name is None and not torch.cuda.is_available():
        return {"benchmark": "gpu_train_step", "summary": {"status": "no CUDA: nothing measured; run "
                                                             "benchmarks/gpu/device_run.sh on a CUDA machine"}}
    global COMPILE_BACKEND
    device = torch.device(device_name or "cuda")
    if quick and device.type != "cuda":
        COMPILE_BACKEND = "aot_eager"
    result: dict = json.loads(out.read_text()) if out is not None and out.exists() else {}
    result.setdefault("benchmark", "gpu_train_step")
    result["machine"] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()
                         if device.type == "cuda" else None,
                         "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                         "total_memory_gib": gib(torch.cuda.get_device_properties(device).total_memory)
                         if device.type == "cuda" else None}
    budget = Budget(budget_s, result, out, finalize=finalize)
    shape = {"model": "fcn", "dtype": "bf16", "batch": 2 if quick else 16, "size": 64 if quick else 512,
             "num_classes": 150, "warmup": 2 if quick else 3, "steps": 2 if quick else 10, "repeats": 2 if quick else 3}
    result["setup"] = {k: shape[k] for k in ("batch", "size", "num_classes", "warmup", "steps", "repeats")}
    for part in parts:  # in the order asked for
        if not budget.left():
            result.setdefault("skipped_parts", []).append(part)
            continue
        try:
            run_part(part, device, shape, result, budget, quick)
        except Exception as exc:  # noqa: BLE001  (one failing part must not hide the others)
            result[part] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
            release(device)
        budget.save()
    budget.save()
    return result


def finalize(result: dict) -> None:
    """Ratios and summary from the rows measured so far."""
    result["ratios"] = ratios([*result.get("core", []), *result.get("precisions", [])])
    result["summary"] = summarize(result)


def run_part(part: str, device, shape: dict, result: dict, budget: Budget, quick: bool) -> None:
    if part == "ceiling":
        result["ceiling"] = part_ceiling(device, quick)
    elif part == "core":
        part_core(device, shape, result, budget)
        budget.save()
        if budget.left():
            result["criterion"] = criterion_share(device, shape)
    elif part == "fp32mem":
        part_fp32mem(device, {**shape, "dtype": "fp32"}, result, budget)
    elif part == "precisions":
        part_precisions(device, shape, result, budget)
    elif part == "input":
        result["input"] = part_input(device, shape)
    elif part == "mask2former":
        from gpu.mask2former_gpu import run_mask2former

        result["mask2former"] = run_mask2former(device, quick=quick)


def summarize(result: dict) -> dict:
    core = {f"{r['runner']}/{'cl' if r.get('channels_last') else 'nchw'}{'+compile' if r.get('compile') else ''}":
            r.get("imgs_per_s") for r in result.get("core", []) if "imgs_per_s" in r}
    summary = {"bf16_ceiling_tflops": (result.get("ceiling") or {}).get("tflops"), "fcn_bf16_imgs_per_s": core}
    best_plain = max((v for k, v in core.items() if k.startswith("plain")), default=None)
    best_segkit = max((v for k, v in core.items() if k.startswith("segkit")), default=None)
    if best_plain and best_segkit:
        summary["fcn_bf16_segkit_best_over_plain_best"] = round(best_segkit / best_plain, 3)
    mem = result.get("fp32mem") or {}
    summary["fp32_first_step_peak_gib"] = {k: v.get("first_step_peak_allocated_gib") for k, v in mem.items()
                                           if isinstance(v, dict) and "first_step_peak_allocated_gib" in v}
    summary["fp32_steady_peak_gib"] = {k: v.get("peak_allocated_gib") for k, v in mem.items()
                                       if isinstance(v, dict) and "peak_allocated_gib" in v}
    if "input" in result and "uint8_over_float32" in result["input"]:
        summary["input_uint8_over_float32"] = result["input"]["uint8_over_float32"]
    if "mask2former" in result and "summary" in result["mask2former"]:
        summary["mask2former"] = result["mask2former"]["summary"]
    return summary


def child_fp32(shape: dict) -> None:
    import torch

    device = torch.device("cuda")
    data = synthetic_batch(shape["batch"], shape["size"], shape["num_classes"], device)
    res = measure_segkit({"dtype": "fp32", "channels_last": False, "compile": False, "benchmark": True}, data,
                         shape, device)
    res["CUDNN_CONV_WSCAP_DBG"] = os.environ.get("CUDNN_CONV_WSCAP_DBG")
    print(json.dumps(res))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    parser.add_argument("--budget-s", type=float, default=None, help="start no new measurement after this")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a dry run of every code path)")
    parser.add_argument("--device", default=None, help="force a device (e.g. cpu for --quick dry runs)")
    parser.add_argument("--child-fp32", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fp32:
        child_fp32(json.loads(args.child_fp32))
        return
    parts = tuple(p for p in args.parts.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    result = run(parts, args.out, args.budget_s, args.quick, args.device)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
