"""SSSegmentation 1.7 state dicts -> segkit names: a generic, shape-checked mapping.

SSSegmentation names a segmentor's parts ``backbone_net``, ``decoder`` (often an ``nn.Sequential``, so its keys are
``decoder.0.weight``, ``decoder.1.running_mean``, ...) and ``auxiliary_decoder``; segkit names them ``backbone``,
``head`` (``head.convs.0.conv.weight``) and ``aux_heads``. Both build their modules in the same order, so within each
part the tensors (parameters and buffers, in state-dict order) correspond one to one::

    state = convert_ssseg_state_dict(torch.load("ssseg.pth")["model"], segmentor)
    segmentor.load_state_dict(state)                       # strict

How each part is matched:

* the top-level prefixes come from the segmentor class's ``ssseg_prefixes`` (SSSeg prefix -> segkit module name;
  :data:`DEFAULT_SSSEG_PREFIXES` for encoder-decoder models);
* if the segkit module of a part has a ``convert_ssseg_state_dict(state_dict)`` method, or is a backbone listed in
  :data:`SSSEG_BACKBONE_LAYOUTS` (built on timm's modules, whose names and order differ from SSSeg's), the part's
  tensors go through that conversion and are then matched by name;
* otherwise by name when SSSeg's and segkit's names within the part are the same, else in order, every pair with
  identical shapes (when that fails and most names agree, the error lists the names that differ instead).

Buffers derived from the architecture (:data:`DERIVED_BUFFERS`, e.g. ``relative_position_index``) that segkit's
module does not save are ignored. Keys that the segmentor class lists in ``ssseg_dropped_keys`` (exact keys or ``fnmatch`` patterns, e.g. a loss
buffer segkit keeps elsewhere) are ignored. Anything else that does not fit (a tensor left over on either side, a
shape that differs) is a :class:`~segkit.errors.CheckpointError` naming the keys.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

DEFAULT_SSSEG_PREFIXES: dict[str, str] = {
    "backbone_net": "backbone",
    "decoder": "head",
    "auxiliary_decoder": "aux_heads",
}
"""SSSegmentation's top-level module names -> segkit's, for encoder-decoder segmentors (a class's
``ssseg_prefixes`` replaces it)."""

DERIVED_BUFFERS: tuple[str, ...] = ("relative_position_index",)
"""Buffers SSSegmentation saves but computes from the architecture (not learned): ignored where segkit's module
computes them without saving them."""

SSSEG_MARKER = "backbone_net."
"""Every SSSegmentation segmentor's state dict has keys starting with this."""

_SHOWN = 6  # how many keys an error message lists

StateDict = dict[str, torch.Tensor]


def looks_like_ssseg(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is in SSSegmentation's layout (it has ``backbone_net.`` keys)."""
    return any(isinstance(k, str) and k.startswith(SSSEG_MARKER) for k in state_dict)


def unwrap_ssseg_checkpoint(checkpoint: Mapping[str, Any]) -> StateDict:
    """The model state dict of what SSSegmentation's ``train.py`` saves (``{'model': ..., 'optimizer': ...,
    'cur_epoch': ..., 'cur_iter': ...}``), or ``checkpoint`` itself when it is already a state dict. A DDP
    ``module.`` prefix is stripped."""
    state = checkpoint.get("model") if isinstance(checkpoint.get("model"), Mapping) else checkpoint
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("not an SSSegmentation checkpoint: expected {'model': state_dict, ...} or a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def convert_ssseg_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    """Rename an SSSegmentation 1.7 segmentor state dict (or checkpoint) to ``model``'s keys.

    Returns a dict with exactly ``model.state_dict()``'s keys, in its order, holding SSSegmentation's tensors (ready
    for a strict ``load_state_dict``). Raises :class:`~segkit.errors.CheckpointError` listing the keys that do not
    fit.
    """
    source = unwrap_ssseg_checkpoint(state_dict)
    prefixes: dict[str, str] = dict(getattr(type(model), "ssseg_prefixes", DEFAULT_SSSEG_PREFIXES))
    dropped: tuple[str, ...] = tuple(getattr(type(model), "ssseg_dropped_keys", ()))
    target = model.state_dict()

    src_groups = _group(source, prefixes.keys())
    dst_groups = _group(target, prefixes.values())
    problems: list[str] = []
    leftover = [k for k in src_groups.pop(None, []) if not _is_dropped(k, dropped)]
    if leftover:
        problems.append(f"SSSegmentation keys under no known prefix ({', '.join(sorted(prefixes))}): "
                        + _show(leftover))
    unmapped = dst_groups.pop(None, [])
    if unmapped:
        problems.append(f"segkit keys under no prefix SSSegmentation has ({', '.join(prefixes.values())}): "
                        + _show(unmapped))
    renamed: StateDict = {}
    for src_prefix, dst_prefix in prefixes.items():
        src_keys = [k for k in src_groups.get(src_prefix, []) if not _is_dropped(k, dropped)]
        dst_keys = dst_groups.get(dst_prefix, [])
        if not src_keys and not dst_keys:
            continue
        module = _submodule(model, dst_prefix)
        try:
            renamed.update(_match_part(source, src_prefix, src_keys, target, dst_prefix, dst_keys, module))
        except _PartMismatch as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError("the SSSegmentation state dict does not fit this model:\n  " + "\n  ".join(problems))
    return {k: renamed[k] for k in target}


# ----------------------------------------------------------------------------------------------- matching


class _PartMismatch(Exception):
    pass


def _match_part(source: Mapping[str, torch.Tensor], src_prefix: str, src_keys: list[str],
                target: Mapping[str, torch.Tensor], dst_prefix: str, dst_keys: list[str],
                module: nn.Module | None) -> StateDict:
    src_rel = {k[len(src_prefix) + 1:]: source[k] for k in src_keys}
    dst_rel = {k[len(dst_prefix) + 1:]: target[k] for k in dst_keys}
    derived = {k for k in src_rel if k.rsplit(".", 1)[-1] in DERIVED_BUFFERS and k not in dst_rel}
    if derived:
        src_rel = {k: v for k, v in src_rel.items() if k not in derived}
        src_keys = [k for k in src_keys if k[len(src_prefix) + 1:] not in derived]
    label = f"{src_prefix}. -> {dst_prefix}."
    converter = _converter_for(module)
    if converter is not None:
        converted = converter(dict(src_rel))
        return {_join(dst_prefix, k): v for k, v in _by_name(converted, dst_rel, label, src_prefix, dst_prefix).items()}
    if set(src_rel) == set(dst_rel):
        return {_join(dst_prefix, k): v for k, v in _by_name(src_rel, dst_rel, label, src_prefix, dst_prefix).items()}
    try:
        return _in_order(src_keys, source, dst_keys, target, label)
    except _PartMismatch:
        if 2 * len(set(src_rel) & set(dst_rel)) < len(dst_rel):
            raise
    # mostly the same names: the keys that differ say more than the order does
    return {_join(dst_prefix, k): v for k, v in _by_name(src_rel, dst_rel, label, src_prefix, dst_prefix).items()}


def _by_name(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], label: str,
             src_prefix: str, dst_prefix: str) -> StateDict:
    missing = [f"{dst_prefix}.{k}" for k in target if k not in source]
    extra = [f"{src_prefix}.{k}" for k in source if k not in target]
    wrong = [f"{dst_prefix}.{k} {_shape(target[k])} <- {_shape(source[k])}"
             for k in target if k in source and source[k].shape != target[k].shape]
    parts = []
    for what, keys in (("segkit keys with no SSSegmentation tensor", missing),
                       ("SSSegmentation keys segkit does not have", extra), ("shapes differ", wrong)):
        if keys:
            parts.append(f"{what}: {_show(keys)}")
    if parts:
        raise _PartMismatch(f"{label} (matched by name): " + "; ".join(parts))
    return {k: source[k] for k in target}


def _in_order(src_keys: list[str], source: Mapping[str, torch.Tensor], dst_keys: list[str],
              target: Mapping[str, torch.Tensor], label: str) -> StateDict:
    src_shapes = [_shape(source[k]) for k in src_keys]
    dst_shapes = [_shape(target[k]) for k in dst_keys]
    if src_shapes == dst_shapes:
        return dict(zip(dst_keys, (source[k] for k in src_keys), strict=True))
    parts = [f"{label} (matched in order): SSSegmentation has {len(src_keys)} tensors, segkit {len(dst_keys)}"]
    first = next((i for i, (a, b) in enumerate(zip(src_shapes, dst_shapes, strict=False)) if a != b),
                 min(len(src_keys), len(dst_keys)))
    if first < min(len(src_keys), len(dst_keys)):
        parts.append(f"first difference at tensor {first}: {src_keys[first]} {src_shapes[first]} vs "
                     f"{dst_keys[first]} {dst_shapes[first]}")
    # what lies between the longest common head and tail of the two shape sequences is what does not fit
    tail = 0
    while (tail < min(len(src_keys), len(dst_keys)) - first
           and src_shapes[len(src_keys) - 1 - tail] == dst_shapes[len(dst_keys) - 1 - tail]):
        tail += 1
    extra = [f"{k} {s}" for k, s in zip(src_keys[first:len(src_keys) - tail],
                                        src_shapes[first:len(src_keys) - tail], strict=True)]
    missing = [f"{k} {s}" for k, s in zip(dst_keys[first:len(dst_keys) - tail],
                                          dst_shapes[first:len(dst_keys) - tail], strict=True)]
    if extra:
        parts.append(f"SSSegmentation tensors with no segkit counterpart: {_show(extra)}")
    if missing:
        parts.append(f"segkit tensors with no SSSegmentation counterpart: {_show(missing)}")
    raise _PartMismatch("; ".join(parts))


# ----------------------------------------------------------------------------------------------- backbone layouts


def _convnext(state_dict: StateDict, module: nn.Module) -> StateDict:
    """SSSeg's ConvNeXt has mmcls' names (``downsample_layers``, ``stages.i.j.depthwise_conv``)."""
    from .backbones.convnext import convert_mmcls_convnext
    from .backbones.timm_adapter import fit_singleton_dims

    return fit_singleton_dims(convert_mmcls_convnext(state_dict), module)


def _resnest(state_dict: StateDict, module: nn.Module) -> StateDict:
    """SSSeg's ResNeSt has mmseg's names (``stem.k``, ``layerN.b.conv2.conv``, ``fc1``/``fc2``)."""
    from .backbones.resnest import convert_mmseg_resnest

    return convert_mmseg_resnest(state_dict)


def _unfold_order(tensor: torch.Tensor) -> torch.Tensor:
    """Undo SSSeg's ``correctunfold{reduction,norm}order``: its patch merging concatenates the 2x2 neighbours as
    ``nn.Unfold`` does (channel-major), the official Swin as ``x0, x1, x2, x3`` (position-major)."""
    vector = tensor.dim() == 1
    matrix = tensor.reshape(1, -1) if vector else tensor
    out_channels, in_channels = matrix.shape
    fixed = matrix.reshape(out_channels, in_channels // 4, 4).transpose(1, 2)[:, [0, 2, 1, 3], :]
    fixed = fixed.reshape(out_channels, in_channels)
    return fixed.reshape(-1) if vector else fixed


_SSSEG_SWIN_TO_OFFICIAL = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.", "layers."),
    (r"\.attn\.w_msa\.", ".attn."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]


def _swin(state_dict: StateDict, module: nn.Module) -> StateDict:
    """SSSeg's Swin (mmseg's names and patch-merging channel order) -> the official release -> segkit (timm)."""
    from .backbones.swin import convert_official_swin
    from .backbones.timm_adapter import rename_keys

    official = rename_keys(state_dict, _SSSEG_SWIN_TO_OFFICIAL)
    official = {k: _unfold_order(v) if re.search(r"\.downsample\.(reduction|norm)\.", k) else v
                for k, v in official.items()}
    return convert_official_swin(official)


_SSSEG_TWINS_TO_TIMM = [
    (r"^patch_embeds\.(\d+)\.projection\.", r"patch_embeds.\1.proj."),
    (r"^position_encodings\.(\d+)\.proj\.", r"pos_block.\1.proj.0."),
    (r"^layers\.(\d+)\.(\d+)\.", r"blocks.\1.\2."),
    (r"\.attn\.attn\.out_proj\.", ".attn.proj."),
    (r"\.ffn\.layers\.0\.0\.", ".mlp.fc1."),
    (r"\.ffn\.layers\.1\.", ".mlp.fc2."),
]


def _twins(state_dict: StateDict, module: nn.Module) -> StateDict:
    """SSSeg's PCPVT/SVT (mmseg's names; global attention an ``nn.MultiheadAttention`` whose ``in_proj`` stacks
    q, k, v) -> timm's (``attn.q`` and ``attn.kv``)."""
    from .backbones.timm_adapter import rename_keys

    out: StateDict = {}
    for key, value in rename_keys(state_dict, _SSSEG_TWINS_TO_TIMM).items():
        match = re.search(r"\.attn\.attn\.in_proj_(weight|bias)$", key)
        if match:
            stem, kind = key[: match.start()], match.group(1)
            dim = value.shape[0] // 3
            out[f"{stem}.attn.q.{kind}"] = value[:dim]
            out[f"{stem}.attn.kv.{kind}"] = value[dim:]
        else:
            out[key] = value
    return out


SSSEG_BACKBONE_LAYOUTS: dict[str, Callable[[StateDict, nn.Module], StateDict]] = {
    "ConvNeXt": _convnext,
    "ResNeSt": _resnest,
    "SwinTransformer": _swin,
    "PCPVT": _twins,
    "SVT": _twins,
}
"""segkit backbones (class names) whose parameter names and order differ from SSSegmentation's module: their
SSSeg layout -> segkit names (matched by name afterwards). A backbone class can instead define
``convert_ssseg_state_dict(state_dict)`` itself; the others match by name or in order."""


def _converter_for(module: nn.Module | None) -> Callable[[StateDict], StateDict] | None:
    if module is None:
        return None
    own = getattr(module, "convert_ssseg_state_dict", None)
    if callable(own):
        return own
    layout = SSSEG_BACKBONE_LAYOUTS.get(type(module).__name__)
    if layout is None:
        return None
    return lambda state_dict: layout(state_dict, module)


# ----------------------------------------------------------------------------------------------- helpers


def _group(state: Mapping[str, Any], prefixes) -> dict[str | None, list[str]]:
    """Keys by the longest of ``prefixes`` they start with (``None``: no prefix), in state-dict order."""
    ordered = sorted(prefixes, key=len, reverse=True)
    groups: dict[str | None, list[str]] = {}
    for key in state:
        owner = next((p for p in ordered if key == p or key.startswith(p + ".")), None)  # a bare tensor: IDRNet's
        groups.setdefault(owner, []).append(key)
    return groups


def _join(prefix: str, relative: str) -> str:
    """``prefix.relative``, or ``prefix`` for the tensor the prefix itself names (IDRNet's ``class_relations_mean``)."""
    return f"{prefix}.{relative}" if relative else prefix


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _is_dropped(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == p or fnmatch.fnmatchcase(key, p) for p in patterns)


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in tensor.shape) + "]"


def _show(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more
