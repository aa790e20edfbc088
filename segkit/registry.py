"""One ``Registry`` class for every kind of component.

A component is registered where it is defined::

    @BACKBONES.register("ResNet")
    class ResNet(nn.Module): ...

and built from a recipe table (a dict with ``type``)::

    BACKBONES.build({"type": "ResNet", "depth": 50}, path="backbone")

Before the component is constructed, the table's keys are checked against the constructor's signature and its
type annotations (through pydantic), so a typo or a wrong type is reported with its TOML path and a suggestion,
before any model is built.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pydantic

from .errors import RecipeError, did_you_mean
from .manifest import matches, summarize

# The modules whose import registers the built-in components. The built-in registries import them on first use
# (a lookup, a listing, a build), so ``from segkit.registry import BACKBONES`` is always complete, while
# ``import segkit`` and the CLI's help stay free of torch.
BUILTIN_COMPONENT_MODULES = ("segkit.data", "segkit.models", "segkit.engine.optim")
_builtins_state = {"loaded": False}


def load_builtin_components() -> None:
    """Import every module that registers built-in components (once; re-entrant calls return at once)."""
    if _builtins_state["loaded"]:
        return
    _builtins_state["loaded"] = True  # set first: modules being imported may look names up
    try:
        for module in BUILTIN_COMPONENT_MODULES:
            importlib.import_module(module)
    except BaseException:
        _builtins_state["loaded"] = False
        raise


def builtin_components_loaded() -> bool:
    return _builtins_state["loaded"]


@functools.cache
def _adapter(annotation: Any) -> pydantic.TypeAdapter | None:
    """A validator for ``annotation``; None when pydantic cannot describe the type (it is then not checked)."""
    try:
        return pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
        return None


def _signature(obj: Callable) -> inspect.Signature:
    target = obj.__init__ if inspect.isclass(obj) and obj.__init__ is not object.__init__ else obj
    return inspect.signature(target)


def _hints(obj: Callable) -> dict[str, Any]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to no type checks
        return {}


class Registry:
    """A name -> component mapping with validated construction."""

    def __init__(self, kind: str, *, builtin: bool = False) -> None:
        self.kind = kind
        self.builtin = builtin  # filled by :func:`load_builtin_components` before its first lookup
        self._entries: dict[str, Callable] = {}

    def _ensure_loaded(self) -> None:
        if self.builtin and not _builtins_state["loaded"]:
            load_builtin_components()

    # ----------------------------------------------------------------- registration
    def register(self, name: str | None = None, obj: Callable | None = None, *, force: bool = False):
        """Register ``obj`` under ``name``; without ``obj`` this is a decorator. Duplicate names fail."""

        def add(item: Callable) -> Callable:
            self._ensure_loaded()  # built-ins first: a plugin reusing a built-in name fails here, not later
            key = name or item.__name__
            if key in self._entries and not force and self._entries[key] is not item:
                raise KeyError(f"{self.kind} '{key}' is already registered ({self.where(key)})")
            self._entries[key] = item
            return item

        return add(obj) if obj is not None else add

    # ----------------------------------------------------------------- lookup
    def get(self, name: str, path: str = "type") -> Callable:
        """Return the component called ``name``; a miss lists the valid names and the closest match."""
        self._ensure_loaded()
        if name not in self._entries:
            names = ", ".join(sorted(self._entries))
            raise RecipeError(
                path, f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)} (known: {names})"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def items(self) -> list[tuple[str, Callable]]:
        return [(n, self._entries[n]) for n in self.names()]

    def where(self, name: str) -> str:
        obj = self.get(name)
        module = getattr(obj, "__module__", "?")
        return f"{module}.{getattr(obj, '__qualname__', name)}"

    def summary(self, name: str) -> str:
        """The first sentence of the component's docstring, reStructuredText markup stripped."""
        return summarize(getattr(self.get(name), "__doc__", ""))

    def filter(self, pattern: str | None) -> list[str]:
        """Names matching ``pattern``: a case-insensitive glob; without wildcards, a substring."""
        return [n for n in self.names() if matches(n, pattern)]

    # ----------------------------------------------------------------- validation and construction
    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters ``name`` takes (``self`` and ``*args`` excluded)."""
        return keyword_parameters(self.get(name))

    def validate(self, cfg: dict, path: str = "", provided: tuple[str, ...] = ()) -> dict:
        """Check a table against the component's signature; return the kwargs coerced by the type hints.

        ``provided`` names arguments the build code passes itself (they must not be missing from ``cfg``).
        Nested tables annotated ``Annotated[dict, TableOf(callable)]`` are checked against that callable's
        signature in turn, with their own TOML path (``backbone.hiera_cfg.depht``).
        """
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise RecipeError(path, f"expected a table with a 'type' key naming a {self.kind}")
        name = cfg["type"]
        prefix = f"{path}." if path else ""
        obj = self.get(name, path=f"{prefix}type")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        return validate_arguments(obj, kwargs, path, provided=provided, what=name)

    def build(self, cfg: dict, path: str = "", **extra: Any) -> Any:
        """Validate ``cfg`` and construct the component; ``extra`` are arguments supplied by the build code."""
        kwargs = self.validate(cfg, path, provided=tuple(extra))
        obj = self.get(cfg["type"])
        return obj(**{**kwargs, **extra})


class TableOf:
    """Marks a nested recipe table as the keyword arguments of ``target``: ``Annotated[dict, TableOf(Hiera)]``.

    The registry checks such a table key by key against ``target``'s signature (unknown keys, missing required
    ones, types), exactly as it checks a component table, and reports errors at the nested TOML path.
    """

    def __init__(self, target: Callable, optional: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> None:
        self.target = target
        self.optional = optional  # required parameters of ``target`` the owner supplies itself
        self.extra = extra  # keys the owner consumes itself (e.g. ``type``), accepted without a check


def keyword_parameters(obj: Callable) -> dict[str, inspect.Parameter]:
    """The keyword parameters ``obj`` (a class: its ``__init__``) takes; ``self``, ``*args``, ``**kwargs`` excluded."""
    return {p.name: p for p in _signature(obj).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _table_of(annotation: Any) -> TableOf | None:
    """The ``TableOf`` marker of ``annotation`` (also inside ``X | None``), or None."""
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, TableOf)), None)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            marker = _table_of(arg)
            if marker is not None:
                return marker
    return None


def _error_path(prefix: str, pname: str, loc: tuple) -> str:
    """``backbone.cfg.key`` from a pydantic error location inside parameter ``pname``."""
    parts = [pname]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item not in ("function-after", "function-before", "typed-dict", "list", "dict"):
            parts.append(str(item))
    return prefix + ".".join(parts)


def validate_arguments(obj: Callable, kwargs: dict, path: str = "", provided: tuple[str, ...] = (),
                       what: str | None = None) -> dict:
    """Check ``kwargs`` against ``obj``'s signature and type hints; return them coerced.

    Raises :class:`RecipeError` at ``path.<key>`` for an unknown key (with a suggestion), a missing required one,
    or a value of the wrong type. Nested ``TableOf`` tables are checked recursively.
    """
    what = what or getattr(obj, "__name__", "this component")
    prefix = f"{path}." if path else ""
    params = keyword_parameters(obj)
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in _signature(obj).parameters.values())
    hints = _hints(obj)
    kwargs = dict(kwargs)
    if not any_keyword:
        for key in kwargs:
            if key not in params:
                raise RecipeError(f"{prefix}{key}", f"{what} takes no '{key}'{did_you_mean(key, params)}")
    for pname, param in params.items():
        if pname in kwargs:
            annotation = hints.get(pname)
            marker = _table_of(annotation) if annotation is not None else None
            if marker is not None and isinstance(kwargs[pname], dict):
                table = {k: v for k, v in kwargs[pname].items() if k not in marker.extra}
                checked = validate_arguments(marker.target, table, f"{prefix}{pname}", provided=marker.optional,
                                             what=f"{what}.{pname}")
                kwargs[pname] = {**{k: v for k, v in kwargs[pname].items() if k in marker.extra}, **checked}
                continue
            adapter = _adapter(annotation) if annotation is not None and annotation is not Any else None
            if adapter is not None:
                try:
                    kwargs[pname] = adapter.validate_python(kwargs[pname])
                except pydantic.ValidationError as exc:
                    err = exc.errors()[0]
                    where = _error_path(prefix, pname, tuple(err.get("loc", ())))
                    if err.get("type") == "extra_forbidden":
                        raise RecipeError(where, f"{what} takes no '{where.rsplit('.', 1)[-1]}' in {pname}") from None
                    raise RecipeError(
                        where, f"{err['msg']} (got {kwargs[pname]!r}; {what} expects {_type_name(annotation)})",
                    ) from None
        elif param.default is inspect.Parameter.empty and pname not in provided:
            raise RecipeError(f"{prefix}{pname}", f"{what} needs '{pname}' and the recipe does not give it")
    return kwargs


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (not starting with ``_``), so the components they define register.

    Each component family's ``__init__`` calls this: adding a component is adding a file.
    """
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


BACKBONES = Registry("backbone", builtin=True)
HEADS = Registry("head", builtin=True)
SEGMENTORS = Registry("segmentor", builtin=True)
LOSSES = Registry("loss", builtin=True)
NECKS = Registry("neck", builtin=True)
CRITERIA = Registry("criterion", builtin=True)
SAMPLERS = Registry("pixel sampler", builtin=True)
TARGETS = Registry("target", builtin=True)
DATASETS = Registry("dataset", builtin=True)
TRANSFORMS = Registry("transform", builtin=True)
OPTIMIZERS = Registry("optimizer", builtin=True)
SCHEDULERS = Registry("scheduler", builtin=True)
NORMS = Registry("norm", builtin=True)
ACTIVATIONS = Registry("activation", builtin=True)
PREPARERS = Registry("dataset preparer", builtin=True)

REGISTRIES: dict[str, Registry] = {
    "backbones": BACKBONES,
    "heads": HEADS,
    "segmentors": SEGMENTORS,
    "losses": LOSSES,
    "necks": NECKS,
    "criteria": CRITERIA,
    "samplers": SAMPLERS,
    "targets": TARGETS,
    "datasets": DATASETS,
    "transforms": TRANSFORMS,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "norms": NORMS,
    "activations": ACTIVATIONS,
    "preparers": PREPARERS,
}
