"""The training loop: one readable ``fit`` plus the callbacks of :mod:`segkit.engine.callbacks`."""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..data.datasets.build import build_dataset
from ..data.loader import build_dataloader, remaining_batches, set_epoch
from ..evaluation.metrics import ConfusionMatrix
from ..models.build import build_criterion, build_segmentor
from ..recipe.schema import Recipe
from ..recipe.toml_write import recipe_to_toml
from .accel import (
    batch_to_device,
    compile_in_place,
    describe,
    strip_compile_prefix,
    to_channels_last,
    unwrap_model,
)
from .amp import Amp
from .callbacks import Callback, Checkpointer, ProgressDisplay, RunLog, reported_metrics, write_json
from .checkpoint import load_checkpoint, load_model_weights
from .determinism import DeterministicOps
from .distributed import DistContext, all_reduce_mean, barrier, convert_sync_batchnorm, sync_batchnorm_plan
from .ema import ModelEMA
from .evaluator import evaluate, inference_kwargs
from .optim import build_optimizer, build_scheduler
from .threads import configure_cpu

TARGET_KEYS: tuple[str, ...] = ("seg_target", "edge_target")
"""Batch keys the criterion (and segmentors that declare ``uses_targets``) receive."""


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def host_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict's tensors on the host: checkpoints hold device-independent weights (loadable anywhere, and
    comparable with each other whatever device trained them)."""
    return {key: value.detach().cpu() for key, value in state.items()}


class Trainer:
    """Builds everything a recipe describes and trains it for ``scheduler.max_epochs`` epochs."""

    def __init__(self, recipe: Recipe, ctx: DistContext, console: Console | None = None,
                 resume: str | Path | None = None) -> None:
        self.recipe, self.ctx = recipe, ctx
        self.console = console or Console()
        self.work_dir = Path(recipe.work_dir)
        seed_everything(recipe.seed, recipe.deterministic)
        self.cpu_plan = configure_cpu(recipe)  # torch threads + loader workers within this process's CPUs
        torch.backends.cudnn.benchmark = recipe.benchmark and not recipe.deterministic
        self._build_data()
        self._build_model()
        self.epoch, self.iteration, self.best_miou = 1, 0, -1.0
        self.resume_skip = 0  # iterations of the first epoch already done (a checkpoint from inside an epoch)
        self.resumed: str | None = None  # "resumed from <checkpoint> at epoch ..." when resuming
        self.metrics: dict = {}
        self.last_eval_epoch = 0
        self.max_epochs = recipe.scheduler.max_epochs
        self.max_iters = self.max_epochs * len(self.train_loader)
        self.callbacks: list[Callback] = []
        if resume is not None:
            self._resume(Path(resume))

    # ------------------------------------------------------------------ building
    def _build_data(self) -> None:
        r, ctx = self.recipe, self.ctx
        cfg = r.dataset.model_dump()
        if not ctx.is_main:
            barrier()  # rank 0 first: it may write data on first use (the synthetic dataset)
        self.train_set = build_dataset(cfg, mode="TRAIN", seed=r.seed)
        self.device_normalize = None  # a DeviceNormalize when the workers leave Normalize to the device
        if r.normalize_on_device is True or (r.normalize_on_device == "auto" and ctx.device.type == "cuda"):
            defer = getattr(getattr(self.train_set, "pipeline", None), "defer_normalization", None)
            self.device_normalize = defer() if defer is not None else None
        self.val_set = build_dataset(cfg, mode="TEST", seed=r.seed)
        if ctx.is_main:
            barrier()
        dl = r.dataloader
        self.train_loader = build_dataloader(
            self.train_set, dl.train.model_dump(), mode="TRAIN", world_size=ctx.world_size, rank=ctx.rank,
            seed=r.seed, expected_total_train_bs=dl.expected_total_train_bs_for_assert,
            auto_adapt=dl.auto_adapt_to_expected_train_bs, num_workers=self.cpu_plan.workers)
        self.val_loader = build_dataloader(self.val_set, dl.test.model_dump(), mode="TEST",
                                           world_size=ctx.world_size, rank=ctx.rank, seed=r.seed,
                                           num_workers=self.cpu_plan.workers_for(dl.test.num_workers_per_gpu))

    def _build_model(self) -> None:
        r, ctx = self.recipe, self.ctx
        if not ctx.is_main:
            barrier()  # rank 0 first: it may download pretrained weights into the shared cache
        model = build_segmentor(r)
        if ctx.is_main:
            barrier()
        plan = sync_batchnorm_plan(r)
        if ctx.distributed and any(plan.values()):
            if ctx.device.type == "cuda":
                convert_sync_batchnorm(model, plan)
            elif ctx.is_main:
                self.console.print("note: SyncBatchNorm needs CUDA; CPU processes use per-process BatchNorm")
        self.model = model.to(ctx.device)
        if r.channels_last:
            to_channels_last(self.model)
        self.criterion = build_criterion(r, self.model).to(ctx.device)
        self.optimizer = build_optimizer(self.model, r.scheduler.optimizer)
        self.scheduler = build_scheduler(self.optimizer, r.scheduler, len(self.train_loader))
        self.amp = Amp(r.fp16_cfg, ctx.device)
        self.ema = ModelEMA(self.model, r.ema_cfg.momentum, r.ema_cfg.device) if r.ema_cfg.momentum else None
        self.deterministic_ops = r.deterministic and ctx.device.type == "cuda"
        if r.compile_cfg.enabled:
            if self.deterministic_ops and ctx.is_main:
                self.console.print("note: compile_cfg is not applied with --deterministic on CUDA (segkit's "
                                   "deterministic resize and loss run eagerly)")
            else:  # in place, after the EMA copy: the state dict keeps its plain keys
                compile_in_place(self.model, r.compile_cfg)
        self._released_warmup_cache = False
        self.ddp = self.model
        if ctx.distributed:
            self.model.reduce_mean = all_reduce_mean  # stateful segmentors average their statistics in forward
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, **r.build_dist_model_cfg)

    def summary(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        return (f"{self.recipe.type}/{self.recipe.backbone.get('type')} {params / 1e6:.2f}M params, "
                f"train {len(self.train_set)} / val {len(self.val_set)} images, "
                f"batch {self.train_loader.batch_size} x {self.ctx.world_size} proc, device {self.ctx.device}, "
                f"{describe(self.recipe, self.ctx.device)} normalize={self.normalizes_on}")

    @property
    def normalizes_on(self) -> str:
        """Where training images are normalised: ``"device"`` (``normalize_on_device``) or ``"workers"``."""
        return "device" if self.device_normalize is not None else "workers"

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        state = {"model": host_copy(unwrap_model(self.model).state_dict()), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.amp.scaler.state_dict(), "epoch": self.epoch, "iteration": self.iteration,
                 "best_miou": self.best_miou, "rng": rng_state(), "recipe": recipe_to_toml(self.recipe)}
        if self.ema is not None:
            state["ema"] = host_copy(self.ema.state_dict())
        return state

    def _resume(self, path: Path) -> None:
        # on the host: RNG states must stay CPU tensors; weights and optimizer state move to their parameters
        state = load_checkpoint(path, map_location="cpu")
        load_model_weights(unwrap_model(self.model), strip_compile_prefix(state["model"]), path)
        for key in ("optimizer", "epoch", "iteration"):
            if key not in state:
                from ..errors import CheckpointError

                raise CheckpointError(f"{path} holds weights only (no '{key}'); it cannot resume training")
        self.optimizer.load_state_dict(state["optimizer"])
        self.amp.scaler.load_state_dict(state.get("scaler", {}))
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.iteration = state["epoch"] + 1, state["iteration"]
        self.resume_skip = int(state.get("epoch_iter", 0))  # save_interval_iters: inside epoch `self.epoch`
        self.best_miou = state.get("best_miou", -1.0)
        if "rng" in state:
            set_rng_state(state["rng"])
        where = f" + {self.resume_skip} iterations of epoch {self.epoch}" if self.resume_skip else ""
        self.resumed = f"resumed from {path} at epoch {state['epoch']}{where} (iteration {self.iteration})"
        self.console.print(self.resumed)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            self._fit_epochs()
        except KeyboardInterrupt:
            for cb in self.callbacks:
                cb.on_interrupt(self)
            raise
        selected = reported_metrics(self)  # inference.evaluate.metric_list; self.metrics keeps every metric
        if self.ctx.is_main and selected:
            write_json(self.work_dir / "eval" / "metrics.json", selected)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return selected

    def _fit_epochs(self) -> None:
        start_epoch = self.epoch
        interval_imgs, t0, t_start, it_start = 0, time.perf_counter(), time.perf_counter(), self.iteration
        cuda = self.ctx.device.type == "cuda"
        for epoch in range(start_epoch, self.max_epochs + 1):
            self.epoch = epoch
            set_epoch(self.train_loader, epoch)
            self.ddp.train()
            t_data = time.perf_counter()
            skip, self.resume_skip = self.resume_skip, 0  # only the first epoch of a resumed run skips
            for batch in remaining_batches(self.train_loader, skip) if skip else self.train_loader:
                data_time = time.perf_counter() - t_data
                losses = self.train_step(batch)
                interval_imgs += batch["image"].shape[0] * self.ctx.world_size
                if self.callbacks:
                    now = time.perf_counter()
                    rate = (self.iteration - it_start) / max(now - t_start, 1e-9)
                    logs = {"epoch": epoch, "iter": self.iteration, "lr": self.last_lr,
                            **dict(zip(losses, torch.stack(list(losses.values())).tolist(), strict=True)),
                            "imgs_per_s": interval_imgs / max(now - t0, 1e-9),
                            "eta_s": (self.max_iters - self.iteration) / max(rate, 1e-9), "data_time_s": data_time}
                    if cuda:
                        logs["gpu_mem_mib"] = torch.cuda.max_memory_allocated(self.ctx.device) / 2**20
                    interval_imgs, t0 = 0, now
                    for cb in self.callbacks:
                        cb.on_step_end(self, logs)
                t_data = time.perf_counter()
            if epoch % self.recipe.eval_interval_epochs == 0 or epoch == self.max_epochs:
                self.metrics = self.evaluate()
                self.last_eval_epoch = epoch
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch)
            barrier()

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One iteration: lr update, forward, loss, backward, step, EMA. Returns the loss terms (detached;
        rank 0 displays its own values, so no collective is needed for logging)."""
        device = self.ctx.device
        self.last_lr = self.scheduler.update_lr(self.iteration)
        if "image_levels" in batch:  # uint8 images the workers left for the device to normalise
            images = self.device_normalize(batch, device, self.recipe.channels_last)
        else:
            images = batch_to_device(batch["image"], device, self.recipe.channels_last)
        targets = {k: batch[k].to(device, non_blocking=True).long() for k in TARGET_KEYS if k in batch}
        model = self.model
        if model.uses_progress:
            model.set_progress(epoch=self.epoch, iteration=self.iteration, lr=self.last_lr,
                               max_epochs=self.max_epochs, max_iters=self.max_iters)
        self.optimizer.zero_grad(set_to_none=True)
        with self.amp.autocast(), DeterministicOps() if self.deterministic_ops else contextlib.nullcontext():
            outputs = self.ddp(images, targets) if model.uses_targets else self.ddp(images)
            terms = self.criterion(outputs, targets)
            total = torch.stack(list(terms.values())).sum()
        self.amp.backward_and_step(total, self.optimizer,
                                   clip=self.scheduler.clip_gradients if self.scheduler.clipgrad else None)
        if not self._released_warmup_cache and device.type == "cuda":
            # cudnn.benchmark tries every convolution algorithm on the first step, some with workspaces of
            # tens of GiB (see benchmarks/bench_gpu.py); give that cache back once the choices are made
            self._released_warmup_cache = True
            torch.cuda.empty_cache()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1
        return {**{k: v.detach().float() for k, v in terms.items()}, "loss_total": total.detach().float()}

    def evaluate(self, model: nn.Module | None = None) -> dict:
        """Evaluate on the val split; the confusion matrix stays in ``self.confusion`` (for the pictures)."""
        r = self.recipe
        self.confusion = ConfusionMatrix(r.num_classes, device=self.ctx.device)
        for cb in self.callbacks:
            cb.on_eval_start(self, len(self.val_loader.dataset))

        def on_batch(n: int) -> None:
            for cb in self.callbacks:
                cb.on_eval_batch(self, n * self.ctx.world_size)

        metrics = evaluate(model or self.model, self.val_loader, num_classes=r.num_classes,
                           classnames=getattr(self.val_set, "classnames", None), device=self.ctx.device,
                           infer_kwargs=inference_kwargs(r.inference, r.num_classes, r.align_corners),
                           autocast=self.amp.autocast, on_batch=on_batch, matrix=self.confusion)
        for cb in self.callbacks:
            cb.on_eval_end(self, metrics)
        return metrics


def default_callbacks(trainer: Trainer, console: Console) -> list[Callback]:
    """Rank 0 logs, draws and writes checkpoints; other ranks only train."""
    if not trainer.ctx.is_main:
        return []
    r = trainer.recipe
    interval = r.training_logging_manager_cfg.log_interval_iters or max(len(trainer.train_loader), 1)
    from .report import build_reporters

    return [RunLog(trainer.work_dir, interval), ProgressDisplay(console, interval),
            *build_reporters(trainer, console),
            Checkpointer(trainer.work_dir / "checkpoints", r.save_interval_epochs)]
