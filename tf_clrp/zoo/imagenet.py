"""ImageNet-1k class names (bundled) and prediction decoding."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["decode_predictions", "imagenet_class_names"]


@functools.lru_cache(maxsize=1)
def _load_names() -> tuple[str, ...]:
    text = resources.files("tf_clrp").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:  # pragma: no cover - packaging error
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} lines, expected 1000")
    return names


def imagenet_class_names(short: bool = False) -> list[str]:
    """Return the 1000 ImageNet class names in index order.

    Args:
        short: If True, keep only the first synonym (``"tabby"`` instead of
            ``"tabby, tabby cat"``); note that ``"crane"`` then occurs twice.

    Returns:
        List of 1000 strings, WordNet lemmas as in timm's metadata.
    """
    names = _load_names()
    if short:
        return [n.split(",")[0].strip() for n in names]
    return list(names)


def decode_predictions(
    logits: Any, top: int = 5, short: bool = False
) -> list[list[tuple[int, str, float]]]:
    """Decode a batch of ImageNet logits into the ``top`` classes per sample.

    Args:
        logits: Array-like of shape (N, 1000) or (1000,), logits or probabilities (a
            softmax is applied unless every row is already a probability vector).
        top: Number of classes to return per sample.
        short: Passed to :func:`imagenet_class_names`.

    Returns:
        For each sample, a list of ``(class_index, class_name, probability)`` sorted by
        decreasing probability.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != 1000:
        raise ValueError(f"expected logits of shape (N, 1000), got {np.shape(logits)}")
    is_prob = bool(np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-4))
    if is_prob:
        p = z
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    names = imagenet_class_names(short=short)
    out = []
    for row in p:
        idx = np.argsort(-row, kind="stable")[:top]
        out.append([(int(i), names[i], float(row[i])) for i in idx])
    return out
