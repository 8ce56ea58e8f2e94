"""Per-file size and CRC-32 of shards: recorded when written, verified when read.

CRC-32 catches truncation, flipped bytes and partial writes (accidental damage); it is not
a defence against deliberate tampering. Reading verifies in the same pass as loading: an
``.npy`` file is read once into a buffer that is checksummed and then viewed as the array,
an ``.npz`` archive is read once into memory, checksummed and opened from there.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets._common import ShardIntegrityError

_BLOCK = 1 << 18  # small: checksumming must not raise the writer's peak memory


def file_record(path: Path) -> dict[str, int]:
    """``{"bytes": size, "crc32": checksum}`` of one file."""
    crc = 0
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb") as file:
        while size := file.readinto(buffer):
            crc = zlib.crc32(view[:size], crc)
    return {"bytes": path.stat().st_size, "crc32": crc}


def shard_files(path: Path) -> list[Path]:
    """The files of one shard: the archive itself, or the ``.npy`` files of its folder."""
    return sorted(path.iterdir()) if path.is_dir() else [path]


def record_shard(path: Path) -> dict[str, dict[str, int]]:
    """Size and checksum of every file of one shard, keyed by name relative to ``path``."""
    return {(p.name if path.is_dir() else "."): file_record(p) for p in shard_files(path)}


def _damaged(path: Path, what: str) -> ShardIntegrityError:
    return ShardIntegrityError(
        f"shard file {path} is damaged: {what}. Delete it (or the whole shard) and rerun "
        "explain_dataset with resume=True to recompute that shard")


def check_size(path: Path, expected: dict[str, int]) -> None:
    """Raises ShardIntegrityError if ``path`` is missing or has another size."""
    if not path.is_file():
        raise ShardIntegrityError(
            f"shard file {path} is listed in the manifest but missing; rerun explain_dataset "
            "with resume=True to recompute it")
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise _damaged(path, f"{size} bytes on disk, {expected['bytes']} recorded "
                             "(truncated or overwritten)")


def verify_file(path: Path, expected: dict[str, int]) -> None:
    """Checks size and checksum of one file (reads it fully)."""
    check_size(path, expected)
    if file_record(path)["crc32"] != expected["crc32"]:
        raise _damaged(path, "its CRC-32 differs from the recorded one (flipped bytes)")


def verify_shard(path: Path, files: dict[str, dict[str, int]]) -> None:
    """Checks every recorded file of one shard (sizes first, then checksums)."""
    targets = [(path if name == "." else path / name, expected)
               for name, expected in files.items()]
    for target, expected in targets:
        check_size(target, expected)
    for target, expected in targets:
        verify_file(target, expected)


def _read_verified(path: Path, expected: dict[str, int] | None) -> bytearray:
    """The bytes of ``path``, checked against ``expected`` (size and CRC) if given."""
    if expected is not None:
        check_size(path, expected)
    size = path.stat().st_size
    buffer = bytearray(size)
    with open(path, "rb") as file:
        if file.readinto(buffer) != size:
            raise _damaged(path, "it changed size while being read")
    if expected is not None and zlib.crc32(buffer) != expected["crc32"]:
        raise _damaged(path, "its CRC-32 differs from the recorded one (flipped bytes)")
    return buffer


def load_npy(path: Path, expected: dict[str, int] | None, mmap: bool) -> np.ndarray:
    """One ``.npy`` array; verified (size + CRC) unless memory-mapped (size only)."""
    try:
        if mmap:
            if expected is not None:
                check_size(path, expected)
            return np.load(path, mmap_mode="r", allow_pickle=False)
        buffer = _read_verified(path, expected)
        stream = io.BytesIO(memoryview(buffer))
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ValueError("object arrays are not tf_clrp shards")
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(buffer, dtype, count=count, offset=stream.tell())
        return array.reshape(shape, order="F" if fortran else "C")
    except ShardIntegrityError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise _damaged(path, f"numpy cannot read it ({type(exc).__name__}: {exc})") from exc


def load_npz(path: Path, expected: dict[str, int] | None, names: list[str]
             ) -> dict[str, Any]:
    """Arrays ``names`` of one ``.npz`` shard, read once and verified if ``expected``."""
    buffer = _read_verified(path, expected)
    try:
        with np.load(io.BytesIO(memoryview(buffer)), allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise _damaged(path, f"numpy cannot read it ({type(exc).__name__}: {exc})") from exc
