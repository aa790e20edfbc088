"""``ArchivePreparer``: the steps every dataset shares, so a dataset's file only says what differs.

``prepare(root, from_archive)``:

1. ``root/<dirname>`` already there: check it and report (nothing is rewritten).
2. Archives: downloaded from :attr:`sources` into ``root/.downloads/<name>`` (resumable, checksummed where a
   published checksum exists), or the ``--from-archive`` file plus the other files of its :class:`Bundle`, looked up
   in the same folder. Multi-part archives are joined (:mod:`.multipart`).
3. Everything is extracted (refusing escaping paths) into a staging folder ``root/.<name>.*.partial`` and merged into
   one tree; :meth:`convert` turns that tree into the final layout (facts §9.1) and returns its folder.
4. :meth:`check` reads every id list and looks for every image and mask; a missing file is an error. Counts are
   compared with the published ones; a difference is reported in the summary (``check``), not fatal.
5. The folder is renamed into place. Any failure removes the staging folder: nothing half-written is left.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DataError, DownloadError
from ...fileio import make_temp_dir
from .archive import safe_extract
from .convert import locate, merge_tree, read_id_list, verify_digests
from .download import download
from .multipart import assemble, first_part, is_later_part

DOWNLOADS = ".downloads"
SSSEG_RELEASES = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_datasets"
SSSEG_PAGE = "https://github.com/SegmentationBLWX/modelstore/releases/tag/ssseg_datasets"


@dataclass(frozen=True)
class Bundle:
    """One way the dataset is distributed: the files that belong together and where to get them."""

    label: str
    files: tuple[str, ...]
    where: str

    def shown(self) -> str:
        names = self.files if len(self.files) <= 3 else (self.files[0], "...", self.files[-1])
        return f"{' + '.join(names)} ({self.label}, from {self.where})"


@dataclass(frozen=True)
class SplitSpec:
    """One split of the prepared layout, for the final check.

    ``ids``: an id list (relative path) or ``"glob:<pattern>"`` (ids = what the single ``*`` matches).
    ``image`` / ``mask``: templates with ``{id}`` and ``{stem}`` (id up to its first dot), or a function of the id;
    a result containing ``*`` must match at least one file. ``expected``: the published number of ids.
    """

    name: str
    ids: str
    image: str | Callable[[str], str]
    mask: str | Callable[[str], str] | None = None
    expected: int | None = None


def ssseg_bundle(*files: str) -> Bundle:
    return Bundle("SSSegmentation's archive", files, SSSEG_PAGE)


def ssseg_sources(bundle: Bundle) -> list[dict[str, Any]]:
    """Download entries for an SSSegmentation archive (no checksum is published for them)."""
    return [{"url": f"{SSSEG_RELEASES}/{name}", "filename": name, "sha256": None} for name in bundle.files]


def numbered(base: str, count: int) -> tuple[str, ...]:
    """``numbered("VOCdevkit.zip", 3)`` -> ``VOCdevkit.zip.001`` ... ``.003`` (7z volumes)."""
    return tuple(f"{base}.{i:03d}" for i in range(1, count + 1))


def split_zip(stem: str, count: int) -> tuple[str, ...]:
    """``split_zip("CityScapes", 11)`` -> ``CityScapes.zip``, ``CityScapes.z01`` ... ``.z11`` (zip -s)."""
    return (f"{stem}.zip", *(f"{stem}.z{i:02d}" for i in range(1, count + 1)))


class ArchivePreparer:
    """Base of the dataset preparers (see the module docstring); subclasses set the attributes below."""

    name: str
    dirname: str
    description: str
    size: str
    license: str
    sources: list[dict[str, Any]] = []
    bundles: tuple[Bundle, ...] = ()
    markers: tuple[str, ...] = ()
    splits: tuple[SplitSpec, ...] = ()
    download_retries = 3
    download_timeout = 30.0

    # ------------------------------------------------------------------------------------------ flow
    def prepare(self, root: Path, from_archive: Path | None = None) -> dict[str, Any]:
        """Put the dataset in ``root / dirname`` (see the module docstring) and return a summary."""
        root = Path(root)
        target = root / self.dirname
        if target.exists():
            return {"root": str(target), "source": "already prepared", **self.check(target, existing=True)}
        if from_archive is None:
            archives = self.fetch(root)
            source = "downloaded: " + ", ".join(s["filename"] for s in self.sources)
        else:
            archives, source = self.archives_for(Path(from_archive)), str(from_archive)
        root.mkdir(parents=True, exist_ok=True)
        staging = make_temp_dir(root, prefix=f".{self.name}.", suffix=".partial")  # umask's mode, not 0700
        created_parent = not target.parent.exists()
        try:
            tree = self.unpack(archives, staging)
            folder = self.convert(tree)
            summary = self.check(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, target)
        except BaseException:
            if created_parent and target.parent.is_dir() and not any(target.parent.iterdir()):
                target.parent.rmdir()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if from_archive is None:  # like SSSegmentation's script, the archives go once the dataset is in place
            shutil.rmtree(root / DOWNLOADS / self.name, ignore_errors=True)
            if (root / DOWNLOADS).is_dir() and not any((root / DOWNLOADS).iterdir()):
                (root / DOWNLOADS).rmdir()
        return {"root": str(target), "source": source, **summary}

    def fetch(self, root: Path) -> list[Path]:
        """Download :attr:`sources` (resuming ``.part`` files); a failure says how to supply them by hand."""
        if not self.sources:
            raise DownloadError(f"{self.name} cannot be downloaded automatically. {self.manual_hint()}")
        directory = root / DOWNLOADS / self.name
        files = []
        for source in self.sources:
            try:
                path = download(source["url"], directory / source["filename"], sha256=source.get("sha256"),
                                dataset=self.name, retries=self.download_retries, timeout=self.download_timeout)
            except DownloadError as exc:  # download()'s generic hint is replaced by this dataset's own
                reason = re.split(r"\. (?:To supply the file by hand|If this machine is offline)", str(exc))[0]
                raise DownloadError(f"{reason}.\n{self.manual_hint()}") from None
            verify_digests(path, {**source, "sha256": None, "downloaded": True})
            files.append(path)
        return [f for f in files if not is_later_part(f)]

    def archives_for(self, given: Path) -> list[Path]:
        """The archives to unpack for ``--from-archive given``: its bundle's files, or ``given`` alone.

        A file named as in a :class:`Bundle` brings the bundle's other files, which must sit next to it. Any other
        archive is taken to hold the dataset already in its final layout (e.g. a copy of a prepared folder).
        """
        name = first_part(given).name
        for bundle in self.bundles:
            if name in bundle.files or given.name in bundle.files:
                paths = [given.parent / f for f in bundle.files]
                missing = [p.name for p in paths if not p.is_file()]
                if missing:
                    raise DownloadError(
                        f"--from-archive {given}: {bundle.label} also needs {', '.join(missing)} in {given.parent} "
                        f"(get them from {bundle.where})"
                    )
                for path in paths:
                    verify_digests(path, self.source_for(path.name))
                return [p for p in paths if not is_later_part(p)]
        return [given]

    def source_for(self, filename: str) -> dict[str, Any]:
        return next((s for s in self.sources if s["filename"] == filename), {})

    def unpack(self, archives: list[Path], staging: Path) -> Path:
        """Join multi-part sets, extract every archive safely and merge them into ``staging/tree``."""
        tree = staging / "tree"
        tree.mkdir()
        for index, archive in enumerate(archives):
            single = assemble(archive, staging)
            part = safe_extract(single, staging / f"extract{index}")
            if single != archive:
                single.unlink()
            merge_tree(part, tree)
            shutil.rmtree(part, ignore_errors=True)
        return tree

    def convert(self, tree: Path) -> Path:
        """Turn the unpacked ``tree`` into the final layout and return its folder (default: find it)."""
        return self.find(tree)

    def find(self, tree: Path, markers: tuple[str, ...] | None = None) -> Path:
        """The folder under ``tree`` that holds ``markers`` (default :attr:`markers`); a clear error if none."""
        markers = markers or self.markers
        folder = locate(tree, markers)
        if folder is None:
            top = ", ".join(sorted(p.name for p in tree.iterdir())[:10]) or "nothing"
            raise DataError(
                f"the archives hold no {self.name} dataset: no folder with {', '.join(markers)} "
                f"(top level: {top}). Expected {self.manual_hint(short=True)}"
            )
        return folder

    def manual_hint(self, short: bool = False) -> str:
        options = "; or ".join(b.shown() for b in self.bundles) or "an archive of the dataset in its final layout"
        if short:
            return options
        first = self.bundles[0].files[0] if self.bundles else "ARCHIVE"
        return (
            f"To supply the files by hand, download {options}; put them in one folder and run: "
            f"segkit prepare-data {self.name} --from-archive FOLDER/{first}"
        )

    # ------------------------------------------------------------------------------------------ check
    def check(self, folder: Path, existing: bool = False) -> dict[str, Any]:
        """Count every split's ids, images and masks; missing files raise, count differences are reported."""
        counts: dict[str, Any] = {}
        errors, differences = [], []
        for split in self.splits:
            try:
                ids = split_ids(folder, split.ids)
            except DataError as exc:
                errors.append(str(exc))
                continue
            counts[split.name] = len(ids)
            for kind, template in (("image", split.image), ("mask", split.mask)):
                missing = [i for i in ids if template is not None and not exists(folder, fill(template, i))]
                if missing:
                    errors.append(f"split '{split.name}': {len(missing)} of {len(ids)} ids have no {kind} "
                                  f"(e.g. {fill(template, missing[0])})")
            if split.expected is not None and len(ids) != split.expected:
                differences.append(f"{split.name} has {len(ids)} (expected {split.expected})")
        if errors:
            hint = "; remove it and run segkit prepare-data again" if existing else ""
            raise DataError(f"{folder} is not a complete {self.name} dataset{hint}: " + "; ".join(errors))
        counts["check"] = (
            "counts differ from the official release: " + ", ".join(differences) if differences
            else "ok" + (" (counts match the official release)" if any(s.expected for s in self.splits) else "")
        )
        return counts


def split_ids(folder: Path, ids: str) -> list[str]:
    """The ids of a :class:`SplitSpec`: the lines of a list file or the ``*`` parts of a glob's matches."""
    if not ids.startswith("glob:"):
        return read_id_list(folder / ids)
    pattern = ids[len("glob:") :]
    prefix, _, suffix = pattern.partition("*")
    matches = sorted(glob.glob(os.path.join(glob.escape(str(folder)), pattern)))
    start = len(os.path.join(str(folder), prefix))
    found = [m[start : len(m) - len(suffix)] for m in matches]
    if not found:
        raise DataError(f"no files match {folder / pattern}")
    return found


def fill(template: str | Callable[[str], str], imageid: str) -> str:
    if callable(template):
        return template(imageid)
    return template.format(id=imageid, stem=imageid.split(".")[0])


def exists(folder: Path, relative: str) -> bool:
    """``folder/relative`` is a file; a ``*`` in ``relative`` means: at least one file matches."""
    if "*" in relative:
        return bool(glob.glob(os.path.join(glob.escape(str(folder)), relative)))
    return os.path.isfile(os.path.join(folder, relative))
