"""Distributed set-up from torchrun's environment, and re-launching a command under torchrun."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SegkitError

DEVICE_KIND_ENV = "SEGKIT_DEVICE_KIND"
"""Set by ``segkit train --nproc N`` (``cpu``) and ``--gpus N`` (``cuda``) for the processes it launches, which
do not see those options: ``--nproc`` means CPU processes (gloo) even on a machine with GPUs."""


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(init_process_group_cfg: dict | None = None, device: str | None = None) -> DistContext:
    """Read RANK/LOCAL_RANK/WORLD_SIZE (set by torchrun); init the process group when more than one process runs.

    The backend is NCCL on CUDA and gloo on CPU unless the recipe's ``init_process_group_cfg`` says otherwise.
    """
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    kind = device or os.environ.get(DEVICE_KIND_ENV)  # --nproc children: "cpu" even where GPUs are visible
    use_cuda = torch.cuda.is_available() and kind != "cpu"
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise SegkitError(f"process {local_rank} of this node has no GPU: {torch.cuda.device_count()} visible; "
                          "run at most that many GPU processes (--gpus), or CPU ones with --nproc")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        cfg = dict(init_process_group_cfg or {})
        cfg.setdefault("backend", "nccl" if use_cuda else "gloo")
        timeout = cfg.pop("timeout", 1800)
        dist.init_process_group(timeout=datetime.timedelta(seconds=float(timeout)), **cfg)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a new tensor; the input is unchanged). The engine hands this to
    segmentors as ``reduce_mean`` for statistics they keep (EMANet's bases, MCIBI's memory); not differentiable."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced)
    return reduced / dist.get_world_size()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Close the process group. Called from a ``finally`` block: an exception leaving it is first recorded for
    the launcher (:mod:`segkit.engine.rank_errors`), before closing makes the other processes fail too."""
    from .rank_errors import record_pending_error

    record_pending_error()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _is_sync(norm_cfg) -> bool:
    return isinstance(norm_cfg, dict) and norm_cfg.get("type") == "SyncBatchNorm"


def _nested_sync(table) -> bool:
    """Whether any ``norm_cfg`` / ``*_norm_cfg`` inside ``table`` (at any depth) names ``SyncBatchNorm``."""
    if isinstance(table, dict):
        return any((key == "norm_cfg" or key.endswith("_norm_cfg")) and _is_sync(value) or _nested_sync(value)
                   for key, value in table.items())
    if isinstance(table, list):
        return any(_nested_sync(item) for item in table)
    return False


def sync_batchnorm_plan(recipe) -> dict[str, bool]:
    """Which parts of the segmentor the recipe asks to synchronise: ``{"": top-level norm_cfg, "backbone": ...,
    "neck": ..., "head": ..., "aux_heads.<i>": ...}``.

    A component follows its own table's ``norm_cfg`` when it has one, else the top-level ``norm_cfg`` (as
    SSSegmentation injects it); a ``SyncBatchNorm`` anywhere inside a component's table (e.g. a nested
    ``fpn.norm_cfg``) also asks for it. Modules outside these tables follow the top-level ``norm_cfg``.
    """
    top = recipe.norm_cfg
    plan = {"": _is_sync(top)}
    for attr in ("backbone", "neck", "head"):
        table = getattr(recipe, attr)
        if isinstance(table, dict):
            plan[attr] = _is_sync(table.get("norm_cfg", top)) or _nested_sync(table)
    aux = recipe.auxiliary
    for i, table in enumerate([aux] if isinstance(aux, dict) else list(aux or [])):
        plan[f"aux_heads.{i}"] = _is_sync(table.get("norm_cfg", top)) or _nested_sync(table)
    return plan


def convert_sync_batchnorm(model: nn.Module, plan: dict[str, bool]) -> int:
    """Replace, in place, the BatchNorm layers of the parts ``plan`` marks (see :func:`sync_batchnorm_plan`) by
    :class:`torch.nn.SyncBatchNorm` (weights and statistics kept); returns how many were converted."""
    from torch.nn.modules.batchnorm import _BatchNorm

    count = 0

    def walk(module: nn.Module, prefix: str, sync: bool) -> None:
        nonlocal count
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            child_sync = plan.get(path, sync)
            if isinstance(child, _BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                if child_sync:
                    setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                    count += 1
            else:
                walk(child, f"{path}.", child_sync)

    walk(model, "", plan.get("", False))
    return count


def torchrun_args(argv: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
                  rdzv_endpoint: str | None = None) -> list[str]:
    """torchrun's arguments for ``python -m segkit <argv>``; one node uses a standalone rendezvous."""
    args = [f"--nproc-per-node={nproc}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise SegkitError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
        args += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        args += ["--standalone"]
    return args + ["-m", "segkit", *argv]


def relaunch(argv: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
             rdzv_endpoint: str | None = None) -> int:
    """Run the same command under torchrun (in this process) and return an exit code.

    The children record their errors instead of printing them (:mod:`segkit.engine.rank_errors`); when one
    fails, this prints each distinct user error once (exit 2; else the errors that are not a peer's
    disconnection, exit 1) instead of torchrun's traceback and one copy per process. With ``--debug`` in
    ``argv`` the children print their own tracebacks.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from .rank_errors import ERRORS_ENV, read_records, summarise

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    folder = None if "--debug" in argv else Path(tempfile.mkdtemp(prefix="segkit-rank-errors-"))
    if folder is not None:
        os.environ[ERRORS_ENV] = str(folder)
    try:
        run(parse_args(torchrun_args(argv, nproc, nnodes, node_rank, rdzv_endpoint)))
    except ChildFailedError as exc:
        if folder is None:
            codes = {failure.exitcode for failure in exc.failures.values()}
            return 2 if 2 in codes else 1
        code, lines = summarise(read_records(folder), exc.failures)
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=True)
        for line in lines:
            prefix = "" if line.startswith("(") else "[bold red]error:[/] "
            console.print(prefix + escape(line), highlight=False, soft_wrap=True)
        return code
    finally:
        os.environ.pop(ERRORS_ENV, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
