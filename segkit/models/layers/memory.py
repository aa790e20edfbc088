"""``FeaturesMemory``: MCIBI's dataset-level memory of class representations (Jin et al., ICCV 2021).

The memory ``[K, n, C]`` (``num_feats_per_cls`` = n vectors per class) is a frozen parameter, as SSSegmentation
keeps it (so it is counted and saved like one). Reading it: each pixel's class probabilities weight the class
vectors; a :class:`SelfAttentionBlock` relates the pixels to that readout (one block per vector, fused by a 1x1 conv,
when n > 1); a 3x3 bottleneck fuses the readout with the features, and with ``use_context_within_image`` a second
attention over the ASPP/PPM context and a second bottleneck follow.

:meth:`FeaturesMemory.update` moves the memory towards the features of each class in the batch (training only, from
the ground truth, under ``no_grad``); it is vectorised over classes (one-hot products instead of SSSeg's Python loop
over classes) and then averaged across ranks with the ``reduce_mean`` it is given, where SSSeg all-reduces.
The memory is written in place through ``.data`` (SSSeg quirk 10: the readout's backward then sees the updated
memory, as in SSSeg) and the parameter object is never replaced (SSSeg quirk 11 replaces it after the all-reduce,
which leaves optimizers holding a stale object; here optimizers and DDP keep the right one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .self_attention import SelfAttentionBlock

Reducer = Callable[[torch.Tensor], torch.Tensor]


def memory_attention(feats_channels: int, transform_channels: int, norm_cfg: dict | None,
                     act_cfg: dict | None) -> SelfAttentionBlock:
    """The attention block MCIBI and MCIBI++ put between the pixels (queries) and a readout or context (keys)."""
    return SelfAttentionBlock(
        key_in_channels=feats_channels, query_in_channels=feats_channels, transform_channels=transform_channels,
        out_channels=feats_channels, share_key_query=False, query_downsample=None, key_downsample=None,
        key_query_num_convs=2, value_out_num_convs=1, key_query_norm=True, value_out_norm=True, matmul_norm=True,
        with_out_project=True, norm_cfg=norm_cfg, act_cfg=act_cfg,
    )


def class_weights(preds: torch.Tensor, hard: bool) -> torch.Tensor:
    """``[B, K, H, W]`` logits -> ``[B*H*W, K]`` readout weights: the softmax, or its one-hot argmax (``hard``)."""
    weights = F.softmax(preds.permute(0, 2, 3, 1).reshape(-1, preds.shape[1]), dim=-1)
    if hard:
        weights = torch.zeros_like(weights).scatter_(1, weights.argmax(-1, keepdim=True), 1)
    return weights


def one_hot_pixels(labels: torch.Tensor, valid: torch.Tensor, num_bins: int, dtype: torch.dtype) -> torch.Tensor:
    """``[N]`` bin indices -> ``[N, num_bins]`` one-hot rows (all zeros where ``valid`` is False)."""
    onehot = torch.zeros(labels.numel(), num_bins, dtype=dtype, device=labels.device)
    return onehot.scatter_(1, labels.clamp(0, num_bins - 1).unsqueeze(1), valid.unsqueeze(1).to(dtype))


def momentum_at(momentum_cfg: dict, lr: float | None) -> float:
    """The update momentum for the current learning rate (SSSeg: ``base_momentum / base_lr * lr`` when adjusted;
    ``base_momentum`` while no learning rate was given, i.e. before the engine's first ``set_progress``)."""
    if not momentum_cfg["adjust_by_learning_rate"] or lr is None:
        return float(momentum_cfg["base_momentum"])
    return float(momentum_cfg["base_momentum"]) / float(momentum_cfg["base_lr"]) * float(lr)


class FeaturesMemory(nn.Module):
    """MCIBI's memory module (see the module docstring). Children in SSSegmentation's order: ``memory``,
    ``self_attentions`` + ``fuse_memory_conv`` (n > 1) or ``self_attention``, ``bottleneck``, then
    ``self_attention_ms`` and ``bottleneck_ms`` (``use_context_within_image``)."""

    def __init__(self, num_classes: int, feats_channels: int, transform_channels: int, out_channels: int,
                 use_context_within_image: bool = True, num_feats_per_cls: int = 1, use_hard_aggregate: bool = False,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None) -> None:
        super().__init__()
        if num_feats_per_cls < 1:
            raise ValueError(f"num_feats_per_cls must be >= 1, got {num_feats_per_cls}")
        self.num_classes = num_classes
        self.feats_channels = feats_channels
        self.num_feats_per_cls = num_feats_per_cls
        self.use_context_within_image = use_context_within_image
        self.use_hard_aggregate = use_hard_aggregate
        self.memory = nn.Parameter(torch.zeros(num_classes, num_feats_per_cls, feats_channels), requires_grad=False)
        if num_feats_per_cls > 1:
            self.self_attentions = nn.ModuleList(
                memory_attention(feats_channels, transform_channels, norm_cfg, act_cfg)
                for _ in range(num_feats_per_cls)
            )
            self.fuse_memory_conv = ConvNormAct(feats_channels * num_feats_per_cls, feats_channels, 1,
                                                norm_cfg=norm_cfg, act_cfg=act_cfg)
        else:
            self.self_attention = memory_attention(feats_channels, transform_channels, norm_cfg, act_cfg)
        self.bottleneck = ConvNormAct(feats_channels * 2, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        if use_context_within_image:
            self.self_attention_ms = memory_attention(feats_channels, transform_channels, norm_cfg, act_cfg)
            self.bottleneck_ms = ConvNormAct(feats_channels * 2, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)

    # ----------------------------------------------------------------------------------------------- readout
    def forward(self, feats: torch.Tensor, preds: torch.Tensor, feats_ms: torch.Tensor | None = None) -> torch.Tensor:
        """``feats`` ``[B, C, H, W]``, ``preds`` ``[B, K, H, W]`` (stage-1 logits), ``feats_ms`` the context ->
        ``[B, out_channels, H, W]``."""
        batch, channels, height, width = feats.shape
        weights = class_weights(preds, self.use_hard_aggregate)
        memory = self.memory.data.to(weights.dtype)

        def readout(index: int) -> torch.Tensor:
            selected = torch.matmul(weights, memory[:, index, :])
            return selected.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()

        if self.num_feats_per_cls > 1:
            related = [attention(feats, readout(i)) for i, attention in enumerate(self.self_attentions)]
            selected = self.fuse_memory_conv(torch.cat(related, dim=1))
        else:
            selected = self.self_attention(feats, readout(0))
        output = self.bottleneck(torch.cat([feats, selected], dim=1))
        if self.use_context_within_image:
            context = self.self_attention_ms(feats, feats_ms)
            output = self.bottleneck_ms(torch.cat([context, output], dim=1))
        return output

    # ----------------------------------------------------------------------------------------------- update
    @torch.no_grad()
    def update(self, features: torch.Tensor, segmentation: torch.Tensor, momentum: float, ignore_index: int = -100,
               strategy: str = "cosine_similarity", reduce_mean: Reducer | None = None) -> None:
        """Move the memory towards the batch's class features (SSSeg's ``FeaturesMemory.update``).

        ``features`` ``[B, C, H, W]`` at the labels' size, ``segmentation`` ``[B, H, W]``. For each class present:
        a memory vector that is still all zeros is set to the class mean (the first such vector; nothing else
        changes for that class); otherwise ``m <- (1 - momentum) m + momentum new``, where ``new`` is the class mean
        (``strategy="mean"``) or the class features weighted by ``1 - cos(f, m)`` (normalised to sum 1). With n > 1
        vectors per class each pixel goes to its most similar vector (a vector no pixel chose decays towards zero,
        as in SSSeg). Labels outside ``[0, K)`` and ``ignore_index`` are skipped. The result is averaged across ranks
        by ``reduce_mean``.
        """
        if strategy not in ("mean", "cosine_similarity"):
            raise ValueError(f"unknown memory update strategy '{strategy}'")
        if strategy == "mean" and self.num_feats_per_cls > 1:
            raise ValueError("the 'mean' strategy needs num_feats_per_cls = 1 (SSSeg asserts cosine_similarity)")
        memory = self.memory.data
        with torch.autocast(device_type=features.device.type, enabled=False):
            stats = self._class_statistics(features.to(memory.dtype), segmentation.long(), ignore_index, strategy)
        self._move_memory(memory, *stats, momentum=momentum, strategy=strategy)
        if reduce_mean is not None:
            memory.copy_(reduce_mean(memory))

    def _class_statistics(self, features: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                          strategy: str) -> tuple[torch.Tensor, ...]:
        """Per class: pixel count and feature sum; per memory vector: pixel count, sum of ``1 - cos`` weights and
        the weighted feature sum. Accumulated image by image (the features are at the labels' full size)."""
        memory = self.memory.data
        num_classes, n, channels = memory.shape
        bins = num_classes * n
        counts = memory.new_zeros(num_classes)
        sums = memory.new_zeros(num_classes, channels)
        bin_counts, weight_sums, weighted = memory.new_zeros(bins), memory.new_zeros(bins), memory.new_zeros(bins, channels)
        flat_memory = memory.reshape(bins, channels)
        memory_hat = F.normalize(flat_memory, p=2, dim=1)
        for image, label in zip(features, labels, strict=True):
            feats = image.reshape(channels, -1)  # [C, P]
            label = label.reshape(-1)
            valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
            onehot = one_hot_pixels(label, valid, num_classes, memory.dtype)  # [P, K]
            counts += onehot.sum(0)
            sums += (feats @ onehot).t()
            if strategy == "mean":
                continue
            norms = feats.norm(dim=0)
            slot = torch.zeros_like(label)
            if n > 1:  # the most similar vector of the pixel's class (SSSeg: argmax of normalised products)
                relation = (memory_hat @ (feats / norms.clamp_min(1e-12))).view(num_classes, n, -1)
                slot = relation.gather(0, label.clamp(0, num_classes - 1).view(1, 1, -1).expand(1, n, -1))[0]
                slot = slot.argmax(0)
            index = label.clamp(0, num_classes - 1) * n + slot
            dots = (flat_memory @ feats).gather(0, index.unsqueeze(0))[0]  # f . m of the pixel's vector
            cosine = dots / (norms * flat_memory.norm(dim=1)[index]).clamp_min(1e-8)
            weight = (1 - cosine) * valid
            bin_onehot = one_hot_pixels(index, valid, bins, memory.dtype)  # [P, K*n]
            bin_counts += bin_onehot.sum(0)
            weight_sums += weight @ bin_onehot
            weighted += (feats @ (bin_onehot * weight.unsqueeze(1))).t()
        return counts, sums, bin_counts, weight_sums, weighted

    def _move_memory(self, memory: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor, bin_counts: torch.Tensor,
               weight_sums: torch.Tensor, weighted: torch.Tensor, *, momentum: float, strategy: str) -> None:
        num_classes, n, channels = memory.shape
        present = counts > 0
        empty = (memory == 0).all(dim=2)  # [K, n]: vectors never written
        initialise = present & empty.any(dim=1)
        first_empty = empty.float().argmax(dim=1)
        means = sums / counts.clamp_min(1).unsqueeze(1)
        if strategy == "mean":
            new = means.unsqueeze(1)
        else:
            new = weighted / weight_sums.unsqueeze(1)
            new = torch.where(bin_counts.unsqueeze(1) > 0, new, torch.zeros_like(new)).view(num_classes, n, channels)
        moved = (1 - momentum) * memory + momentum * new
        update = (present & ~initialise).view(num_classes, 1, 1)
        result = torch.where(update, moved, memory)
        slot_is_first = torch.arange(n, device=memory.device).unsqueeze(0) == first_empty.unsqueeze(1)
        init_mask = (initialise.unsqueeze(1) & slot_is_first).unsqueeze(2)
        memory.copy_(torch.where(init_mask, means.unsqueeze(1).expand_as(memory), result))
