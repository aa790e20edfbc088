"""DETR's transformer (Carion et al. 2020) as MaskFormer uses it, and the small ``MLP`` of the query heads.

Sequences are ``[length, batch, channels]`` (``nn.MultiheadAttention``'s default layout). Position encodings are
added to queries and keys, never to values. Layers are post-norm unless ``norm_before`` (pre-norm, with a final
encoder norm). Module names follow SSSegmentation's MaskFormer (``self_attn``, ``multihead_attn``, ``linear1``,
``norm1``, ...), so its checkpoints convert by name.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .norm_act import build_act, build_norm

DEFAULT_TRANSFORMER_NORM_CFG: dict = {"type": "LayerNorm"}
DEFAULT_TRANSFORMER_ACT_CFG: dict = {"type": "ReLU", "inplace": True}


def with_pos(tensor: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return tensor if pos is None else tensor + pos


class MLP(nn.Module):
    """``num_layers`` linear layers (``layers.{i}``) with ReLU between them: ``input_dim -> hidden_dim ... ->
    output_dim``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < self.num_layers - 1:
                x = F.relu(x)
        return x


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a feed-forward block, each with a residual, dropout and a norm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None, norm_before: bool = False) -> None:
        super().__init__()
        self.norm_before = norm_before
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = build_norm(norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG, d_model)
        self.norm2 = build_norm(norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG, d_model)
        self.activation = build_act(act_cfg)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, pos: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_before:
            x = self.norm1(src)
            q = k = with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, value=x, attn_mask=src_mask,
                                                     key_padding_mask=src_key_padding_mask)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, attn_mask=src_mask,
                                                            key_padding_mask=src_key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among the queries, cross-attention to the memory, a feed-forward block; residuals, norms."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None, norm_before: bool = False) -> None:
        super().__init__()
        self.norm_before = norm_before
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = build_norm(norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG, d_model)
        self.norm2 = build_norm(norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG, d_model)
        self.norm3 = build_norm(norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = build_act(act_cfg)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_before:
            x = self.norm1(tgt)
            q = k = with_pos(x, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, value=x)[0])
            x = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(with_pos(x, query_pos), with_pos(memory, pos), value=memory,
                                                          key_padding_mask=memory_key_padding_mask)[0])
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(with_pos(tgt, query_pos), with_pos(memory, pos),
                                                                 value=memory,
                                                                 key_padding_mask=memory_key_padding_mask)[0]))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class TransformerEncoder(nn.Module):
    """``num_layers`` copies of an encoder layer (``layers``) and an optional final ``norm``."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.num_layers = num_layers
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    """``num_layers`` copies of a decoder layer; returns ``[num_layers, Q, B, C]`` (every layer's output through
    ``norm``) when ``return_intermediate``, else ``[1, Q, B, C]`` (the last one)."""

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module,
                 return_intermediate: bool = False) -> None:
        super().__init__()
        self.norm = norm
        self.num_layers = num_layers
        self.return_intermediate = return_intermediate
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_key_padding_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        intermediate = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                intermediate.append(self.norm(tgt))
        if self.return_intermediate:
            return torch.stack(intermediate)
        return self.norm(tgt).unsqueeze(0)


class Transformer(nn.Module):
    """DETR's encoder-decoder: ``forward(src [B, C, H, W], query_embed [Q, C], pos_embed [B, C, H, W],
    mask [B, H, W] | None) -> (hs [L, B, Q, C], memory [B, C, H, W])``. The decoder starts from zero queries with
    ``query_embed`` as their position encoding. Matrices are Xavier-initialised."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, norm_before: bool = False, return_intermediate_dec: bool = False) -> None:
        super().__init__()
        self.nhead = nhead
        self.d_model = d_model
        norm_cfg = norm_cfg or DEFAULT_TRANSFORMER_NORM_CFG
        act_cfg = act_cfg or DEFAULT_TRANSFORMER_ACT_CFG
        encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, norm_cfg, act_cfg,
                                                norm_before)
        encoder_norm = build_norm(norm_cfg, d_model) if norm_before else None
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers, encoder_norm)
        decoder_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, norm_cfg, act_cfg,
                                                norm_before)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, build_norm(norm_cfg, d_model),
                                          return_intermediate=return_intermediate_dec)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, src: torch.Tensor, query_embed: torch.Tensor, pos_embed: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, height, width = src.shape
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_embed = query_embed.unsqueeze(1).expand(-1, batch, -1)
        if mask is not None:
            mask = mask.flatten(1)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(torch.zeros_like(query_embed), memory, memory_key_padding_mask=mask, pos=pos_embed,
                          query_pos=query_embed)
        return hs.transpose(1, 2), memory.permute(1, 2, 0).reshape(batch, channels, height, width)
