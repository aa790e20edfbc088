"""SSSegmentation's own loss and sampler modules as second references, for tests marked ``ssseg``.

Those tests are not part of the default suite (SSSegmentation is not a dependency); ``nox -s parity`` runs them with
``SSSEG_SRC`` pointing at a checkout of ``SegmentationBLWX/sssegmentation`` at ``6d0238f5`` (1.7.0). The files needed
import with torch alone.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest


def ssseg_root() -> Path:
    src = os.environ.get("SSSEG_SRC")
    if not src or not (Path(src) / "ssseg").is_dir():
        pytest.fail("SSSEG_SRC must name a checkout of SegmentationBLWX/sssegmentation at 6d0238f5 "
                    "(git clone https://github.com/SegmentationBLWX/sssegmentation && git checkout 6d0238f5)")
    return Path(src)


def ssseg_module(subpackage: str, name: str) -> types.ModuleType:
    """``ssseg/modules/models/<subpackage>/<name>.py`` imported on its own (its package ``__init__`` needs more)."""
    package = f"_ssseg_{subpackage}_reference"
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(ssseg_root() / "ssseg" / "modules" / "models" / subpackage)]
        sys.modules[package] = module
    return importlib.import_module(f"{package}.{name}")
