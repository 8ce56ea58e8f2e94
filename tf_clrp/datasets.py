"""Explaining whole datasets: sharded, resumable, bounded-memory, optionally distributed.

``explain_dataset`` streams a ``tf.data.Dataset`` (or any iterable of numpy batches) through an
analyzer and writes the maps to disk in shards plus a ``manifest.json``; ``load_explanations``
reads them back. See ``docs/datasets.md`` for the file layout and the resume semantics.

Resuming skips the samples of finished shards by advancing the data iterator, so the data
must come in the same, deterministic order on every run (no unseeded shuffling).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.analyzers.base import Analyzer
from tf_clrp.analyzers.contrastive import ContrastiveExplanation
from tf_clrp.errors import SelectionError, TfClrpError
from tf_clrp.selection import resolve_selection

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
FORMATS = ("npz", "npy")
#: Selection code stored for samples explained with an explicit seed array.
EXPLICIT_SEEDS = -3
_PARTS = ("target", "dual", "difference")
_IMAGE_KEYS = ("image", "images", "x", "input", "inputs", "features")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets")


class ExplanationStorageError(OSError):
    """Explanations could not be written (unwritable folder, full disk, ...)."""


class ResumeMismatchError(TfClrpError):
    """``out_dir`` holds a run made with other settings than the ones given."""


# ---------------------------------------------------------------------------- the result
class DatasetExplanation:
    """The explanations of a dataset on disk (one ``explain_dataset`` output folder).

    Iterating yields one dict per shard: ``maps``, ``selection``, ``index`` (global sample
    indices) and, for ``return_parts=True``, ``target``, ``dual`` and ``difference``.

    Args:
        out_dir: The folder.
        manifest: Its parsed ``manifest.json``.
        computed_shards: Shards computed by the run that returned this object.
        skipped_shards: Shards found finished (resumed) by that run.
    """

    def __init__(self, out_dir: str | os.PathLike[str], manifest: dict[str, Any], *,
                 computed_shards: int = 0, skipped_shards: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.manifest = manifest
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
        """The manifest's shard records (file, start, stop, count, bytes)."""
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

    def iter_shards(self, fields: Iterable[str] | None = None, *, mmap: bool = False
                    ) -> Iterator[dict[str, np.ndarray]]:
        """Reads the shards one at a time, in sample order.

        Args:
            fields: Arrays to read (default all: maps, selection, index, parts if any).
            mmap: Memory-map the arrays instead of reading them ("npy" format only).

        Returns:
            An iterator of dicts of arrays, one per shard.
        """
        wanted = list(fields) if fields is not None else self.fields
        unknown = sorted(set(wanted) - set(self.fields))
        if unknown:
            raise KeyError(f"no field(s) {unknown} in {self.out_dir}; stored: {self.fields}")
        fmt = self.manifest["format"]
        for record in self.manifest["shards"]:
            path = self.out_dir / record["file"]
            if not path.exists():
                raise FileNotFoundError(
                    f"shard {path} is listed in {self.out_dir / MANIFEST} but missing; rerun "
                    "explain_dataset with resume=True to recompute it")
            if fmt == "npz":
                with np.load(path, allow_pickle=False) as archive:
                    yield {name: archive[name] for name in wanted}
            else:
                yield {name: np.load(path / f"{name}.npy", allow_pickle=False,
                                     mmap_mode="r" if mmap else None) for name in wanted}

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
            elif name == "maps" or name in _PARTS:
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
            f"<= {self.manifest['shard_size']}, {state}",
            f"  maps: {self.manifest.get('dtype', 'float32')} "
            f"{self.sample_shape} per sample, format {self.manifest['format']}, "
            f"{size / 2**20:.1f} MiB",
            f"  this run: {self.computed_shards} shard(s) computed, "
            f"{self.skipped_shards} resumed",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"DatasetExplanation(out_dir={str(self.out_dir)!r}, n_samples={self.n_samples}, "
                f"shards={len(self.manifest['shards'])}, complete={self.complete})")


def load_explanations(out_dir: str | os.PathLike[str]) -> DatasetExplanation:
    """Opens an ``explain_dataset`` output folder.

    Args:
        out_dir: The folder holding ``manifest.json`` and the shards.

    Returns:
        A DatasetExplanation: iterate it for one dict of arrays per shard, or call
        ``.concatenate()`` / ``.maps`` for everything at once.

    Raises:
        FileNotFoundError: no manifest in the folder.
    """
    manifest = _read_manifest(Path(out_dir))
    if manifest is None:
        raise FileNotFoundError(
            f"no {MANIFEST} in {out_dir}: not an explain_dataset output folder (or the run "
            "stopped before writing anything)")
    return DatasetExplanation(out_dir, manifest)


# ---------------------------------------------------------------------------- file I/O
def _save_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    """Writes one shard archive into an open binary file (patched in tests)."""
    np.savez(file, **arrays)


def _save_npy(file: Any, array: np.ndarray) -> None:
    """Writes one array into an open binary file (patched in tests)."""
    np.save(file, array, allow_pickle=False)


def _storage_error(exc: OSError, what: Path, completed: int) -> ExplanationStorageError:
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "permission denied (the folder is not writable)"
    else:
        reason = exc.strerror or str(exc)
    message = f"cannot write {what}: {reason} [{type(exc).__name__}: {exc}]."
    if completed:
        message += (f" Nothing was left half-written; the {completed} sample(s) in finished "
                    "shards are kept, and rerunning explain_dataset with resume=True "
                    "continues after them.")
    error = ExplanationStorageError(exc.errno, message)
    error.filename = str(what)
    return error


def _fsync(file: Any) -> None:
    file.flush()
    with contextlib.suppress(OSError):
        os.fsync(file.fileno())


def _atomic_file(final: Path, write: Callable[[Any], None]) -> None:
    """Writes ``final`` through a temporary file in the same folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            _fsync(file)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_dir(final: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes one ``.npy`` per array into a temporary folder, then renames it to ``final``."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        for name, array in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as file:
                _save_npy(file, array)
                _fsync(file)
        if final.exists():  # a finished but unrecorded shard from an interrupted run
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=1, default=str).encode()
    _atomic_file(path, lambda file: file.write(text))


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); remove it to start over") from exc


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Removes temporary files and unrecorded shards left by an interrupted run."""
    for path in out_dir.iterdir():
        name = path.name
        stale = (name.startswith(".shard_") or name.startswith(f".{MANIFEST}.")) and \
            name.endswith(".tmp")
        stale = stale or (name.startswith("shard_") and name not in keep)
        if stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


# ---------------------------------------------------------------------------- analyzer info
def _input_shape(analyzer: Any) -> tuple[int | None, ...] | None:
    """The explained model's input shape with the batch axis, if the analyzer exposes it."""
    graph = getattr(analyzer, "graph", None)
    if graph is not None:
        return tuple(graph.input_shape)
    shape = getattr(getattr(analyzer, "model", None), "input_shape", None)
    if isinstance(shape, tuple | list) and shape and all(
            d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None


def _model_name(analyzer: Any) -> str | None:
    graph = getattr(analyzer, "graph", None)
    if graph is not None:
        return graph.model_name
    return getattr(getattr(analyzer, "model", None), "name", None)


# ---------------------------------------------------------------------------- data input
def _split_element(element: Any) -> tuple[Any, Any]:
    """(images, labels-or-None) of one dataset element."""
    if isinstance(element, dict):
        image_key = next((k for k in _IMAGE_KEYS if k in element), None)
        if image_key is None:
            raise TypeError(f"dataset elements are dicts with keys {sorted(element)}; expected "
                            f"one of {_IMAGE_KEYS} for the images")
        label_key = next((k for k in _LABEL_KEYS if k in element), None)
        return element[image_key], None if label_key is None else element[label_key]
    if isinstance(element, tuple | list):
        if not element:
            raise TypeError("empty dataset element")
        return element[0], element[1] if len(element) > 1 else None
    return element, None


def _as_numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)


def _image_rank(dataset: tf.data.Dataset) -> int | None:
    """Rank of the images in a dataset's elements (None: unknown)."""
    spec = dataset.element_spec
    images, _ = _split_element(spec)
    shape = getattr(images, "shape", None)
    return None if shape is None or shape.rank is None else int(shape.rank)


def _iter_batches(data: Any, input_rank: int | None, batch_size: int, skip: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields (images, labels) numpy batches, the first ``skip`` samples left out.

    Elements whose images have one axis less than the model input are single samples
    (with an unknown input rank, every element is taken to be a batch).
    """
    if isinstance(data, np.ndarray):
        for start in range(skip, len(data), batch_size):
            yield data[start:start + batch_size], None
        return
    if isinstance(data, tf.data.Dataset):
        if input_rank is not None and _image_rank(data) == input_rank - 1:
            # unbatched samples: skip them inside tf.data, then batch
            data = data.skip(skip).batch(batch_size)
            skip = 0
        iterator: Iterable[Any] = data.as_numpy_iterator()
    else:
        iterator = data
    for element in iterator:
        images, labels = _split_element(element)
        images = _as_numpy(images)
        labels = None if labels is None else _as_numpy(labels)
        if input_rank is not None and images.ndim == input_rank - 1:
            images = images[None]
            labels = None if labels is None else labels[None]
        if skip:
            if len(images) <= skip:
                skip -= len(images)
                continue
            images = images[skip:]
            labels = None if labels is None else labels[skip:]
            skip = 0
        yield images, labels


def _total_samples(data: Any, input_rank: int | None) -> int | None:
    if isinstance(data, np.ndarray):
        return len(data)
    if isinstance(data, tf.data.Dataset) and input_rank is not None and \
            _image_rank(data) == input_rank - 1:
        count = int(data.cardinality())
        return count if count >= 0 else None
    return None


# ---------------------------------------------------------------------------- selection
def _labels_to_indices(labels: np.ndarray | None, n_outputs: int | None) -> np.ndarray:
    if labels is None:
        raise SelectionError(
            "neuron_selection='labels' needs (images, labels) dataset elements (or dicts "
            "with a 'label' key); the dataset yields images only")
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1 and labels.shape[1] == (
            n_outputs or labels.shape[1]):
        return labels.argmax(axis=1)  # one-hot / probabilities
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise SelectionError(
            f"labels of shape {labels.shape} cannot be used as neuron_selection: give one "
            f"class index per sample or one-hot rows of width {n_outputs or 'n_classes'}")
    return labels


def _chunk_selection(neuron_selection: Any, images: np.ndarray, labels: np.ndarray | None,
                     index: np.ndarray, n_outputs: int | None) -> Any:
    """The ``analyze`` selection for the samples ``index`` of the dataset."""
    if isinstance(neuron_selection, str) and neuron_selection == "labels":
        return _labels_to_indices(labels, n_outputs)
    if callable(neuron_selection):
        return neuron_selection(images, labels, index)
    if isinstance(neuron_selection, str | int | np.integer) or neuron_selection is None:
        return neuron_selection
    array = np.asarray(neuron_selection)
    if array.ndim == 1 and array.dtype.kind in "iu":
        if index[-1] >= len(array):
            raise SelectionError(
                f"neuron_selection has {len(array)} entries but the dataset has more samples "
                f"(sample {int(index[-1])}); give one index per dataset sample")
        return array[index]
    raise SelectionError(
        "for datasets, neuron_selection is 'max_activation', 'all', 'labels', an int, one int "
        "per dataset sample, or a callable (images, labels, index) -> selection")


def _explained_selection(analyzer: Any, images: np.ndarray, selection: Any
                         ) -> tuple[Any, np.ndarray]:
    """The selection to pass to ``analyze`` and the per-sample codes to store.

    For tf_clrp analyzers "max_activation" is resolved here (``resolve_max_activation``):
    the chunk is explained for, and stores, the real arg-max indices.
    """
    if not isinstance(analyzer, Analyzer):
        return selection, _selection_codes(selection, analyzer, len(images))
    array, prepared = analyzer.prepare(images, selection)
    try:
        resolved = analyzer.resolve_max_activation(array, prepared)
    except NotImplementedError:  # an Analyzer subclass without a forward: keep the code -1
        resolved = prepared
    if resolved.seeds is not None:
        return selection, np.full(len(array), EXPLICIT_SEEDS, np.int32)
    assert resolved.indices is not None and prepared.indices is not None
    codes = resolved.indices.astype(np.int32)
    changed = not np.array_equal(codes, prepared.indices)
    return (codes if changed else selection), codes


def _selection_codes(selection: Any, analyzer: Any, n: int) -> np.ndarray:
    """The stored per-sample selection: the unit index, -1 arg-max, -2 all, -3 seeds."""
    if selection is None:
        mode = getattr(analyzer, "neuron_selection_mode", "max_activation")
        selection = "all" if mode == "all" else "max_activation"
    n_outputs = getattr(analyzer, "n_outputs", None)
    if n_outputs is None:  # not a tf_clrp Analyzer: no range check
        array = np.asarray(selection) if not isinstance(selection, str) else None
        if array is not None and array.dtype.kind == "f" and array.ndim >= 2:
            return np.full(n, EXPLICIT_SEEDS, np.int32)
        n_outputs = int(np.max(array)) + 1 if array is not None and array.size else 1
    resolved = resolve_selection(selection, n, n_outputs, getattr(analyzer, "output_shape", ()))
    if resolved.seeds is not None:
        return np.full(n, EXPLICIT_SEEDS, np.int32)
    assert resolved.indices is not None
    return resolved.indices.astype(np.int32)


def _describe_selection(neuron_selection: Any) -> Any:
    """A JSON-able description of ``neuron_selection`` (compared when resuming)."""
    if neuron_selection is None or isinstance(neuron_selection, str | int | np.integer):
        return neuron_selection if not isinstance(neuron_selection, np.integer) \
            else int(neuron_selection)
    if callable(neuron_selection):
        name = getattr(neuron_selection, "__qualname__", type(neuron_selection).__name__)
        return f"callable:{getattr(neuron_selection, '__module__', '?')}.{name}"
    array = np.ascontiguousarray(neuron_selection)
    return f"array:{array.dtype}{list(array.shape)}:" + \
        hashlib.sha1(array.tobytes()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.size <= 16:
        return value.tolist()
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))  # stable across runs


def _analyzer_description(analyzer: Any) -> dict[str, Any]:
    """Class, registry name and options of an analyzer, as far as they are visible.

    ``name`` and ``options`` are the ones ``create_analyzer`` records on the analyzer; the
    options are completed by the analyzer's public attributes.
    """
    skip = {"model", "graph", "mirror", "rng", "name", "options"}
    options = {k: _jsonable(v) for k, v in sorted(vars(analyzer).items())
               if not k.startswith("_") and k not in skip and not callable(v)}
    explicit = getattr(analyzer, "options", None)
    if isinstance(explicit, dict):
        options.update({k: _jsonable(v) for k, v in explicit.items()})
    return {"class": type(analyzer).__name__, "name": getattr(analyzer, "name", None),
            "model": _model_name(analyzer), "options": options}


# ---------------------------------------------------------------------------- progress
class _Progress:
    """tqdm if available (and wanted), else one line per shard on stderr, else nothing."""

    def __init__(self, enabled: bool, total: int | None, initial: int) -> None:
        self.bar = None
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, unit="sample", desc="explaining",
                        dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def shard_done(self, name: str, completed: int) -> None:
        if self.enabled and self.bar is None:
            print(f"tf_clrp: wrote {name} ({completed} samples done)", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------- the writer
class _ShardWriter:
    """Fills one preallocated shard buffer, writes it atomically, records it."""

    def __init__(self, out_dir: Path, manifest: dict[str, Any], shard_size: int, fmt: str,
                 active: bool) -> None:
        self.out_dir = out_dir
        self.manifest = manifest
        self.shard_size = shard_size
        self.fmt = fmt
        self.active = active
        self.buffers: dict[str, np.ndarray] | None = None
        self.fill = 0
        self.written = 0

    @property
    def completed(self) -> int:
        return int(self.manifest["completed"])

    def add(self, result: Any, selection: np.ndarray, index: np.ndarray) -> None:
        arrays = {"maps": result.contrastive, **{p: getattr(result, p) for p in _PARTS}} \
            if isinstance(result, ContrastiveExplanation) else {"maps": result}
        arrays.update(selection=selection, index=index)
        if self.buffers is None:
            self.buffers = {name: np.empty((self.shard_size, *a.shape[1:]), a.dtype)
                            for name, a in arrays.items()}
            self.manifest["fields"] = list(self.buffers)
            self.manifest["sample_shape"] = list(arrays["maps"].shape[1:])
            self.manifest["dtype"] = str(arrays["maps"].dtype)
        n = len(index)
        for name, array in arrays.items():
            self.buffers[name][self.fill:self.fill + n] = array
        self.fill += n

    def flush(self) -> str | None:
        """Writes the filled part of the buffer as the next shard; returns its file name."""
        if self.fill == 0 or self.buffers is None:
            return None
        number = len(self.manifest["shards"])
        name = f"shard_{number:05d}" + (".npz" if self.fmt == "npz" else "")
        start = self.completed
        arrays = {k: v[:self.fill] for k, v in self.buffers.items()}
        meta = {"shard": number, "start": start, "stop": start + self.fill, "count": self.fill,
                "analyzer": self.manifest["analyzer"]["name"]
                or self.manifest["analyzer"]["class"], "format_version": FORMAT_VERSION}
        path = self.out_dir / name
        if self.active:
            try:
                if self.fmt == "npz":
                    arrays_meta = {**arrays, "metadata": np.array(json.dumps(meta))}
                    _atomic_file(path, lambda file: _save_npz(file, arrays_meta))
                    size = path.stat().st_size
                else:
                    _atomic_dir(path, {**arrays, "metadata": np.array(json.dumps(meta))})
                    size = sum(p.stat().st_size for p in path.iterdir())
            except OSError as exc:
                raise _storage_error(exc, path, self.completed) from exc
        else:
            size = 0
        record = {"file": name, "start": start, "stop": start + self.fill,
                  "count": self.fill, "bytes": size}
        self.manifest["shards"].append(record)
        self.manifest["completed"] = start + self.fill
        self.save_manifest(unrecord_last=True)
        self.fill = 0
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
                stale = self.out_dir / last["file"]
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        stale.unlink()
            raise _storage_error(exc, path, self.completed) from exc


def _prepare_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".shard_probe.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise _storage_error(exc, out_dir, 0) from exc


def _check_resumable(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> None:
    keys = ("format_version", "format", "shard_size", "neuron_selection", "analyze_kwargs",
            "analyzer", "input_shape")
    differing = [k for k in keys if json.loads(json.dumps(old.get(k), default=str))
                 != json.loads(json.dumps(new.get(k), default=str))]
    if differing:
        details = "; ".join(f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}"
                            for k in differing)
        raise ResumeMismatchError(
            f"{out_dir} holds a run with other settings ({details}). Use another out_dir, "
            "or resume=False to discard it and start over.")


# ---------------------------------------------------------------------------- main entry
def explain_dataset(analyzer: Analyzer | Any, data: Any, out_dir: str | os.PathLike[str], *,
                    neuron_selection: Any = "max_activation", shard_size: int = 256,
                    batch_size: int = 32, format: str = "npz", progress: bool = True,
                    resume: bool = True, strategy: tf.distribute.Strategy | None = None,
                    analyze_kwargs: dict[str, Any] | None = None) -> DatasetExplanation:
    """Explains every sample of a dataset and writes the maps to disk in shards.

    Memory stays bounded by one shard of maps plus one batch, whatever the dataset length.
    Each shard is written atomically and recorded in ``manifest.json`` only once complete;
    an interrupted run continues (``resume=True``) after its last finished shard, advancing
    the data iterator past those samples without explaining them again, so the data must
    arrive in the same deterministic order on every run.

    Args:
        analyzer: From ``tf_clrp.create_analyzer`` (or any object with a compatible
            ``analyze(x, neuron_selection=..., batch_size=...)``).
        data: A ``tf.data.Dataset`` of images or (images, labels) (batched or not; dict
            elements with "image"/"label" keys work too), a numpy array of samples, or any
            iterable of numpy batches / (images, labels) batches.
        out_dir: Output folder (created if needed).
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
        strategy: A ``tf.distribute.Strategy`` (MirroredStrategy, MultiWorkerMirroredStrategy)
            to split every batch over its replicas; only the chief worker writes files.
        analyze_kwargs: Extra ``analyze`` options, e.g. ``{"contrast": "negated"}`` or
            ``{"return_parts": True}`` (CLRP; also stores target, dual, difference).

    Returns:
        A DatasetExplanation describing the folder.

    Raises:
        ExplanationStorageError: the folder is not writable or the disk is full (finished
            shards are kept; no partial file is left under a shard's name).
        ResumeMismatchError: ``out_dir`` holds a run made with other settings.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; use one of {FORMATS}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size}, "
                         f"{batch_size}")
    analyze_kwargs = dict(analyze_kwargs or {})
    out = Path(out_dir)
    runner = None
    if strategy is not None:
        from tf_clrp._distribute import DistributedRunner
        runner = DistributedRunner(strategy)
    active = runner is None or runner.is_writer
    full_shape = _input_shape(analyzer)
    input_shape = None if full_shape is None else list(full_shape[1:])
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "format": format,
        "shard_size": int(shard_size),
        "analyzer": _analyzer_description(analyzer),
        "neuron_selection": _describe_selection(neuron_selection),
        "analyze_kwargs": _jsonable(analyze_kwargs),
        "input_shape": input_shape,
    }
    manifest: dict[str, Any] = {**config, "shards": [], "completed": 0, "complete": False,
                                "fields": None, "sample_shape": None, "dtype": None}
    if active:
        _prepare_dir(out)
        old = _read_manifest(out) if resume else None
        if old is not None:
            _check_resumable(old, config, out)
            shards = []
            for record in old["shards"]:  # keep the prefix of shards that still exist
                if not (out / record["file"]).exists():
                    break
                shards.append(record)
            manifest.update({k: old.get(k) for k in ("fields", "sample_shape", "dtype")})
            manifest.update(shards=shards, complete=bool(old["complete"]) and
                            len(shards) == len(old["shards"]),
                            completed=shards[-1]["stop"] if shards else 0)
        _remove_stale(out, {r["file"] for r in manifest["shards"]})
    skipped_shards = len(manifest["shards"])
    if runner is not None:  # every worker starts after the chief's finished shards
        agreed = runner.broadcast_from_chief(
            np.array([manifest["completed"], manifest["complete"]], np.float64))
        manifest["completed"], manifest["complete"] = int(agreed[0]), bool(agreed[1])
    writer = _ShardWriter(out, manifest, shard_size, format, active)
    if manifest["complete"]:
        return DatasetExplanation(out, manifest, skipped_shards=skipped_shards)
    writer.save_manifest()

    input_rank = None if full_shape is None else len(full_shape)
    skip = int(manifest["completed"])
    progress_bar = _Progress(progress, _total_samples(data, input_rank), skip)
    try:
        _run(analyzer, data, writer, runner, neuron_selection, batch_size, input_rank, skip,
             analyze_kwargs, progress_bar)
    finally:
        progress_bar.close()
    manifest["complete"] = True
    writer.save_manifest()
    return DatasetExplanation(out, manifest, computed_shards=writer.written,
                              skipped_shards=skipped_shards)


def _run(analyzer: Any, data: Any, writer: _ShardWriter, runner: Any,
         neuron_selection: Any, batch_size: int, input_rank: int | None, skip: int,
         analyze_kwargs: dict[str, Any], progress: _Progress) -> None:
    """The streaming loop: batches → chunks (never across a shard boundary) → shards."""
    next_index = skip
    pending: list[tuple[np.ndarray, np.ndarray | None]] = []
    pending_n = 0

    def explain_pending() -> None:
        nonlocal pending, pending_n, next_index
        images = pending[0][0] if len(pending) == 1 else np.concatenate(
            [p[0] for p in pending], axis=0)
        has_labels = all(p[1] is not None for p in pending)
        labels = None if not has_labels else (pending[0][1] if len(pending) == 1 else
                                              np.concatenate([p[1] for p in pending], axis=0))
        index = np.arange(next_index, next_index + len(images), dtype=np.int64)
        selection = _chunk_selection(neuron_selection, images, labels, index,
                                     getattr(analyzer, "n_outputs", None))
        selection, codes = _explained_selection(analyzer, images, selection)
        if runner is None:
            result = analyzer.analyze(images, neuron_selection=selection,
                                      batch_size=batch_size, **analyze_kwargs)
        else:
            result = runner.analyze(analyzer, images, selection, **analyze_kwargs)
        writer.add(result, codes, index)
        next_index += len(images)
        pending, pending_n = [], 0
        progress.update(len(images))
        if writer.fill == writer.shard_size:
            name = writer.flush()
            if name is not None:
                progress.shard_done(name, writer.completed)

    for images, labels in _iter_batches(data, input_rank, batch_size, skip):
        position = 0
        while position < len(images):
            room = min(batch_size - pending_n, writer.shard_size - writer.fill - pending_n)
            take = min(room, len(images) - position)
            pending.append((images[position:position + take],
                            None if labels is None else labels[position:position + take]))
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
    "EXPLICIT_SEEDS",
    "DatasetExplanation",
    "ExplanationStorageError",
    "ResumeMismatchError",
    "explain_dataset",
    "load_explanations",
]
