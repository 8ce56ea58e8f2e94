"""Walking inside a layer: its ``call`` run on symbolic tensors becomes a sub-graph.

A layer without a relevance group of its own (a custom layer, ``MultiHeadAttention``,
keras_hub's blocks) is traced: its ``call`` runs on fresh symbolic inputs, so each sublayer
call and each ``keras.ops`` call records a node, and the walker inlines that graph like a
nested model. The user's layers are left as they were: the nodes that tracing appends to
them are removed again before returning.

Keras masks: an input that carries a Keras mask gets a fresh symbolic mask too, so layers
that read masks from their inputs (``MultiHeadAttention``, sublayers called with a mask) record
the mask computation as nodes; the mask is an input of the traced graph like any tensor.

Batch size: many layers read their input's batch size (``ops.shape(x)[0]``: a class token
tiled to the batch, patches reshaped to ``(batch, -1, dim)``), which a symbolic input does
not have. Such a call is traced at batch sizes 2 and 3. The two graphs must agree op by op,
and every argument or setting that differs between them must be a multiple of the batch
size (an integer) or a constant repeated along its first axis (the tiled token): at run time
each becomes the same function of the actual batch size. A third trace at batch size 1 must
be called exactly as predicted (a call that treats one sample differently is refused). A call
whose outputs do not depend on its inputs' values at all (keras_hub's ``PositionEmbedding``
broadcasts its table to the input's shape) is a ``ShapeOnlyCall``.

None outputs: a sublayer may return None beside its tensors (keras_hub's DeiT blocks return
``(x, None)``, a slot for attention weights), which Keras refuses in a symbolic node. During a
trace such a call records a node of its tensors only, with where they sit among its outputs
(``_compat.none_outputs_allowed``); run as one node it must return None at the same places.
An output of the traced call that is None or a constant (DeiT's encoder also returns empty
arrays) carries no relevance: the walker refuses the call, naming it, if the model reads it.

Weights: a traced call may compute values from its weights eagerly (a tiled class token, a
looked-up position table) and hand them to its graph as constants, which would not follow
later changes of those weights. The weights that no node of the graph reads live are
checked at run time against their values when traced; a change raises, naming the layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_clrp import _compat

#: Why a ``ShapeOnlyCall`` is not walked inside (``Node.untraced``).
SHAPE_ONLY = "its outputs depend on its inputs' shapes only, not on their values"

#: Batch sizes of the two traces of a call that reads its input's batch size.
TRACE_BATCH_SIZES = (2, 3)
#: The batch size of a third trace that must agree with what the two predict (catches
#: calls that treat a single sample differently).
CHECK_BATCH_SIZE = 1
#: The size other open axes (a variable sequence length) get in those traces: enough to
#: tell a shape-only call; a graph traced so is refused (it may hold that size).
OTHER_AXIS_SIZE = 5

Shape = tuple[int | None, ...]
#: ``rewrite(args, kwargs, operation, values) -> (args, kwargs, operation)``, applied to a
#: traced node's call at run time (see ``_compat.call_node``).
Rewrite = Callable[[Any, Any, Any, Sequence[tf.Tensor]], tuple[Any, Any, Any]]


@dataclass(frozen=True)
class TracedCall:
    """A layer call as a functional sub-graph.

    Attributes:
        function: The sub-graph (walk it with ``_compat.nodes_in_order``).
        inputs: Its symbolic inputs (the call's tensors and their Keras masks).
        outer_inputs: The tensors of the outer call each input stands for.
        outputs: Its outputs, one per output of the outer call; None for an output that the
            traced call gave as None or as a constant (it carries no relevance, and the
            walker refuses the call if the model reads it).
        rewrites: For nodes of ``function`` (by ``id``) whose call must be adapted at run
            time: batch-sized arguments, checks of weights baked into constants.
        shapes: Shapes of the sub-graph's tensors (by ``id``) with the batch axis open, for
            a graph traced at a concrete batch size (empty otherwise).
    """

    function: Any
    inputs: tuple[Any, ...]
    outer_inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]
    rewrites: Mapping[int, Rewrite] = field(default_factory=dict)
    shapes: Mapping[int, Shape] = field(default_factory=dict)


@dataclass(frozen=True)
class ShapeOnlyCall:
    """A layer call whose outputs depend on its inputs' shapes only, not on their values."""


@dataclass(frozen=True)
class _Trace:
    fresh: tuple[Any, ...]
    outer: tuple[Any, ...]
    outputs: tuple[Any, ...]
    function: Any | None  # None: no output depends on the inputs' values
    batch: int | None
    layer: Any


def trace_call(
    knode: Any, open_shape: Callable[[Any], Shape] | None = None
) -> TracedCall | ShapeOnlyCall | str:
    """Traces one call of a layer.

    Args:
        knode: The Keras node of the call.
        open_shape: The shape of a symbolic tensor with its batch axis open (None), for
            tensors of a graph traced at a concrete batch size; default: its own shape.

    Returns:
        The TracedCall, a ShapeOnlyCall, or a sentence saying why the call could not be
        traced.
    """
    shape_of = open_shape or _compat.tensor_shape
    outer = _outer_tensors(knode)
    batch_open = _trace(knode, outer, shape_of, None)
    if isinstance(batch_open, _Trace):
        # The same call for one sample (other open axes kept open) must be the same graph:
        # else the call depends on the batch size after all (Python code on ``ops.shape``).
        single = _trace(knode, outer, shape_of, CHECK_BATCH_SIZE, other_axes_open=True)
        if isinstance(single, _Trace) and _same_calls(batch_open, single):
            return ShapeOnlyCall() if batch_open.function is None else _guarded(batch_open, {})
    traces = [_trace(knode, outer, shape_of, b) for b in (*TRACE_BATCH_SIZES, CHECK_BATCH_SIZE)]
    for trace in traces:
        if isinstance(trace, str):
            return trace
    first, second, check = traces
    assert isinstance(first, _Trace) and isinstance(second, _Trace)
    assert isinstance(check, _Trace)
    if all(t.function is None for t in traces):
        return ShapeOnlyCall()
    if any(t.function is None for t in traces):
        return "whether its outputs depend on its inputs changes with the batch size"
    if any(None in shape_of(t)[1:] for t in outer):
        return (
            "it reads the size of its input's batch or of another open axis, and an "
            f"input has an open axis besides the batch ({batch_open})"
        )
    return _batch_polymorphic(first, second, check)


def _outer_tensors(knode: Any) -> list[Any]:
    """The call's distinct input tensors, then the Keras masks they carry."""
    outer: list[Any] = []
    tensors = _compat.node_input_tensors(knode)
    masks = [_compat.keras_mask(t) for t in tensors]
    for t in [*tensors, *(m for m in masks if m is not None)]:
        if all(t is not seen for seen in outer):
            outer.append(t)
    return outer


def _trace(
    knode: Any,
    outer: list[Any],
    shape_of: Callable[[Any], Shape],
    batch: int | None,
    other_axes_open: bool = False,
) -> _Trace | str:
    """One symbolic run of the call at ``batch`` (None: batch axis open; other open axes get
    ``OTHER_AXIS_SIZE`` unless ``other_axes_open``)."""

    def shape(t: Any) -> Shape:
        dims = shape_of(t)
        if batch is None or not dims or dims[0] is not None:
            return dims
        if other_axes_open:
            return (batch, *dims[1:])
        return (batch, *(OTHER_AXIS_SIZE if d is None else d for d in dims[1:]))

    layer = _compat.node_operation(knode)
    saved = _compat.node_lists(layer)
    returned_none: list[str] = []
    try:
        fresh: dict[int, Any] = {}
        masks_first = sorted(outer, key=lambda t: _compat.keras_mask(t) is not None)
        for t in masks_first:  # masks carry no mask; a tensor's mask is made before it
            mask = _compat.keras_mask(t)
            fresh[id(t)] = _compat.fresh_input(
                t, shape(t), None if mask is None else fresh.get(id(mask))
            )
        with _compat.none_outputs_allowed() as returned_none:
            leaves = _compat.call_symbolically(knode, fresh)
        outputs = _outputs_of(knode, leaves)
        if isinstance(outputs, str):
            return outputs
        inputs = tuple(fresh[id(t)] for t in outer)
        symbolic = [isinstance(o, keras.KerasTensor) for o in outputs]
        if not any(symbolic):
            if any(o is None for o in outputs):
                return "its outputs do not depend on its inputs and some of them are None"
            return _Trace(inputs, tuple(outer), tuple(outputs), None, batch, layer)
        # Outputs that are None or constants carry no relevance: the graph computes the
        # others; the walker refuses the call if the model reads one of them.
        function = _compat.symbolic_function(inputs, [o for o, s in zip(outputs, symbolic) if s])
        outputs = [o if s else None for o, s in zip(outputs, symbolic)]
    except Exception as error:  # noqa: BLE001 - any failure means "cannot trace"
        hint = (
            f"; during the trace, layer {', layer '.join(returned_none)}" if returned_none else ""
        )
        return f"its call cannot run on symbolic tensors ({type(error).__name__}: {error}{hint})"
    finally:
        _compat.restore_node_lists(saved)
    return _Trace(inputs, tuple(outer), tuple(outputs), function, batch, layer)


def _outputs_of(knode: Any, leaves: list[Any]) -> list[Any] | str:
    """The traced call's outputs, one per output of the Keras node (a node that returned None
    leaves has no outputs for them, see ``_compat.output_leaves``)."""
    count, positions = _compat.output_leaves(knode)
    if len(leaves) != count:
        return f"its call returned {len(leaves)} values symbolically, not {count}"
    extra = [i for i, v in enumerate(leaves) if i not in positions and v is not None]
    if extra:
        return f"its call returned a value for its output {extra[0]}, which was None before"
    return [leaves[i] for i in positions]


def _traced_call(
    trace: _Trace, rewrites: dict[int, Rewrite], shapes: dict[int, Shape]
) -> TracedCall:
    return TracedCall(trace.function, trace.fresh, trace.outer, trace.outputs, rewrites, shapes)


# ---------------------------------------------------------------------- batch size
def _batch_polymorphic(first: _Trace, second: _Trace, check: _Trace) -> TracedCall | str:
    """The graph of ``first`` with each batch-sized argument a function of the batch size,
    found from ``second`` and confirmed on ``check``."""
    nodes = list(_compat.nodes_in_order(first.function))
    twins = list(_compat.nodes_in_order(second.function))
    checks = list(_compat.nodes_in_order(check.function))
    if len({len(nodes), len(twins), len(checks)}) > 1 or any(
        len({type(_compat.node_operation(n)) for n in triple}) > 1
        for triple in zip(nodes, twins, checks)
    ):
        return "its graph changes with the batch size"
    shapes = {id(a): _open(a, b) for a, b in zip(first.fresh, second.fresh)}
    rewrites: dict[int, Rewrite] = {}
    for a, b, c in zip(nodes, twins, checks):
        for ta, tb in zip(_compat.node_output_tensors(a), _compat.node_output_tensors(b)):
            shapes[id(ta)] = _open(ta, tb)
        name = getattr(_compat.node_operation(a), "name", "?")
        spec = _batch_spec(a, b, first.batch, second.batch, shapes)
        if isinstance(spec, str):
            return f"its op {name!r} reads the batch size: {spec}"
        if not _predicts(spec, a, c, check.batch):
            return (
                f"its op {name!r} is called differently at batch size {check.batch} than "
                "its calls at other batch sizes predict"
            )
        if spec is not None:
            rewrites[id(a)] = spec.rewrite
    return _guarded(first, rewrites, shapes)


def _same_calls(first: _Trace, other: _Trace) -> bool:
    """Whether two traces are the same graph with the same non-tensor arguments."""
    if (first.function is None) != (other.function is None):
        return False
    if first.function is None:
        return True
    nodes = list(_compat.nodes_in_order(first.function))
    others = list(_compat.nodes_in_order(other.function))
    return len(nodes) == len(others) and all(
        type(_compat.node_operation(a)) is type(_compat.node_operation(c))
        and _predicts(None, a, c, CHECK_BATCH_SIZE)
        for a, c in zip(nodes, others)
    )


def _open(a: Any, b: Any) -> Shape:
    return tuple(x if x == y else None for x, y in zip(a.shape, b.shape))


@dataclass(frozen=True)
class _BatchSpec:
    """Which arguments (flat positions) and settings (name -> (value, flat positions)) of a
    node are functions of the batch size n, and which input tensor gives n."""

    arguments: dict[int, Callable[[Any], Any]]
    settings: dict[str, tuple[Any, dict[int, Callable[[Any], Any]]]]
    batch_input: int

    def rewrite(
        self, args: Any, kwargs: Any, operation: Any, values: Sequence[tf.Tensor]
    ) -> tuple[Any, Any, Any]:
        """The call at the batch size of ``values[batch_input]`` (a ``Rewrite``)."""
        value = values[self.batch_input]
        n = value.shape[0] if value.shape[0] is not None else tf.shape(value)[0]
        if self.arguments:
            flat = keras.tree.flatten((args, kwargs))
            for i, function in self.arguments.items():
                flat[i] = function(n)
            args, kwargs = keras.tree.pack_sequence_as((args, kwargs), flat)
        if self.settings:
            operation = _compat.operation_with(operation, self.settings_at(n))
        return args, kwargs, operation

    def settings_at(self, n: Any) -> dict[str, Any]:
        changes = {}
        for key, (value, changed) in self.settings.items():
            flat = keras.tree.flatten(value)
            for i, function in changed.items():
                flat[i] = function(n)
            changes[key] = keras.tree.pack_sequence_as(value, flat)
        return changes


def _predicts(spec: _BatchSpec | None, a: Any, c: Any, batch_c: int) -> bool:
    """Whether node ``c`` (traced at ``batch_c``) is called as ``spec`` predicts from ``a``."""
    leaves_a = keras.tree.flatten(_compat.arguments_of(a))
    leaves_c = keras.tree.flatten(_compat.arguments_of(c))
    if len(leaves_a) != len(leaves_c):
        return False
    arguments = spec.arguments if spec is not None else {}
    for i, (x, y) in enumerate(zip(leaves_a, leaves_c)):
        if isinstance(x, keras.KerasTensor):
            continue
        want = arguments[i](batch_c) if i in arguments else x
        if not _same(np.asarray(want) if _is_array(want) else want, y):
            return False
    op_a, op_c = _compat.node_operation(a), _compat.node_operation(c)
    if _compat.is_layer(op_a):
        return True
    mine = _compat.operation_settings(op_a)
    if spec is not None:
        mine.update(spec.settings_at(batch_c))
    theirs = _compat.operation_settings(op_c)
    return mine.keys() == theirs.keys() and all(
        len(keras.tree.flatten(v)) == len(keras.tree.flatten(theirs[k]))
        and all(
            _same(np.asarray(p) if _is_array(p) else p, q)
            for p, q in zip(keras.tree.flatten(v), keras.tree.flatten(theirs[k]))
        )
        for k, v in mine.items()
    )


def _batch_spec(
    a: Any, b: Any, batch_a: int, batch_b: int, shapes: dict[int, Shape]
) -> _BatchSpec | str | None:
    """How node ``a`` (traced at ``batch_a``) is called at another batch size, judged by its
    twin ``b`` (traced at ``batch_b``); None if its call does not depend on the batch."""
    leaves_a = keras.tree.flatten(_compat.arguments_of(a))
    leaves_b = keras.tree.flatten(_compat.arguments_of(b))
    if len(leaves_a) != len(leaves_b):
        return "its arguments change with the batch size"
    arguments: dict[int, Callable[[Any], Any]] = {}
    for i, (x, y) in enumerate(zip(leaves_a, leaves_b)):
        if isinstance(x, keras.KerasTensor):
            continue
        function = _batch_function(x, y, batch_a, batch_b)
        if isinstance(function, str):
            return function
        if function is not None:
            arguments[i] = function
    settings: dict[str, tuple[Any, dict[int, Callable[[Any], Any]]]] = {}
    op_a, op_b = _compat.node_operation(a), _compat.node_operation(b)
    if not _compat.is_layer(op_a):
        mine, twin = _compat.operation_settings(op_a), _compat.operation_settings(op_b)
        for key, value in mine.items():
            flat_a, flat_b = keras.tree.flatten(value), keras.tree.flatten(twin.get(key))
            if len(flat_a) != len(flat_b):
                return f"its setting {key!r} changes with the batch size"
            changed = {}
            for i, (x, y) in enumerate(zip(flat_a, flat_b)):
                function = _batch_function(x, y, batch_a, batch_b)
                if isinstance(function, str):
                    return function
                if function is not None:
                    changed[i] = function
            if changed:
                settings[key] = (value, changed)
    if not arguments and not settings:
        return None
    tensors = _compat.node_input_tensors(a)
    batch_input = next(
        (
            i
            for i, t in enumerate(tensors)
            if shapes.get(id(t), (0,))[:1] == (None,) and t.shape[0] == batch_a
        ),
        None,
    )
    if batch_input is None:
        return "it reads no tensor with a batch axis to take the batch size from"
    return _BatchSpec(arguments, settings, batch_input)


def _batch_function(
    x: Any, y: Any, batch_x: int, batch_y: int
) -> Callable[[Any], Any] | str | None:
    """A value seen at two batch sizes as a function of the batch size n (None: constant)."""
    if _same(x, y):
        return None
    if _is_int(x) and _is_int(y):
        if x != 0 and x % batch_x == 0 and x // batch_x * batch_y == y:
            factor = x // batch_x
            return lambda n: n * factor
        return (
            f"the value {x} (batch {batch_x}) / {y} (batch {batch_y}) is not a multiple "
            "of the batch size"
        )
    if _is_array(x) and _is_array(y):
        a, b = np.asarray(x), np.asarray(y)
        if (
            a.ndim >= 1
            and a.shape[1:] == b.shape[1:]
            and a.shape[0] % batch_x == 0
            and a.shape[0] // batch_x * batch_y == b.shape[0]
            and np.array_equal(a, np.broadcast_to(a[:1], a.shape))
            and np.array_equal(b, np.broadcast_to(b[:1], b.shape))
            and np.array_equal(a[:1], b[:1])
        ):
            factor, row, rest = a.shape[0] // batch_x, tf.constant(a[:1]), list(a.shape[1:])
            return lambda n: tf.broadcast_to(row, [n * factor, *rest])
        return "a constant of its call changes with the batch size, other than by repeating"
    return f"an argument ({type(x).__name__}) changes with the batch size"


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, tf.Tensor)) and not _compat.is_variable(x)


def _same(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if _compat.is_variable(x) or _compat.is_variable(y):
        return False
    if _is_array(x) or _is_array(y):
        a, b = np.asarray(x), np.asarray(y)
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    try:
        return type(x) is type(y) and bool(x == y)
    except Exception:  # noqa: BLE001 - incomparable values differ
        return False


# ---------------------------------------------------------------------- baked weights
def _guarded(
    trace: _Trace, rewrites: dict[int, Rewrite], shapes: dict[int, Shape] | None = None
) -> TracedCall:
    """Adds a check of the weights that constants of the graph may hold to the nodes that
    hold constants (see the module docstring)."""
    nodes = list(_compat.nodes_in_order(trace.function))
    live: set[int] = set()
    holders = []
    for knode in nodes:
        op = _compat.node_operation(knode)
        if _compat.is_layer(op):
            live.update(id(v) for v in _compat.variables_of(op))
        leaves = keras.tree.flatten(_compat.arguments_of(knode))
        if not _compat.is_layer(op):
            leaves += keras.tree.flatten(list(_compat.operation_settings(op).values()))
        live.update(id(v) for v in leaves if _compat.is_variable(v))
        if any(_is_array(v) for v in leaves):
            holders.append(knode)
    layer = trace.layer
    baked = [v for v in _compat.variables_of(layer) if id(v) not in live]
    if not baked or not holders:
        return _traced_call(trace, rewrites, shapes or {})
    check = _weights_check(layer.name, baked)
    guarded = dict(rewrites)
    for knode in holders:
        guarded[id(knode)] = _then(check, rewrites.get(id(knode)))
    return _traced_call(trace, guarded, shapes or {})


def _weights_check(layer_name: str, variables: list[Any]) -> Callable[[], None]:
    snapshot = [(v, tf.constant(np.asarray(v.numpy()))) for v in variables]
    names = ", ".join(repr(v.path) for v in variables[:3]) + (
        f" and {len(variables) - 3} more" if len(variables) > 3 else ""
    )
    message = (
        f"weights {names} of layer {layer_name!r} changed after the analyzer was "
        "created: the analyzer's graph holds values computed from them when it was "
        "built; create the analyzer again"
    )

    def check() -> None:
        same = [
            tf.reduce_all(tf.equal(tf.convert_to_tensor(v.value), value)) for v, value in snapshot
        ]
        tf.debugging.Assert(tf.reduce_all(tf.stack(same)), [message])

    return check


def _then(check: Callable[[], None], rewrite: Rewrite | None) -> Rewrite:
    def guarded(
        args: Any, kwargs: Any, operation: Any, values: Sequence[tf.Tensor]
    ) -> tuple[Any, Any, Any]:
        check()
        return (
            (args, kwargs, operation)
            if rewrite is None
            else rewrite(args, kwargs, operation, values)
        )

    return guarded
