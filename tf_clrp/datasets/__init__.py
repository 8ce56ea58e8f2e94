"""Explaining whole datasets: sharded, resumable, bounded-memory, optionally distributed.

``explain_dataset`` streams a ``tf.data.Dataset`` (or any iterable of numpy batches) through an
analyzer and writes the maps to disk in shards plus a ``manifest.json``; ``load_explanations``
reads them back. See ``docs/datasets.md`` for the file layout and the resume semantics.

Resuming skips the samples of finished shards by advancing the data iterator, so the data
must come in the same, deterministic order on every run (no unseeded shuffling). A run is
resumed only if the model (architecture and weights), the analyzer's options, the selection
and the data length (where known) match the stored fingerprints, only after the finished
shards pass their size and checksum checks, and only while the skipped samples match the
stored CRC-32 of each finished shard's inputs. The folder is locked while a run writes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_clrp._io import atomic_write
from tf_clrp.analyzers.base import Analyzer
from tf_clrp.analyzers.contrastive import ContrastiveExplanation
from tf_clrp.datasets import _folder, _input_checksum, _integrity, _resume
from tf_clrp.datasets._common import (
    FORMAT_VERSION,
    FORMATS,
    MANIFEST,
    PARTS,
    ExplanationStorageError,
    FolderError,
    FolderLockedError,
    ResumeMismatchError,
    ShardIntegrityError,
    storage_error,
)
from tf_clrp.datasets._fingerprint import Fingerprinter, model_fingerprint
from tf_clrp.datasets._input import check_finite, iter_batches, total_samples
from tf_clrp.datasets._lock import FolderLock, LockHeld
from tf_clrp.datasets._progress import Progress
from tf_clrp.datasets._reader import DatasetExplanation, load_explanations, read_manifest
from tf_clrp.datasets._selection import (
    chunk_kwargs,
    chunk_selection,
    describe_selection,
    explained_selection,
)
from tf_clrp.datasets._shard_files import atomic_dir, save_npz


# ---------------------------------------------------------------------------- file I/O
def _write_json(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=1).encode()
    atomic_write(path, text, overwrite=True)


def _prepare_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".shard_probe.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise storage_error(exc, out_dir, 0) from exc


# ---------------------------------------------------------------------------- settings
def _input_shape(analyzer: Any) -> tuple[int | None, ...] | None:
    """The explained model's input shape with the batch axis, if the analyzer exposes it."""
    graph = getattr(analyzer, "graph", None)
    if graph is not None:
        return tuple(graph.input_shape)
    shape = getattr(getattr(analyzer, "model", None), "input_shape", None)
    if (
        isinstance(shape, tuple | list)
        and shape
        and all(d is None or isinstance(d, int) for d in shape)
    ):
        return tuple(shape)
    return None


def _analyzer_description(analyzer: Any, fingerprinter: Fingerprinter) -> dict[str, Any]:
    """Class, registry name and every option of an analyzer (callables by their code).

    ``name`` and ``options`` are the ones ``create_analyzer`` records on the analyzer (all
    of them, callables included); the options are completed by the analyzer's public
    non-callable attributes (its composite, precision, ...).
    """
    skip = {"model", "graph", "mirror", "rng", "name", "options"}
    options = {
        k: v
        for k, v in vars(analyzer).items()
        if not k.startswith("_") and k not in skip and not callable(v)
    }
    explicit = getattr(analyzer, "options", None)
    if isinstance(explicit, dict):
        options.update(explicit)
    return {
        "class": type(analyzer).__qualname__,
        "module": type(analyzer).__module__,
        "name": getattr(analyzer, "name", None),
        "options": fingerprinter.describe(options, "analyzer option"),
        "given": sorted(explicit) if isinstance(explicit, dict) else [],
    }


def _model_description(analyzer: Any, fingerprinter: Fingerprinter) -> dict[str, Any] | None:
    """The fingerprint of the analyzer's Keras model (None, and a problem, if it has none)."""
    model = getattr(analyzer, "model", None)
    if isinstance(model, keras.Model):
        return model_fingerprint(model)
    fingerprinter.problems.append(
        f"model: {type(analyzer).__name__} exposes no Keras model as .model, so the "
        "explained model cannot be fingerprinted"
    )
    return None


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _settings(
    analyzer: Any,
    data: Any,
    neuron_selection: Any,
    shard_size: int,
    fmt: str,
    analyze_kwargs: dict[str, Any],
    full_shape: tuple[int | None, ...] | None,
) -> dict[str, Any]:
    """The manifest entries that identify a run (compared when resuming)."""
    fingerprinter = Fingerprinter()
    input_rank = None if full_shape is None else len(full_shape)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "shard_size": shard_size,
        "analyzer": _analyzer_description(analyzer, fingerprinter),
        "model": _model_description(analyzer, fingerprinter),
        "neuron_selection": describe_selection(neuron_selection, fingerprinter),
        "analyze_kwargs": fingerprinter.describe(analyze_kwargs, "analyze_kwargs"),
        "input_shape": None if full_shape is None else list(full_shape[1:]),
        "n_samples_expected": total_samples(data, input_rank),
    }
    config["unverifiable"] = fingerprinter.problems
    return config


# ---------------------------------------------------------------------------- the writer
class _ShardWriter:
    """Fills one preallocated shard buffer, writes it atomically, records it."""

    def __init__(
        self, out_dir: Path, manifest: dict[str, Any], shard_size: int, fmt: str, active: bool
    ) -> None:
        self.out_dir = out_dir
        self.manifest = manifest
        self.shard_size = shard_size
        self.fmt = fmt
        self.active = active
        self.buffers: dict[str, np.ndarray] | None = None
        self.kinds: list[str] = []
        self.fill = 0
        self.input_crc = 0
        self.written = 0

    @property
    def completed(self) -> int:
        return int(self.manifest["completed"])

    def add(
        self,
        result: Any,
        selection: np.ndarray,
        kinds: list[str],
        index: np.ndarray,
        images: np.ndarray,
    ) -> None:
        """Copies one chunk's maps, stored selection and global indices into the buffer
        (and continues the checksum of the shard's input ``images``)."""
        arrays = (
            {"maps": result.contrastive, **{p: getattr(result, p) for p in PARTS}}
            if isinstance(result, ContrastiveExplanation)
            else {"maps": result}
        )
        arrays.update(selection=selection, index=index)
        if self.buffers is None:
            self.buffers = {
                name: np.empty((self.shard_size, *a.shape[1:]), a.dtype)
                for name, a in arrays.items()
            }
            self.manifest["fields"] = list(self.buffers)
            self.manifest["sample_shape"] = list(arrays["maps"].shape[1:])
            self.manifest["dtype"] = str(arrays["maps"].dtype)
        n = len(index)
        for name, array in arrays.items():
            self.buffers[name][self.fill : self.fill + n] = array
        self.kinds += kinds
        self.fill += n
        self.input_crc = _input_checksum.update(self.input_crc, images)

    def _selection_runs(self, start: int) -> list[list[Any]]:
        """The shard's selection kinds as [kind, first, stop) runs of global indices."""
        runs: list[list[Any]] = []
        for offset, kind in enumerate(self.kinds):
            if runs and runs[-1][0] == kind:
                runs[-1][2] = start + offset + 1
            else:
                runs.append([kind, start + offset, start + offset + 1])
        return runs

    def flush(self) -> str | None:
        """Writes the filled part of the buffer as the next shard; returns its file name."""
        if self.fill == 0 or self.buffers is None:
            return None
        number = len(self.manifest["shards"])
        name = f"shard_{number:05d}" + (".npz" if self.fmt == "npz" else "")
        start = self.completed
        arrays = {k: v[: self.fill] for k, v in self.buffers.items()}
        meta = {
            "shard": number,
            "start": start,
            "stop": start + self.fill,
            "count": self.fill,
            "analyzer": self.manifest["analyzer"]["name"] or self.manifest["analyzer"]["class"],
            "format_version": FORMAT_VERSION,
        }
        arrays["metadata"] = np.array(json.dumps(meta))
        path = self.out_dir / name
        files: dict[str, dict[str, int]] = {}
        if self.active:
            try:
                if self.fmt == "npz":
                    atomic_write(path, lambda file: save_npz(file, arrays), overwrite=True)
                else:
                    atomic_dir(path, arrays)
                files = _integrity.record_shard(path)
            except OSError as exc:
                raise storage_error(exc, path, self.completed) from exc
        record = {
            "file": name,
            "start": start,
            "stop": start + self.fill,
            "count": self.fill,
            "bytes": sum(f["bytes"] for f in files.values()),
            "files": files,
            "selection": self._selection_runs(start),
            _input_checksum.KEY: self.input_crc,
        }
        self.manifest["shards"].append(record)
        self.manifest["completed"] = start + self.fill
        self.save_manifest(unrecord_last=True)
        self.fill = 0
        self.input_crc = 0
        self.kinds = []
        self.written += 1
        return name

    def save_manifest(self, unrecord_last: bool = False) -> None:
        """Replaces manifest.json; on failure, ``unrecord_last`` drops the newest shard."""
        if not self.active:
            return
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        path = self.out_dir / MANIFEST
        try:
            _write_json(path, self.manifest)
        except OSError as exc:
            # the shard just written (if any) is not recorded: drop it so that nothing
            # unrecorded looks complete; a resume recomputes it
            if unrecord_last and self.manifest["shards"]:
                last = self.manifest["shards"].pop()
                self.manifest["completed"] = last["start"]
                _folder.remove(self.out_dir / last["file"])
            raise storage_error(exc, path, self.completed) from exc


def _empty_state() -> dict[str, Any]:
    """The manifest fields of a folder with no shard written yet."""
    return {
        "shards": [],
        "completed": 0,
        "complete": False,
        "fields": None,
        "sample_shape": None,
        "dtype": None,
    }


def _open_folder(
    out: Path,
    config: dict[str, Any],
    resume: bool,
    overwrite: bool,
    neuron_selection: Any,
    n_outputs: int | None,
) -> tuple[dict[str, Any], _input_checksum.SkippedInputs | None]:
    """Checks and cleans ``out`` (locked by the caller); returns the state to start from."""
    state = _empty_state()
    check_skipped = None
    old = read_manifest(out)
    if old is None:  # nothing here is provably tf_clrp's: nothing is deleted
        _folder.check_new_folder(out, overwrite)
        return state, None
    if resume:
        state, check_skipped = _resume.resume_from(out, old, config, neuron_selection, n_outputs)
    _folder.remove_unrecorded(out, {r["file"] for r in state["shards"]})
    return state, check_skipped


# ---------------------------------------------------------------------------- main entry
def explain_dataset(
    analyzer: Analyzer | Any,
    data: Any,
    out_dir: str | os.PathLike[str],
    *,
    neuron_selection: Any = "max_activation",
    shard_size: int = 256,
    batch_size: int = 32,
    format: str = "npz",
    progress: bool = True,
    resume: bool = True,
    overwrite: bool = False,
    strategy: tf.distribute.Strategy | None = None,
    analyze_kwargs: dict[str, Any] | None = None,
) -> DatasetExplanation:
    """Explains every sample of a dataset and writes the maps to disk in shards.

    Memory stays bounded by one shard of maps plus one batch, whatever the dataset length.
    Each shard is written atomically and recorded in ``manifest.json`` (with its size and
    CRC-32) only once complete; an interrupted run continues (``resume=True``) after its
    last finished shard, advancing the data iterator past those samples without explaining
    them again, so the data must arrive in the same deterministic order on every run.

    Args:
        analyzer: From ``tf_clrp.create_analyzer`` (or any object with a compatible
            ``analyze(x, neuron_selection=..., batch_size=...)`` and a Keras ``.model``).
        data: A ``tf.data.Dataset`` of images or (images, labels) (batched or not; dict
            elements with "image"/"label" keys work too), a numpy array of samples, or any
            iterable of numpy batches / (images, labels) batches.
        out_dir: Output folder (created if needed; locked while the run writes).
        neuron_selection: "max_activation", "all", an int, "labels" (the dataset's labels:
            class indices or one-hot rows), one int per dataset sample, or a callable
            ``(images, labels, global_indices) -> selection`` evaluated per batch.
        shard_size: Samples per shard file.
        batch_size: Samples per ``analyze`` call (with a strategy: the global batch, split
            over the replicas).
        format: "npz" (one ``shard_#####.npz`` per shard) or "npy" (one folder per shard
            with ``maps.npy``, ``selection.npy``, ``index.npy``: memory-mappable).
        progress: Show a progress bar (tqdm if installed).
        resume: Continue a previous run in ``out_dir``; False discards it.
        overwrite: Write into a non-empty folder that has no manifest; nothing in it is
            deleted, and a folder holding entries named like shards is refused.
        strategy: A ``tf.distribute.Strategy`` (MirroredStrategy, MultiWorkerMirroredStrategy)
            to split every batch over its replicas; only the chief worker writes files.
        analyze_kwargs: Extra ``analyze`` options, e.g. ``{"contrast": "negated"}`` or
            ``{"return_parts": True}`` (CLRP; also stores target, dual, difference).

    Returns:
        A DatasetExplanation describing the folder.

    Raises:
        ExplanationStorageError: the folder is not writable or the disk is full (finished
            shards are kept; no partial file is left under a shard's name).
        ResumeMismatchError: ``out_dir`` holds a run made with other settings (model,
            weights, options, selection, data length, ...), other data (the skipped
            samples differ from a finished shard's input checksum) or settings that cannot
            be fingerprinted.
        FolderLockedError: another run is writing into ``out_dir``.
        FolderError: ``out_dir`` is not empty, has no manifest and ``overwrite=False``.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; use one of {FORMATS}")
    shard_size = _positive_int(shard_size, "shard_size")
    batch_size = _positive_int(batch_size, "batch_size")
    analyze_kwargs = dict(analyze_kwargs or {})
    out = Path(out_dir)
    runner = None
    if strategy is not None:
        from tf_clrp._distribute import DistributedRunner

        runner = DistributedRunner(strategy)
    active = runner is None or runner.is_writer
    full_shape = _input_shape(analyzer)
    config = _settings(
        analyzer, data, neuron_selection, shard_size, format, analyze_kwargs, full_shape
    )
    lock = FolderLock(out)
    if active:
        _prepare_dir(out)
        try:
            lock.acquire()
        except LockHeld as held:
            raise FolderLockedError(
                f"{out} is in use by another explain_dataset run ({held.reason}; lock file "
                f"{held.path}). Wait for it to finish or use another out_dir; if that process "
                f"is gone, delete {held.path}."
            ) from None
    try:
        return _explain_locked(
            analyzer,
            data,
            out,
            config,
            runner,
            active,
            neuron_selection,
            batch_size,
            progress,
            resume,
            overwrite,
            analyze_kwargs,
            full_shape,
        )
    finally:
        if active:
            lock.release()


def _explain_locked(
    analyzer: Any,
    data: Any,
    out: Path,
    config: dict[str, Any],
    runner: Any,
    active: bool,
    neuron_selection: Any,
    batch_size: int,
    progress: bool,
    resume: bool,
    overwrite: bool,
    analyze_kwargs: dict[str, Any],
    full_shape: tuple[int | None, ...] | None,
) -> DatasetExplanation:
    """``explain_dataset`` once the folder is locked (by the writing worker)."""
    n_outputs = getattr(analyzer, "n_outputs", None)
    manifest: dict[str, Any] = {**config, **_empty_state()}
    check_skipped = None
    if active:
        state, check_skipped = _open_folder(
            out, config, resume, overwrite, neuron_selection, n_outputs
        )
        manifest.update(state)
    skipped_shards = len(manifest["shards"])
    if runner is not None:  # every worker starts after the chief's finished shards
        agreed = runner.broadcast_from_chief(
            np.array([manifest["completed"], manifest["complete"]], np.float64)
        )
        manifest["completed"], manifest["complete"] = int(agreed[0]), bool(agreed[1])
    writer = _ShardWriter(out, manifest, config["shard_size"], config["format"], active)
    input_rank = None if full_shape is None else len(full_shape)
    skip = int(manifest["completed"])
    if manifest["complete"]:
        if check_skipped is not None:  # compare the finished samples and their labels
            for _ in iter_batches(data, input_rank, batch_size, skip, check_skipped):
                break
            check_skipped.finish()
        writer.save_manifest()  # the selection now recorded is the equivalent one given
        return DatasetExplanation(out, manifest, skipped_shards=skipped_shards)
    writer.save_manifest()

    progress_bar = Progress(progress, config["n_samples_expected"], skip)
    try:
        batches = iter_batches(data, input_rank, batch_size, skip, check_skipped)
        _run(
            analyzer,
            batches,
            writer,
            runner,
            neuron_selection,
            batch_size,
            skip,
            analyze_kwargs,
            progress_bar,
        )
    finally:
        progress_bar.close()
    if check_skipped is not None:
        check_skipped.finish()
    manifest["complete"] = True
    writer.save_manifest()
    return DatasetExplanation(
        out, manifest, computed_shards=writer.written, skipped_shards=skipped_shards
    )


def _run(
    analyzer: Any,
    batches: Any,
    writer: _ShardWriter,
    runner: Any,
    neuron_selection: Any,
    batch_size: int,
    skip: int,
    analyze_kwargs: dict[str, Any],
    progress: Progress,
) -> None:
    """The streaming loop: batches → chunks (never across a shard boundary) → shards."""
    next_index = skip
    pending: list[tuple[np.ndarray, np.ndarray | None]] = []
    pending_n = 0
    n_outputs = getattr(analyzer, "n_outputs", None)

    def explain_pending() -> None:
        nonlocal pending, pending_n, next_index
        images = (
            pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending], axis=0)
        )
        has_labels = all(p[1] is not None for p in pending)
        labels = (
            None
            if not has_labels
            else (
                pending[0][1]
                if len(pending) == 1
                else np.concatenate([p[1] for p in pending], axis=0)
            )
        )
        index = np.arange(next_index, next_index + len(images), dtype=np.int64)
        check_finite(images, index)
        selection = chunk_selection(neuron_selection, images, labels, index, n_outputs)
        selection, stored, kinds = explained_selection(analyzer, images, selection)
        kwargs = chunk_kwargs(analyzer, analyze_kwargs, index)
        if runner is None:
            result = analyzer.analyze(
                images, neuron_selection=selection, batch_size=batch_size, **kwargs
            )
        else:
            result = runner.analyze(analyzer, images, selection, **kwargs)
        writer.add(result, stored, kinds, index, images)
        next_index += len(images)
        pending, pending_n = [], 0
        progress.update(len(images))
        if writer.fill == writer.shard_size:
            name = writer.flush()
            if name is not None:
                progress.shard_done(name, writer.completed)

    for images, labels in batches:
        position = 0
        while position < len(images):
            room = min(batch_size - pending_n, writer.shard_size - writer.fill - pending_n)
            take = min(room, len(images) - position)
            pending.append(
                (
                    images[position : position + take],
                    None if labels is None else labels[position : position + take],
                )
            )
            pending_n += take
            position += take
            if pending_n == batch_size or writer.fill + pending_n == writer.shard_size:
                explain_pending()
    if pending_n:
        explain_pending()
    name = writer.flush()
    if name is not None:
        progress.shard_done(name, writer.completed)


__all__ = [
    "DatasetExplanation",
    "ExplanationStorageError",
    "FolderError",
    "FolderLockedError",
    "ResumeMismatchError",
    "ShardIntegrityError",
    "explain_dataset",
    "load_explanations",
]
