"""Token inputs: maps at the Embedding output, summed over the embedding axis.

References: tape gradients with respect to the embedding output of the user's own layers.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_clrp import create_analyzer
from tf_clrp.errors import InputError, ModelStructureError, UnsupportedLayerError

TOKENS, VOCAB, DIM = 6, 20, 4


def _padded_model() -> keras.Model:
    """token_ids + padding_mask (keras_hub's names) -> Embedding -> masked mean -> Dense."""
    keras.utils.set_random_seed(11)
    ids = keras.Input((TOKENS,), dtype="int32", name="token_ids")
    mask = keras.Input((TOKENS,), dtype="int32", name="padding_mask")
    e = keras.layers.Embedding(VOCAB, DIM, name="embed")(ids)
    m = keras.layers.Reshape((TOKENS, 1))(keras.ops.cast(mask, "float32"))
    h = keras.layers.Dense(5, activation="relu")(keras.layers.Multiply()([e, m]))
    out = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(h))
    return keras.Model({"token_ids": ids, "padding_mask": mask}, out)


def _mask_zero_model(attention: bool = False) -> keras.Model:
    """Embedding(mask_zero=True): the mask reaches the pooling (and attention) as in Keras."""
    keras.utils.set_random_seed(12)
    ids = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embed")(ids)
    if attention:
        x = keras.layers.Add()([x, keras.layers.MultiHeadAttention(2, 4)(x, x)])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3, name="head")(x))


def _batch(n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(13)
    ids = rng.integers(1, VOCAB, size=(n, TOKENS)).astype(np.int32)
    mask = np.ones((n, TOKENS), np.int32)
    mask[0, 4:] = 0
    mask[1, 2:] = 0
    return ids * mask, mask


def _embedding_gradient(
    model: keras.Model, after_embedding, ids: np.ndarray, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(embedding output, gradient of the logit wrt it), by tape on the model's layers."""
    embedded = model.get_layer("embed")(tf.constant(ids))
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        score = after_embedding(embedded)[:, index]
    return embedded.numpy().astype(np.float64), tape.gradient(score, embedded).numpy()


def test_input_times_gradient_at_the_embedding_with_a_padding_mask_input():
    model = _padded_model()
    ids, mask = _batch()
    got = create_analyzer("input_t_gradient", model, input_name="token_ids").analyze(
        {"token_ids": ids, "padding_mask": mask}, neuron_selection=1
    )
    m = tf.constant(mask.astype(np.float32))[..., None]
    dense, head = model.layers[-3], model.get_layer("head")

    def rest(e):
        return head(tf.reduce_mean(dense(e * m), axis=1))

    embedded, grad = _embedding_gradient(model, rest, ids, 1)
    want = (embedded * grad).sum(-1)
    assert got.shape == (3, TOKENS) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert np.all(got[mask == 0] == 0.0)
    assert np.abs(got[mask == 1]).sum() > 0


def test_mask_zero_reaches_the_layers_after_the_embedding():
    model = _mask_zero_model()
    ids, mask = _batch()
    got = create_analyzer("gradient", model).analyze(ids, neuron_selection=0)
    pool, head = model.layers[-2], model.get_layer("head")
    keras_mask = tf.constant(ids != 0)

    def rest(e):
        return head(pool(e, mask=keras_mask))

    _, grad = _embedding_gradient(model, rest, ids, 0)
    np.testing.assert_allclose(got, grad.sum(-1) * mask, rtol=1e-5, atol=1e-7)
    assert np.all(got[mask == 0] == 0.0)


def test_gradient_through_attention_on_tokens_equals_autodiff():
    model = _mask_zero_model(attention=True)
    ids, mask = _batch()
    got = create_analyzer("input_t_gradient", model).analyze(ids, neuron_selection=2)
    mha = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)
    )
    pool, head = model.layers[-2], model.get_layer("head")
    keras_mask = tf.constant(ids != 0)

    def rest(e):
        attended = mha(e, e, query_mask=keras_mask, value_mask=keras_mask)
        return head(pool(e + attended, mask=keras_mask))

    embedded, grad = _embedding_gradient(model, rest, ids, 2)
    np.testing.assert_allclose(got, (embedded * grad).sum(-1) * mask, rtol=1e-4, atol=1e-6)
    assert np.all(got[mask == 0] == 0.0)


def test_attention_with_a_keras_mask_is_walked_inside():
    """The Embedding's mask_zero mask reaches MultiHeadAttention as query/value masks: its
    call is traced with them (mask ops become nodes) and LRP names the attention product."""
    model = _mask_zero_model(attention=True)
    graph = create_analyzer("gradient", model).graph
    inside = [n.name for n in graph.nodes if n.name.startswith("multi_head_attention")]
    assert any("/dot_product_attention" in n for n in inside), inside
    assert any("/logical_and" in n for n in inside), inside  # query mask & value mask
    with pytest.raises(
        UnsupportedLayerError,
        match=r"dot_product_attention(_\d+)?' "
        r"\(DotProductAttention",
    ):
        create_analyzer("lrp.epsilon", model)


class MaskedMean(keras.layers.Layer):
    """A custom layer with a ``mask`` argument (Keras fills it in from the input)."""

    def call(self, x, mask=None):
        weights = keras.ops.expand_dims(keras.ops.cast(mask, x.dtype), -1)
        return keras.ops.sum(x * weights, axis=1) / keras.ops.sum(weights, axis=1)

    def compute_mask(self, x, mask=None):
        return None  # the token axis is reduced


def test_custom_layer_with_a_mask_argument_equals_autodiff():
    keras.utils.set_random_seed(15)
    ids_in = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embed")(ids_in)
    pooled = MaskedMean(name="masked_mean")(x)
    model = keras.Model(ids_in, keras.layers.Dense(3, name="head")(pooled))
    ids, mask = _batch()
    analyzer = create_analyzer("input_t_gradient", model)
    assert any(n.name.startswith("masked_mean/") for n in analyzer.graph.nodes)
    got = analyzer.analyze(ids, neuron_selection=1)
    layer, head = model.get_layer("masked_mean"), model.get_layer("head")
    keras_mask = tf.constant(ids != 0)
    embedded, grad = _embedding_gradient(model, lambda e: head(layer(e, mask=keras_mask)), ids, 1)
    np.testing.assert_allclose(got, (embedded * grad).sum(-1) * mask, rtol=1e-5, atol=1e-7)
    assert np.all(got[mask == 0] == 0.0) and np.abs(got).max() > 0


def test_lrp_on_tokens_conserves_the_logit():
    """z rule, bias-free Dense layers and mean pooling (proportional): the token map sums
    to the explained logit."""
    keras.utils.set_random_seed(14)
    ids_in = keras.Input((TOKENS,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM)(ids_in)
    x = keras.layers.Dense(5, use_bias=False, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(ids_in, keras.layers.Dense(3, use_bias=False)(x))
    ids, _ = _batch()
    got = create_analyzer("lrp.z", model).analyze(ids, neuron_selection=1)
    logits = model(ids).numpy()
    assert got.shape == (3, TOKENS)
    np.testing.assert_allclose(got.sum(1), logits[:, 1], rtol=1e-4, atol=1e-6)


def test_integer_input_without_embedding_is_refused():
    ids_in = keras.Input((TOKENS,), dtype="int32", name="codes")
    x = keras.layers.Dense(2)(keras.ops.cast(ids_in, "float32"))
    with pytest.raises(ModelStructureError, match="'codes'.*integer.*no Embedding"):
        create_analyzer("gradient", keras.Model(ids_in, x))


def test_bad_token_ids_are_named():
    analyzer = create_analyzer("gradient", _mask_zero_model())
    ids, _ = _batch()
    ids[2, 3] = VOCAB
    with pytest.raises(InputError, match=f"token id {VOCAB} at sample 2, position 3"):
        analyzer.analyze(ids)
    with pytest.raises(InputError, match="non-integer"):
        analyzer.analyze(np.full((1, TOKENS), 1.5, np.float32))


# ----------------------------------------------------------------------------- token pictures
def _has_color(image: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(image == np.array(rgb, np.uint8), axis=-1).any())


def test_token_heatmap_png_colours_by_sign(tmp_path):
    from tf_clrp import visualize

    image = visualize.token_heatmap(
        [2.0, -2.0, 0.5, 0.0],
        [5, 7, 9, 1],
        vocabulary={5: "good", 7: "bad", 9: "ok", 1: "[PAD]"},
        mask=[1, 1, 1, 0],
        width=300,
    )
    assert image.dtype == np.uint8 and image.shape[1] == 300 and image.shape[2] == 3
    assert _has_color(image, (255, 0, 0)) and _has_color(image, (0, 0, 255))
    only_positive = visualize.token_heatmap([2.0, 0.0], ["a", "b"])
    assert _has_color(only_positive, (255, 0, 0))
    assert not _has_color(only_positive, (0, 0, 255))
    path = visualize.save_png(image, tmp_path / "tokens.png")
    assert Path(path).read_bytes()[:4] == b"\x89PNG"
    long = visualize.token_heatmap(np.linspace(-1, 1, 60), ["token"] * 60, width=200)
    assert long.shape[0] > 5 * image.shape[0]  # wraps into lines


def test_token_heatmap_html_is_self_contained(tmp_path):
    from tf_clrp import visualize

    page = visualize.token_heatmap_html(
        [1.0, -1.0, 0.0], [0, 1, 2], vocabulary=["<b>", "no", "pad"], mask=[1, 1, 0], title="review"
    )
    assert "&lt;b&gt;" in page and "<b>" not in page.replace("<body", "")
    assert "background:#ff0000" in page and "background:#0000ff" in page
    assert ">pad<" not in page and page.count("<span") == 2
    assert "<script" not in page and "http" not in page
    path = visualize.save_token_html([0.5], ["x"], tmp_path / "t.html")
    assert Path(path).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(FileExistsError):
        visualize.save_token_html([0.5], ["x"], tmp_path / "t.html")
    with pytest.raises(ValueError, match="2 tokens but 3 relevance values"):
        visualize.token_heatmap([1.0, 2.0, 3.0], ["a", "b"])
