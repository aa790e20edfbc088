"""Multi-part archives: 7z-style numbered parts are concatenated, a ``zip -s`` split zip is re-pointed."""

from __future__ import annotations

import io
import math
import struct
import zipfile
from pathlib import Path

from segkit.data.prepare.multipart import (
    assemble,
    first_part,
    is_later_part,
    merge_split_zip,
    split_zip_parts,
)

EOCD = struct.Struct("<4sHHHHIIH")
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
FILES = {"data/a.bin": bytes(range(256)) * 40, "data/b.txt": b"hello\n" * 500, "top.txt": b"top"}


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def write_split_zip(data: bytes, folder: Path, stem: str, disks: int) -> list[Path]:
    """``data`` (an ordinary zip) written as ``zip -s`` does: a spanning signature, then the entries cut into
    ``stem.z01`` ... , the central directory (offsets relative to each entry's disk) and end record in ``stem.zip``."""
    _, _, _, _, entries, cd_size, cd_offset, _ = EOCD.unpack_from(data, len(data) - EOCD.size)
    body = b"PK\x07\x08" + data[:cd_offset]
    chunk = math.ceil(len(body) / (disks - 1))
    directory, position = bytearray(), cd_offset
    for _ in range(entries):
        fields = list(CENTRAL.unpack_from(data, position))
        size = CENTRAL.size + fields[10] + fields[11] + fields[12]
        absolute = fields[16] + 4
        fields[13], fields[16] = absolute // chunk, absolute % chunk
        directory += CENTRAL.pack(*fields) + data[position + CENTRAL.size : position + size]
        position += size
    last = disks - 1
    end = EOCD.pack(b"PK\x05\x06", last, last, entries, entries, cd_size, 0, 0)
    paths = []
    for index in range(last):
        paths.append(folder / f"{stem}.z{index + 1:02d}")
        paths[-1].write_bytes(body[index * chunk : (index + 1) * chunk])
    paths.append(folder / f"{stem}.zip")
    paths[-1].write_bytes(bytes(directory) + end)
    return paths


def contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def readable(path: Path) -> bool:
    try:
        return contents(path) == FILES
    except (zipfile.BadZipFile, AssertionError, OSError, EOFError):
        return False


def test_part_names():
    assert first_part(Path("d/VOCdevkit.zip.003")) == Path("d/VOCdevkit.zip.001")
    assert first_part(Path("d/CityScapes.z07")) == Path("d/CityScapes.zip")
    assert first_part(Path("d/ADE20k.tar.gz")) == Path("d/ADE20k.tar.gz")
    assert is_later_part(Path("x.zip.002")) and is_later_part(Path("x.z01"))
    assert not is_later_part(Path("x.zip.001")) and not is_later_part(Path("x.zip"))


def test_numbered_parts_are_concatenated(tmp_path):
    data = make_zip(FILES)
    third = len(data) // 3
    for index, piece in enumerate((data[:third], data[third : 2 * third], data[2 * third :]), start=1):
        (tmp_path / f"VOCdevkit.zip.{index:03d}").write_bytes(piece)
    work = tmp_path / "work"
    work.mkdir()
    joined = assemble(tmp_path / "VOCdevkit.zip.001", work)
    assert joined == work / "VOCdevkit.zip" and contents(joined) == FILES


def test_split_zip_is_merged_into_one_readable_zip(tmp_path):
    parts = write_split_zip(make_zip(FILES), tmp_path, "CityScapes", disks=4)
    assert not readable(parts[-1])  # the last disk alone is not a usable archive
    assert split_zip_parts(tmp_path / "CityScapes.zip") == parts
    merged = merge_split_zip(parts, tmp_path / "merged.zip")
    assert contents(merged) == FILES


def test_assemble_merges_a_split_zip_and_leaves_plain_archives_alone(tmp_path):
    write_split_zip(make_zip(FILES), tmp_path, "CityScapes", disks=3)
    work = tmp_path / "work"
    work.mkdir()
    assert contents(assemble(tmp_path / "CityScapes.zip", work)) == FILES
    plain = tmp_path / "plain.zip"
    plain.write_bytes(make_zip(FILES))
    assert assemble(plain, work) == plain
