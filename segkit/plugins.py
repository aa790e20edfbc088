"""Plugins: modules that register components (``--plugin my_pkg.module`` or the ``segkit.plugins`` entry points).

Light on purpose: the CLI loads plugins before every command, so this imports nothing heavy itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .errors import SegkitError

_loaded: list[str] = []


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Import ``--plugin`` modules and every ``segkit.plugins`` entry point (they register components).

    Returns what was loaded by this call; :func:`loaded_plugins` gives every plugin loaded in this process.
    """
    loaded = []
    for ep in entry_points(group="segkit.plugins"):
        ep.load()
        loaded.append(ep.value)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SegkitError(f"--plugin {name}: cannot import it ({exc})") from None
        except Exception as exc:  # noqa: BLE001  (the plugin's own code failed while importing)
            raise SegkitError(f"--plugin {name}: importing it raised {type(exc).__name__}: {exc}; fix the plugin "
                              "or leave --plugin out") from None
        loaded.append(name)
    _loaded.extend(n for n in loaded if n not in _loaded)
    return loaded


def loaded_plugins() -> list[str]:
    """The plugins loaded in this process so far (their components are in the live registries only)."""
    return list(_loaded)
