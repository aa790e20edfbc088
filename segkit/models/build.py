"""Dispatch and validation: where recipe tables become modules.

The engine calls::

    validate_model(recipe)                            # every table checked; the model built on the meta device
    segmentor = build_segmentor(recipe)               # training: loads the backbone's pretrained weights
    segmentor = build_segmentor(recipe, pretrained=False)  # eval/infer/export: a checkpoint is loaded next
    criterion = build_criterion(recipe, segmentor)    # training

Each segmentor class assembles itself in its ``from_recipe(builder)``; the :class:`ModelBuilder` it receives turns
one table at a time into a module: it checks the table against the registered constructor's typed signature (errors
carry the TOML path: ``backbone.depht``, ``auxiliary[1].dropout``, ``head.shortcut.in_chanels``), injects the
segmentor-wide values a component takes (``num_classes``, ``norm_cfg``, ``act_cfg``, ``align_corners``) and derives
``in_channels`` from the feature list at the component's ``in_index`` (checking it when the recipe gives it).

``recipe`` is any object with the attributes ``type``, ``num_classes``, ``align_corners``, ``norm_cfg``,
``act_cfg``, ``backbone``, ``head``, ``auxiliary``, ``losses`` and optionally ``neck``, ``criterion``,
``is_freeze_norm``, holding plain Python values.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import RecipeError, SegkitError
from ..registry import BACKBONES, CRITERIA, HEADS, NECKS, SEGMENTORS, Registry
from .features import FeatureInfo
from .layers import ArgumentError, validate_act_cfg, validate_norm_cfg
from .pretrained import skip_loading
from .segmentors import Segmentor, aux_output_names

DEFAULT_AUX_HEAD = "AuxiliaryHead"


@dataclass
class ModelPlan:
    """What :func:`validate_model` learnt: the segmentor type, the selected features and the training outputs."""

    segmentor_type: str
    feature_info: FeatureInfo | None
    output_names: list[str]
    parameters: int


class ModelBuilder:
    """Builds the components of one recipe, one validated table at a time (see the module docstring).

    ``probe=True`` builds on the meta device without reading weights (validation); the result has no storage.
    """

    def __init__(self, recipe: Any, *, pretrained: bool = True, probe: bool = False) -> None:
        self.recipe = recipe
        self.num_classes: int = recipe.num_classes
        self.align_corners = bool(recipe.align_corners)
        self.norm_cfg = recipe.norm_cfg
        self.act_cfg = recipe.act_cfg
        self.pretrained = pretrained
        self.probe = probe
        self.selected_indices: tuple[int, ...] | None = None
        self.backbone_info: FeatureInfo | None = None

    # ------------------------------------------------------------------------------------------- components
    def backbone(self, table: Any = None, path: str = "backbone") -> tuple[nn.Module, FeatureInfo]:
        """The backbone and the :class:`FeatureInfo` of its selected outputs (``selected_indices``)."""
        cfg = _table(self.recipe.backbone if table is None else table, path)
        selected = _indices(cfg.pop("selected_indices", None), f"{path}.selected_indices")
        if "type" in cfg and cfg["type"] in BACKBONES and "norm_cfg" in BACKBONES.parameters(cfg["type"]):
            cfg.setdefault("norm_cfg", copy.deepcopy(self.norm_cfg))  # as SSSegmentation injects it
        kwargs = BACKBONES.validate(cfg, path)
        _check_nested_cfgs(kwargs, path)
        if not self.pretrained:
            params = BACKBONES.parameters(cfg["type"])
            for name, value in (("pretrained", False), ("pretrained_model_path", "")):
                if name in params:
                    kwargs[name] = value
            _no_pretrained_inside(kwargs)  # nested backbone tables (BiSeNetV1's context path)
        module = self._construct(BACKBONES, cfg["type"], kwargs, path)
        info = _feature_info(module, path)
        if selected is not None:
            try:
                info = info.select(selected)
            except IndexError as exc:
                raise RecipeError(f"{path}.selected_indices", f"{exc} (the backbone has {len(info)} outputs)") from None
        if table is None:
            self.selected_indices, self.backbone_info = selected, info
        return module, info

    def neck(self, features: FeatureInfo, table: Any = None, path: str = "neck",
             default_type: str | None = None) -> tuple[nn.Module | None, FeatureInfo]:
        """The recipe's ``neck`` (or ``default_type``) over ``features``, and its output features; no neck: None."""
        table = getattr(self.recipe, "neck", None) if table is None else table
        if table is None and default_type is None:
            return None, features
        module = self.component(NECKS, table or {}, path, features=features, default_type=default_type)
        return module, _feature_info(module, path)

    def head(self, features: FeatureInfo, *, default_type: str, table: Any = None, path: str = "head",
             **provided: Any) -> nn.Module:
        """The decode head of ``table`` (default: the recipe's ``head``) over ``features``."""
        table = self.recipe.head if table is None else table
        return self.component(HEADS, table, path, features=features, default_type=default_type, provided=provided)

    def aux_heads(self, features: FeatureInfo, table: Any = None, path: str = "auxiliary") -> dict[str, nn.Module]:
        """The auxiliary heads: one table -> ``{"aux": head}`` on the second-to-last feature; an array of N
        tables -> ``aux1..auxN`` on the N features before the last (SSSegmentation's ``features[:-1][-N:]``)."""
        auxiliary = getattr(self.recipe, "auxiliary", None) if table is None else table
        if auxiliary is None:
            return {}
        single = isinstance(auxiliary, dict)
        tables = [auxiliary] if single else auxiliary
        if not isinstance(tables, list | tuple):
            raise RecipeError(path, f"expected a table or an array of tables, got {auxiliary!r}")
        if len(tables) > len(features) - 1 and any("in_index" not in t for t in tables if isinstance(t, dict)):
            raise RecipeError(path, f"{len(tables)} auxiliary head(s) need as many features before the last one; "
                              f"there are {len(features) - 1} (set backbone.selected_indices, or in_index)")
        heads = {}
        names = aux_output_names(len(tables), single)
        for index, (name, aux_table) in enumerate(zip(names, tables, strict=True)):
            where = path if single else f"{path}[{index}]"
            cfg = _table(aux_table, where)
            cfg.setdefault("type", DEFAULT_AUX_HEAD)
            head_cls = HEADS.get(cfg["type"], path=f"{where}.type")
            if not getattr(head_cls, "is_auxiliary", False):
                raise RecipeError(f"{where}.type", f"{cfg['type']} is not an auxiliary head (use {DEFAULT_AUX_HEAD})")
            if "in_index" in HEADS.parameters(cfg["type"]):
                cfg.setdefault("in_index", -2 if single else index - len(tables) - 1)
            heads[name] = self.component(HEADS, cfg, where, features=features)
        return heads

    def component(self, registry: Registry, table: Any, path: str, *, features: FeatureInfo | None = None,
                  default_type: str | None = None, provided: dict[str, Any] | None = None) -> Any:
        """Validate and construct one component table.

        Injected when the constructor takes them and the table does not give them: ``num_classes``,
        ``align_corners``, and the top-level ``norm_cfg``/``act_cfg`` (those a class lists in ``inherit_cfgs``, both
        by default). With ``features``: ``in_channels`` is derived from the
        features at ``in_index`` (or ``in_channels`` is checked against them when the table gives it).
        """
        cfg = _table(table, path)
        cfg.setdefault("type", default_type)
        if cfg["type"] is None:
            raise RecipeError(f"{path}.type", f"name the {registry.kind} to build")
        name = cfg["type"]
        registry.get(name, path=f"{path}.type")  # an unknown type: the known ones and a did-you-mean
        params = registry.parameters(name)
        supplied: dict[str, Any] = dict(provided or {})
        for key, value in (("num_classes", self.num_classes), ("align_corners", self.align_corners)):
            if key in params and key not in cfg:
                supplied.setdefault(key, value)
        inherited = getattr(registry.get(name), "inherit_cfgs", ("norm_cfg", "act_cfg"))
        for key in inherited:
            if key in params and key not in cfg and key not in supplied:
                cfg[key] = copy.deepcopy(getattr(self, key))
        alias = None
        if "in_channels_list" in cfg and "in_channels_list" not in params and "in_channels" in params:
            alias = cfg.pop("in_channels_list")  # SSSegmentation's name for list-valued in_channels: a check too
        derived = self._derive_channels(name, params, cfg, features, path) if features is not None else {}
        if alias is not None and "in_channels" in derived and _as_plain(alias) != derived["in_channels"]:
            raise RecipeError(f"{path}.in_channels_list", f"{alias} does not match the features it reads "
                              f"({derived['in_channels']} channels)")
        kwargs = registry.validate(cfg, path, provided=tuple(supplied) + tuple(derived))
        for key, expected in derived.items():
            if key in kwargs and _as_plain(kwargs[key]) != expected:
                in_index = kwargs.get("in_index", params["in_index"].default if "in_index" in params else None)
                where = f"in_index {in_index}" if in_index is not None else "every feature"
                raise RecipeError(f"{path}.{key}", f"{kwargs[key]} does not match the features it reads "
                                  f"({where}: {expected} channels)")
        _check_nested_cfgs(kwargs, path)
        return self._construct(registry, name, {**supplied, **derived, **kwargs}, path)

    # ------------------------------------------------------------------------------------------- helpers
    def _derive_channels(self, name: str, params: dict[str, inspect.Parameter], cfg: dict,
                         features: FeatureInfo, path: str) -> dict[str, Any]:
        """``in_channels`` (and ``in_strides`` where taken) of the features at ``in_index``, or of every feature for
        components without ``in_index`` (necks)."""
        wanted = [k for k in ("in_channels", "in_strides") if k in params]
        if not wanted:
            return {}
        if "in_index" not in params:
            values = {"in_channels": features.channels, "in_strides": features.strides}
            return {k: values[k] for k in wanted}
        default = params["in_index"].default
        in_index = cfg.get("in_index", -1 if default is inspect.Parameter.empty else default)
        if isinstance(in_index, tuple):
            in_index = list(in_index)
        try:
            values = {"in_channels": features.channels_at(in_index), "in_strides": features.strides_at(in_index)}
        except IndexError as exc:
            raise RecipeError(f"{path}.in_index", f"{exc}; the {name} reads from {features!r}") from None
        return {k: values[k] for k in wanted}

    def _construct(self, registry: Registry, name: str, kwargs: dict[str, Any], path: str) -> Any:
        """Instantiate; constructor argument errors become ``RecipeError`` at the table's path."""
        try:
            if self.probe:
                with skip_loading(), torch.device("meta"):
                    return registry.get(name)(**copy.deepcopy(kwargs))
            return registry.get(name)(**copy.deepcopy(kwargs))
        except ArgumentError as exc:
            raise exc.at(path) from None
        except SegkitError:
            raise
        except Exception as exc:
            if not self.probe:
                raise
            raise RecipeError(path, f"{name} cannot be built with these arguments: {type(exc).__name__}: {exc}") \
                from None


# ----------------------------------------------------------------------------------------------- public API


def segmentor_class(recipe: Any) -> type[Segmentor]:
    from ..promptable.registry import FAMILIES, promptable_recipe_message

    if recipe.type in FAMILIES and recipe.type not in SEGMENTORS:  # SSSeg's SAM family: inference only
        raise RecipeError("type", promptable_recipe_message(recipe.type))
    cls = SEGMENTORS.get(recipe.type, path="type")
    if not (isinstance(cls, type) and issubclass(cls, Segmentor)):
        raise RecipeError("type", f"{recipe.type} is not a trainable segmentor")
    return cls


def validate_model(recipe: Any, *, pretrained: bool = True) -> ModelPlan:
    """Check every model table of ``recipe`` by building the model on the meta device (no memory, no weights).

    Also checks the loss tables against the segmentor's training outputs. Returns a :class:`ModelPlan`.
    """
    cls = segmentor_class(recipe)
    validate_norm_cfg(recipe.norm_cfg, "norm_cfg")
    validate_act_cfg(recipe.act_cfg, "act_cfg")
    builder = ModelBuilder(recipe, pretrained=pretrained, probe=True)
    segmentor = cls.from_recipe(builder)
    build_criterion(recipe, segmentor, probe=True)
    optimizer_cfg = getattr(getattr(recipe, "scheduler", None), "optimizer", None)
    if optimizer_cfg is not None:  # params_rules against the real parameter names (meta tensors, no memory)
        from ..engine.optim import build_optimizer

        build_optimizer(segmentor, optimizer_cfg)
    return ModelPlan(recipe.type, builder.backbone_info, segmentor.output_names(training=True),
                     sum(p.numel() for p in segmentor.parameters()))


def build_segmentor(recipe: Any, *, pretrained: bool = True) -> Segmentor:
    """Validate ``recipe`` and build its segmentor.

    ``pretrained=False`` skips the backbone's pretrained weights whatever the recipe says (evaluation, inference and
    export load a checkpoint afterwards, as SSSegmentation's test.py forces ``pretrained=False``).
    """
    validate_model(recipe, pretrained=pretrained)
    segmentor = segmentor_class(recipe).from_recipe(ModelBuilder(recipe, pretrained=pretrained))
    if getattr(recipe, "is_freeze_norm", False):
        segmentor.freeze_norm()
    return segmentor


def build_criterion(recipe: Any, segmentor: Segmentor, *, probe: bool = False) -> nn.Module:
    """The criterion that trains ``segmentor``: the recipe's ``criterion.type`` or the segmentor's default."""
    table = _table(getattr(recipe, "criterion", None) or {}, "criterion")
    name = table.pop("type", None) or segmentor.criterion_type
    cls = CRITERIA.get(name, path="criterion.type")
    return cls.from_recipe(recipe, segmentor, table, probe=probe)


# ----------------------------------------------------------------------------------------------- helpers


def _feature_info(module: nn.Module, path: str) -> FeatureInfo:
    try:
        return FeatureInfo.from_timm(module.feature_info)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RecipeError(path, f"{type(module).__name__} declares no valid feature_info ({exc})") from None


def _indices(selected: Any, path: str) -> tuple[int, ...] | None:
    if selected is None:
        return None
    if not isinstance(selected, list | tuple) or not selected or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in selected
    ):
        raise RecipeError(path, f"expected a non-empty array of integers, got {selected!r}")
    return tuple(selected)


def _no_pretrained_inside(kwargs: dict[str, Any]) -> None:
    """``pretrained = false`` in every nested table that has the key (weights come from a checkpoint)."""
    for value in kwargs.values():
        if isinstance(value, dict):
            if "pretrained" in value:
                value["pretrained"] = False
            if "pretrained_model_path" in value:
                value["pretrained_model_path"] = ""
            _no_pretrained_inside(value)


def _as_plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
