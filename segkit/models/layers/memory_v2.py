"""``FeaturesMemoryV2``: MCIBI++'s soft memory (Jin et al., TPAMI 2022): per class a mean and a standard deviation.

The memory ``[K, 2]`` (a frozen parameter, as SSSegmentation keeps it) holds, per class, the mean and the standard
deviation over channels of the class's average feature. Reading it, each class's C-vector is drawn as
``mean + std * noise_k``, where ``noise_k`` is the standard-normal vector that ``torch.manual_seed(k)`` followed by
``torch.normal`` produces; SSSegmentation redraws it on every forward by reseeding the global RNG for every class
(quirk 8), here it is drawn once from a local generator into the non-persistent buffer ``noise`` (the same numbers,
no global RNG side effect, nothing extra in the state dict). The pixels' class weights read these vectors, a
:class:`SelfAttentionBlock` relates the pixels to the readout (optionally both downsampled by a shared stride-2
conv first) and a 3x3 bottleneck fuses them with the features.

:meth:`FeaturesMemoryV2.update` (training, from the ground truth, vectorised over classes) moves each present class's
mean and std towards those of the batch and averages the memory across ranks with ``reduce_mean``; it writes in place
and never replaces the parameter object (SSSeg quirk 11 does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import ConvNormAct
from .memory import Reducer, class_weights, memory_attention, one_hot_pixels


def seeded_noise(num_classes: int, channels: int) -> torch.Tensor:
    """``[K, C]``: row k is ``torch.normal(0, 1, (1, C))`` right after ``torch.manual_seed(k)`` (CPU), drawn from a
    local generator."""
    generator = torch.Generator(device="cpu")
    rows = []
    for index in range(num_classes):
        generator.manual_seed(index)
        rows.append(torch.empty(1, channels, device="cpu").normal_(0.0, 1.0, generator=generator))
    return torch.cat(rows, dim=0)


class FeaturesMemoryV2(nn.Module):
    """MCIBI++'s memory module (see the module docstring). Children in SSSegmentation's order:
    ``downsample_before_sa`` (optional), ``self_attention``, ``bottleneck``; parameter ``memory``."""

    def __init__(self, num_classes: int, feats_channels: int, transform_channels: int, out_channels: int,
                 use_hard_aggregate: bool = False, downsample_before_sa: bool = False, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, align_corners: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feats_channels = feats_channels
        self.use_hard_aggregate = use_hard_aggregate
        self.align_corners = align_corners
        if downsample_before_sa:
            self.downsample_before_sa = ConvNormAct(feats_channels, feats_channels, 3, stride=2, norm_cfg=norm_cfg,
                                                    act_cfg=act_cfg)
        self.memory = nn.Parameter(torch.cat([torch.zeros(num_classes, 1), torch.ones(num_classes, 1)], dim=1),
                                   requires_grad=False)
        self.self_attention = memory_attention(feats_channels, transform_channels, norm_cfg, act_cfg)
        self.bottleneck = ConvNormAct(feats_channels * 2, out_channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.register_buffer("noise", seeded_noise(num_classes, feats_channels), persistent=False)

    def sampled_memory(self) -> torch.Tensor:
        """``[K, C]``: each class's vector ``mean + std * noise`` (SSSeg's ``torch.normal(mean, std)``)."""
        memory = self.memory.data
        noise = self.noise.to(memory.device, memory.dtype)
        return noise * memory[:, 1:2] + memory[:, 0:1]

    def forward(self, feats: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """``feats`` ``[B, C, H, W]``, ``preds`` ``[B, K, H, W]`` (the logits that weight the classes) ->
        ``[B, out_channels, H, W]``."""
        batch, channels, height, width = feats.shape
        weights = class_weights(preds, self.use_hard_aggregate)
        selected = torch.matmul(weights, self.sampled_memory().to(weights.dtype))
        selected = selected.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
        if hasattr(self, "downsample_before_sa"):
            context = self.self_attention(self.downsample_before_sa(feats), self.downsample_before_sa(selected))
            context = F.interpolate(context, size=feats.shape[2:], mode="bilinear", align_corners=self.align_corners)
        else:
            context = self.self_attention(feats, selected)
        return self.bottleneck(torch.cat([feats, context], dim=1))

    @torch.no_grad()
    def update(self, features: torch.Tensor, segmentation: torch.Tensor, momentum: float, ignore_index: int = -100,
               reduce_mean: Reducer | None = None) -> None:
        """For each class present in ``segmentation`` ``[B, H, W]``: the average of its ``features`` ``[B, C, H, W]``
        (same size), then that vector's mean and (unbiased) std over channels; ``memory <- (1 - momentum) memory +
        momentum (mean, std)``. Labels outside ``[0, K)`` and ``ignore_index`` are skipped. Then averaged across
        ranks by ``reduce_mean``."""
        memory = self.memory.data
        num_classes = memory.shape[0]
        counts = memory.new_zeros(num_classes)
        sums = memory.new_zeros(num_classes, features.shape[1])
        with torch.autocast(device_type=features.device.type, enabled=False):
            for image, label in zip(features.to(memory.dtype), segmentation.long(), strict=True):
                label = label.reshape(-1)
                valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
                onehot = one_hot_pixels(label, valid, num_classes, memory.dtype)
                counts += onehot.sum(0)
                sums += (image.reshape(image.shape[0], -1) @ onehot).t()
        class_means = sums / counts.clamp_min(1).unsqueeze(1)
        stats = torch.stack([class_means.mean(dim=1), class_means.std(dim=1)], dim=1)
        moved = (1 - momentum) * memory + momentum * stats
        memory.copy_(torch.where((counts > 0).unsqueeze(1), moved, memory))
        if reduce_mean is not None:
            memory.copy_(reduce_mean(memory))
