"""``--deterministic`` on CUDA: bit-identical reruns, by construction.

``torch.use_deterministic_algorithms(True)`` makes most CUDA kernels deterministic, but a few that every
segmentor uses have **no** deterministic CUDA implementation and raise instead (their backward or their
reduction accumulates with ``atomicAdd``, in an order that changes from run to run):

* ``F.interpolate(mode="bilinear" | "linear")`` backward (every logit resize before the loss, FPN/PPM/ASPP
  upsampling);
* ``F.adaptive_avg_pool2d`` backward (PPM, ASPP image pooling, SE/context blocks);
* ``F.cross_entropy`` / ``F.nll_loss`` on ``[B, C, H, W]`` logits with ``reduction="mean"``/``"sum"``.

:class:`DeterministicOps` is a :class:`~torch.overrides.TorchFunctionMode` the trainer enters around the forward
pass and the loss when ``deterministic = true`` on CUDA. It computes those three with operations that *are*
deterministic and have the same value:

* bilinear resizing and adaptive average pooling are separable linear maps: ``out = A_h @ x @ A_w^T`` with the
  interpolation (or averaging) matrices built from PyTorch's own index formulas (``align_corners``, an explicit
  ``scale_factor`` and ``recompute_scale_factor`` included). Their gradients are matrix products (cuBLAS, made
  deterministic by ``CUBLAS_WORKSPACE_CONFIG``), with no scatter;
* the reduced cross-entropy is the per-pixel loss (``reduction="none"``, one write per pixel) summed by
  ``torch.sum`` (a fixed-order tree), divided by the summed weights of the kept pixels as torch's ``mean`` does.

The matrices are built in float64 and cast to the input's dtype; the products run outside autocast in the input's
dtype, so values agree with the native kernels to rounding (tests check the values and gradients on CPU). Any other
call passes through unchanged; ops outside this list that lack a deterministic CUDA kernel (e.g.
``grid_sample`` backward, used by point sampling) still raise, naming the op.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_INTERPOLATE = inspect.signature(F.interpolate)
_ADAPTIVE_AVG = inspect.signature(F.adaptive_avg_pool2d)
_CROSS_ENTROPY = inspect.signature(F.cross_entropy)
_NLL = inspect.signature(F.nll_loss)


def _pair(value, n: int = 2) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value] * n


def linear_interp_matrix(out_size: int, in_size: int, align_corners: bool, scale_factor: float | None,
                         dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[out_size, in_size]``: row ``o`` holds the two weights of 1-d linear interpolation at output ``o``
    (PyTorch's ``area_pixel_compute_scale`` / ``area_pixel_compute_source_index``)."""
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = torch.arange(out_size, dtype=torch.float64) * scale
    else:
        scale = 1.0 / scale_factor if scale_factor else in_size / out_size
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = torch.where(low < in_size - 1, low + 1, low)
    frac = src - low.double()
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(device=device, dtype=dtype)


def adaptive_avg_matrix(out_size: int, in_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[out_size, in_size]``: row ``o`` averages inputs ``floor(o*I/O) .. ceil((o+1)*I/O) - 1``."""
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        start, end = (o * in_size) // out_size, -((-(o + 1) * in_size) // out_size)
        matrix[o, start:end] = 1.0 / (end - start)
    return matrix.to(device=device, dtype=dtype)


def separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols^T`` over the last two dims of ``x``, outside autocast, in ``x``'s dtype."""
    with torch.autocast(x.device.type, enabled=False):
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def _needs_grad(x) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled()


class DeterministicOps(TorchFunctionMode):
    """Replace the CUDA ops without a deterministic kernel by deterministic equivalents (see the module docstring).

    ``devices`` are the device types where the replacements apply (tests use ``("cpu",)`` to check them)."""

    def __init__(self, devices: tuple[str, ...] = ("cuda",)) -> None:
        super().__init__()
        self.devices = devices
        self.replaced: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = _HANDLERS.get(func)
        if handler is not None:
            out = handler(self, *args, **kwargs)
            if out is not NotImplemented:
                self.replaced[func.__name__] = self.replaced.get(func.__name__, 0) + 1
                return out
        return func(*args, **kwargs)

    def applies(self, x) -> bool:
        return isinstance(x, torch.Tensor) and x.device.type in self.devices and x.is_floating_point()

    # ------------------------------------------------------------------ handlers
    def interpolate(self, *args, **kwargs):
        a = _INTERPOLATE.bind(*args, **kwargs).arguments
        x = a["input"]
        if not (self.applies(x) and _needs_grad(x) and x.dim() == 4 and a.get("mode") == "bilinear"
                and not a.get("antialias", False)):
            return NotImplemented
        in_h, in_w = x.shape[-2:]
        size, scale = a.get("size"), a.get("scale_factor")
        if size is not None:
            out_h, out_w = (int(s) for s in _pair(size))
            scales = [None, None]
        else:
            scales = [float(s) for s in _pair(scale)]
            out_h, out_w = math.floor(in_h * scales[0]), math.floor(in_w * scales[1])
            if a.get("recompute_scale_factor"):
                scales = [None, None]
        corners = bool(a.get("align_corners") or False)
        rows = linear_interp_matrix(out_h, in_h, corners, scales[0], x.dtype, x.device)
        cols = linear_interp_matrix(out_w, in_w, corners, scales[1], x.dtype, x.device)
        return separable(x, rows, cols)

    def adaptive_avg_pool2d(self, *args, **kwargs):
        a = _ADAPTIVE_AVG.bind(*args, **kwargs).arguments
        x = a["input"]
        if not (self.applies(x) and _needs_grad(x) and x.dim() in (3, 4)):
            return NotImplemented
        in_h, in_w = x.shape[-2:]
        sizes = zip(_pair(a["output_size"]), (in_h, in_w), strict=True)
        out_h, out_w = (int(o) if o is not None else i for o, i in sizes)
        if (out_h, out_w) == (1, 1):
            return x.mean(dim=(-2, -1), keepdim=True)
        rows = adaptive_avg_matrix(out_h, in_h, x.dtype, x.device)
        cols = adaptive_avg_matrix(out_w, in_w, x.dtype, x.device)
        return separable(x, rows, cols)

    def cross_entropy(self, *args, **kwargs):
        return self._reduced_nll(F.cross_entropy, _CROSS_ENTROPY, args, kwargs)

    def nll_loss(self, *args, **kwargs):
        return self._reduced_nll(F.nll_loss, _NLL, args, kwargs)

    def _reduced_nll(self, func, signature, args, kwargs):
        a = signature.bind(*args, **kwargs).arguments
        x, target = a["input"], a["target"]
        reduction = a.get("reduction", "mean")
        if not (self.applies(x) and x.dim() > 2 and reduction in ("mean", "sum") and not target.is_floating_point()
                and a.get("size_average") is None and a.get("reduce") is None
                and not a.get("label_smoothing", 0.0)):
            return NotImplemented
        weight, ignore = a.get("weight"), a.get("ignore_index", -100)
        per_pixel = func(x, target, weight=weight, ignore_index=ignore, reduction="none")
        total = per_pixel.sum()
        if reduction == "sum":
            return total
        kept = target != ignore
        if weight is None:
            return total / kept.sum().to(per_pixel.dtype)
        w = weight.to(per_pixel.dtype)[torch.where(kept, target, torch.zeros_like(target))]
        return total / torch.where(kept, w, torch.zeros_like(w)).sum()


_HANDLERS = {
    F.interpolate: DeterministicOps.interpolate,
    F.adaptive_avg_pool2d: DeterministicOps.adaptive_avg_pool2d,
    F.cross_entropy: DeterministicOps.cross_entropy,
    F.nll_loss: DeterministicOps.nll_loss,
}
