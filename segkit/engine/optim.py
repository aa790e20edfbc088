"""Optimizers (torch.optim, with SSSegmentation's ``params_rules``) and the per-iteration LR schedulers."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..errors import RecipeError
from ..recipe.schema import SchedulerCfg
from ..registry import NORMS, OPTIMIZERS, SCHEDULERS

for _name in ("SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "SparseAdam", "Adamax", "ASGD", "LBFGS", "NAdam",
              "RAdam", "RMSprop", "Rprop"):
    if hasattr(torch.optim, _name):
        OPTIMIZERS.register(_name, getattr(torch.optim, _name))



def _norm_types() -> tuple[type, ...]:
    """Every registered norm class (user norms included), for ``norm_wd_multiplier``."""
    return tuple(c for _, c in NORMS.items() if isinstance(c, type)) + (nn.modules.batchnorm._NormBase,)


def param_groups(model: nn.Module, lr: float, weight_decay: float | None, params_rules: dict,
                 base_setting: dict, filter_params: bool) -> list[dict]:
    """SSSegmentation's DefaultParamsConstructor.

    With no rules every parameter is in one group. Otherwise each parameter's full name is matched against the
    rule keys, longest first (ties alphabetical); the first key that is a substring wins and scales lr and weight
    decay by its ``lr_multiplier``/``wd_multiplier``. Unmatched parameters follow ``base_setting``: biases of
    non-norm layers get ``bias_lr_multiplier``/``bias_wd_multiplier``, norm parameters ``norm_wd_multiplier``.
    """
    if not params_rules:
        params = [p for p in model.parameters() if p.requires_grad or not filter_params]
        return [{"params": params}]
    params_rules = translate_rule_keys(params_rules, model)
    keys = sorted(params_rules, key=lambda k: (-len(k), k))
    norm_types = _norm_types()
    groups: list[dict] = []
    used: set[str] = set()
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            rule_key = next((k for k in keys if k in full), None)
            used.add(rule_key)
            if filter_params and not param.requires_grad:
                continue
            if rule_key is not None:
                rule = dict(params_rules[rule_key])
                lr_mult, wd_mult = rule.get("lr_multiplier", 1.0), rule.get("wd_multiplier", 1.0)
            else:
                rule = {}
                is_norm = isinstance(module, norm_types)
                lr_mult = base_setting.get("lr_multiplier", 1.0)
                wd_mult = base_setting.get("wd_multiplier", 1.0)
                if pname == "bias" and not is_norm:
                    lr_mult *= base_setting.get("bias_lr_multiplier", 1.0)
                    wd_mult *= base_setting.get("bias_wd_multiplier", 1.0)
                elif is_norm:
                    wd_mult *= base_setting.get("norm_wd_multiplier", 1.0)
            group = {**rule, "params": [param], "name": full, "rule_key": rule_key or "base_setting",
                     "lr_multiplier": lr_mult, "lr": lr * lr_mult}
            if weight_decay is not None:
                group["weight_decay"] = weight_decay * wd_mult
            groups.append(group)
    unused = [k for k in keys if k not in used]
    if unused:
        names = [n for n, _ in model.named_parameters()]
        raise RecipeError(f"scheduler.optimizer.params_rules.{unused[0]}", "matches no parameter of the model (rule "
                          "keys are substrings of parameter names such as "
                          f"{', '.join(repr(n) for n in names[:1] + names[-1:])})")
    return groups


SSSEG_RULE_PREFIXES: dict[str, str] = {"backbone_net": "backbone"}
"""SSSegmentation's attribute names in ``params_rules`` keys -> segkit's module names (its configs key 17 rules on
``backbone_net``; heads keep SSSegmentation's inner names such as ``decoder``, ``convs`` and ``query_embed``)."""


def translate_rule_keys(params_rules: dict, model: nn.Module | None = None) -> dict:
    """``params_rules`` with SSSegmentation's names renamed: its prefixes (``backbone_net.stages.0`` ->
    ``backbone.stages.0``) and the parameter names a module declares it renamed (``ssseg_param_aliases`` on the
    module's class, e.g. Twins' ``position_encodings`` -> timm's ``pos_block``)."""
    aliases: dict[str, str] = {}
    for module in (model.modules() if model is not None else ()):
        aliases.update(getattr(type(module), "ssseg_param_aliases", {}))
    pattern = re.compile("|".join(re.escape(k) for k in sorted(aliases, key=len, reverse=True))) if aliases else None
    translated = {}
    for key, rule in params_rules.items():
        head, dot, rest = key.partition(".")
        key = SSSEG_RULE_PREFIXES.get(head, head) + dot + rest
        if pattern is not None:  # one pass, longest alias first (Swin's stage renumbering must not chain)
            key = pattern.sub(lambda match: aliases[match.group(0)], key)
        translated[key] = rule
    return translated


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimizer of ``scheduler.optimizer`` for ``model``."""
    kwargs = cfg.model_dump()
    rules, filter_params, base = kwargs.pop("params_rules"), kwargs.pop("filter_params"), kwargs.pop("base_setting")
    constructor = rules.pop("type", "DefaultParamsConstructor")
    if constructor == "LearningRateDecayParamsConstructor":
        from .lr_decay import lr_decay_param_groups

        for key in ("num_layers", "decay_rate"):
            if key not in rules:
                raise RecipeError(f"scheduler.optimizer.params_rules.{key}", f"{constructor} needs '{key}'")
        groups = lr_decay_param_groups(model, lr=kwargs["lr"], weight_decay=kwargs.get("weight_decay") or 0.0,
                                       num_layers=rules["num_layers"], decay_rate=rules["decay_rate"],
                                       decay_type=rules.get("decay_type", "layer_wise_vit"))
    elif constructor == "DefaultParamsConstructor":
        groups = param_groups(model, kwargs["lr"], kwargs.get("weight_decay"), rules, base, filter_params)
    else:
        raise RecipeError("scheduler.optimizer.params_rules.type", f"unknown params constructor '{constructor}'"
                          "; expected DefaultParamsConstructor or LearningRateDecayParamsConstructor")
    for group in groups:
        group.setdefault("lr_multiplier", 1.0)
    return OPTIMIZERS.build(kwargs, path="scheduler.optimizer", params=groups)


class _BaseScheduler:
    """Sets every param group's lr once per iteration, before the forward pass (as SSSegmentation does)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerCfg, iters_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.base_lr = cfg.optimizer.lr
        self.min_lr = cfg.min_lr if cfg.min_lr is not None else self.base_lr * 0.01
        self.max_epochs = cfg.max_epochs
        self.iters_per_epoch = max(iters_per_epoch, 1)
        self.max_iters = self.max_epochs * self.iters_per_epoch
        self.warmup = cfg.warmup_cfg
        self.clipgrad = cfg.clipgrad_cfg
        self.cfg = cfg

    def scheduled_lr(self, cur_iter: int) -> float:
        raise NotImplementedError

    def lr_at(self, cur_iter: int) -> float:
        lr = self.scheduled_lr(cur_iter)
        w = self.warmup
        if w is not None and w.iters >= cur_iter:
            progress = cur_iter / max(w.iters, 1)
            if w.type == "constant":
                lr = lr * w.ratio
            elif w.type == "linear":
                lr = lr * (1 - (1 - progress) * (1 - w.ratio))
            else:
                lr = lr * w.ratio ** (1 - progress)
        return lr

    def update_lr(self, cur_iter: int) -> float:
        lr = self.lr_at(cur_iter)
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("lr_multiplier", 1.0) * lr
        return lr

    def clip_gradients(self) -> None:
        """Clip per param group, as SSSegmentation does (``clipgrad_cfg``)."""
        if self.clipgrad is None:
            return
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                nn.utils.clip_grad_norm_(params, self.clipgrad.max_norm, self.clipgrad.norm_type)


@SCHEDULERS.register("PolyScheduler")
class PolyScheduler(_BaseScheduler):
    """Polynomial decay per iteration: ``(1 - it/max_it)**power * (lr - min_lr) + min_lr``."""

    def scheduled_lr(self, cur_iter: int) -> float:
        progress = min(cur_iter / max(self.max_iters, 1), 1.0)
        return (1 - progress) ** self.cfg.power * (self.base_lr - self.min_lr) + self.min_lr


@SCHEDULERS.register("CosineScheduler")
class CosineScheduler(_BaseScheduler):
    """Cosine annealing from lr to min_lr, by epoch (default) or by iteration."""

    def scheduled_lr(self, cur_iter: int) -> float:
        if self.cfg.by_epoch:
            progress = (cur_iter // self.iters_per_epoch) / max(self.max_epochs, 1)
        else:
            progress = cur_iter / max(self.max_iters, 1)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedulerCfg, iters_per_epoch: int) -> _BaseScheduler:
    cls = SCHEDULERS.get(cfg.type, path="scheduler.type")
    return cls(optimizer, cfg, iters_per_epoch)
