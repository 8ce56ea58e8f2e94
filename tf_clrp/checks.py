"""Guards against numbers that are not numbers: parameters, weights, maps and seeds.

Every check names what it refuses (the parameter, the layer, the sample), so that a bad
setting or a diverged model gives a clear error instead of a NaN, all-zero or huge map.
Where the checks run:

* rule, composite and analyzer parameters: when they are constructed (``finite_parameter``,
  ``positive_count``, ``finite_bounds``);
* weights: once when an analyzer is created (``check_finite_weights``);
* every returned map: a host-side ``np.isfinite`` (``check_finite_maps``). Weights read at
  analysis time may have changed since construction (training with the HeatmapCallback), so a
  non-finite map is diagnosed then: the first layer with non-finite weights, else the first
  layer whose output overflows, else the backward pass;
* LRP seeds: an explained output smaller than the stabiliser of the rule below it is
  absorbed by the stabiliser (``warn_absorbed_seeds``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from tf_clrp.errors import NonFiniteError

if TYPE_CHECKING:
    from tf_clrp.graph import Graph


def finite_parameter(
    name: str, value: Any, *, minimum: float | None = None, strict: bool = False
) -> float:
    """A real, finite number (optionally ``>= minimum`` or ``> minimum``) as a float.

    Args:
        name: The parameter's name, for the message (e.g. "Epsilon epsilon").
        value: The user's value.
        minimum: Lowest accepted value, if any.
        strict: Require ``value > minimum`` instead of ``>=``.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: not a real number (None, a string, a bool, an array), NaN/Inf or too small.
    """
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    if minimum is not None and (number < minimum or (strict and number == minimum)):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def positive_count(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """A whole number >= 1 (e.g. ``steps``, ``augment_by_n``, ``batch_size``) as an int.

    Args:
        name: The parameter's name, for the message.
        value: The user's value (integral floats such as 8.0 are accepted).
        allow_none: Accept None (and return it).

    Returns:
        ``int(value)``, or None.

    Raises:
        ValueError: None (unless allowed), a bool, a non-integral or non-positive value.
    """
    if value is None and allow_none:
        return None
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and np.isfinite(float(value)) and float(value) == int(value)
    )
    if isinstance(value, bool) or not integral or int(value) < 1:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a whole number >= 1{none}, got {value!r}")
    return int(value)


def finite_bounds(name: str, value: Any) -> np.ndarray:
    """Input bounds (a scalar or one value per channel) as a finite float32 array.

    Args:
        name: The parameter's name, for the message (e.g. "ZBox low").
        value: The user's value.

    Returns:
        ``np.asarray(value, float32)``.

    Raises:
        ValueError: not numeric, or containing NaN/Inf.
    """
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return array


# ----------------------------------------------------------------------------- weights
def _non_finite_parameters(node: Any) -> list[tuple[str, int]]:
    """(parameter, count of non-finite values) for one node's weights.

    Linear nodes are read as the rules read them (BatchNorm folded in); other nodes by their
    layer's own weights (LayerNorm, PReLU, ...).
    """
    if node.linear is not None:
        named = [("kernel", node.linear.read_kernel()), ("bias", node.linear.read_bias())]
    else:
        named = [
            (getattr(w, "path", None) or getattr(w, "name", "weight"), w)
            for w in getattr(node.op, "weights", None) or ()
        ]
    bad = []
    for label, value in named:
        value = None if value is None else tf.convert_to_tensor(getattr(value, "value", value))
        if value is None or not value.dtype.is_floating:
            continue
        finite = tf.math.is_finite(value)
        if not bool(tf.reduce_all(finite)):
            bad.append((label, int(tf.size(finite)) - int(tf.math.count_nonzero(finite))))
    return bad


def first_non_finite_weights(graph: Graph) -> str | None:
    """A message naming the first layer of ``graph`` with NaN/Inf weights, or None."""
    for node in graph.nodes:
        bad = _non_finite_parameters(node)
        if bad:
            what = ", ".join(f"{count} in its {label}" for label, count in bad)
            folded = " (BatchNormalization folded in)" if "+" in node.name else ""
            return f"layer {node.name!r} ({node.kind}) has NaN/Inf weights: {what}{folded}"
    return None


def check_finite_weights(graph: Graph) -> None:
    """Refuses a model whose explained path has NaN/Inf weights, naming the layer.

    Raises:
        NonFiniteError: the first such layer, its parameter and the number of bad values.
    """
    message = first_non_finite_weights(graph)
    if message is not None:
        raise NonFiniteError(f"{message}; no relevance map can be computed from them")


# ----------------------------------------------------------------------------- maps
def _arrays(result: Any) -> Iterable[np.ndarray]:
    """The numpy arrays of an analyzer result (an array, or an object with array fields)."""
    if isinstance(result, np.ndarray):
        yield result
        return
    for value in vars(result).values() if hasattr(result, "__dict__") else ():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            yield value


def _first_overflowing_layer(graph: Graph, x: np.ndarray) -> str | None:
    """The first node whose forward output is non-finite on ``x``, with its input's range."""
    values: dict[int, tf.Tensor] = {graph.input_id: tf.constant(x)}
    for node in graph.nodes:
        inputs = [values[t] for t in node.inputs]
        if node.linear is not None:
            spec = node.linear
            outputs = [
                spec.add_bias(
                    spec.forward(tf.cast(inputs[0], tf.float32), spec.read_kernel()),
                    spec.read_bias(),
                )
            ]
        else:
            outputs = node.run(inputs)
        for t, v in zip(node.outputs, outputs):
            values[t] = v
        if not all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32)))) for v in outputs):
            largest = max(float(tf.reduce_max(tf.abs(tf.cast(v, tf.float32)))) for v in inputs)
            return (
                f"the output of layer {node.name!r} ({node.kind}) overflows float32 "
                f"(its input's largest magnitude is {largest:.3g})"
            )
    return None


def _largest_kernel(graph: Graph) -> str:
    """The layer with the largest kernel magnitude, for a backward-overflow hint."""
    best, where = 0.0, "?"
    for node in graph.nodes:
        if node.linear is not None:
            size = float(tf.reduce_max(tf.abs(node.linear.read_kernel())))
            if size > best:
                best, where = size, node.name
    return f"the largest kernel value is {best:.3g} (layer {where!r})"


def check_finite_maps(result: Any, graph: Graph, x: np.ndarray) -> None:
    """Refuses a result with NaN/Inf values, naming the samples and the cause.

    Args:
        result: What the analyzer computed for ``x``.
        graph: The explained graph.
        x: The (validated, finite) input batch.

    Raises:
        NonFiniteError: the samples with non-finite values and the first layer with
            non-finite weights, else the first layer whose output overflows, else the
            backward pass (rules' denominators or products overflow).
    """
    bad = np.zeros(len(x), bool)
    if len(x) == 0:
        return
    for array in _arrays(result):
        if array.ndim and len(array) == len(x):
            bad |= ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not bad.any():
        return
    samples = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in samples[:10]) + (", ..." if len(samples) > 10 else "")
    cause = first_non_finite_weights(graph)
    if cause is not None:
        cause += " (they changed after the analyzer was created, e.g. training diverged)"
    else:
        cause = _first_overflowing_layer(graph, x[samples])
    if cause is None:
        cause = (
            "the forward pass is finite, so the rules' backward pass overflowed "
            "float32; " + _largest_kernel(graph)
        )
    raise NonFiniteError(f"the maps of sample(s) {shown} contain NaN/Inf: {cause}")


# ----------------------------------------------------------------------------- seeds
def rule_stabiliser(rule: Any) -> float | None:
    """The ε of a rule (the largest over the parts of a weighted sum), or None."""
    parts = getattr(rule, "parts", None)
    if parts:
        values = [rule_stabiliser(r) for _, r in parts]
        values = [v for v in values if v is not None]
        return max(values) if values else None
    epsilon = getattr(rule, "epsilon", None)
    return float(epsilon) if isinstance(epsilon, numbers.Real) else None


def output_stabiliser(steps: Iterable[Any]) -> tuple[str, float] | None:
    """(layer name, ε) of the last rule-bearing step before the output, if it has an ε."""
    ruled = [s for s in steps if s.rule is not None]
    if not ruled:
        return None
    epsilon = rule_stabiliser(ruled[-1].rule)
    return None if epsilon is None else (ruled[-1].node.name, epsilon)


def warn_absorbed_seeds(
    seed_totals: np.ndarray, maps: np.ndarray, stabiliser: float, layer: str
) -> None:
    """Warns when an explained output below the rule's stabiliser left a relevance-free map.

    With |R| ≪ ε a rule returns R·z/(z ± ε) ≈ 0: the map is (nearly) all zero because of
    the stabiliser, not because the input is irrelevant (random-weight MobileNetV2: logits
    ≈ 1e-12 under z⁺'s ε = 1e-9).

    Args:
        seed_totals: Per sample, the total initial relevance (the explained output value).
        maps: The maps of those samples.
        stabiliser: ε of the rule of the output layer.
        layer: That layer's name.
    """
    totals = np.asarray(seed_totals, np.float64).reshape(-1)
    kept = np.abs(np.asarray(maps, np.float64).reshape(len(totals), -1)).sum(axis=1)
    small = np.flatnonzero(
        (totals != 0) & (np.abs(totals) < stabiliser) & (kept < 0.01 * np.abs(totals))
    )
    if len(small) == 0:
        return
    shown = ", ".join(f"{i} ({totals[i]:.3g})" for i in small[:5])
    more = ", ..." if len(small) > 5 else ""
    warnings.warn(
        f"the explained output of sample(s) {shown}{more} (positions in a batch of "
        f"{len(totals)}) is smaller than the stabiliser epsilon={stabiliser:g} of the rule of "
        f"layer {layer!r}: the stabiliser absorbed the relevance and the LRP map is (nearly) "
        "all zero. Use a smaller epsilon, or explain a model whose outputs are not "
        "vanishingly small (e.g. trained weights).",
        RuntimeWarning,
        stacklevel=2,
    )


def as_float_array(x: Any) -> Any:
    """Casts TF tensors and numpy arrays of TF-only float dtypes (bfloat16) to float32.

    Anything else is returned unchanged (``check_input`` validates it).
    """
    if isinstance(x, (tf.Tensor, tf.Variable)):
        if x.dtype in (tf.bfloat16, tf.float16):
            return tf.cast(x, tf.float32).numpy()
        return x.numpy()
    dtype = getattr(x, "dtype", None)
    if isinstance(x, np.ndarray) and dtype is not None and dtype.kind == "V":
        try:
            if tf.as_dtype(dtype).is_floating:
                return x.astype(np.float32)
        except TypeError:
            pass
    return x
