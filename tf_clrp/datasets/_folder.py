"""Which files in an output folder tf_clrp owns, and removing only those.

tf_clrp owns exactly these names in ``out_dir`` (anything else is never deleted):

- ``manifest.json`` and the lock ``.tf_clrp.lock``;
- shards: files ``shard_#####.npz`` (five digits) and folders ``shard_#####`` that hold
  nothing but ``<field>.npy`` files of tf_clrp's fields;
- temporary names: ``.shard_*.tmp``, ``.manifest.json.*.tmp``, ``.tf_clrp.lock.*.tmp``.

A name alone proves nothing: these entries are deleted only in a folder whose
``manifest.json`` (written before any shard) shows that tf_clrp ran there. In a folder
without a manifest nothing is deleted, and ``overwrite=True`` refuses a folder holding
an entry named like a shard (``shard_#####.npz`` or ``shard_#####``) naming it.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

from tf_clrp.datasets._common import MANIFEST, SHARD_FIELDS, FolderError
from tf_clrp.datasets._lock import LOCK

_SHARD_FILE = re.compile(r"shard_\d{5}\.npz")
_SHARD_DIR = re.compile(r"shard_\d{5}")
_TEMPORARY = re.compile(r"\.(shard_.*|manifest\.json\..*|tf_clrp\.lock\..*)\.tmp")
_NPY_FILES = {f"{name}.npy" for name in SHARD_FIELDS}


def is_shard(path: Path) -> bool:
    """True for a shard file or folder named and shaped as tf_clrp writes them."""
    if path.is_file() and not path.is_symlink():
        return bool(_SHARD_FILE.fullmatch(path.name))
    if path.is_dir() and not path.is_symlink() and _SHARD_DIR.fullmatch(path.name):
        return all(p.name in _NPY_FILES and p.is_file() for p in path.iterdir())
    return False


def is_temporary(path: Path) -> bool:
    """True for a temporary file or folder left by an interrupted tf_clrp write."""
    return bool(_TEMPORARY.fullmatch(path.name)) and not path.is_symlink()


def foreign_entries(out_dir: Path) -> list[str]:
    """Names in ``out_dir`` that tf_clrp did not write (sorted)."""
    own = {MANIFEST, LOCK}
    return sorted(
        p.name
        for p in out_dir.iterdir()
        if p.name not in own and not is_shard(p) and not is_temporary(p)
    )


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check_new_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuses a folder without a manifest that holds anything but tf_clrp's temporaries.

    Raises:
        FolderError: such a folder and ``overwrite=False``; or ``overwrite=True`` and an
            entry named like a shard (tf_clrp would replace it, but cannot know it wrote it).
    """
    taken = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK and not is_temporary(p))
    if taken and not overwrite:
        raise FolderError(
            f"{out_dir} is not empty ({_shown(taken)}) and has no {MANIFEST}, so it is not "
            "an explain_dataset output folder. Use an empty or new folder, or "
            "overwrite=True to write into it anyway (nothing in it is deleted)."
        )
    shard_named = [
        name for name in taken if _SHARD_FILE.fullmatch(name) or _SHARD_DIR.fullmatch(name)
    ]
    if shard_named:
        raise FolderError(
            f"{out_dir} has no {MANIFEST} but holds {_shown(shard_named)}, named like "
            "tf_clrp shards; without a manifest tf_clrp cannot know it wrote them, so "
            "overwrite=True does not replace them. Move or delete them yourself, or use "
            "another out_dir."
        )


def remove(path: Path) -> None:
    """Deletes one owned file or folder (missing is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def remove_unrecorded(out_dir: Path, keep: set[str]) -> None:
    """Deletes tf_clrp's temporaries and the shards not in ``keep``; nothing else."""
    for path in out_dir.iterdir():
        if path.name in keep or path.name.startswith(f"{LOCK}."):
            continue  # another run's lock in the making is not ours to remove
        if is_temporary(path) or is_shard(path):
            remove(path)
