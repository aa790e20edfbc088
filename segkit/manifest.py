"""The registry manifest: every built-in component's kind, name, defining object and one-line summary.

``segkit list-registry`` answers from ``segkit/_manifest.json`` so that it never imports torch; the file is
generated from the real registries (``python -m segkit.manifest``) and a test keeps it identical to them
(``tests/cli/test_manifest.py``). ``python -m segkit.manifest --check`` says whether it is current.

This module imports nothing heavy: :func:`build_manifest` imports the registries only when it is called.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_PATH = Path(__file__).with_name("_manifest.json")
REGENERATE = "python -m segkit.manifest"

_LITERAL = re.compile(r"(``[^`]+``)")
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`(~?)([^`<]*?)\s*(?:<([^`>]+)>)?`")  # :class:`~a.B` / :func:`text <t>`
_BACKTICKS = re.compile(r"`([^`]+)`_?")
_EMPHASIS = re.compile(r"(?<![\w*])(\*\*?)(?=\S)([^*]+?)(?<=\S)\1(?![\w*])")
_SENTENCE_END = re.compile(r"(?<=[^\s.]{2}[.!?])\s+(?=[A-Z(\"'])")


# ---------------------------------------------------------------------------------------- text helpers
def strip_markup(text: str) -> str:
    """reStructuredText inline markup removed: ````x````, ```x```, ``:class:`~a.B``` (-> ``B``), ``*x*``, ``**x**``."""
    parts = _LITERAL.split(text)
    for i, part in enumerate(parts):
        if i % 2:  # a literal: keep its text as is
            parts[i] = part[2:-2]
            continue
        part = _ROLE.sub(lambda m: (m.group(2) or m.group(3) or "").rsplit(".", 1)[-1] if m.group(1)
                         else (m.group(2) or m.group(3) or ""), part)
        part = _BACKTICKS.sub(r"\1", part)
        parts[i] = _EMPHASIS.sub(r"\2", part)
    return "".join(parts)


def summarize(doc: str | None) -> str:
    """The one-line summary of a docstring: its first sentence (of the first paragraph), markup stripped."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    text = strip_markup(" ".join(line.strip() for line in paragraph.splitlines()).strip())
    return _SENTENCE_END.split(text, 1)[0].strip()


def matches(name: str, pattern: str | None) -> bool:
    """Case-insensitive glob (``'res*'``); a pattern without wildcards matches anywhere in the name."""
    if not pattern:
        return True
    pattern = pattern.lower()
    if not any(c in pattern for c in "*?["):
        return pattern in name.lower()
    return fnmatch.fnmatchcase(name.lower(), pattern)


# ---------------------------------------------------------------------------------------- reading
@functools.cache
def load_manifest(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The committed manifest (``{"registries": {kind: [rows]}, "versions": {...}}``)."""
    return json.loads(Path(path or MANIFEST_PATH).read_text(encoding="utf-8"))


def kinds() -> list[str]:
    """The registry kinds (``backbones``, ``heads``, ...), in the registries' order."""
    return list(load_manifest()["registries"])


def names(kind: str | None = None) -> list[str]:
    """Component names of one kind, or of every kind (sorted, without repeats)."""
    registries = load_manifest()["registries"]
    selected = [kind] if kind in registries else list(registries)
    return sorted({row["name"] for k in selected for row in registries[k]})


def check_kind(kind: str | None, known: list[str]) -> None:
    """A :class:`~segkit.errors.SegkitError` naming the known kinds (and the closest one) for an unknown kind."""
    if kind is not None and kind not in known:
        from .errors import SegkitError, did_you_mean

        raise SegkitError(f"unknown registry '{kind}'{did_you_mean(kind, known)}; known: {', '.join(known)}")


def listing(kind: str | None = None, pattern: str | None = None) -> dict[str, list[dict]]:
    """``{kind: [{name, where, summary[, structure_types]}]}`` from the manifest, as ``api.list_registry`` gives
    it from the live registries."""
    registries = load_manifest()["registries"]
    check_kind(kind, list(registries))
    return {k: [dict(row) for row in registries[k] if matches(row["name"], pattern)]
            for k in ([kind] if kind else registries)}


def kinds_of(name: str, source: dict[str, list[dict]]) -> list[str]:
    """The kinds under which ``name`` is registered in a listing."""
    return [k for k, rows in source.items() if any(row["name"] == name for row in rows)]


# ---------------------------------------------------------------------------------------- generating
def _external_versions(registries: dict[str, list[dict]]) -> dict[str, str]:
    """Versions of the packages (other than segkit) that define registered components: their docstrings
    and module paths are part of the manifest."""
    from importlib.metadata import packages_distributions, version

    dists = packages_distributions()
    tops = {row["where"].split(".", 1)[0] for rows in registries.values() for row in rows} - {"segkit"}
    return {dist: version(dist) for top in sorted(tops) for dist in dists.get(top, [])[:1]}


def build_manifest() -> dict[str, Any]:
    """The manifest of the built-in components, from the real registries (imports every component)."""
    from . import api
    from .registry import load_builtin_components

    load_builtin_components()
    registries = api.list_registry()
    return {
        "generated_by": f"{REGENERATE} (from the registries; tests/cli/test_manifest.py checks it)",
        "versions": _external_versions(registries),
        "registries": registries,
    }


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"


def write_manifest(path: str | os.PathLike | None = None) -> Path:
    """Regenerate the manifest file, atomically (a temporary file renamed over it)."""
    target = Path(path or MANIFEST_PATH)
    text = dumps(build_manifest())
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    load_manifest.cache_clear()
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m segkit.manifest [--check | --print]``: regenerate, check, or print the manifest."""
    args = sys.argv[1:] if argv is None else argv
    if "--print" in args:
        sys.stdout.write(dumps(build_manifest()))
        return 0
    if "--check" in args:
        current = MANIFEST_PATH.read_text(encoding="utf-8") if MANIFEST_PATH.is_file() else ""
        if current != dumps(build_manifest()):
            print(f"{MANIFEST_PATH} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{MANIFEST_PATH} is current")
        return 0
    print(f"wrote {write_manifest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
