"""The only place where recipe tables become modules.

The engine calls::

    validate_model(recipe)                            # every table checked, nothing built (cheap; recipe check)
    segmentor = build_segmentor(recipe)               # training: loads the backbone's pretrained weights
    segmentor = build_segmentor(recipe, pretrained=False)  # eval/infer/export: a checkpoint is loaded next
    criterion = build_criterion(recipe, segmentor)    # training

``recipe`` is any object with the attributes ``type``, ``num_classes``, ``align_corners``, ``norm_cfg``, ``act_cfg``,
``backbone``, ``head``, ``auxiliary``, ``losses`` and (optionally) ``is_freeze_norm``, holding plain Python values.
Errors are :class:`~segkit.errors.RecipeError` with TOML paths (``backbone.depht``, ``auxiliary[1].dropout``,
``losses.loss_aux.scale_factr``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import RecipeError
from ..registry import BACKBONES, HEADS, LOSSES, SEGMENTORS, Registry
from .layers import ArgumentError, validate_act_cfg, validate_norm_cfg
from .losses import Criterion, loss_for_output, output_for_loss
from .pretrained import skip_loading
from .segmentors import aux_output_names

DEFAULT_AUX_HEAD = "AuxiliaryHead"


@dataclass
class ComponentSpec:
    """A validated table: registry name, keyword arguments (coerced, defaults injected) and its TOML path."""

    type: str
    kwargs: dict[str, Any]
    path: str


@dataclass
class ModelPlan:
    """Everything ``build_segmentor`` needs, checked: the result of :func:`validate_model`."""

    segmentor_type: str
    backbone: ComponentSpec
    selected_indices: tuple[int, ...] | None
    feature_info: list[dict]
    head: ComponentSpec
    aux: list[ComponentSpec] = field(default_factory=list)
    single_aux: bool = False
    output_names: list[str] = field(default_factory=list)
    losses: dict[str, list[ComponentSpec]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- public API


def validate_model(recipe: Any, *, pretrained: bool = True) -> ModelPlan:
    """Check the model tables of ``recipe`` against the registered classes; return the resolved :class:`ModelPlan`.

    The backbone is constructed once on the meta device (no memory, no weights loaded) to learn its feature channels,
    from which the heads' ``in_channels`` are derived (or checked when the recipe gives them). ``pretrained=False``
    plans the backbone without its pretrained weights (see :func:`build_segmentor`).
    """
    segmentor_cls = SEGMENTORS.get(recipe.type, path="type")
    head_type = getattr(segmentor_cls, "head_type", "")
    if not head_type:
        raise RecipeError("type", f"segmentor {recipe.type} declares no head_type")
    validate_norm_cfg(recipe.norm_cfg, "norm_cfg")
    validate_act_cfg(recipe.act_cfg, "act_cfg")
    backbone, selected = _backbone_spec(recipe)
    if not pretrained:
        _drop_pretrained(backbone)
    all_info = _probe(BACKBONES, backbone).feature_info
    selected_info = _select(all_info, selected)
    head = _head_spec(recipe, recipe.head, head_type, "head", selected_info[-1], selected_info)
    aux, single = _aux_specs(recipe, selected_info)
    for spec in (head, *aux):
        _probe(HEADS, spec)
    outputs = ["out"] + aux_output_names(len(aux), single)
    losses = _loss_specs(recipe.losses, outputs, recipe.type)
    return ModelPlan(recipe.type, backbone, selected, selected_info, head, aux, single, outputs, losses)


def build_segmentor(recipe: Any, *, pretrained: bool = True) -> nn.Module:
    """Validate ``recipe`` and build its segmentor.

    ``pretrained=False`` skips the backbone's pretrained weights whatever the recipe says (evaluation, inference and
    export load a checkpoint afterwards, as SSSegmentation's test.py forces ``pretrained=False``).
    """
    plan = validate_model(recipe, pretrained=pretrained)
    backbone = _construct(BACKBONES, plan.backbone)
    head = _construct(HEADS, plan.head)
    aux_heads: nn.Module | None = None
    if plan.aux:
        modules = [_construct(HEADS, spec) for spec in plan.aux]
        aux_heads = modules[0] if plan.single_aux else nn.ModuleList(modules)
    segmentor = SEGMENTORS.get(plan.segmentor_type)(
        backbone=backbone, head=head, aux_heads=aux_heads,
        selected_indices=plan.selected_indices, align_corners=bool(recipe.align_corners),
    )
    if getattr(recipe, "is_freeze_norm", False):
        segmentor.freeze_norm()
    return segmentor


def build_criterion(recipe: Any, segmentor: nn.Module) -> Criterion:
    """Build the :class:`Criterion` of ``recipe.losses`` for ``segmentor``'s training outputs."""
    specs = _loss_specs(recipe.losses, segmentor.output_names(training=True), recipe.type)
    terms = {name: [_construct(LOSSES, spec) for spec in group] for name, group in specs.items()}
    return Criterion(terms, align_corners=bool(recipe.align_corners))


# ----------------------------------------------------------------------------------------------- backbone


def _backbone_spec(recipe: Any) -> tuple[ComponentSpec, tuple[int, ...] | None]:
    cfg = _table(recipe.backbone, "backbone")
    selected = cfg.pop("selected_indices", None)
    if "type" in cfg and cfg["type"] in BACKBONES and "norm_cfg" in BACKBONES.parameters(cfg["type"]):
        cfg.setdefault("norm_cfg", copy.deepcopy(recipe.norm_cfg))  # as SSSegmentation injects it
    kwargs = BACKBONES.validate(cfg, "backbone")
    _check_nested_cfgs(kwargs, "backbone")
    return ComponentSpec(cfg["type"], kwargs, "backbone"), _indices(selected)


def _drop_pretrained(spec: ComponentSpec) -> None:
    params = BACKBONES.parameters(spec.type)
    for name, value in (("pretrained", False), ("pretrained_model_path", "")):
        if name in params:
            spec.kwargs[name] = value


def _indices(selected: Any) -> tuple[int, ...] | None:
    if selected is None:
        return None
    if not isinstance(selected, list | tuple) or not selected or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in selected
    ):
        raise RecipeError("backbone.selected_indices", f"expected a non-empty array of integers, got {selected!r}")
    return tuple(selected)


def _select(feature_info: list[dict], selected: tuple[int, ...] | None) -> list[dict]:
    if selected is None:
        return list(feature_info)
    bad = [i for i in selected if not 0 <= i < len(feature_info)]
    if bad:
        raise RecipeError("backbone.selected_indices", f"{bad[0]} is out of range: the backbone has "
                          f"{len(feature_info)} outputs (indices 0..{len(feature_info) - 1})")
    return [feature_info[i] for i in selected]


# ----------------------------------------------------------------------------------------------- heads


def _head_spec(recipe: Any, table: Any, head_type: str, path: str, feature: dict,
               features: list[dict]) -> ComponentSpec:
    cfg = _table(table, path)
    given_type = cfg.pop("type", head_type)
    if path == "head" and given_type != head_type:
        raise RecipeError("head.type", f"the {recipe.type} segmentor uses {head_type}; remove head.type")
    head_cls = HEADS.get(given_type, path=f"{path}.type")
    if path != "head" and not getattr(head_cls, "is_auxiliary", False):
        raise RecipeError(f"{path}.type", f"{given_type} is not an auxiliary head (use {DEFAULT_AUX_HEAD})")
    params = HEADS.parameters(given_type)
    derived: dict[str, Any] = {}
    if "in_channels" in params:
        derived["in_channels"] = feature["num_chs"]
    if "in_channels_list" in params:
        derived["in_channels_list"] = [info["num_chs"] for info in features]
    provided = {"num_classes": recipe.num_classes, **derived}
    for key in ("norm_cfg", "act_cfg"):
        if key in params and key not in cfg:
            cfg[key] = copy.deepcopy(getattr(recipe, key))
    kwargs = HEADS.validate({"type": given_type, **cfg}, path, provided=tuple(provided))
    for key, expected in derived.items():
        if key in kwargs and kwargs[key] != expected:
            what = "feature" if key == "in_channels" else "features"
            raise RecipeError(f"{path}.{key}", f"{kwargs[key]} does not match the backbone's selected {what} "
                              f"({expected} channels)")
    _check_nested_cfgs(kwargs, path)
    return ComponentSpec(given_type, {**provided, **kwargs}, path)


def _aux_specs(recipe: Any, selected_info: list[dict]) -> tuple[list[ComponentSpec], bool]:
    auxiliary = recipe.auxiliary
    if auxiliary is None:
        return [], False
    single = isinstance(auxiliary, dict)
    tables = [auxiliary] if single else auxiliary
    if not isinstance(tables, list | tuple):
        raise RecipeError("auxiliary", f"expected a table or an array of tables, got {auxiliary!r}")
    candidates = selected_info[:-1]
    if len(tables) > len(candidates):
        raise RecipeError("auxiliary", f"{len(tables)} auxiliary head(s) need as many selected backbone features "
                          f"before the last one; backbone.selected_indices gives {len(candidates)}")
    inputs = candidates[len(candidates) - len(tables):]
    specs = []
    for index, (table, feature) in enumerate(zip(tables, inputs, strict=True)):
        path = "auxiliary" if single else f"auxiliary[{index}]"
        table = _table(table, path)
        table.setdefault("type", DEFAULT_AUX_HEAD)
        specs.append(_head_spec(recipe, table, DEFAULT_AUX_HEAD, path, feature, [feature]))
    return specs, single


# ----------------------------------------------------------------------------------------------- losses


def _loss_specs(losses: Any, outputs: list[str], segmentor_type: str) -> dict[str, list[ComponentSpec]]:
    if not isinstance(losses, dict) or not losses:
        raise RecipeError("losses", "expected a table of losses, e.g. [losses.loss_cls] type = \"CrossEntropyLoss\"")
    for name in losses:
        try:
            output = output_for_loss(name)
        except ValueError as exc:
            raise RecipeError(f"losses.{name}", str(exc)) from None
        if output not in outputs:
            raise RecipeError(f"losses.{name}", f"the {segmentor_type} segmentor has no output '{output}' (its "
                              f"training outputs: {', '.join(outputs)}); remove it or configure that head")
    missing = [loss_for_output(o) for o in outputs if loss_for_output(o) not in losses]
    if missing:
        raise RecipeError("losses", f"no loss for {', '.join(missing)}: every training output needs one "
                          f"(add [losses.{missing[0]}])")
    specs: dict[str, list[ComponentSpec]] = {}
    for name, value in losses.items():
        tables = value if isinstance(value, list) else [value]
        if not tables:
            raise RecipeError(f"losses.{name}", "an empty array of losses")
        is_list = isinstance(value, list)
        specs[name] = []
        for index, table in enumerate(tables):
            path = f"losses.{name}[{index}]" if is_list else f"losses.{name}"
            cfg = _table(table, path)
            kwargs = LOSSES.validate(cfg, path)
            specs[name].append(ComponentSpec(cfg["type"], kwargs, path))
    return specs


# ----------------------------------------------------------------------------------------------- helpers


def _table(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise RecipeError(path, f"expected a table, got {value!r}")
    return copy.deepcopy(value)


def _check_nested_cfgs(kwargs: dict[str, Any], path: str) -> None:
    for key, value in kwargs.items():
        if key == "norm_cfg" or key.endswith("_norm_cfg"):
            validate_norm_cfg(value, f"{path}.{key}")
        elif key == "act_cfg" or key.endswith("_act_cfg"):
            validate_act_cfg(value, f"{path}.{key}")


def _construct(registry: Registry, spec: ComponentSpec) -> Any:
    """Instantiate ``spec``; constructor argument errors become ``RecipeError`` at the table's path."""
    try:
        return registry.get(spec.type)(**copy.deepcopy(spec.kwargs))
    except ArgumentError as exc:
        raise exc.at(spec.path) from None


def _probe(registry: Registry, spec: ComponentSpec) -> Any:
    """Construct ``spec`` without loading weights, on the meta device (on the CPU if the class cannot do meta)."""
    with skip_loading():
        try:
            with torch.device("meta"):
                return _construct(registry, spec)
        except RecipeError:
            raise
        except Exception:  # some models compute values from tensors while constructing (e.g. .tolist())
            return _construct(registry, spec)
