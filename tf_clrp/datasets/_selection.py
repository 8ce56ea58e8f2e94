"""``neuron_selection`` for datasets: per chunk, as stored on disk, as described in the manifest.

On disk a sample's selection is its unit index, or -1 where no single unit was explained;
the manifest says why in words (``"max_activation"`` left unresolved, ``"all"``,
``"seeds"``). The integer codes of ``tf_clrp.selection`` never reach the disk. (Folders of
format 1, written before this, stored codes in ``selection``: they are refused on resume,
see ``_resume.check_version``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_clrp.analyzers.base import Analyzer
from tf_clrp.datasets._fingerprint import Fingerprinter, digest
from tf_clrp.errors import SelectionError
from tf_clrp.selection import code_name, resolve_selection

#: Stored in ``selection`` where no single unit was explained.
NO_UNIT = -1
UNIT, UNRESOLVED, ALL, SEEDS = "unit", "max_activation", "all", "seeds"


def labels_to_indices(labels: np.ndarray | None, n_outputs: int | None) -> np.ndarray:
    """Class indices from labels given as indices or one-hot / probability rows."""
    if labels is None:
        raise SelectionError(
            "neuron_selection='labels' needs (images, labels) dataset elements (or dicts "
            "with a 'label' key); the dataset yields images only"
        )
    labels = np.asarray(labels)
    if (
        labels.ndim == 2
        and labels.shape[1] > 1
        and labels.shape[1] == (n_outputs or labels.shape[1])
    ):
        return labels.argmax(axis=1)  # one-hot / probabilities
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise SelectionError(
            f"labels of shape {labels.shape} cannot be used as neuron_selection: give one "
            f"class index per sample or one-hot rows of width {n_outputs or 'n_classes'}"
        )
    return labels


def check_units(selection: Any, index: np.ndarray, n_outputs: int | None, source: str) -> None:
    """Raises SelectionError naming the global sample index of an out-of-range unit."""
    if n_outputs is None or selection is None or isinstance(selection, str):
        return
    array = np.asarray(selection)
    integral = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and array.ndim <= 1 and bool(np.all(array == np.round(array)))
    )
    if not integral or array.ndim > 1:
        return
    values = np.broadcast_to(array, index.shape) if array.ndim == 0 else array
    if values.shape != index.shape:
        return  # a length error, reported by resolve_selection
    bad = (values < 0) | (values >= n_outputs)
    if bad.any():
        i = int(np.argmax(bad))
        raise SelectionError(
            f"{source} {values[i].item()!r} at sample {int(index[i])} of the dataset is out of "
            f"range: the explained output has {n_outputs} units (valid 0..{n_outputs - 1})"
        )


def chunk_selection(
    neuron_selection: Any,
    images: np.ndarray,
    labels: np.ndarray | None,
    index: np.ndarray,
    n_outputs: int | None,
) -> Any:
    """The ``analyze`` selection for the samples ``index`` of the dataset (range-checked)."""
    if isinstance(neuron_selection, str) and neuron_selection == "labels":
        selection = labels_to_indices(labels, n_outputs)
        check_units(selection, index, n_outputs, "label")
        return selection
    if callable(neuron_selection):
        selection = neuron_selection(images, labels, index)
        check_units(selection, index, n_outputs, "the selection callable's unit")
        return selection
    if isinstance(neuron_selection, str | int | np.integer) or neuron_selection is None:
        check_units(neuron_selection, index, n_outputs, "neuron_selection")
        return neuron_selection
    array = np.asarray(neuron_selection)
    if array.ndim == 1 and array.dtype.kind in "iu":
        if index[-1] >= len(array):
            raise SelectionError(
                f"neuron_selection has {len(array)} entries but the dataset has more samples "
                f"(sample {int(index[-1])}); give one index per dataset sample"
            )
        check_units(array[index], index, n_outputs, "neuron_selection")
        return array[index]
    raise SelectionError(
        "for datasets, neuron_selection is 'max_activation', 'all', 'labels', an int, one int "
        "per dataset sample, or a callable (images, labels, index) -> selection"
    )


def chunk_kwargs(
    analyzer: Any, analyze_kwargs: dict[str, Any], index: np.ndarray
) -> dict[str, Any]:
    """``analyze_kwargs`` for the samples ``index`` of the dataset: per-sample options (CLRP's
    ``contrast``) are indexed by dataset sample, like ``neuron_selection``, by the analyzer's
    own ``chunk_options`` (analyzers without it take no per-sample options)."""
    chunk_options = getattr(analyzer, "chunk_options", None)
    return analyze_kwargs if chunk_options is None else chunk_options(analyze_kwargs, index)


def _stored(indices: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Unit indices (codes replaced by NO_UNIT) and the per-sample kinds, in words."""
    kinds = [UNIT if i >= 0 else code_name(i) for i in indices.tolist()]
    return np.where(indices >= 0, indices, NO_UNIT).astype(np.int32), kinds


def explained_selection(
    analyzer: Any, images: np.ndarray, selection: Any
) -> tuple[Any, np.ndarray, list[str]]:
    """The selection to pass to ``analyze``, the unit indices to store and their kinds.

    For tf_clrp analyzers "max_activation" is resolved here (``resolve_max_activation``):
    the chunk is explained for, and stores, the real arg-max indices.
    """
    n = len(images)
    if not isinstance(analyzer, Analyzer):
        resolved = _resolve_for_object(selection, analyzer, n)
        if resolved is None:
            return selection, np.full(n, NO_UNIT, np.int32), [SEEDS] * n
        return (selection, *_stored(resolved))
    array, prepared = analyzer.prepare(images, selection)
    try:
        resolved_selection = analyzer.resolve_max_activation(array, prepared)
    except NotImplementedError:  # an Analyzer subclass without a forward: unresolved
        resolved_selection = prepared
    if resolved_selection.seeds is not None:
        return selection, np.full(n, NO_UNIT, np.int32), [SEEDS] * n
    assert resolved_selection.indices is not None and prepared.indices is not None
    indices = resolved_selection.indices.astype(np.int32)
    changed = not np.array_equal(indices, prepared.indices)
    return ((indices if changed else selection), *_stored(indices))


def _resolve_for_object(selection: Any, analyzer: Any, n: int) -> np.ndarray | None:
    """Per-sample indices (with the codes) for a non-tf_clrp object; None for seeds."""
    if selection is None:
        mode = getattr(analyzer, "neuron_selection_mode", "max_activation")
        selection = "all" if mode == "all" else "max_activation"
    n_outputs = getattr(analyzer, "n_outputs", None)
    if n_outputs is None:  # no output size known: no range check
        array = np.asarray(selection) if not isinstance(selection, str) else None
        if array is not None and array.dtype.kind == "f" and array.ndim >= 2:
            return None
        n_outputs = int(np.max(array)) + 1 if array is not None and array.size else 1
    resolved = resolve_selection(selection, n, n_outputs, getattr(analyzer, "output_shape", ()))
    return None if resolved.indices is None else resolved.indices


def describe_selection(neuron_selection: Any, fingerprinter: Fingerprinter) -> Any:
    """The manifest's description of ``neuron_selection`` (strings, never index codes)."""
    if neuron_selection is None:
        return "default"
    if isinstance(neuron_selection, str):
        return neuron_selection
    if isinstance(neuron_selection, int | np.integer) and not isinstance(neuron_selection, bool):
        return {"unit": int(neuron_selection)}
    if callable(neuron_selection):
        return {"callable": fingerprinter.describe(neuron_selection, "neuron_selection")}
    array = np.ascontiguousarray(neuron_selection)
    if array.ndim == 1 and array.dtype.kind in "iu":
        return {"per_sample": digest(array.astype(np.int64).tobytes()), "length": int(len(array))}
    return {"other": fingerprinter.describe(array, "neuron_selection")}


def unit_values(neuron_selection: Any, stop: int) -> np.ndarray | None:
    """The unit index of samples ``0..stop-1`` under an int or per-sample selection."""
    if isinstance(neuron_selection, int | np.integer):
        return np.full(stop, int(neuron_selection), np.int64)
    if isinstance(neuron_selection, str) or callable(neuron_selection):
        return None
    array = np.asarray(neuron_selection)
    if array.ndim == 1 and array.dtype.kind in "iu" and len(array) >= stop:
        return array[:stop].astype(np.int64)
    return None
