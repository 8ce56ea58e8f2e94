"""Reading an ``explain_dataset`` output folder: the manifest and verified shards."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tf_clrp.datasets import _integrity
from tf_clrp.datasets._common import FORMAT_VERSION, MANIFEST, PARTS, ShardIntegrityError

_REQUIRED = {
    "format_version": int,
    "format": str,
    "shards": list,
    "completed": int,
    "complete": bool,
}


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The parsed ``manifest.json`` of ``out_dir`` (None if there is none).

    Raises:
        ValueError: the file is not valid JSON or not a tf_clrp manifest.
    """
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); it is damaged or not "
            "tf_clrp's: remove it or use another out_dir"
        ) from exc
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path} holds a JSON {type(manifest).__name__}, not a tf_clrp "
            "manifest (an object with format_version, shards, ...); remove it "
            "or use another out_dir"
        )
    wrong = [key for key, kind in _REQUIRED.items() if not isinstance(manifest.get(key), kind)]
    if wrong:
        raise ValueError(
            f"{path} is not a tf_clrp manifest: {', '.join(wrong)} missing or "
            "of the wrong type; remove it or use another out_dir"
        )
    for number, record in enumerate(manifest["shards"]):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("file"), str)
            or os.path.basename(record["file"]) != record["file"]
        ):
            raise ValueError(f"{path}: shard record {number} is malformed ({record!r:.80})")
    return manifest


class DatasetExplanation:
    """The explanations of a dataset on disk (one ``explain_dataset`` output folder).

    Iterating yields one dict per shard: ``maps``, ``selection``, ``index`` (global sample
    indices) and, for ``return_parts=True``, ``target``, ``dual`` and ``difference``. Every
    array read is checked against the size and CRC-32 recorded for its file (memory-mapped
    arrays: size only); a damaged or missing file raises ShardIntegrityError naming it.

    Args:
        out_dir: The folder.
        manifest: Its parsed ``manifest.json``.
        computed_shards: Shards computed by the run that returned this object.
        skipped_shards: Shards found finished (resumed) by that run.
        verify: Check every file read against its CRC-32 (False: sizes only).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        manifest: dict[str, Any],
        *,
        computed_shards: int = 0,
        skipped_shards: int = 0,
        verify: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.manifest = manifest
        self.verify_checksums = verify
        self.computed_shards = computed_shards
        self.skipped_shards = skipped_shards

    @property
    def n_samples(self) -> int:
        """Number of samples in finished shards."""
        return int(self.manifest["completed"])

    @property
    def complete(self) -> bool:
        """True once the whole dataset has been explained."""
        return bool(self.manifest["complete"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        """The manifest's shard records (file, start, stop, count, bytes, files, ...)."""
        return list(self.manifest["shards"])

    @property
    def fields(self) -> list[str]:
        """Array names stored per shard."""
        return list(self.manifest.get("fields") or ["maps", "selection", "index"])

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Shape of one map (without the sample axis), once a shard exists."""
        shape = self.manifest.get("sample_shape")
        return None if shape is None else tuple(shape)

    def __len__(self) -> int:
        return self.n_samples

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iter_shards()

    def verify(self) -> None:
        """Checks size and CRC-32 of every file of every shard (reads the whole folder).

        Raises:
            ShardIntegrityError: naming the first missing or damaged file.
        """
        for record in self.manifest["shards"]:
            if "files" in record:
                _integrity.verify_shard(self.out_dir / record["file"], record["files"])

    def iter_shards(
        self, fields: Iterable[str] | None = None, *, mmap: bool = False
    ) -> Iterator[dict[str, np.ndarray]]:
        """Reads the shards one at a time, in sample order, verifying each file read.

        Args:
            fields: Arrays to read (default all: maps, selection, index, parts if any).
            mmap: Memory-map the arrays instead of reading them ("npy" format only); only
                their sizes are verified then (``verify()`` checks everything).

        Returns:
            An iterator of dicts of arrays, one per shard.

        Raises:
            ShardIntegrityError: a shard file is missing, truncated or damaged (named).
        """
        wanted = list(fields) if fields is not None else self.fields
        unknown = sorted(set(wanted) - set(self.fields))
        if unknown:
            raise KeyError(f"no field(s) {unknown} in {self.out_dir}; stored: {self.fields}")
        for record in self.manifest["shards"]:
            yield self._read_shard(record, wanted, mmap)

    def _read_shard(
        self, record: dict[str, Any], wanted: list[str], mmap: bool
    ) -> dict[str, np.ndarray]:
        path = self.out_dir / record["file"]
        files = record.get("files")  # absent in format-1 folders: not verified
        if files is not None and not self.verify_checksums:
            for name, expected in files.items():
                _integrity.check_size(path if name == "." else path / name, expected)
            files = None
        if not path.exists():
            raise ShardIntegrityError(
                f"shard {path} is listed in {self.out_dir / MANIFEST} but missing; rerun "
                "explain_dataset with resume=True to recompute it"
            )
        if self.manifest["format"] == "npz":
            arrays = _integrity.load_npz(path, None if files is None else files["."], wanted)
        else:
            arrays = {
                name: _integrity.load_npy(
                    path / f"{name}.npy", None if files is None else files.get(f"{name}.npy"), mmap
                )
                for name in wanted
            }
        for name, array in arrays.items():
            if len(array) != record["count"]:
                raise ShardIntegrityError(
                    f"shard {path}: {name} has {len(array)} rows, the manifest records "
                    f"{record['count']}"
                )
        return arrays

    def concatenate(self, fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """All finished shards joined along the sample axis (needs memory for all of them).

        Args:
            fields: Arrays to read (default all).

        Returns:
            A dict of arrays, e.g. ``{"maps": (N, ...), "selection": (N,), "index": (N,)}``.
        """
        wanted = list(fields) if fields is not None else self.fields
        parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for shard in self.iter_shards(wanted):
            for name in wanted:
                parts[name].append(np.asarray(shard[name]))
        result = {}
        for name, arrays in parts.items():
            if arrays:
                result[name] = np.concatenate(arrays, axis=0)
            elif name == "maps" or name in PARTS:
                result[name] = np.zeros((0, *(self.sample_shape or ())), np.float32)
            else:
                result[name] = np.zeros((0,), np.int64)
        return result

    @property
    def maps(self) -> np.ndarray:
        """All maps, concatenated (shortcut for ``concatenate(["maps"])["maps"]``)."""
        return self.concatenate(["maps"])["maps"]

    def summary(self) -> str:
        """A short human-readable description."""
        analyzer = self.manifest.get("analyzer", {})
        size = sum(int(s.get("bytes", 0)) for s in self.manifest["shards"])
        state = "complete" if self.complete else "incomplete (resume to continue)"
        lines = [
            f"DatasetExplanation at {self.out_dir}",
            f"  analyzer: {analyzer.get('name') or analyzer.get('class')}",
            f"  samples: {self.n_samples} in {len(self.manifest['shards'])} shard(s) of "
            f"<= {self.manifest.get('shard_size')}, {state}",
            f"  maps: {self.manifest.get('dtype', 'float32')} "
            f"{self.sample_shape} per sample, format {self.manifest['format']}, "
            f"{size / 2**20:.1f} MiB",
            f"  this run: {self.computed_shards} shard(s) computed, {self.skipped_shards} resumed",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DatasetExplanation(out_dir={str(self.out_dir)!r}, n_samples={self.n_samples}, "
            f"shards={len(self.manifest['shards'])}, complete={self.complete})"
        )


def load_explanations(
    out_dir: str | os.PathLike[str], *, verify: bool = True
) -> DatasetExplanation:
    """Opens an ``explain_dataset`` output folder.

    Args:
        out_dir: The folder holding ``manifest.json`` and the shards.
        verify: Check each file read against its recorded CRC-32 (reading a 147 MiB shard
            takes about 2-3x as long); False checks only the sizes.

    Returns:
        A DatasetExplanation: iterate it for one dict of arrays per shard, or call
        ``.concatenate()`` / ``.maps`` for everything at once.

    Raises:
        FileNotFoundError: no manifest in the folder.
        ValueError: the manifest is not a tf_clrp manifest (or from a newer tf_clrp).
    """
    manifest = read_manifest(Path(out_dir))
    if manifest is None:
        raise FileNotFoundError(
            f"no {MANIFEST} in {out_dir}: not an explain_dataset output folder (or the run "
            "stopped before writing anything)"
        )
    version = manifest["format_version"]
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{out_dir} was written by a newer tf_clrp (folder format {version}; "
            f"this version reads up to {FORMAT_VERSION}); upgrade tf_clrp"
        )
    if version < FORMAT_VERSION:
        warnings.warn(
            f"{out_dir} was written by an older tf_clrp (folder format {version}): its shards "
            "carry no checksums, so damaged files are not detected",
            UserWarning,
            stacklevel=2,
        )
    return DatasetExplanation(out_dir, manifest, verify=verify)
