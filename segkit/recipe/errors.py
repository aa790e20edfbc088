"""Turning pydantic's validation errors into one path-qualified, friendly message."""

from __future__ import annotations

import typing
from typing import Any

import pydantic

from ..errors import RecipeError, did_you_mean


def _model_at(model: type[pydantic.BaseModel], loc: tuple) -> type[pydantic.BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (None when it is a free table)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, pydantic.BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``Foo | None`` -> ``Foo``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args and len(args) == 1:
        return args[0]
    return annotation


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "union[", "tagged-union")) and part not in (
            "dict[str,any]", "list[dict[str,any]]", "none"
        ):
            out += f".{part}" if out else part
    return out


def translate_validation_error(exc: pydantic.ValidationError, layers: list, root: type[pydantic.BaseModel]) -> RecipeError:
    """Pick the most useful error (unknown and missing keys first) and phrase it for a recipe author."""
    from .load import origin_of

    errors = sorted(exc.errors(), key=lambda e: {"extra_forbidden": 0, "missing": 1}.get(e["type"], 2))
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))
    path = dotted(loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(root, loc)
        known = list(owner.model_fields) if owner else []
        hint = did_you_mean(str(loc[-1]), known)
        message = f"unknown key{hint}" + (f" (known keys here: {', '.join(known)})" if not hint and known else "")
    elif err["type"] == "missing":
        message = "required key is missing"
    else:
        message = f"{err['msg']} (got {err.get('input')!r})"
    more = f" [{len(errors) - 1} more problem(s) after this one]" if len(errors) > 1 else ""
    return RecipeError(path, message + more, source=origin_of(path, layers) if layers else None)
