"""Models that output the pre-activation logits, as iNNvestigate's ``model_wo_softmax``.

tf_clrp's analyzers strip a final softmax/sigmoid themselves, so these functions are only
needed by code ported from iNNvestigate, or to read the logits with ``model.predict``.
The input model is never changed: a fused output activation (``Dense(..., activation=
"softmax")``) is replaced by a copy of the layer without it, holding a copy of its weights
(as in iNNvestigate); a separate ``Softmax``/``Activation`` layer is simply cut off.
"""

from __future__ import annotations

from typing import Any

import keras

from tf_clrp import _compat, layers
from tf_clrp.errors import ModelStructureError


def _producer(functional: Any, tensor: Any) -> Any:
    for node in _compat.nodes_in_order(functional):
        if any(out is tensor for out in _compat.node_output_tensors(node)):
            return node
    raise ModelStructureError(f"no layer of the model produces its output {tensor.name!r}")


def _is_activation_layer(op: Any) -> bool:
    return layers.group_of(op) == "activation"


def _without_activation(node: Any, activation: str | None, model_name: str) -> Any:
    """The pre-activation tensor of the output produced by ``node``."""
    op = _compat.node_operation(node)
    if _is_activation_layer(op):
        name = layers.activation_of(op)
        if activation is None or name == activation:
            return _compat.node_input_tensors(node)[0]
    elif getattr(op, "activation", None) is not None:
        name = layers.fused_activation(op)
        if name != "linear" and (activation is None or name == activation):
            config = {**op.get_config(), "activation": "linear", "name": f"{op.name}_logits"}
            copy = type(op).from_config(config)
            output = copy(*_compat.node_input_tensors(node))
            copy.set_weights(op.get_weights())
            return output
    else:
        name = "linear"
    wanted = activation or "an output activation"
    raise ModelStructureError(
        f"model {model_name!r}: its output layer {op.name!r} ({type(op).__name__}) applies "
        f"{name!r}, not {wanted}; nothing to strip (tf_clrp analyzers need no stripping)"
    )


def model_wo_output_activation(model: keras.Model, activation: str | None = None) -> keras.Model:
    """A new model computing ``model``'s outputs without their final activation.

    Args:
        model: A Keras functional or Sequential model (not changed).
        activation: Strip only this activation ("softmax", "sigmoid"); None: any.

    Returns:
        A functional ``keras.Model`` with the same inputs whose outputs are the
        pre-activation values (layers before the output layer are shared, not copied).

    Raises:
        ModelStructureError: a subclassed model, or an output without such an activation.
    """
    functional = _compat.functional_of(model)
    if functional is None:
        raise ModelStructureError(
            f"model {model.name!r} is subclassed; model_wo_softmax needs a functional or "
            "Sequential model (tf_clrp analyzers explain the logits of those directly)"
        )
    outputs = [
        _without_activation(_producer(functional, t), activation, model.name)
        for t in _compat.graph_outputs(functional)
    ]
    inputs = _compat.graph_inputs(functional)
    return keras.Model(
        inputs=inputs if len(inputs) > 1 else inputs[0],
        outputs=outputs if len(outputs) > 1 else outputs[0],
        name=f"{model.name}_wo_{activation or 'activation'}",
    )


def model_wo_softmax(model: keras.Model) -> keras.Model:
    """A new model computing ``model``'s pre-softmax logits (iNNvestigate's function).

    Args:
        model: A Keras functional or Sequential model ending in a softmax (not changed).

    Returns:
        The logit model, see :func:`model_wo_output_activation`.
    """
    return model_wo_output_activation(model, "softmax")


__all__ = ["model_wo_output_activation", "model_wo_softmax"]
