"""What each Keras layer or operation *is* for relevance propagation.

A layer's ``Group`` is the key composites map to rules, and its properties say what the
engine needs to know about it (does relevance move like the gradient, is it preprocessing,
does it keep non-negative inputs non-negative, is it a linear layer with a kernel). The
tables are plain data keyed by class name, looked up along the class's MRO when a model is
walked (never built at import time, so a layer class missing from one Keras version cannot
break ``import tf_clrp``). Adding a layer class to an existing group is one line of
``GROUP_OF_CLASS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import keras
import tensorflow as tf

from tf_clrp.einsum_plan import einsum_forward, einsum_output_channel_axis


class Group(str, Enum):
    """What a layer is for relevance propagation; the keys composites map to rules.

    A member equals (and hashes like) its string value, so ``layer_rules={"dense": ...}``
    and ``Group.DENSE`` name the same group.
    """

    DENSE = "dense"
    CONVOLUTION = "convolution"
    SEPARABLE = "separable"
    BATCH_NORM = "batch_norm"
    LAYER_NORM = "layer_norm"
    AVG_POOL = "avg_pool"
    MAX_POOL = "max_pool"
    ACTIVATION = "activation"
    #: An activation called with a mask (``Softmax(scores, mask)``): not elementwise.
    MASKED_ACTIVATION = "masked_activation"
    ADD = "add"
    CONCATENATE = "concatenate"
    #: A product with a gate or a constant scale (identity for relevance by default).
    MULTIPLY = "multiply"
    #: A product of two activations inside a walked layer (attention scores, gates).
    BILINEAR = "bilinear"
    #: A softmax over an axis of attention scores (optionally masked): not elementwise.
    #: Set by ``tf_clrp.attention.split_attention`` (AttnLRP's canonizer).
    SOFTMAX = "softmax"
    #: Attention weights times values (A·V): a bilinear product whose first input is a
    #: softmax's output. Set by ``tf_clrp.attention.split_attention``.
    ATTENTION_VALUES = "attention_values"
    EMBEDDING = "embedding"
    RESCALING = "rescaling"
    RESHAPE = "reshape"
    #: A subclassed model's single node: autodiff only, no relevance rule.
    OPAQUE_MODEL = "opaque_model"

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    @property
    def moves_with_gradient(self) -> bool:
        """Relevance moves exactly like the gradient (permutations, copies, routing), or
        the layer carries none (embeddings of fed integer inputs): no rule needed."""
        return self in _MOVES_WITH_GRADIENT

    @property
    def is_preprocessing(self) -> bool:
        """Between the input and the first linear layer, the layer keeps its output "the
        input" (reshapes, Rescaling/Normalization, an elementwise-affine BatchNorm): input
        bounds map through it and the next linear layer is still a first layer."""
        return self in _PREPROCESSING

    @property
    def keeps_nonnegative(self) -> bool:
        """Its output is >= 0 whenever all its inputs are (pooling, sums, copies, gates)."""
        return self in _KEEPS_NONNEGATIVE

    @property
    def is_linear(self) -> bool:
        """A linear layer with a learned kernel (Dense, convolutions): the layers a
        composite's first-layer rule and the canonizers' linear rewrites apply to."""
        return self in _LINEAR


_MOVES_WITH_GRADIENT = frozenset(
    {Group.RESHAPE, Group.MAX_POOL, Group.CONCATENATE, Group.EMBEDDING}
)
_PREPROCESSING = frozenset({Group.RESHAPE, Group.RESCALING, Group.BATCH_NORM})
_KEEPS_NONNEGATIVE = frozenset(
    {Group.MAX_POOL, Group.AVG_POOL, Group.RESHAPE, Group.CONCATENATE, Group.ADD, Group.MULTIPLY}
)
_LINEAR = frozenset({Group.DENSE, Group.CONVOLUTION, Group.SEPARABLE})


def as_group(value: Group | str | None) -> Group | None:
    """A group from its string name (None stays None).

    Raises:
        ValueError: not a group name.
    """
    return None if value is None else Group(value)


#: Layer / operation class name -> group. Groups are the keys composites map to rules.
GROUP_OF_CLASS: dict[str, Group] = {
    # linear layers (kernel + optional bias)
    "Dense": Group.DENSE,
    "Conv1D": Group.CONVOLUTION,
    "Conv2D": Group.CONVOLUTION,
    "Conv3D": Group.CONVOLUTION,
    "Conv1DTranspose": Group.CONVOLUTION,
    "Conv2DTranspose": Group.CONVOLUTION,
    "Conv3DTranspose": Group.CONVOLUTION,
    "DepthwiseConv1D": Group.CONVOLUTION,
    "DepthwiseConv2D": Group.CONVOLUTION,
    "SeparableConv1D": Group.SEPARABLE,
    "SeparableConv2D": Group.SEPARABLE,
    # normalisation
    "BatchNormalization": Group.BATCH_NORM,
    "LayerNormalization": Group.LAYER_NORM,
    # pooling
    "AveragePooling1D": Group.AVG_POOL,
    "AveragePooling2D": Group.AVG_POOL,
    "AveragePooling3D": Group.AVG_POOL,
    "GlobalAveragePooling1D": Group.AVG_POOL,
    "GlobalAveragePooling2D": Group.AVG_POOL,
    "GlobalAveragePooling3D": Group.AVG_POOL,
    "MaxPooling1D": Group.MAX_POOL,
    "MaxPooling2D": Group.MAX_POOL,
    "MaxPooling3D": Group.MAX_POOL,
    "GlobalMaxPooling1D": Group.MAX_POOL,
    "GlobalMaxPooling2D": Group.MAX_POOL,
    "GlobalMaxPooling3D": Group.MAX_POOL,
    # elementwise non-linearities
    "ReLU": Group.ACTIVATION,
    "LeakyReLU": Group.ACTIVATION,
    "ELU": Group.ACTIVATION,
    "PReLU": Group.ACTIVATION,
    "Softmax": Group.ACTIVATION,
    "Activation": Group.ACTIVATION,
    "Relu": Group.ACTIVATION,
    "Relu6": Group.ACTIVATION,
    "LeakyRelu": Group.ACTIVATION,
    "Elu": Group.ACTIVATION,
    "Sigmoid": Group.ACTIVATION,
    "HardSigmoid": Group.ACTIVATION,
    "Silu": Group.ACTIVATION,
    "HardSilu": Group.ACTIVATION,
    "Gelu": Group.ACTIVATION,
    "Tanh": Group.ACTIVATION,
    # merges
    "Add": Group.ADD,
    "Concatenate": Group.CONCATENATE,
    "Multiply": Group.MULTIPLY,
    "EinsumDense": Group.DENSE,
    "RMSNormalization": Group.LAYER_NORM,
    # lookups: the start of the relevance path of token ids; a constant on fed inputs
    "Embedding": Group.EMBEDDING,
    # affine preprocessing inside the model
    "Rescaling": Group.RESCALING,
    "Normalization": Group.RESCALING,
    "LayerScale": Group.RESCALING,
    # relevance moves exactly with the gradient (permutations, copies, routing, identity)
    "InputLayer": Group.RESHAPE,
    "Flatten": Group.RESHAPE,
    "Reshape": Group.RESHAPE,
    "Permute": Group.RESHAPE,
    "RepeatVector": Group.RESHAPE,
    "Identity": Group.RESHAPE,
    "Dropout": Group.RESHAPE,
    "SpatialDropout1D": Group.RESHAPE,
    "SpatialDropout2D": Group.RESHAPE,
    "SpatialDropout3D": Group.RESHAPE,
    "GaussianNoise": Group.RESHAPE,
    "GaussianDropout": Group.RESHAPE,
    "AlphaDropout": Group.RESHAPE,
    "ActivityRegularization": Group.RESHAPE,
    "ZeroPadding1D": Group.RESHAPE,
    "ZeroPadding2D": Group.RESHAPE,
    "ZeroPadding3D": Group.RESHAPE,
    "Cropping1D": Group.RESHAPE,
    "Cropping2D": Group.RESHAPE,
    "Cropping3D": Group.RESHAPE,
    "UpSampling1D": Group.RESHAPE,
    "UpSampling2D": Group.RESHAPE,
    "UpSampling3D": Group.RESHAPE,
    "Transpose": Group.RESHAPE,
    "Squeeze": Group.RESHAPE,
    "ExpandDims": Group.RESHAPE,
    "GetItem": Group.RESHAPE,
    "Cast": Group.RESHAPE,
    # boolean results (Keras masks: Embedding(mask_zero=True), attention masks): no
    # relevance flows through a boolean, and autodiff sends none
    "NotEqual": Group.RESHAPE,
    "Equal": Group.RESHAPE,
    "LogicalAnd": Group.RESHAPE,
    "LogicalOr": Group.RESHAPE,
    "LogicalNot": Group.RESHAPE,
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
INSIDE_LAYER_GROUPS: dict[str, Group] = {
    # reductions over an axis: relevance in proportion to the contributions
    "Mean": Group.AVG_POOL,
    "Sum": Group.AVG_POOL,
    # routing ops of transformers: splits, stacks, broadcasts of learned tokens
    "Split": Group.RESHAPE,
    "BroadcastTo": Group.RESHAPE,
    "Tile": Group.RESHAPE,
    "Repeat": Group.RESHAPE,
    "Stack": Group.CONCATENATE,
}

#: Operations inside a walked layer that multiply two activations (attention scores, gates):
#: a bilinear product, which needs a rule of its own (``Group.BILINEAR``).
BILINEAR_OPERATIONS = frozenset({"Einsum", "Matmul", "Multiply", "DotProductAttention"})
#: Operations that scale one activation by a constant: identity for relevance.
SCALING_OPERATIONS = frozenset({"Multiply", "Divide", "TrueDivide"})


def group_of_call(op: Any, n_tensor_inputs: int, inside_layer: bool) -> Group | None:
    """The group of one call: ``group_of``, refined for operations inside a walked layer.

    Args:
        op: The layer or operation.
        n_tensor_inputs: How many of its arguments are activations (not constants).
        inside_layer: True inside a layer walked by ``tf_clrp.tracing``.

    Returns:
        BILINEAR for a product of two activations, MULTIPLY (identity for relevance)
        for scaling by a constant, MASKED_ACTIVATION for an activation called with a
        mask, else ``group_of(op)``; None for a product of an
        activation with a constant tensor (a linear map without a kernel of its own).
    """
    name = type(op).__name__
    if inside_layer and not isinstance(op, keras.layers.Layer):
        if name in BILINEAR_OPERATIONS:
            if n_tensor_inputs >= 2:
                return Group.BILINEAR
            return Group.MULTIPLY if name in SCALING_OPERATIONS else None
        if name in SCALING_OPERATIONS and n_tensor_inputs == 1:
            return Group.MULTIPLY
        if name in INSIDE_LAYER_GROUPS:
            return INSIDE_LAYER_GROUPS[name]
    group = group_of(op)
    if group is Group.ACTIVATION and n_tensor_inputs > 1:
        return Group.MASKED_ACTIVATION  # e.g. Softmax(scores, mask): not elementwise
    return group


def group_of(op: Any) -> Group | None:
    """The relevance group of a layer or operation, or None if unknown.

    Args:
        op: A Keras layer or operation.

    Returns:
        Its Group (the first class along its MRO listed in ``GROUP_OF_CLASS``) or None.
    """
    return _along_mro(op, GROUP_OF_CLASS)


def _along_mro(op: Any, table: dict[str, Any]) -> Any:
    """The entry of ``table`` for the first class of ``op``'s MRO it lists, or None."""
    for cls in type(op).__mro__:
        if cls.__name__ in table:
            return table[cls.__name__]
    return None


def activation_name(fn: Any) -> str:
    """Canonical lower-case name of a Keras activation function."""
    name = getattr(fn, "__name__", None) or str(fn)
    aliases = {"swish": "silu", "hard_swish": "hard_silu", "linear": "linear"}
    return aliases.get(name, name)


def activation_of(op: Any) -> str:
    """Name of the non-linearity an activation layer/operation applies.

    Args:
        op: An op whose group is ``Group.ACTIVATION``.

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
        out_channel_kernel_axis: Kernel axis holding the output channels of ``channel_axis``
            (for BN folding and CLRP's negated head), or None if no kernel axis does (an
            ``EinsumDense`` whose last output axis comes from its input).
    """

    forward: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    read_kernel: Callable[[], tf.Tensor]
    read_bias: Callable[[], tf.Tensor | None]
    channel_axis: int = -1
    out_channel_kernel_axis: int | None = -1
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


def _dense_spec(layer: Any) -> LinearSpec:
    return LinearSpec(_dense_forward, lambda: as_float32(layer.kernel), _bias_reader(layer))


def _einsum_spec(layer: Any) -> LinearSpec:
    equation = layer.equation  # its bias broadcasts onto the output
    has_bias = getattr(layer, "bias", None) is not None  # (no ``use_bias`` attribute)

    def bias() -> tf.Tensor | None:
        return as_float32(layer.bias) if has_bias else None

    return LinearSpec(
        einsum_forward(equation),
        lambda: as_float32(layer.kernel),
        bias,
        out_channel_kernel_axis=einsum_output_channel_axis(equation),
    )


def _dilation(layer: Any) -> tuple[int, ...]:
    return tuple(getattr(layer, "dilation_rate", (1,) * len(tuple(layer.strides))))


def _depthwise_forward(layer: Any) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The depthwise convolution of ``layer`` (DepthwiseConv or SeparableConv's first half)."""
    strides, dilation = tuple(layer.strides), _dilation(layer)

    def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return keras.ops.depthwise_conv(
            x,
            kernel,
            strides=strides,
            padding=layer.padding,
            data_format=layer.data_format,
            dilation_rate=dilation,
        )

    return forward


def _depthwise_spec(layer: Any) -> LinearSpec:
    return LinearSpec(
        _depthwise_forward(layer),
        lambda: as_float32(layer.kernel),
        _bias_reader(layer),
        _channel_axis(layer),
        depthwise_multiplier=int(layer.depth_multiplier),
    )


def _transposed_spec(layer: Any) -> LinearSpec:
    strides, dilation = tuple(layer.strides), _dilation(layer)

    def forward(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return keras.ops.conv_transpose(
            x,
            kernel,
            strides=strides,
            padding=layer.padding,
            output_padding=layer.output_padding,
            data_format=layer.data_format,
            dilation_rate=dilation,
        )

    return LinearSpec(
        forward, lambda: as_float32(layer.kernel), _bias_reader(layer), _channel_axis(layer), -2
    )


def _conv_spec(layer: Any) -> LinearSpec:
    axis = _channel_axis(layer)
    strides, dilation = tuple(layer.strides), _dilation(layer)
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
            x,
            kernel,
            strides=strides,
            padding=padding,
            data_format=layer.data_format,
            dilation_rate=dilation,
        )

    return LinearSpec(forward, lambda: as_float32(layer.kernel), _bias_reader(layer), axis)


#: Linear layer classes whose forward is not their group's usual one (looked up along the
#: MRO, like ``GROUP_OF_CLASS``): Dense and plain convolutions need no entry.
SPEC_OF_CLASS: dict[str, Callable[[Any], LinearSpec]] = {
    "EinsumDense": _einsum_spec,
    "DepthwiseConv1D": _depthwise_spec,
    "DepthwiseConv2D": _depthwise_spec,
    "Conv1DTranspose": _transposed_spec,
    "Conv2DTranspose": _transposed_spec,
    "Conv3DTranspose": _transposed_spec,
}

#: The usual forward of each linear group.
SPEC_OF_GROUP: dict[Group, Callable[[Any], LinearSpec]] = {
    Group.DENSE: _dense_spec,
    Group.CONVOLUTION: _conv_spec,
}


def linear_spec(layer: Any) -> LinearSpec:
    """Builds the pure-function view of a Dense or convolution layer.

    Args:
        layer: A built Keras Dense / EinsumDense / Conv / DepthwiseConv / ConvTranspose
            layer (a class in ``SPEC_OF_CLASS``, or of group DENSE or CONVOLUTION).

    Returns:
        Its LinearSpec.

    Raises:
        TypeError: the layer is not a linear layer tf_clrp knows.
    """
    build = _along_mro(layer, SPEC_OF_CLASS) or SPEC_OF_GROUP.get(group_of(layer))
    if build is None:
        raise TypeError(f"{type(layer).__name__} is not a Dense or convolution layer")
    return build(layer)


def separable_specs(layer: Any) -> tuple[LinearSpec, LinearSpec]:
    """Splits a SeparableConv layer into a depthwise and a pointwise LinearSpec."""
    axis = _channel_axis(layer)
    ones = (1,) * len(tuple(layer.strides))

    def pointwise(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return keras.ops.conv(
            x, kernel, strides=ones, padding="valid", data_format=layer.data_format
        )

    first = LinearSpec(
        _depthwise_forward(layer),
        lambda: as_float32(layer.depthwise_kernel),
        lambda: None,
        axis,
        depthwise_multiplier=int(layer.depth_multiplier),
    )
    second = LinearSpec(
        pointwise, lambda: as_float32(layer.pointwise_kernel), _bias_reader(layer), axis
    )
    return first, second
