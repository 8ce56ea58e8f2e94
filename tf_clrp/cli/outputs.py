"""The ``--out`` folder and files written as a set: all of them or none.

``explain`` writes a PNG grid and its ``.npz`` maps per image. Both are first written to
temporary files in the folder (the step that fails on a full disk), then renamed, the
``.npz`` before the PNG, so a PNG never exists without its ``.npz``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tf_clrp._io import move_into_place, write_temporary
from tf_clrp.cli.common import CliError


def check_out_folder(out: str) -> None:
    """Checks, before any work, that the ``--out`` folder can be created or written to."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise CliError(f"--out {out} exists and is not a folder")
    existing = os.path.abspath(out)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CliError(f"cannot create the --out folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CliError(f"cannot write to {existing} (--out {out}): permission denied")


def prepare_out_folder(out: str) -> None:
    """Creates the ``--out`` folder (CliError naming the problem if that is impossible)."""
    check_out_folder(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        raise CliError(f"cannot create the --out folder {out}: {error.strerror or error}") from None


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` archive of ``arrays``, in memory."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def figure_png_bytes(fig: Any, dpi: float = 100) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_together(files: Sequence[tuple[str, bytes]], overwrite: bool) -> None:
    """Writes several files as a set, in the given order.

    Every file goes to a temporary file in its folder first; only when all are on disk are
    they renamed, in order. On any failure the temporary files and the files of this set
    already renamed are removed (files of an earlier run are never deleted).

    Args:
        files: (path, content) pairs; the last one appears last.
        overwrite: Replace existing files (``--force``).

    Raises:
        CliError: a file cannot be written (the message names it and the reason).
    """
    temporaries: list[tuple[str, str]] = []
    done: list[str] = []
    current = files[0][0] if files else ""
    try:
        for path, data in files:
            current = path
            temporaries.append(
                (write_temporary(path, lambda stream, d=data: stream.write(d)), path)
            )
        for temporary, path in temporaries:
            current = path
            move_into_place(temporary, path, overwrite)
            done.append(path)
    except OSError as error:
        if not overwrite:  # files renamed into place by this call are ours to remove
            for path in done:
                os.unlink(path)
        reason = (
            "it exists (use --force)"
            if isinstance(error, FileExistsError)
            else error.strerror or str(error)
        )
        raise CliError(f"cannot write {current}: {reason}") from None
    finally:
        for temporary, _ in temporaries:
            if os.path.lexists(temporary):
                os.unlink(temporary)
