"""Reading the data given to ``explain_dataset``: elements, batches, skipping, length."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from tf_clrp.errors import InputError

_IMAGE_KEYS = ("image", "images", "x", "input", "inputs", "features")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets")

#: Called with (images, labels or None, global indices) for the samples skipped when resuming.
SkippedCheck = Callable[[np.ndarray, np.ndarray | None, np.ndarray], None]


def split_element(element: Any) -> tuple[Any, Any]:
    """(images, labels-or-None) of one dataset element."""
    if isinstance(element, dict):
        image_key = next((k for k in _IMAGE_KEYS if k in element), None)
        if image_key is None:
            raise TypeError(
                f"dataset elements are dicts with keys {sorted(element)}; expected "
                f"one of {_IMAGE_KEYS} for the images"
            )
        label_key = next((k for k in _LABEL_KEYS if k in element), None)
        return element[image_key], None if label_key is None else element[label_key]
    if isinstance(element, tuple | list):
        if not element:
            raise TypeError("empty dataset element")
        return element[0], element[1] if len(element) > 1 else None
    return element, None


def as_numpy(value: Any) -> np.ndarray:
    """A tensor or array-like as a numpy array."""
    return value.numpy() if isinstance(value, tf.Tensor) else np.asarray(value)


def image_rank(dataset: tf.data.Dataset) -> int | None:
    """Rank of the images in a dataset's elements (None: unknown)."""
    spec = dataset.element_spec
    images, _ = split_element(spec)
    shape = getattr(images, "shape", None)
    return None if shape is None or shape.rank is None else int(shape.rank)


def iter_batches(
    data: Any,
    input_rank: int | None,
    batch_size: int,
    skip: int,
    check_skipped: SkippedCheck | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields (images, labels) numpy batches, the first ``skip`` samples left out.

    Elements whose images have one axis less than the model input are single samples
    (with an unknown input rank, every element is taken to be a batch). ``check_skipped``
    sees the skipped samples (then they are read, not skipped inside tf.data).
    """
    if isinstance(data, np.ndarray):
        if check_skipped is not None:
            for start in range(0, min(skip, len(data)), batch_size):
                stop = min(start + batch_size, skip, len(data))
                check_skipped(data[start:stop], None, np.arange(start, stop))
        for start in range(skip, len(data), batch_size):
            yield data[start : start + batch_size], None
        return
    if isinstance(data, tf.data.Dataset):
        if input_rank is not None and image_rank(data) == input_rank - 1:
            if check_skipped is None:  # unbatched samples: skip them inside tf.data
                data = data.skip(skip)
                skip = 0
            data = data.batch(batch_size)
        iterator: Iterable[Any] = data.as_numpy_iterator()
    else:
        iterator = data
    position = 0  # global index of the element's first sample
    for element in iterator:
        images, labels = split_element(element)
        images = as_numpy(images)
        labels = None if labels is None else as_numpy(labels)
        if input_rank is not None and images.ndim == input_rank - 1:
            images = images[None]
            labels = None if labels is None else labels[None]
        if skip:
            dropped = min(skip, len(images))
            if check_skipped is not None:
                check_skipped(
                    images[:dropped],
                    None if labels is None else labels[:dropped],
                    np.arange(position, position + dropped),
                )
            position += dropped
            skip -= dropped
            if not len(images) - dropped:
                continue
            images = images[dropped:]
            labels = None if labels is None else labels[dropped:]
        position += len(images)
        yield images, labels


def total_samples(data: Any, input_rank: int | None) -> int | None:
    """The number of samples when it is known without reading the data (else None)."""
    if isinstance(data, np.ndarray):
        return len(data)
    if (
        isinstance(data, tf.data.Dataset)
        and input_rank is not None
        and image_rank(data) == input_rank - 1
    ):
        count = int(data.cardinality())
        return count if count >= 0 else None
    return None


def check_finite(images: np.ndarray, index: np.ndarray) -> None:
    """Raises InputError naming the first sample (global index) with NaN or Inf."""
    if images.dtype.kind not in "fc":
        return
    finite = np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        bad = int((~np.isfinite(images[first])).sum())
        raise InputError(
            f"sample {int(index[first])} of the dataset contains {bad} NaN/Inf value(s) "
            f"({int((~finite).sum())} such sample(s) in its chunk); explanations need finite "
            "input"
        )
