"""Adapter to Quantus' ``explain_func`` convention."""

from __future__ import annotations

from typing import Any

import numpy as np

_QUANTUS_ONLY = ("device", "channel_first")


def _model_input_shape(model: Any) -> tuple | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0] if len(shape) == 1 else None
    return tuple(shape) if shape is not None else None


def explain_func(
    model: Any, inputs: Any, targets: Any, method: str = "clrp", **kwargs: Any
) -> np.ndarray:
    """Explain ``inputs`` with a tf_clrp analyzer, in the signature Quantus expects.

    Calls ``tf_clrp.create_analyzer(method, model, **kwargs).analyze(inputs,
    neuron_selection=targets)``. Quantus-only keywords (``device``) are dropped. Channels-first
    inputs (N, C, H, W) are transposed to the model's channels-last layout and the map is
    transposed back when ``channel_first=True`` is passed, or when it is None/absent and only
    the transposed shape matches the model's input shape.

    Args:
        model: Keras model.
        inputs: input batch (numpy or tensor).
        targets: class id(s) to explain: an int or one per sample.
        method: analyzer name (see ``tf_clrp.list_analyzers()``).
        **kwargs: analyzer keyword arguments; ``analyze_kwargs`` (a dict) goes to
            ``analyze`` instead.

    Returns:
        float32 array of the inputs' shape.
    """
    import tf_clrp  # lazy: the engine is imported only when an explanation is requested

    channel_first = kwargs.get("channel_first")
    for key in _QUANTUS_ONLY:
        kwargs.pop(key, None)
    analyze_kwargs = dict(kwargs.pop("analyze_kwargs", None) or {})
    x = np.asarray(inputs, dtype=np.float32)
    if channel_first is None and x.ndim == 4:
        expected = _model_input_shape(model)
        if expected is not None and len(expected) == 4:
            nhwc = (x.shape[2], x.shape[3], x.shape[1])
            fits = all(e is None or e == g for e, g in zip(expected[1:], x.shape[1:]))
            fits_t = all(e is None or e == g for e, g in zip(expected[1:], nhwc))
            channel_first = fits_t and not fits
    if channel_first and x.ndim == 4:
        x = np.transpose(x, (0, 2, 3, 1))
    t = np.asarray(targets)
    selection: Any = int(t) if t.ndim == 0 else t.astype(np.int64).ravel()
    analyzer = tf_clrp.create_analyzer(method, model, **kwargs)
    result = np.asarray(analyzer.analyze(x, neuron_selection=selection, **analyze_kwargs))
    if channel_first and result.ndim == 4:
        result = np.transpose(result, (0, 3, 1, 2))
    return result.astype(np.float32, copy=False)
