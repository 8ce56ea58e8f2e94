"""Names, version and error types shared by the ``tf_clrp.datasets`` modules."""

from __future__ import annotations

import errno
from pathlib import Path

from tf_clrp.errors import TfClrpError

MANIFEST = "manifest.json"
#: Version of the folder layout; 2 added fingerprints, per-file checksums and the lock.
FORMAT_VERSION = 2
FORMATS = ("npz", "npy")
PARTS = ("target", "dual", "difference")
#: Every array name tf_clrp writes into a shard.
SHARD_FIELDS = ("maps", "selection", "index", "metadata", *PARTS)


class ExplanationStorageError(OSError):
    """Explanations could not be written (unwritable folder, full disk, ...)."""


class ResumeMismatchError(TfClrpError):
    """``out_dir`` holds a run made with other settings than the ones given."""


class ShardIntegrityError(TfClrpError):
    """A shard on disk is missing, truncated or damaged (size or checksum mismatch)."""


class FolderError(TfClrpError):
    """``out_dir`` holds files tf_clrp did not write, or is in use by another run."""


class FolderLockedError(FolderError):
    """Another process (or another call in this process) is writing into ``out_dir``."""


def storage_error(exc: OSError, what: Path, completed: int) -> ExplanationStorageError:
    """An ExplanationStorageError naming the file and the cause, keeping ``exc.errno``."""
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "permission denied (the folder is not writable)"
    else:
        reason = exc.strerror or str(exc)
    message = f"cannot write {what}: {reason} [{type(exc).__name__}: {exc}]."
    if completed:
        message += (
            f" Nothing was left half-written; the {completed} sample(s) in finished "
            "shards are kept, and rerunning explain_dataset with resume=True "
            "continues after them."
        )
    error = ExplanationStorageError(exc.errno, message)
    error.filename = str(what)
    return error
