"""Writing one shard's arrays: an ``.npz`` archive or a folder of ``.npy`` files, durably."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets import _folder


class _PythonWrites:
    """A file seen through ``write`` only: numpy then writes with Python's ``write`` (which
    keeps the errno of a full disk) instead of C ``fwrite`` ("N requested and M written")."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def write(self, data: Any) -> Any:
        return self.file.write(data)


def save_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    """Writes one shard archive into an open binary file."""
    np.savez(file, **arrays)


def _save_npy(file: Any, array: np.ndarray) -> None:
    """Writes one array into an open binary file."""
    np.save(_PythonWrites(file), array, allow_pickle=False)


def _fsync(file: Any) -> None:
    file.flush()
    with contextlib.suppress(OSError):
        os.fsync(file.fileno())


def atomic_dir(final: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes one ``.npy`` per array into a temporary folder, then renames it to ``final``."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        for name, array in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as file:
                _save_npy(file, array)
                _fsync(file)
        if final.exists():  # an unrecorded shard of an interrupted run (tf_clrp's own)
            if not _folder.is_shard(final):
                raise FileExistsError(
                    errno.EEXIST,
                    f"{final} exists and is not a tf_clrp shard; it is left alone",
                    str(final),
                )
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
