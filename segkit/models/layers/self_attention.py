"""``SelfAttentionBlock``: the query/key/value attention block shared by the context heads.

ANNNet (AFNB, APNB), DANet (PAM), ISANet, ISNet, OCRNet (object context), MCIBI, MCIBI++ and IDRNet build on it,
each with its own combination of flags (the constructor arguments and the module names ``key_project``,
``query_project``, ``value_project``, ``out_project`` are SSSegmentation's, so its checkpoints convert in order).

For queries ``q = P_q(x_q)`` (optionally downsampled) and keys/values ``k = P_k(x_k)``, ``v = P_v(x_k)`` (both
optionally downsampled by the same ``key_downsample``)::

    A = softmax_over_keys(q^T k [/ sqrt(transform_channels)])          # [B, Nq, Nk]
    context = (A v^T)^T reshaped to the (downsampled) query map        # [B, C_v, hq, wq]
    context = P_out(context)                                           # when with_out_project

Each projection is ``num_convs`` 1x1 convolutions (no bias), each followed by norm + activation when its ``*_norm``
flag is set. A ``key_downsample`` may return a map ``[B, C, h, w]`` or an already flattened ``[B, C, N]`` (ANNNet's
pyramid pooling of the keys).
"""

from __future__ import annotations

import torch
from torch import nn

from .conv import ConvNormAct


class SelfAttentionBlock(nn.Module):
    """Non-local style attention of ``query_feats`` over ``key_feats`` (see the module docstring).

    ``share_key_query`` reuses the key projection for the queries (the same module is registered under both names,
    as SSSegmentation does; it needs ``key_in_channels == query_in_channels``). ``with_out_project`` projects the
    values to ``transform_channels`` and the context back to ``out_channels`` (``value_out_num_convs`` convs each);
    otherwise the values are projected straight to ``out_channels``. ``matmul_norm`` scales the similarities by
    ``transform_channels ** -0.5``.

    When ``query_downsample`` shrinks the queries the context has the downsampled query size (SSSegmentation 1.7.0
    reshapes it to the input query size instead, which fails for any downsampling; no SSSeg config downsamples).
    """

    def __init__(
        self,
        key_in_channels: int,
        query_in_channels: int,
        transform_channels: int,
        out_channels: int,
        share_key_query: bool,
        query_downsample: nn.Module | None,
        key_downsample: nn.Module | None,
        key_query_num_convs: int,
        value_out_num_convs: int,
        key_query_norm: bool,
        value_out_norm: bool,
        matmul_norm: bool,
        with_out_project: bool,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if share_key_query and key_in_channels != query_in_channels:
            raise ValueError(f"share_key_query needs key_in_channels == query_in_channels, got {key_in_channels} "
                             f"and {query_in_channels}")
        if key_query_num_convs < 1 or value_out_num_convs < 1:
            raise ValueError("key_query_num_convs and value_out_num_convs must be >= 1")
        self.key_project = self.build_project(key_in_channels, transform_channels, key_query_num_convs,
                                              key_query_norm, norm_cfg, act_cfg)
        if share_key_query:
            self.query_project = self.key_project
        else:
            self.query_project = self.build_project(query_in_channels, transform_channels, key_query_num_convs,
                                                    key_query_norm, norm_cfg, act_cfg)
        self.value_project = self.build_project(key_in_channels,
                                                transform_channels if with_out_project else out_channels,
                                                value_out_num_convs, value_out_norm, norm_cfg, act_cfg)
        self.out_project = (
            self.build_project(transform_channels, out_channels, value_out_num_convs, value_out_norm, norm_cfg,
                               act_cfg)
            if with_out_project else None
        )
        self.query_downsample = query_downsample
        self.key_downsample = key_downsample
        self.matmul_norm = matmul_norm
        self.transform_channels = transform_channels
        self.share_key_query = share_key_query

    @staticmethod
    def build_project(in_channels: int, out_channels: int, num_convs: int, use_norm: bool,
                      norm_cfg: dict | None = None, act_cfg: dict | None = None) -> nn.Module:
        """``num_convs`` 1x1 convolutions without bias (each + norm + act when ``use_norm``); one conv is returned
        bare, several as an ``nn.Sequential`` (SSSegmentation's ``buildproject`` layout)."""
        convs: list[nn.Module] = []
        for index in range(num_convs):
            channels = in_channels if index == 0 else out_channels
            if use_norm:
                convs.append(ConvNormAct(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg))
            else:
                convs.append(nn.Conv2d(channels, out_channels, 1, bias=False))
        return convs[0] if len(convs) == 1 else nn.Sequential(*convs)

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        batch_size = query_feats.shape[0]
        query = self.query_project(query_feats)
        if self.query_downsample is not None:
            query = self.query_downsample(query)
        query_size = query.shape[2:]
        query = query.flatten(2).transpose(1, 2)  # [B, Nq, C]
        key = self.key_project(key_feats)
        value = self.value_project(key_feats)
        if self.key_downsample is not None:
            key = self.key_downsample(key)
            value = self.key_downsample(value)
        key = key.flatten(2)  # [B, C, Nk]
        value = value.flatten(2).transpose(1, 2)  # [B, Nk, Cv]
        sim_map = torch.matmul(query, key)
        if self.matmul_norm:
            sim_map = sim_map * (self.transform_channels ** -0.5)
        sim_map = sim_map.softmax(dim=-1)
        context = torch.matmul(sim_map, value)  # [B, Nq, Cv]
        context = context.transpose(1, 2).reshape(batch_size, -1, *query_size)
        if self.out_project is not None:
            context = self.out_project(context)
        return context
