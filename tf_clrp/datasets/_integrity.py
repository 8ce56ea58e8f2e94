"""Per-file size and CRC-32 of shards: recorded when written, verified when read.

CRC-32 catches truncation, flipped bytes and partial writes (accidental damage); it is not
a defence against deliberate tampering. An ``.npy`` file is read once into a buffer that
is checksummed (in a worker thread, while the next block is read) and then viewed as the
array; an ``.npz`` archive is checksummed block by block and then opened (its second read
comes from the page cache).
"""

from __future__ import annotations

import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets._common import ShardIntegrityError

_BLOCK = 1 << 18  # small: checksumming must not raise the writer's peak memory
_READ_BLOCK = 1 << 22


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
        "explain_dataset with resume=True to recompute that shard"
    )


def check_size(path: Path, expected: dict[str, int]) -> None:
    """Raises ShardIntegrityError if ``path`` is missing or has another size."""
    if not path.is_file():
        raise ShardIntegrityError(
            f"shard file {path} is listed in the manifest but missing; rerun explain_dataset "
            "with resume=True to recompute it"
        )
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise _damaged(
            path, f"{size} bytes on disk, {expected['bytes']} recorded (truncated or overwritten)"
        )


def verify_file(path: Path, expected: dict[str, int]) -> None:
    """Checks size and checksum of one file (reads it fully)."""
    check_size(path, expected)
    if file_record(path)["crc32"] != expected["crc32"]:
        raise _damaged(path, "its CRC-32 differs from the recorded one (flipped bytes)")


def verify_shard(path: Path, files: dict[str, dict[str, int]]) -> None:
    """Checks every recorded file of one shard (sizes first, then checksums)."""
    targets = [(path if name == "." else path / name, expected) for name, expected in files.items()]
    for target, expected in targets:
        check_size(target, expected)
    for target, expected in targets:
        verify_file(target, expected)


def _read_verified(path: Path, expected: dict[str, int] | None) -> np.ndarray:
    """The bytes of ``path``, checked against ``expected`` (size and CRC) if given.

    The file is read block by block into one buffer while a worker thread checksums the
    blocks already read (``zlib.crc32`` releases the GIL), so reading and checking overlap.
    """
    if expected is not None:
        check_size(path, expected)
    size = path.stat().st_size
    buffer = np.empty(size, np.uint8)  # not bytearray: zero-filling doubles the cost
    view = memoryview(buffer)
    crc = 0

    def checksum(block: memoryview) -> None:
        nonlocal crc
        crc = zlib.crc32(block, crc)

    with (
        open(path, "rb", buffering=0) as file,
        ThreadPoolExecutor(1, thread_name_prefix="tf_clrp-crc") as worker,
    ):
        position = 0
        while position < size:
            stop = min(position + _READ_BLOCK, size)
            got = file.readinto(view[position:stop])
            if not got:
                raise _damaged(path, "it changed size while being read")
            if expected is not None:
                worker.submit(checksum, view[position : position + got])
            position += got
    if expected is not None and crc != expected["crc32"]:
        raise _damaged(path, "its CRC-32 differs from the recorded one (flipped bytes)")
    return buffer


def load_npy(path: Path, expected: dict[str, int] | None, mmap: bool) -> np.ndarray:
    """One ``.npy`` array; verified (size + CRC) unless memory-mapped (size only)."""
    try:
        if mmap:
            if expected is not None:
                check_size(path, expected)
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            offset = file.tell()
        if dtype.hasobject:
            raise ValueError("object arrays are not tf_clrp shards")
        buffer = _read_verified(path, expected)
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(buffer, dtype, count=count, offset=offset)
        return array.reshape(shape, order="F" if fortran else "C")
    except ShardIntegrityError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise _damaged(path, f"numpy cannot read it ({type(exc).__name__}: {exc})") from exc


def load_npz(path: Path, expected: dict[str, int] | None, names: list[str]) -> dict[str, Any]:
    """Arrays ``names`` of one ``.npz`` shard, the file verified first if ``expected``."""
    if expected is not None:
        verify_file(path, expected)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise _damaged(path, f"numpy cannot read it ({type(exc).__name__}: {exc})") from exc
