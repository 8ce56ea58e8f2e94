"""Turns ``neuron_selection`` into per-sample indices or explicit seeds, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tf_clrp.errors import SelectionError

#: Every integer code of the compiled explain functions, in one table so that no two mean
#: different things. Codes stay inside the analyzers (their ``tf.function`` arguments):
#: datasets store unit indices and words (``code_name``), never a code.
CODES: dict[str, int] = {
    # neuron_selection, per sample (non-negative values are unit indices)
    "max_activation": -1,
    "all": -2,
    # CLRP's dual, per sample (non-negative values are rival unit indices)
    "others": -11,
    "others_uniform": -12,
    "negated": -13,
    # a CAM without a contrast
    "no_contrast": -14,
}
MAX_ACTIVATION = CODES["max_activation"]
ALL_NEURONS = CODES["all"]

_NAME_OF_CODE = {code: name for name, code in CODES.items()}


def code_name(code: int) -> str:
    """The word for an integer code ("max_activation", "all", "others", ...).

    Raises:
        ValueError: not a code (a unit index, or an unknown negative number).
    """
    if code not in _NAME_OF_CODE:
        raise ValueError(f"{code} is not a tf_clrp selection code")
    return _NAME_OF_CODE[code]


@dataclass(frozen=True)
class Selection:
    """Either one output index per sample (``indices``) or explicit seeds (``seeds``)."""

    indices: np.ndarray | None = None
    seeds: np.ndarray | None = None

    def chunk(self, start: int, stop: int) -> Selection:
        """The selection of samples ``start:stop``."""
        if self.seeds is not None:
            return Selection(seeds=self.seeds[start:stop])
        assert self.indices is not None
        return Selection(indices=self.indices[start:stop])


def resolve_selection(
    selection: Any, batch: int, n_outputs: int, output_shape: tuple[int | None, ...] = ()
) -> Selection:
    """Validates ``neuron_selection`` against the batch and the explained output.

    Args:
        selection: None / "max_activation", "all", an int, one int per sample, or a float
            array of the output's shape (explicit initial relevance / output gradient).
        batch: Number of samples.
        n_outputs: Number of output units (flattened).
        output_shape: The output's shape without batch, for seed arrays.

    Returns:
        A Selection.

    Raises:
        SelectionError: index out of range, wrong length or wrong seed shape.
    """
    if selection is None or (isinstance(selection, str) and selection == "max_activation"):
        return Selection(indices=np.full(batch, MAX_ACTIVATION, np.int32))
    if isinstance(selection, str):
        if selection == "all":
            return Selection(indices=np.full(batch, ALL_NEURONS, np.int32))
        raise SelectionError(
            f"neuron_selection={selection!r} is not understood; use 'max_activation', 'all', "
            "an int, one int per sample, or a seed array"
        )
    array = np.asarray(selection)
    if array.dtype.kind in "fc" and array.ndim >= 2:
        if array.shape[0] != batch or int(np.prod(array.shape[1:])) != n_outputs:
            raise SelectionError(
                f"seed array of shape {array.shape} does not fit a batch of {batch} with "
                f"output shape {tuple(output_shape)}; expected ({batch}, {n_outputs}) or "
                f"({batch}, *{tuple(output_shape)})"
            )
        if not np.all(np.isfinite(array)):
            raise SelectionError("seed array contains NaN or Inf")
        return Selection(seeds=array.reshape(batch, n_outputs).astype(np.float32))
    if array.dtype.kind not in "iu" and not (
        array.dtype.kind == "f" and np.all(array == np.round(array))
    ):
        raise SelectionError(f"neuron_selection must be integer indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.ndim == 0:
        array = np.full(batch, int(array))
    elif array.ndim != 1 or array.shape[0] != batch:
        raise SelectionError(
            f"neuron_selection has {array.size} entries for a batch of {batch} samples; "
            "give one int for all samples or exactly one per sample"
        )
    bad = (array < 0) | (array >= n_outputs)
    if np.any(bad):
        raise SelectionError(
            f"neuron_selection index {int(array[bad][0])} is out of range: the explained "
            f"output has {n_outputs} units (valid 0..{n_outputs - 1})"
        )
    return Selection(indices=array.astype(np.int32))
