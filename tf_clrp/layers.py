"""What each Keras layer or operation *is* for relevance propagation.

The tables are plain data keyed by class name, looked up along the class's MRO when a model
is walked (never built at import time, so a layer class missing from one Keras version
cannot break ``import tf_clrp``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

#: Layer / operation class name -> group. Groups are the keys composites map to rules.
GROUP_OF_CLASS: dict[str, str] = {
    # linear layers (kernel + optional bias)
    "Dense": "dense",
    "Conv1D": "convolution",
    "Conv2D": "convolution",
    "Conv3D": "convolution",
    "Conv1DTranspose": "convolution",
    "Conv2DTranspose": "convolution",
    "Conv3DTranspose": "convolution",
    "DepthwiseConv1D": "convolution",
    "DepthwiseConv2D": "convolution",
    "SeparableConv1D": "separable",
    "SeparableConv2D": "separable",
    # normalisation
    "BatchNormalization": "batch_norm",
    "LayerNormalization": "layer_norm",
    # pooling
    "AveragePooling1D": "avg_pool",
    "AveragePooling2D": "avg_pool",
    "AveragePooling3D": "avg_pool",
    "GlobalAveragePooling1D": "avg_pool",
    "GlobalAveragePooling2D": "avg_pool",
    "GlobalAveragePooling3D": "avg_pool",
    "MaxPooling1D": "max_pool",
    "MaxPooling2D": "max_pool",
    "MaxPooling3D": "max_pool",
    "GlobalMaxPooling1D": "max_pool",
    "GlobalMaxPooling2D": "max_pool",
    "GlobalMaxPooling3D": "max_pool",
    # elementwise non-linearities
    "ReLU": "activation",
    "LeakyReLU": "activation",
    "ELU": "activation",
    "PReLU": "activation",
    "Softmax": "activation",
    "Activation": "activation",
    "Relu": "activation",
    "Relu6": "activation",
    "LeakyRelu": "activation",
    "Elu": "activation",
    "Sigmoid": "activation",
    "HardSigmoid": "activation",
    "Silu": "activation",
    "HardSilu": "activation",
    "Gelu": "activation",
    "Tanh": "activation",
    # merges
    "Add": "add",
    "Concatenate": "concatenate",
    "Multiply": "multiply",
    "EinsumDense": "dense",
    "RMSNormalization": "layer_norm",
    # lookups: the start of the relevance path of token ids; a constant on fed inputs
    "Embedding": "embedding",
    # affine preprocessing inside the model
    "Rescaling": "rescaling",
    "Normalization": "rescaling",
    "LayerScale": "rescaling",
    # relevance moves exactly with the gradient (permutations, copies, routing, identity)
    "InputLayer": "reshape",
    "Flatten": "reshape",
    "Reshape": "reshape",
    "Permute": "reshape",
    "RepeatVector": "reshape",
    "Identity": "reshape",
    "Dropout": "reshape",
    "SpatialDropout1D": "reshape",
    "SpatialDropout2D": "reshape",
    "SpatialDropout3D": "reshape",
    "GaussianNoise": "reshape",
    "GaussianDropout": "reshape",
    "AlphaDropout": "reshape",
    "ActivityRegularization": "reshape",
    "ZeroPadding1D": "reshape",
    "ZeroPadding2D": "reshape",
    "ZeroPadding3D": "reshape",
    "Cropping1D": "reshape",
    "Cropping2D": "reshape",
    "Cropping3D": "reshape",
    "UpSampling1D": "reshape",
    "UpSampling2D": "reshape",
    "UpSampling3D": "reshape",
    "Transpose": "reshape",
    "Squeeze": "reshape",
    "ExpandDims": "reshape",
    "GetItem": "reshape",
    "Cast": "reshape",
    # boolean results (Keras masks: Embedding(mask_zero=True), attention masks): no
    # relevance flows through a boolean, and autodiff sends none
    "NotEqual": "reshape",
    "Equal": "reshape",
    "LogicalAnd": "reshape",
    "LogicalOr": "reshape",
    "LogicalNot": "reshape",
}

#: Activations that are rectifiers: LRP's pass-through of relevance is exact for them.
RECTIFIERS = frozenset({"relu", "relu6", "leaky_relu", "elu", "prelu", "linear"})

#: Activations whose output is never negative (lets rules skip negative-input terms).
NONNEGATIVE_ACTIVATIONS = frozenset({"relu", "relu6", "sigmoid", "softmax", "hard_sigmoid"})

#: Operation class name -> activation name, for non-Layer ops (``keras.ops.relu(x)``).
ACTIVATION_OF_OPERATION = {
    "Relu": "relu",
    "Relu6": "relu6",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "Silu": "silu",
    "HardSilu": "hard_silu",
    "Gelu": "gelu",
    "Tanh": "tanh",
    "Softmax": "softmax",
}


#: Groups of keras.ops operations inside a walked layer (outside, these ops keep being
#: refused by rule-based analyzers, as before walking existed).
INSIDE_LAYER_GROUPS: dict[str, str] = {
    # reductions over an axis: relevance in proportion to the contributions
    "Mean": "avg_pool",
    "Sum": "avg_pool",
    # routing ops of transformers: splits, stacks, broadcasts of learned tokens
    "Split": "reshape",
    "BroadcastTo": "reshape",
    "Tile": "reshape",
    "Repeat": "reshape",
    "Stack": "concatenate",
}

#: Operations inside a walked layer that multiply two activations (attention scores, gates):
#: a bilinear product, which needs a rule of its own (group "bilinear").
BILINEAR_OPERATIONS = frozenset({"Einsum", "Matmul", "Multiply", "DotProductAttention"})
#: Operations that scale one activation by a constant: identity for relevance.
SCALING_OPERATIONS = frozenset({"Multiply", "Divide", "TrueDivide"})


def group_of_call(op: Any, n_tensor_inputs: int, inside_layer: bool) -> str | None:
    """The group of one call: ``group_of``, refined for operations inside a walked layer.

    Args:
        op: The layer or operation.
        n_tensor_inputs: How many of its arguments are activations (not constants).
        inside_layer: True inside a layer walked by ``tf_clrp.tracing``.

    Returns:
        "bilinear" for a product of two activations, "multiply" (identity for relevance)
        for scaling by a constant, "masked_activation" for an activation called with a
        mask, else ``group_of(op)``; None for a product of an
        activation with a constant tensor (a linear map without a kernel of its own).
    """
    name = type(op).__name__
    if inside_layer and not isinstance(op, keras.layers.Layer):
        if name in BILINEAR_OPERATIONS:
            if n_tensor_inputs >= 2:
                return "bilinear"
            return "multiply" if name in SCALING_OPERATIONS else None
        if name in SCALING_OPERATIONS and n_tensor_inputs == 1:
            return "multiply"
        if name in INSIDE_LAYER_GROUPS:
            return INSIDE_LAYER_GROUPS[name]
    group = group_of(op)
    if group == "activation" and n_tensor_inputs > 1:
        return "masked_activation"  # e.g. Softmax(scores, mask): not elementwise
    return group


def group_of(op: Any) -> str | None:
    """The relevance group of a layer or operation, or None if unknown.

    Args:
        op: A Keras layer or operation.

    Returns:
        A key of the composites' layer maps ("dense", "convolution", ...) or None.
    """
    for cls in type(op).__mro__:
        group = GROUP_OF_CLASS.get(cls.__name__)
        if group is not None:
            return group
    return None


def activation_name(fn: Any) -> str:
    """Canonical lower-case name of a Keras activation function."""
    name = getattr(fn, "__name__", None) or str(fn)
    aliases = {"swish": "silu", "hard_swish": "hard_silu", "linear": "linear"}
    return aliases.get(name, name)


def activation_of(op: Any) -> str:
    """Name of the non-linearity an activation layer/operation applies.

    Args:
        op: An op whose group is "activation".

    Returns:
        e.g. "relu", "relu6", "softmax", "silu".
    """
    name = type(op).__name__
    if name in ACTIVATION_OF_OPERATION:
        return ACTIVATION_OF_OPERATION[name]
    if isinstance(op, keras.layers.ReLU):
        if getattr(op, "negative_slope", 0.0):
            return "leaky_relu"
        return "relu6" if getattr(op, "max_value", None) == 6.0 else "relu"
    if isinstance(op, keras.layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(op, keras.layers.ELU):
        return "elu"
    if isinstance(op, keras.layers.PReLU):
        return "prelu"
    if isinstance(op, keras.layers.Softmax):
        return "softmax"
    if isinstance(op, keras.layers.Activation):
        return activation_name(op.activation)
    return name.lower()


def fused_activation(op: Any) -> str:
    """Name of the activation fused into a Dense/Conv layer ("linear" if none)."""
    fn = getattr(op, "activation", None)
    return "linear" if fn is None else activation_name(fn)


def as_float32(value: Any) -> tf.Tensor:
    """Reads a Keras variable (or array) as a float32 tensor."""
    value = getattr(value, "value", value)
    return tf.cast(tf.convert_to_tensor(value), tf.float32)


@dataclass(frozen=True)
class LinearSpec:
    """A linear layer as a pure function of its parameters.

    Attributes:
        forward: ``forward(x, kernel)`` computes the layer's output without bias.
        read_kernel: Reads the current kernel as a float32 tensor (call outside custom grads).
        read_bias: Reads the current bias (or returns None).
        channel_axis: Axis of the output that the bias is added along.
        out_channel_kernel_axis: Kernel axis holding output channels (for BN folding).
    """

    forward: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    read_kernel: Callable[[], tf.Tensor]
    read_bias: Callable[[], tf.Tensor | None]
    channel_axis: int = -1
    out_channel_kernel_axis: int = -1
    depthwise_multiplier: int | None = None

    def add_bias(self, z: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
        """Adds a per-channel bias to ``z`` along the channel axis."""
        if bias is None:
            return z
        if self.channel_axis in (-1, len(z.shape) - 1):
            return z + bias
        shape = [1] * len(z.shape)
        shape[self.channel_axis] = -1
        return z + tf.reshape(bias, shape)


def _bias_reader(layer: Any) -> Callable[[], tf.Tensor | None]:
    if not getattr(layer, "use_bias", False) or getattr(layer, "bias", None) is None:
        return lambda: None
    return lambda: as_float32(layer.bias)


def _channel_axis(layer: Any) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _dense_forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    if len(x.shape) == 2:
        return tf.matmul(x, kernel)
    return tf.tensordot(x, kernel, axes=[[len(x.shape) - 1], [0]])


def linear_spec(layer: Any) -> LinearSpec:
    """Builds the pure-function view of a Dense or convolution layer.

    Args:
        layer: A built Keras Dense / Conv / DepthwiseConv / ConvTranspose layer.

    Returns:
        Its LinearSpec.
    """
    read_bias = _bias_reader(layer)
    if isinstance(layer, keras.layers.Dense):
        return LinearSpec(_dense_forward, lambda: as_float32(layer.kernel), read_bias)
    if isinstance(layer, keras.layers.EinsumDense):  # its bias broadcasts onto the output
        equation = layer.equation
        has_bias = getattr(layer, "bias", None) is not None  # (no ``use_bias`` attribute)
        return LinearSpec(lambda x, kernel: tf.einsum(equation, x, kernel),
                          lambda: as_float32(layer.kernel),
                          (lambda: as_float32(layer.bias)) if has_bias else (lambda: None))
    axis = _channel_axis(layer)
    strides = tuple(layer.strides)
    dilation = tuple(getattr(layer, "dilation_rate", (1,) * len(strides)))
    if "DepthwiseConv" in type(layer).__name__:
        def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
            return keras.ops.depthwise_conv(
                x, kernel, strides=strides, padding=layer.padding,
                data_format=layer.data_format, dilation_rate=dilation,
            )
        return LinearSpec(
            forward, lambda: as_float32(layer.kernel), read_bias, axis,
            depthwise_multiplier=int(layer.depth_multiplier),
        )
    if "Transpose" in type(layer).__name__:
        def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
            return keras.ops.conv_transpose(
                x, kernel, strides=strides, padding=layer.padding,
                output_padding=layer.output_padding, data_format=layer.data_format,
                dilation_rate=dilation,
            )
        return LinearSpec(forward, lambda: as_float32(layer.kernel), read_bias, axis, -2)

    padding = layer.padding
    causal_pad = None
    if padding == "causal":  # Conv1D: pad the start of the time axis, then "valid"
        time_axis = 2 if axis == 1 else 1
        causal_pad = [[0, 0]] * 3
        causal_pad[time_axis] = [dilation[0] * (layer.kernel_size[0] - 1), 0]
        padding = "valid"

    def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if causal_pad is not None:
            x = tf.pad(x, causal_pad)
        return keras.ops.conv(
            x, kernel, strides=strides, padding=padding,
            data_format=layer.data_format, dilation_rate=dilation,
        )
    return LinearSpec(forward, lambda: as_float32(layer.kernel), read_bias, axis)


def separable_specs(layer: Any) -> tuple[LinearSpec, LinearSpec]:
    """Splits a SeparableConv layer into a depthwise and a pointwise LinearSpec."""
    axis = _channel_axis(layer)
    strides = tuple(layer.strides)
    dilation = tuple(layer.dilation_rate)
    ones = (1,) * len(strides)

    def depthwise(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return keras.ops.depthwise_conv(
            x, kernel, strides=strides, padding=layer.padding,
            data_format=layer.data_format, dilation_rate=dilation,
        )

    def pointwise(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return keras.ops.conv(x, kernel, strides=ones, padding="valid",
                              data_format=layer.data_format)

    first = LinearSpec(depthwise, lambda: as_float32(layer.depthwise_kernel), lambda: None,
                       axis, depthwise_multiplier=int(layer.depth_multiplier))
    second = LinearSpec(pointwise, lambda: as_float32(layer.pointwise_kernel),
                        _bias_reader(layer), axis)
    return first, second
