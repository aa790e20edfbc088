"""An argument error that knows which constructor argument is wrong.

Model constructors do not know where in a recipe their arguments came from. They raise ``ArgumentError`` naming the
argument (``depth``); ``models/build.py`` re-raises it as a :class:`~segkit.errors.RecipeError` with the full TOML
path (``backbone.depth``). Constructed directly from Python, the error still reads well: ``depth: ...``.
"""

from __future__ import annotations

from ...errors import RecipeError


class ArgumentError(RecipeError):
    """A constructor argument is invalid or conflicts with another one."""

    def __init__(self, argument: str, detail: str) -> None:
        self.argument = argument
        self.detail = detail
        super().__init__(argument, detail)

    def at(self, prefix: str) -> RecipeError:
        """The same error as a ``RecipeError`` whose path starts with ``prefix`` (``"backbone"``)."""
        path = f"{prefix}.{self.argument}" if prefix else self.argument
        return RecipeError(path, self.detail)
