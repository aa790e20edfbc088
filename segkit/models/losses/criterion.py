"""``DenseCriterion``: routes each loss table of a recipe to a segmentor output and a target, and scores it.

A recipe's ``losses`` table is keyed by loss name (SSSegmentation's names keep working). Each name is routed:

1. by the segmentor's declared ``loss_routes`` (DANet: ``loss_cls_pamcam`` -> ``out``; CE2P: ``loss_edge`` ->
   ``edge`` against ``edge_target``; ENCNet: ``loss_se`` -> ``se`` against ``class_presence``, not resized);
2. otherwise by the name: ``loss_cls`` -> ``out``, ``loss_<x>`` -> ``<x>`` (``loss_aux`` -> ``aux``);
3. a table may override with ``output``, ``target`` and ``resize`` keys (e.g. a KLDiv loss of ``aux`` against
   ``target = "output:out"``).

A table is one term, an array of tables a sum of terms. Dense routes resize the output bilinearly (with the
segmentor's ``align_corners``) to the target and go through the optional ``[criterion.sampler]`` (OHEM).
``forward(outputs, targets) -> {loss name: scaled 0-d tensor}``; the engine backpropagates the sum.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RecipeError, SegkitError
from ...registry import CRITERIA, LOSSES, SAMPLERS, TARGETS
from ..segmentors.base import Route
from .targets import BATCH_TARGETS, target_names

ROUTE_KEYS: tuple[str, ...] = ("output", "target", "resize")


def output_for_loss(loss_name: str) -> str:
    """The segmentor output a loss key supervises by the name rule (``loss_cls`` -> ``out``, ``loss_aux1`` ->
    ``aux1``)."""
    if loss_name == "loss_cls":
        return "out"
    if loss_name.startswith("loss_") and len(loss_name) > len("loss_"):
        return loss_name[len("loss_"):]
    raise ValueError(f"loss names look like 'loss_cls' or 'loss_<output>', got '{loss_name}'")


def loss_for_output(output_name: str) -> str:
    """The loss key that supervises an output by the name rule (``out`` -> ``loss_cls``, ``aux`` -> ``loss_aux``)."""
    return "loss_cls" if output_name == "out" else f"loss_{output_name}"


class Term(nn.Module):
    """One loss module and the route it scores."""

    def __init__(self, loss: nn.Module, route: Route) -> None:
        super().__init__()
        self.loss = loss
        self.route = route


@CRITERIA.register("DenseCriterion")
class DenseCriterion(nn.Module):
    """Named losses over dense (and derived) targets; see the module docstring. ``terms`` maps each loss name to
    its :class:`Term` list (summed). ``sampler`` (OHEM) applies to dense routes after resizing."""

    def __init__(self, terms: dict[str, list[Term]], num_classes: int, align_corners: bool = False,
                 sampler: Any = None) -> None:
        super().__init__()
        if not terms or any(not group for group in terms.values()):
            raise ValueError("DenseCriterion needs at least one term per loss name")
        self.terms = nn.ModuleDict({name: nn.ModuleList(group) for name, group in terms.items()})
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.sampler = sampler

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def from_recipe(cls, recipe: Any, segmentor: nn.Module, table: dict, *, probe: bool = False) -> DenseCriterion:
        """Validate ``recipe.losses`` against ``segmentor``'s outputs and build the terms."""
        sampler_cfg = table.pop("sampler", None)
        if table:
            key = next(iter(table))
            raise RecipeError(f"criterion.{key}", f"DenseCriterion takes no '{key}' (it takes 'type' and 'sampler')")
        losses = getattr(recipe, "losses", None)
        if not isinstance(losses, dict) or not losses:
            raise RecipeError("losses", f"the {recipe.type} segmentor is trained by a dense criterion: give its "
                              "losses, e.g. [losses.loss_cls] type = \"CrossEntropyLoss\"")
        outputs = segmentor.output_names(training=True)
        supervised = [o for o in outputs if o not in type(segmentor).unsupervised_outputs]
        routes_declared = dict(type(segmentor).loss_routes)
        terms: dict[str, list[Term]] = {}
        for name, value in losses.items():
            tables = value if isinstance(value, list) else [value]
            if not tables:
                raise RecipeError(f"losses.{name}", "an empty array of losses")
            terms[name] = []
            for index, loss_table in enumerate(tables):
                path = f"losses.{name}[{index}]" if isinstance(value, list) else f"losses.{name}"
                route = _route(name, loss_table, routes_declared, path)
                _check_route(route, outputs, recipe.type, path)
                cfg = {k: v for k, v in _table(loss_table, path).items() if k not in ROUTE_KEYS}
                kwargs = LOSSES.validate(cfg, path)
                loss = _construct(cfg["type"], kwargs, path)
                terms[name].append(Term(loss, route))
        covered = {term.route.output for group in terms.values() for term in group}
        missing = [o for o in supervised if o not in covered]
        if missing:
            loss_name = next((n for n, r in routes_declared.items() if r.output == missing[0]),
                             loss_for_output(missing[0]))
            raise RecipeError("losses", f"no loss supervises the output '{missing[0]}' of {recipe.type} (its "
                              f"training outputs: {', '.join(outputs)}); add [losses.{loss_name}]")
        sampler = None
        if sampler_cfg is not None:
            sampler_cfg = _table(sampler_cfg, "criterion.sampler")
            kwargs = SAMPLERS.validate(sampler_cfg, "criterion.sampler")
            sampler = _construct(sampler_cfg["type"], kwargs, "criterion.sampler", SAMPLERS)
        return cls(terms, num_classes=recipe.num_classes, align_corners=bool(recipe.align_corners), sampler=sampler)

    # ------------------------------------------------------------------------------------------- forward
    def forward(self, outputs: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(targets, torch.Tensor):
            targets = {"seg_target": targets}
        losses: dict[str, torch.Tensor] = {}
        for name, group in self.terms.items():
            values = []
            for term in group:
                route: Route = term.route
                if route.output not in outputs:
                    if route.optional:
                        continue
                    raise KeyError(f"{name} supervises output '{route.output}', but the segmentor returned only "
                                   f"{sorted(outputs)} (auxiliary outputs exist only in training mode)")
                prediction = outputs[route.output]
                target = self.resolve_target(route.target, targets, outputs, term.loss, name)
                if route.resize == "bilinear":
                    prediction = self.resize(prediction, target)
                    if self.sampler is not None and prediction.dim() == 4 and target.dim() == 3:
                        prediction, target = self.sampler.sample(prediction, target)
                value = term.loss(prediction, target)
                values.append(value if value.dim() == 0 else value.mean())
            if values:
                losses[name] = torch.stack(values).sum() if len(values) > 1 else values[0]
        return losses

    def resolve_target(self, name: str, targets: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                       loss: nn.Module, loss_name: str) -> torch.Tensor:
        """The target tensor a route names: a batch key, ``output:<name>`` (detached) or a derivation."""
        if name.startswith("output:"):
            return outputs[name[len("output:"):]].detach()
        if name in BATCH_TARGETS:
            if name not in targets:
                raise SegkitError(f"losses.{loss_name} needs '{name}', which the batches do not carry; for "
                                  "'edge_target' add an EdgeExtractor step to dataset.train.data_pipelines")
            return targets[name]
        return TARGETS.get(name)(targets, outputs, num_classes=self.num_classes,
                                 ignore_index=getattr(loss, "ignore_index", -100))

    def resize(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``prediction`` resized bilinearly to the spatial size of ``target`` (``[B, H, W]`` or ``[B, C, H, W]``)."""
        if prediction.dim() != 4 or target.dim() < 3:
            return prediction
        size = target.shape[-2:]
        if prediction.shape[-2:] == size:
            return prediction
        return F.interpolate(prediction, size=size, mode="bilinear", align_corners=self.align_corners)


# ----------------------------------------------------------------------------------------------- helpers


def _table(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise RecipeError(path, f"expected a table, got {value!r}")
    return copy.deepcopy(value)


def _route(name: str, table: Any, declared: dict[str, Route], path: str) -> Route:
    table = _table(table, path)
    if name in declared:
        route = declared[name]
    else:
        try:
            route = Route(output_for_loss(name))
        except ValueError as exc:
            raise RecipeError(path, str(exc)) from None
    overrides = {k: table[k] for k in ROUTE_KEYS if k in table}
    for key, value in overrides.items():
        if not isinstance(value, str):
            raise RecipeError(f"{path}.{key}", f"expected a string, got {value!r}")
    if "resize" in overrides and overrides["resize"] not in ("bilinear", "none"):
        raise RecipeError(f"{path}.resize", f"expected 'bilinear' or 'none', got {overrides['resize']!r}")
    return replace(route, **overrides) if overrides else route


def _check_route(route: Route, outputs: list[str], segmentor_type: str, path: str) -> None:
    if route.output not in outputs:
        raise RecipeError(path, f"the {segmentor_type} segmentor has no output '{route.output}' (its training "
                          f"outputs: {', '.join(outputs)}); remove this loss, configure the head that produces it, "
                          "or route it with output = \"...\"")
    target = route.target
    if target.startswith("output:"):
        if target[len("output:"):] not in outputs:
            raise RecipeError(f"{path}.target", f"no output '{target[len('output:'):]}' to use as a target "
                              f"(training outputs: {', '.join(outputs)})")
    elif target not in target_names():
        from ...errors import did_you_mean

        choices = target_names()
        raise RecipeError(f"{path}.target", f"unknown target '{target}'{did_you_mean(target, choices)} (known: "
                          f"{', '.join(choices)}, or output:<name>)")


def _construct(name: str, kwargs: dict, path: str, registry=LOSSES) -> nn.Module:
    from ..layers import ArgumentError

    try:
        return registry.get(name)(**kwargs)
    except ArgumentError as exc:
        raise exc.at(path) from None
    except ValueError as exc:
        raise RecipeError(path, str(exc)) from None


Criterion = DenseCriterion
"""The dense criterion under its short name."""
