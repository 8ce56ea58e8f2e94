"""Walking inside a layer: its ``call`` run on symbolic tensors becomes a sub-graph.

A layer without a relevance group of its own (a custom layer, ``MultiHeadAttention``,
keras_hub's blocks) is traced: its ``call`` runs on fresh symbolic inputs, so each sublayer
call and each ``keras.ops`` call records a node, and the walker inlines that graph like a
nested model. The user's layers are left as they were: the nodes that tracing appends to
them are removed again before returning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tf_clrp import _compat


@dataclass(frozen=True)
class TracedCall:
    """A layer call as a functional sub-graph.

    Attributes:
        function: The sub-graph (walk it with ``_compat.nodes_in_order``).
        inputs: Its symbolic inputs.
        outer_inputs: The tensors of the outer call each input stands for.
        outputs: Its outputs, one per output of the outer call.
    """

    function: Any
    inputs: tuple[Any, ...]
    outer_inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]


def untraceable_reason(knode: Any) -> str | None:
    """Why a layer call is not traced (None: it may be)."""
    ins = _compat.node_input_tensors(knode)
    if any(_compat.has_keras_mask(t) for t in ins):
        return "it receives a Keras mask (masks are not traced yet)"
    return None


def trace_call(knode: Any) -> TracedCall | str:
    """Traces one call of a layer.

    Args:
        knode: The Keras node of the call.

    Returns:
        The TracedCall, or a sentence saying why the call could not be traced.
    """
    reason = untraceable_reason(knode)
    if reason is not None:
        return reason
    outer = []
    for t in _compat.node_input_tensors(knode):
        if all(t is not seen for seen in outer):
            outer.append(t)
    layer = _compat.node_operation(knode)
    saved = _compat.node_lists(layer)
    try:
        fresh = [_compat.fresh_input(t) for t in outer]
        outputs = _compat.call_symbolically(knode, {id(o): f for o, f in zip(outer, fresh)})
        expected = len(_compat.node_output_tensors(knode))
        if len(outputs) != expected:
            return f"its call returned {len(outputs)} tensors symbolically, not {expected}"
        function = _compat.symbolic_function(fresh, outputs)
    except Exception as error:  # noqa: BLE001 - any failure means "cannot trace"
        return f"its call cannot run on symbolic tensors ({type(error).__name__}: {error})"
    finally:
        _compat.restore_node_lists(saved)
    return TracedCall(function, tuple(fresh), tuple(outer), tuple(outputs))
