"""Archives that come in several files, turned into one archive that :func:`safe_extract` can read.

Two kinds exist among SSSegmentation's pre-packaged datasets (facts §9.2):

* **Numbered parts** ``NAME.zip.001``, ``NAME.zip.002``, ... (``7z -v``): plain byte slices of one archive; joined
  by concatenation.
* **A split zip** ``NAME.z01`` ... ``NAME.zNN`` + ``NAME.zip`` (``zip -s``, used for Cityscapes): every part is a
  "disk" and the central directory stores offsets *relative to the disk* an entry starts on. Concatenating is not
  enough; :func:`merge_split_zip` also rewrites the central directory with absolute offsets (what ``zip -s 0``
  does), including the ZIP64 records.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

from ...errors import DownloadError

NUMBERED_PART = re.compile(r"^(?P<base>.+)\.(?P<index>\d{3})$")
SPLIT_ZIP_PART = re.compile(r"^(?P<base>.+)\.z(?P<index>\d{2})$", re.IGNORECASE)
EOCD = struct.Struct("<4sHHHHIIH")
ZIP64_LOCATOR = struct.Struct("<4sIQI")
ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
CENTRAL_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
ZIP64_EXTRA_ID = 0x0001


def first_part(path: Path) -> Path:
    """The file that stands for a multi-part set: ``x.zip.002`` -> ``x.zip.001``, ``x.z03`` -> ``x.zip``."""
    if match := NUMBERED_PART.match(path.name):
        return path.with_name(f"{match['base']}.001")
    if match := SPLIT_ZIP_PART.match(path.name):
        return path.with_name(f"{match['base']}.zip")
    return path


def is_later_part(path: Path) -> bool:
    """True for the parts that :func:`assemble` finds by itself (``.002`` and up, ``.z01`` and up)."""
    return first_part(path) != path


def numbered_parts(first: Path) -> list[Path]:
    """``x.001``, ``x.002``, ... as long as they exist next to ``first``."""
    base = NUMBERED_PART.match(first.name)["base"]
    parts, index = [], 1
    while (part := first.with_name(f"{base}.{index:03d}")).is_file():
        parts.append(part)
        index += 1
    return parts


def split_zip_parts(zip_file: Path) -> list[Path]:
    """``x.z01``, ``x.z02``, ... then ``x.zip`` (the last disk); just ``[x.zip]`` when there is no ``x.z01``."""
    stem = zip_file.name[: -len(".zip")]
    parts, index = [], 1
    while (part := zip_file.with_name(f"{stem}.z{index:02d}")).is_file():
        parts.append(part)
        index += 1
    return [*parts, zip_file]


def assemble(archive: Path, workdir: Path) -> Path:
    """One extractable archive for ``archive`` (the first part of a set, or a plain archive returned as is)."""
    if NUMBERED_PART.match(archive.name):
        joined = workdir / NUMBERED_PART.match(archive.name)["base"]
        concatenate(numbered_parts(archive), joined)
        return joined
    if archive.name.lower().endswith(".zip") and len(parts := split_zip_parts(archive)) > 1:
        merged = workdir / archive.name
        merge_split_zip(parts, merged)
        return merged
    return archive


def concatenate(parts: list[Path], dest: Path) -> list[int]:
    """Write the parts one after the other into ``dest``; return each part's starting offset."""
    starts, offset = [], 0
    with open(dest, "wb") as out:
        for part in parts:
            starts.append(offset)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            offset += part.stat().st_size
    return starts


def merge_split_zip(parts: list[Path], dest: Path) -> Path:
    """Join a ``zip -s`` split archive (``.z01`` ... ``.zip``, in disk order) into one ordinary zip ``dest``."""
    starts = concatenate(parts, dest)
    with open(dest, "r+b") as fh:
        data_end = fh.seek(0, 2)
        tail_start = max(0, data_end - (1 << 16) - EOCD.size)
        fh.seek(tail_start)
        tail = fh.read()
        position = tail.rfind(b"PK\x05\x06")
        if position < 0:
            raise DownloadError(f"{parts[-1]}: no end-of-archive record; the split zip is truncated or corrupt")
        eocd = EOCD.unpack_from(tail, position)
        cd_disk, entries, cd_size, cd_offset = eocd[2], eocd[4], eocd[5], eocd[6]
        locator_at = position - ZIP64_LOCATOR.size
        if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
            _, disk, relative, _ = ZIP64_LOCATOR.unpack_from(tail, locator_at)
            fh.seek(_absolute(starts, disk, relative, parts))
            record = ZIP64_EOCD.unpack(fh.read(ZIP64_EOCD.size))
            cd_disk, entries, cd_size, cd_offset = record[5], record[7], record[8], record[9]
        cd_start = _absolute(starts, cd_disk, cd_offset, parts)
        fh.seek(cd_start)
        directory = _rewrite_directory(fh.read(cd_size), entries, starts, parts)
        fh.seek(cd_start)
        fh.truncate()
        fh.write(directory)
        _write_end_records(fh, cd_start, len(directory), entries)
    return dest


def _absolute(starts: list[int], disk: int, offset: int, parts: list[Path]) -> int:
    if disk >= len(starts):
        raise DownloadError(f"{parts[-1]}: the archive needs {disk + 1} parts but only {len(parts)} were found")
    return starts[disk] + offset


def _rewrite_directory(directory: bytes, entries: int, starts: list[int], parts: list[Path]) -> bytes:
    """Every central-directory entry re-pointed at its absolute offset on disk 0."""
    out, position = bytearray(), 0
    for _ in range(entries):
        fields = list(CENTRAL_HEADER.unpack_from(directory, position))
        if fields[0] != b"PK\x01\x02":
            raise DownloadError(f"{parts[-1]}: corrupt central directory in the split zip")
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        start = position + CENTRAL_HEADER.size
        name = directory[start : start + name_len]
        extra = directory[start + name_len : start + name_len + extra_len]
        comment = directory[start + name_len + extra_len : start + name_len + extra_len + comment_len]
        extra, fields[13], fields[16] = _relocate(fields, extra, starts, parts)
        fields[11] = len(extra)
        out += CENTRAL_HEADER.pack(*fields) + name + extra + comment
        position = start + name_len + extra_len + comment_len
    return bytes(out)


def _relocate(fields: list, extra: bytes, starts: list[int], parts: list[Path]) -> tuple[bytes, int, int]:
    """The entry's new extra field, disk number (0) and 32-bit offset field."""
    usize, csize, disk, offset = fields[9], fields[8], fields[13], fields[16]
    blocks, zip64 = _extra_blocks(extra)
    values = list(struct.unpack(f"<{len(zip64) // 8}Q", zip64[: len(zip64) // 8 * 8])) if zip64 else []
    sizes = []
    for fixed in (usize, csize):
        if fixed == 0xFFFFFFFF:
            sizes.append(values.pop(0))
    if offset == 0xFFFFFFFF:
        offset = values.pop(0)
    if disk == 0xFFFF and zip64:  # the 4-byte disk number follows the 8-byte values
        disk = struct.unpack_from("<I", zip64, len(zip64) - 4)[0]
    absolute = _absolute(starts, disk, offset, parts)
    if absolute >= 0xFFFFFFFF:
        sizes.append(absolute)
        offset_field = 0xFFFFFFFF
    else:
        offset_field = absolute
    if sizes:
        payload = struct.pack(f"<{len(sizes)}Q", *sizes)
        blocks.insert(0, struct.pack("<HH", ZIP64_EXTRA_ID, len(payload)) + payload)
    return b"".join(blocks), 0, offset_field


def _extra_blocks(extra: bytes) -> tuple[list[bytes], bytes]:
    """The extra field's blocks other than ZIP64, and the ZIP64 block's payload (empty when absent)."""
    blocks, zip64, position = [], b"", 0
    while position + 4 <= len(extra):
        header_id, size = struct.unpack_from("<HH", extra, position)
        block = extra[position : position + 4 + size]
        if header_id == ZIP64_EXTRA_ID:
            zip64 = block[4:]
        else:
            blocks.append(block)
        position += 4 + size
    return blocks, zip64


def _write_end_records(fh, cd_start: int, cd_size: int, entries: int) -> None:
    """ZIP64 end record and locator when needed, then the classic end record, all for a single disk."""
    needs_zip64 = entries >= 0xFFFF or cd_start >= 0xFFFFFFFF or cd_size >= 0xFFFFFFFF
    if needs_zip64:
        record_at = cd_start + cd_size
        fh.write(ZIP64_EOCD.pack(b"PK\x06\x06", ZIP64_EOCD.size - 12, 45, 45, 0, 0, entries, entries, cd_size,
                                 cd_start))
        fh.write(ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, record_at, 1))
    fh.write(EOCD.pack(b"PK\x05\x06", 0, 0, min(entries, 0xFFFF), min(entries, 0xFFFF),
                       min(cd_size, 0xFFFFFFFF), min(cd_start, 0xFFFFFFFF), 0))
