"""GPU speed settings, checked on the CPU: channels_last changes the layout and not the loss, torch.compile (in
place) keeps checkpoint keys plain in both directions of a resume, export sees the eager module, EMA follows
SSSegmentation's formula on the model's device, SyncBatchNorm goes where the recipe asks, and the deterministic
replacements of the CUDA ops without a deterministic kernel equal the native ops in value and gradient.

torch.compile runs with ``backend="aot_eager"`` (Dynamo capture + AOTAutograd's joint graph: the parts that wrap,
rename and differentiate) because Inductor's code generation takes about a minute per graph on the shared 2-core
CPU box; Inductor itself is exercised on CUDA by benchmarks/bench_gpu.py (segkit's compiled training step). On a
CUDA machine these tests run on the GPU (TF32 convolutions off where values are compared)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit import api
from segkit.engine.accel import strip_compile_prefix, uncompiled, unwrap_model
from segkit.engine.checkpoint import load_model_weights
from segkit.engine.determinism import DeterministicOps
from segkit.engine.distributed import DistContext, convert_sync_batchnorm, sync_batchnorm_plan
from segkit.engine.ema import ModelEMA, ema_device
from segkit.engine.trainer import Trainer
from segkit.recipe import load_recipe

COMPILE = ["compile_cfg.enabled=true", 'compile_cfg.backend="aot_eager"']
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOL = {"rtol": 1e-5, "atol": 1e-6} if DEVICE.type == "cpu" else {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    """Comparisons of two float32 runs: no TF32 convolutions on CUDA (10-bit mantissas differ per algorithm)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def make_trainer(recipe_path, *overrides: str) -> Trainer:
    rec = load_recipe(recipe_path, ["seed=3", *overrides])
    return Trainer(rec, DistContext(device=DEVICE))


def first_batch(trainer: Trainer) -> dict:
    return next(iter(trainer.train_loader))


def seeded_step(trainer: Trainer, batch: dict) -> dict:
    """One training step from the same RNG state (the heads' dropout draws the same masks)."""
    torch.manual_seed(11)
    return trainer.train_step(batch)


# ---------------------------------------------------------------------------------------------- channels_last
def test_channels_last_step_gives_the_same_loss_and_update(tiny_recipe):
    plain, nhwc = make_trainer(tiny_recipe), make_trainer(tiny_recipe, "channels_last=true")
    conv = next(m for m in nhwc.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()  # really NHWC, not a 1x1 layout that is both
    seen = []
    hook = nhwc.model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    batch = first_batch(plain)
    a, b = seeded_step(plain, batch), seeded_step(nhwc, batch)
    hook.remove()
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOL)
    for (name, p), q in zip(plain.model.state_dict().items(), nhwc.model.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------- torch.compile
def test_compiled_training_saves_plain_keys_and_resumes_both_ways(tiny_recipe, tmp_path):
    compiled_run, plain_run = tmp_path / "compiled", tmp_path / "plain"
    api.train(tiny_recipe, ["scheduler.max_epochs=1", *COMPILE], work_dir=str(compiled_run))
    reference = make_trainer(tiny_recipe).model.state_dict()
    state = torch.load(compiled_run / "checkpoints" / "last.pt", weights_only=True)
    assert list(state["model"]) == list(reference)  # no _orig_mod. anywhere, same order
    assert all(v.device.type == "cpu" for v in state["model"].values())

    # compiled run -> resumed without compile; and a plain run -> resumed compiled
    api.train(tiny_recipe, ["scheduler.max_epochs=2"], work_dir=str(compiled_run), resume="auto")
    api.train(tiny_recipe, ["scheduler.max_epochs=1"], work_dir=str(plain_run))
    metrics = api.train(tiny_recipe, ["scheduler.max_epochs=2", *COMPILE], work_dir=str(plain_run), resume="auto")
    assert 0.0 <= metrics["mIoU"] <= 1.0
    for run in (compiled_run, plain_run):
        last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        assert last["epoch"] == 2 and list(last["model"]) == list(reference)


def test_compiled_model_loads_wrapper_checkpoints_and_exports_eagerly(tiny_recipe, tmp_path):
    trainer = make_trainer(tiny_recipe, *COMPILE)
    model = trainer.model
    assert model._compiled_call_impl is not None and "_orig_mod" not in "".join(model.state_dict())
    # a checkpoint written from a torch.compile(model) wrapper has _orig_mod. keys; it loads into both kinds
    donor = make_trainer(tiny_recipe, "seed=9").model
    wrapped = torch.compile(donor, backend="eager")
    foreign = wrapped.state_dict()
    assert all(k.startswith("_orig_mod.") for k in foreign)
    load_model_weights(model, foreign, tmp_path / "foreign.pt")
    load_model_weights(wrapped, foreign, tmp_path / "foreign.pt")
    for key, value in donor.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    assert unwrap_model(wrapped) is donor
    assert strip_compile_prefix({"head._orig_mod.w": 1, "b": 2}) == {"head.w": 1, "b": 2}

    eager = uncompiled(model)
    assert eager._compiled_call_impl is None and model._compiled_call_impl is not None
    assert eager.head is model.head  # parameters shared, nothing copied
    from segkit.export import export_model

    report = export_model(model.cpu(), tmp_path / "model.ts", format="torchscript", input_shape=(1, 3, 48, 48))
    assert report["passed"]


# ---------------------------------------------------------------------------------------------- EMA
def test_ema_follows_ssseg_formula_on_the_model_device():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    momentum = 0.25
    ema = ModelEMA(model, momentum)  # device "" -> the model's device
    assert ema.device == next(model.parameters()).device
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 8, 8))  # moves the BN running stats and num_batches_tracked
        ema.update(model)
        for key, value in model.state_dict().items():
            if value.is_floating_point():  # SSSeg: ema * (1 - momentum) + momentum * current
                expected[key] = expected[key] * (1 - momentum) + momentum * value
            else:
                expected[key] = value.clone()
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-6, msg=key)
    assert ema.state_dict()["1.num_batches_tracked"].item() == 3
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_device_option():
    model = nn.Linear(2, 2)
    assert ema_device(model, "") == torch.device("cpu")
    assert ema_device(model, "cpu") == torch.device("cpu")
    assert ema_device(model, "cuda:1") == torch.device("cuda:1")  # an explicit device is kept (not created here)
    with pytest.raises(ValueError, match="momentum"):
        ModelEMA(model, 0.0)


# ---------------------------------------------------------------------------------------------- SyncBatchNorm
def _bn_count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("top,backbone,head,converted", [
    ("SyncBatchNorm", None, None, {"backbone", "head", "aux_heads"}),
    ("BatchNorm2d", "SyncBatchNorm", None, {"backbone"}),
    ("BatchNorm2d", None, "SyncBatchNorm", {"head"}),
    ("SyncBatchNorm", "BatchNorm2d", None, {"head", "aux_heads"}),
])
def test_sync_batchnorm_goes_where_the_recipe_asks(tiny_recipe, top, backbone, head, converted):
    sets = [f'norm_cfg={{type="{top}"}}']
    if backbone:
        sets.append(f'backbone.norm_cfg={{type="{backbone}"}}')
    if head:
        sets.append(f'head.norm_cfg={{type="{head}"}}')
    rec = load_recipe(tiny_recipe, sets)
    model = api.build_model(rec, pretrained=False)
    before = {name: _bn_count(getattr(model, name), nn.BatchNorm2d) for name in ("backbone", "head", "aux_heads")}
    plan = sync_batchnorm_plan(rec)
    n = convert_sync_batchnorm(model, plan)
    assert n == sum(before[name] for name in converted) > 0
    for name in ("backbone", "head", "aux_heads"):
        synced = _bn_count(getattr(model, name), nn.SyncBatchNorm)
        assert synced == (before[name] if name in converted else 0), name


# ---------------------------------------------------------------------------------------------- --deterministic
def _compare(fn, x: torch.Tensor):
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = fn(x1)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    mode = DeterministicOps(devices=("cpu",))
    with mode:
        out = fn(x2)
    out.backward(grad)
    assert mode.replaced, "the replacement did not run"
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("kwargs", [{"size": (48, 40)}, {"size": (5, 7)}, {"scale_factor": 2.5},
                                    {"scale_factor": (0.5, 1.7), "recompute_scale_factor": True},
                                    {"scale_factor": 3}])
def test_deterministic_bilinear_resize_equals_interpolate(align_corners, kwargs):
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    _compare(lambda t: F.interpolate(t, mode="bilinear", align_corners=align_corners, **kwargs), x)


@pytest.mark.parametrize("size", [1, 2, 3, 6, (4, None), (5, 9)])
def test_deterministic_adaptive_avg_pool_equals_native(size):
    _compare(lambda t: F.adaptive_avg_pool2d(t, size), torch.randn(2, 3, 13, 17, dtype=torch.float64))
    _compare(lambda t: nn.AdaptiveAvgPool2d(size)(t), torch.randn(2, 3, 13, 17, dtype=torch.float64))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_deterministic_reduced_cross_entropy_equals_native(weighted, reduction):
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 13, 17))
    target[0, :4] = 255
    weight = torch.rand(3, dtype=torch.float64) if weighted else None
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    _compare(lambda t: F.cross_entropy(t, target, weight=weight, ignore_index=255, reduction=reduction), x)
    _compare(lambda t: F.nll_loss(F.log_softmax(t, 1), target, weight=weight, ignore_index=255,
                                  reduction=reduction), x)


def test_deterministic_ops_leave_other_calls_alone():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    mode = DeterministicOps(devices=("cpu",))
    with mode:
        F.interpolate(x, size=(9, 9), mode="nearest")
        F.interpolate(x.detach(), size=(9, 9), mode="bilinear")  # no gradient: the native kernel is deterministic
        F.cross_entropy(x[:, :, 0, 0], torch.tensor([1]))  # [N, C] rows: no atomics in torch's kernel
    assert mode.replaced == {}
    with DeterministicOps():  # the default applies on CUDA only
        F.interpolate(x, size=(9, 9), mode="bilinear")


def test_trainer_uses_the_deterministic_ops_in_its_step(tiny_recipe, monkeypatch):
    import segkit.engine.trainer as trainer_module

    modes = []

    class OnCpu(DeterministicOps):
        def __init__(self):
            super().__init__(devices=(DEVICE.type,))
            modes.append(self)

    plain, det = make_trainer(tiny_recipe), make_trainer(tiny_recipe)
    monkeypatch.setattr(trainer_module, "DeterministicOps", OnCpu)
    det.deterministic_ops = True
    batch = first_batch(plain)
    a, b = seeded_step(plain, batch), seeded_step(det, batch)
    assert modes and modes[0].replaced.get("interpolate", 0) >= 1  # the criterion's logit resize at least
    for key in a:
        torch.testing.assert_close(b[key], a[key], **TOL)


# ---------------------------------------------------------------------------------------------- CLI flags
def test_train_flags_set_the_recipe_keys(tiny_recipe, capsys):
    from segkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tiny_recipe), "--channels-last", "--compile", "max-autotune", "--print-recipe"])
    assert exit_info.value.code == 0
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["channels_last"] is True
    assert printed["compile_cfg"]["enabled"] is True and printed["compile_cfg"]["mode"] == "max-autotune"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tiny_recipe), "--compile", "fastest", "--print-recipe"])
    assert exit_info.value.code == 2
    assert "compile_cfg.mode" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the GPU benchmark
def load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_says_no_cuda_and_tabulates_ratios(monkeypatch, tmp_path):
    bench = load_bench()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA" in bench.run()["summary"]["status"]
    row = {"model": "fcn", "dtype": "bf16", "channels_last": True, "compile": True, "step_s": 0.05, "blocks_s": [0.05],
           "first_step_s": 30.0, "peak_allocated_gib": 9.0, "peak_reserved_gib": 10.0}
    result = {"core": [{**row, "runner": "plain", "imgs_per_s": 320.0},
                       {**row, "runner": "segkit", "imgs_per_s": 304.0},
                       {**row, "runner": "plain", "compile": False, "imgs_per_s": 260.0}]}
    bench.finalize(result)
    assert result["ratios"]["fcn/bf16/cl+compile"] == {"segkit_imgs_per_s": 304.0, "vs_plain_same_settings": 0.95,
                                                      "vs_plain_best": 0.95}
    assert result["summary"]["fcn_bf16_segkit_best_over_plain_best"] == 0.95
    from gpu.common import write_outputs

    write_outputs(result, tmp_path / "gpu.json")
    assert "| segkit | fcn | bf16 | True | True | 304.0 | 50.0 |" in (tmp_path / "gpu.md").read_text()


# ---------------------------------------------------------------------------------------------- the loss's fast path
@pytest.mark.parametrize("kwargs", [{}, {"class_weight": [0.5, 1.0, 2.0, 0.25]}, {"label_smoothing": 0.1},
                                    {"class_weight": [0.5, 1.0, 2.0, 0.25], "norm_loss_with_class_weight": False},
                                    {"reduction": "sum"}, {"reduction": "none"}, {"ignore_index": 255}])
def test_cross_entropy_without_rows_equals_the_row_path(kwargs):
    """Index targets skip the one-hot [pixels, C] rows (gigabytes at 150 classes, 16 x 512 x 512): same values and
    gradients as the general row path, with ignored pixels, labels equal to C (no class) and all-ignored batches."""
    from segkit.models.losses._common import to_class_rows
    from segkit.models.losses.cross_entropy import CrossEntropyLoss

    loss = CrossEntropyLoss(**kwargs)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 7, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 6, 7), generator=g)
    target[0, 0] = loss.ignore_index
    target[1, :2] = 4  # a pixel of no class (SSSegmentation one-hots into C + 1 columns and keeps C)
    for t in (target, torch.full_like(target, loss.ignore_index)):
        x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        fast = loss(x1, t)
        rows = to_class_rows(x2, t, loss.ignore_index, index_target=True)
        slow = loss._softmax_loss(rows, rows.class_weight(loss.class_weight))
        torch.testing.assert_close(fast, slow)
        fast.sum().backward()
        slow.sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)
    with pytest.raises(RuntimeError, match="labels must be in"):
        loss(logits, torch.full_like(target, 7))
