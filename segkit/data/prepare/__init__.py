"""``segkit prepare-data``: dataset preparers (download or take an archive, extract, check).

A preparer is any object with the attributes of :class:`DatasetPreparer`, registered in
:data:`segkit.registry.PREPARERS` under its ``name`` (one file per dataset in this package)::

    @register_preparer
    class ADE20kPreparer:
        name = "ade20k"
        dirname = "ADE20k"
        ...
        def prepare(self, root, from_archive=None): ...

``root`` is the folder that holds datasets (``--root data``); a preparer writes its dataset to
``root / dirname`` (``data/synthetic`` for ``synthetic``), the ``rootdir`` the recipes' dataset tables use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ...errors import DownloadError, SegkitError, did_you_mean
from ...registry import PREPARERS
from . import download as _download
from .archive import safe_extract

__all__ = [
    "DatasetPreparer",
    "download_sources",
    "get_preparer",
    "prepare_dataset",
    "register_preparer",
    "safe_extract",
]

REQUIRED_ATTRIBUTES = ("name", "dirname", "description", "size", "license", "sources")


@runtime_checkable
class DatasetPreparer(Protocol):
    """What ``segkit prepare-data NAME`` needs from a dataset.

    ``sources`` lists the files to download as ``{"url", "sha256", "filename"}`` dicts (empty when nothing is
    downloaded); ``size`` and ``license`` are shown by ``segkit prepare-data --list``.
    """

    name: str
    dirname: str
    description: str
    size: str
    license: str
    sources: list[dict[str, str]]

    def prepare(self, root: Path, from_archive: Path | None = None) -> dict[str, Any]:
        """Put the dataset in ``root / dirname`` (from ``from_archive`` when given); return a summary."""
        ...


def register_preparer(preparer: Any) -> Any:
    """Register a preparer (a class is instantiated without arguments); usable as a class decorator."""
    instance = preparer() if isinstance(preparer, type) else preparer
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(instance, a)]
    if missing or not callable(getattr(instance, "prepare", None)):
        raise TypeError(f"{instance!r} is not a DatasetPreparer: missing {missing or ['prepare()']}")
    PREPARERS.register(instance.name, instance)
    return preparer


def get_preparer(name: str) -> DatasetPreparer:
    """The preparer called ``name`` (case-insensitive, as SSSegmentation's script); a miss suggests the closest."""
    if name not in PREPARERS:
        matches = [n for n in PREPARERS.names() if n.lower() == name.lower()]
        if not matches:
            known = PREPARERS.names()
            raise SegkitError(
                f"unknown dataset '{name}'{did_you_mean(name.lower(), known)} (known: {', '.join(known)})"
            )
        name = matches[0]
    return PREPARERS.get(name)


def prepare_dataset(name: str, root: str | os.PathLike, from_archive: str | os.PathLike | None = None) -> dict:
    """Prepare dataset ``name`` under ``root`` (the folder of datasets) and return the preparer's summary."""
    preparer = get_preparer(name)
    archive = Path(from_archive) if from_archive is not None else None
    if archive is not None and not archive.is_file():
        raise DownloadError(f"--from-archive {archive}: no such file")
    summary = preparer.prepare(Path(root), archive)
    return {"name": preparer.name, **summary}


def download_sources(preparer: DatasetPreparer, directory: Path, **kwargs: Any) -> list[Path]:
    """Download every file of ``preparer.sources`` into ``directory`` (checksummed, resumable)."""
    return [
        _download.download(s["url"], directory / s["filename"], sha256=s.get("sha256"), dataset=preparer.name, **kwargs)
        for s in preparer.sources
    ]



from ...registry import import_submodules as _import_submodules  # noqa: E402

_import_submodules(__name__)  # every module here registers its components
