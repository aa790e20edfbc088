"""The recipe schema: SSSegmentation's ``SEGMENTOR_CFG`` as pydantic models, with its names and defaults.

Fixed tables (``inference``, ``scheduler``, ``dataloader``, ``fp16_cfg`` ...) are strict models: an unknown key is
an error. Component tables (``backbone``, ``head``, ``auxiliary``, ``losses``, pipeline entries, dataset
arguments, optimizer arguments) are plain dicts here and are checked against the registered component's
signature by :mod:`segkit.registry` before anything is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator


class Strict(BaseModel):
    """A recipe table whose keys are fixed."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Open(BaseModel):
    """A recipe table with fixed keys plus free keys passed on to a registered component."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)


class ForwardCfg(Strict):
    mode: Literal["whole", "slide"] = "whole"
    cropsize: tuple[PositiveInt, PositiveInt] | None = None
    stride: tuple[PositiveInt, PositiveInt] | None = None
    window_batch: PositiveInt = 1
    """segkit's own: slide windows that go through the model together (memory grows with it)."""


class TTACfg(Strict):
    multiscale: list[PositiveFloat] = Field(default_factory=lambda: [1.0], min_length=1)
    flip: bool = False
    use_probs_before_resize: bool = False
    fixed_seg_target_pairs: list[tuple[int, int]] | None = None


class EvaluateCfg(Strict):
    metric_list: list[str] = Field(default_factory=lambda: ["iou", "miou"])


class InferenceCfg(Strict):
    forward: ForwardCfg = Field(default_factory=ForwardCfg)
    tta: TTACfg = Field(default_factory=TTACfg)
    evaluate: EvaluateCfg = Field(default_factory=EvaluateCfg)


class WarmupCfg(Strict):
    type: Literal["constant", "linear", "exp"] = "linear"
    ratio: float = Field(0.1, ge=0, le=1)
    iters: int = Field(0, ge=0)


class ClipGradCfg(Strict):
    max_norm: float = Field(35.0, gt=0)
    norm_type: float = Field(2.0, gt=0)


class OptimizerCfg(Open):
    """``type`` names a torch optimizer; other keys (momentum, weight_decay, betas...) go to its constructor."""

    type: str = "SGD"
    lr: float = Field(0.01, gt=0)
    params_rules: dict[str, Any] = Field(default_factory=dict)
    filter_params: bool = False
    base_setting: dict[str, float] = Field(default_factory=dict)


class SchedulerCfg(Strict):
    type: str = "PolyScheduler"
    max_epochs: int = Field(0, ge=0, le=10**7)  # 0 in the segmentor bases: training refuses it (engine/guards)
    power: float = Field(0.9, ge=0)
    min_lr: float | None = Field(None, ge=0)
    by_epoch: bool = True
    warmup_cfg: WarmupCfg | None = None
    clipgrad_cfg: ClipGradCfg | None = None
    optimizer: OptimizerCfg = Field(default_factory=OptimizerCfg)


class DatasetCfg(Open):
    """``train``/``test`` are merged into the top level for their mode, as SSSegmentation's builder does."""

    type: str
    rootdir: str
    train: dict[str, Any] = Field(default_factory=dict)
    test: dict[str, Any] = Field(default_factory=dict)


class LoaderSplitCfg(Strict):
    batch_size_per_gpu: int = Field(1, ge=1)
    num_workers_per_gpu: int = Field(2, ge=0)
    shuffle: bool = False
    pin_memory: bool = True
    drop_last: bool = False


class DataloaderCfg(Strict):
    expected_total_train_bs_for_assert: int = Field(16, ge=1)
    auto_adapt_to_expected_train_bs: bool = True
    train: LoaderSplitCfg = Field(
        default_factory=lambda: LoaderSplitCfg(batch_size_per_gpu=2, shuffle=True, drop_last=True)
    )
    test: LoaderSplitCfg = Field(default_factory=LoaderSplitCfg)


class Fp16Cfg(Strict):
    """Mixed precision. ``type = "pytorch"`` uses torch.autocast + GradScaler; ``None`` is full precision."""

    type: Literal["pytorch", "apex"] | None = None
    autocast: dict[str, Any] = Field(default_factory=dict)
    grad_scaler: dict[str, Any] = Field(default_factory=dict)


class EmaCfg(Strict):
    """SSSegmentation's ``ema_cfg``: ``ema = ema * (1 - momentum) + momentum * model`` after every step.

    ``device = ""`` (segkit's default) keeps the average on the model's device (no copy to the host per step);
    ``"cpu"`` (SSSegmentation's default) keeps it in host memory."""

    momentum: float | None = Field(None, gt=0, le=1)
    device: str = ""


class RuntimeCfg(Strict):
    """segkit's own ``runtime``: torch threads and DataLoader workers of each process (unset: chosen to fit the
    CPUs), and whether freed memory is kept for reuse (see :mod:`segkit.engine.threads`)."""

    num_threads: int | None = Field(None, ge=1, le=4096)
    num_workers: int | None = Field(None, ge=0, le=4096)
    retain_freed_memory: bool = True


class CompileCfg(Strict):
    """segkit's own ``compile_cfg``: ``torch.compile`` of the segmentor, in place (checkpoints keep plain keys).

    Off by default; ``mode`` is ``torch.compile``'s; ``options`` (Inductor options) replaces ``mode``."""

    enabled: bool = False
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    dynamic: bool | None = None
    fullgraph: bool = False
    backend: str = "inductor"
    options: dict[str, Any] = Field(default_factory=dict)


class LoggerHandleCfg(Strict):
    type: str = "LocalLoggerHandle"
    logfilepath: str = ""


class TrainingLoggingCfg(Strict):
    log_interval_iters: int | None = Field(50, ge=1)
    log_interval_epochs: int | None = Field(None, ge=1)


class Recipe(Strict):
    """A whole training recipe (SSSegmentation's ``SEGMENTOR_CFG``), plus segkit's ``seed``/``deterministic``."""

    type: str
    num_classes: int = Field(..., ge=1, le=65536)  # label maps are at most 16-bit
    benchmark: bool = True
    align_corners: bool = False
    work_dir: str = "runs/default"
    eval_interval_epochs: int = Field(10, ge=1)
    save_interval_epochs: int | None = Field(None, ge=1)
    """``checkpoints/epoch_N.pt`` every N epochs (and at the last); unset: only ``last.pt`` and ``best.pt``."""
    max_keep_ckpts: int | None = Field(None, ge=1)
    """Keep only the newest N ``epoch_N.pt`` (MMSegmentation's name); unset: keep them all."""
    save_interval_iters: int | None = Field(None, ge=1)
    """segkit addition: also rewrite ``last.pt`` (full state) every N iterations, so a long epoch can be resumed
    from the middle; unset: ``last.pt`` only at the end of each epoch."""
    logger_handle_cfg: LoggerHandleCfg = Field(default_factory=LoggerHandleCfg)
    training_logging_manager_cfg: TrainingLoggingCfg = Field(default_factory=TrainingLoggingCfg)
    norm_cfg: dict[str, Any] | None = Field(default_factory=lambda: {"type": "SyncBatchNorm"})
    act_cfg: dict[str, Any] | None = Field(default_factory=lambda: {"type": "ReLU", "inplace": True})
    backbone: dict[str, Any]
    neck: dict[str, Any] | None = None
    head: dict[str, Any] = Field(default_factory=dict)
    auxiliary: dict[str, Any] | list[dict[str, Any]] | None = None
    losses: dict[str, dict[str, Any] | list[dict[str, Any]]] = Field(default_factory=dict)
    criterion: dict[str, Any] | None = None
    inference: InferenceCfg = Field(default_factory=InferenceCfg)
    scheduler: SchedulerCfg = Field(default_factory=SchedulerCfg)
    dataset: DatasetCfg
    dataloader: DataloaderCfg = Field(default_factory=DataloaderCfg)
    fp16_cfg: Fp16Cfg = Field(default_factory=Fp16Cfg)
    ema_cfg: EmaCfg = Field(default_factory=EmaCfg)
    is_freeze_norm: bool = False
    init_process_group_cfg: dict[str, Any] = Field(default_factory=dict)
    build_dist_model_cfg: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, lt=2**63)
    deterministic: bool = False
    channels_last: bool = False
    normalize_on_device: Literal["auto", True, False] = "auto"
    """Training images leave the loader workers as ``uint8`` and are normalised on the device ("auto": on CUDA)."""
    compile_cfg: CompileCfg = Field(default_factory=CompileCfg)
    runtime: RuntimeCfg = Field(default_factory=RuntimeCfg)
    report_to: list[str] | None = None
    """Experiment trackers: tensorboard, wandb, mlflow; ``None`` = TensorBoard when installed, ``[]`` = none."""
    vis_samples: int = Field(4, ge=0)
    """Validation samples drawn (image | ground truth | prediction) at each evaluation; 0 = none."""

    @field_validator("norm_cfg", "act_cfg", mode="before")
    @classmethod
    def _none_string(cls, value: Any) -> Any:
        """TOML has no null: ``norm_cfg = "none"`` means no norm layer."""
        return None if isinstance(value, str) and value.lower() == "none" else value

    @property
    def name(self) -> str:
        """The run's name: the last part of ``work_dir``."""
        return self.work_dir.rstrip("/").split("/")[-1]
