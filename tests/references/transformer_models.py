"""Small stock-Keras transformers: the models of the AttnLRP references and the ViT benchmark.

Two builders, both plain functional Keras models of stock layers (``Conv2D``, ``Embedding``,
``LayerNormalization``, ``MultiHeadAttention``, ``Dense``, ``Add``,
``GlobalAveragePooling1D``) plus one small custom layer, :class:`TokensAndPositions`, that
prepends a learned class token and adds a learned position embedding (written in
``keras.ops``, so tf_clrp walks inside it):

* :func:`build_vit`: Conv2D patchify (kernel = stride = patch) → reshape to tokens →
  class token + position embedding → ``depth`` pre-LN blocks (LayerNorm → MultiHeadAttention →
  Add → LayerNorm → Dense-GELU-Dense → Add) → LayerNorm → class-token row → Dense head.
* :func:`build_text_transformer`: Embedding → position embedding → the same blocks →
  LayerNorm → mean over tokens (GlobalAveragePooling1D) → Dense head.

:func:`randomize` gives every weight (biases, LayerNorm scales and offsets, tokens) a seeded
non-trivial value, so that a reference exercises every term of every rule.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tf_clrp_references")
class TokensAndPositions(layers.Layer):
    """Prepends a learned class token (optional) and adds a learned position embedding.

    Args:
        class_token: Prepend a learned class token.
        **kwargs: Layer options.
    """

    def __init__(self, class_token: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use_class_token = class_token

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        tokens, width = int(input_shape[1]), int(input_shape[2])
        init = keras.initializers.RandomNormal(stddev=0.02)
        if self.use_class_token:
            self.class_token = self.add_weight(
                shape=(1, 1, width), initializer=init, name="class_token"
            )
            tokens += 1
        self.position = self.add_weight(shape=(1, tokens, width), initializer=init, name="position")

    def call(self, x: Any) -> Any:
        if self.use_class_token:
            # 0·x[:, :1] + token broadcasts the token over the batch without reading the
            # batch size (ops.tile(token, (batch, 1, 1)) cannot run on symbolic tensors, so
            # tf_clrp could not walk inside); no relevance reaches x through the zero term.
            token = x[:, :1] * 0.0 + self.class_token
            x = ops.concatenate([token, x], axis=1)
        return x + self.position

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        extra = 1 if self.use_class_token else 0
        return (input_shape[0], input_shape[1] + extra, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_token": self.use_class_token}


def encoder_block(x: Any, heads: int, key_dim: int, mlp: int, index: int) -> Any:
    """One pre-LN block: LN → MHA → Add → LN → Dense-GELU-Dense → Add."""
    width = x.shape[-1]
    h = layers.LayerNormalization(name=f"block{index}_ln1")(x)
    h = layers.MultiHeadAttention(heads, key_dim, name=f"block{index}_mha")(h, h)
    x = layers.Add(name=f"block{index}_add1")([x, h])
    h = layers.LayerNormalization(name=f"block{index}_ln2")(x)
    h = layers.Dense(mlp, activation="gelu", name=f"block{index}_mlp1")(h)
    h = layers.Dense(width, name=f"block{index}_mlp2")(h)
    return layers.Add(name=f"block{index}_add2")([x, h])


def build_vit(
    image_shape: tuple[int, int, int] = (16, 16, 1),
    patch: int = 4,
    width: int = 16,
    depth: int = 2,
    heads: int = 2,
    mlp: int = 32,
    classes: int = 5,
    seed: int = 0,
    name: str = "small_vit",
) -> keras.Model:
    """A small ViT with a class token (logits out).

    Args:
        image_shape: (height, width, channels); height and width divisible by ``patch``.
        patch: patch size (the patchify Conv2D's kernel and stride).
        width: token width.
        depth: number of encoder blocks.
        heads: attention heads (key_dim = width // heads).
        mlp: hidden width of the MLP.
        classes: logits.
        seed: Keras seed of the initialisers.
        name: model name.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape, name="image")
    x = layers.Conv2D(width, patch, strides=patch, name="patchify")(inputs)
    grid = (image_shape[0] // patch) * (image_shape[1] // patch)
    x = layers.Reshape((grid, width), name="tokens")(x)
    x = TokensAndPositions(class_token=True, name="class_token_and_positions")(x)
    for i in range(depth):
        x = encoder_block(x, heads, width // heads, mlp, i)
    x = layers.LayerNormalization(name="final_ln")(x)
    x = _class_row(x)
    outputs = layers.Dense(classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def _class_row(x: Any) -> Any:
    """The class-token row x[:, 0] as a stock layer: Cropping1D keeps token 0, Flatten."""
    tokens = x.shape[1]
    x = layers.Cropping1D((0, tokens - 1), name="class_row_crop")(x)
    return layers.Flatten(name="class_row")(x)


def build_text_transformer(
    tokens: int = 8,
    vocabulary: int = 30,
    width: int = 16,
    depth: int = 2,
    heads: int = 2,
    mlp: int = 32,
    classes: int = 3,
    seed: int = 1,
    name: str = "small_text_transformer",
) -> keras.Model:
    """A small text transformer: Embedding + positions, blocks, mean over tokens, Dense.

    Args:
        tokens: sequence length.
        vocabulary: Embedding size.
        width: token width.
        depth: number of encoder blocks.
        heads: attention heads (key_dim = width // heads).
        mlp: hidden width of the MLP.
        classes: logits.
        seed: Keras seed of the initialisers.
        name: model name.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((tokens,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary, width, name="embedding")(inputs)
    x = TokensAndPositions(class_token=False, name="positions")(x)
    for i in range(depth):
        x = encoder_block(x, heads, width // heads, mlp, i)
    x = layers.LayerNormalization(name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="mean_over_tokens")(x)
    outputs = layers.Dense(classes, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def randomize(model: keras.Model, seed: int, scale: float = 0.5) -> keras.Model:
    """Gives every weight a seeded random value (in place; returns the model).

    Kernels keep a fan-in scale (N(0, 1/fan_in)), biases, tokens and positions get
    N(0, scale²), LayerNorm scales 1 + N(0, 0.1²) and offsets N(0, 0.1²).
    """
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(var.shape)
        path = var.path
        if "gamma" in path:
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif "beta" in path:
            value = 0.1 * rng.standard_normal(shape)
        elif "kernel" in path or "embeddings" in path:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            if "attention_output" in path:
                fan_in = int(np.prod(shape[:-1]))
            elif len(shape) == 3:  # query/key/value EinsumDense kernel (D, heads, key_dim)
                fan_in = shape[0]
            if "embeddings" in path:
                fan_in = 1
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:  # biases, class token, positions
            value = scale * rng.standard_normal(shape)
        var.assign(value.astype(np.float32))
    return model
