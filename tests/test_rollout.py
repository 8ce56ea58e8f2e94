"""attention_rollout vs a float64 numpy rollout of independently extracted attention weights.

The reference weights come from Keras itself: each ``MultiHeadAttention`` layer re-called
eagerly on its input (read from a probe model of the block's LayerNorm output) with
``return_attention_scores=True``; the rollout (mean over heads, + identity, rows
renormalised, Â_L ··· Â_1) and the mapping to pixels / tokens are re-done in numpy.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import transformer_models as tm

import tf_clrp
from tf_clrp.errors import ModelStructureError


def _vit() -> keras.Model:
    return tm.randomize(tm.build_vit(), 10)


def _text() -> keras.Model:
    return tm.randomize(tm.build_text_transformer(), 11)


def _images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, 16, 16, 1)).astype(np.float32)


def _ids(n: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 30, size=(n, 8)).astype(np.int32)


def keras_attention(
    model: keras.Model, x: np.ndarray, depth: int = 2, **call_options
) -> list[np.ndarray]:
    """Per block: (B, heads, T, T) attention weights from Keras (eager re-call)."""
    probe = keras.Model(
        model.inputs, [model.get_layer(f"block{i}_ln1").output for i in range(depth)]
    )
    outs = probe(x)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    weights = []
    for i, h in enumerate(outs):
        _, scores = model.get_layer(f"block{i}_mha")(
            h, h, return_attention_scores=True, **call_options
        )
        weights.append(np.asarray(scores, np.float64))
    return weights


def numpy_rollout(weights: list[np.ndarray]) -> np.ndarray:
    """(B, T, T) rollout in float64."""
    result = None
    for w in weights:
        a = w.mean(axis=1) + np.eye(w.shape[-1])
        a = a / a.sum(-1, keepdims=True)
        result = a if result is None else a @ result
    return result


def vit_reference(weights: list[np.ndarray], grid: int = 4, patch: int = 4) -> np.ndarray:
    row = numpy_rollout(weights)[:, 0, 1:].reshape(-1, grid, grid) / (patch * patch)
    return np.kron(row, np.ones((patch, patch)))[..., None]


def test_vit_rollout_equals_numpy_rollout_of_keras_attention():
    model, x = _vit(), _images()
    maps = tf_clrp.create_analyzer("attention_rollout", model).analyze(x)
    ref = vit_reference(keras_attention(model, x))
    assert maps.shape == x.shape and maps.dtype == np.float32
    np.testing.assert_allclose(maps, ref, rtol=1e-5, atol=1e-8)
    # the class token's row sums to 1; its own column is dropped
    assert np.all(maps.reshape(len(x), -1).sum(1) < 1.0)


def test_text_rollout_is_the_mean_over_query_tokens():
    model, ids = _text(), _ids()
    maps = tf_clrp.create_analyzer("attention_rollout", model).analyze(ids)
    ref = numpy_rollout(keras_attention(model, ids)).mean(axis=1)
    assert maps.shape == ids.shape
    np.testing.assert_allclose(maps, ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps.sum(1), 1.0, rtol=1e-6)


def test_a_wrong_class_token_option_is_a_clear_error():
    # without the class token, 17 tokens do not tile the 16x16 image with square patches
    vit = tf_clrp.create_analyzer("attention_rollout", _vit(), class_token=False)
    with pytest.raises(ModelStructureError, match="17 tokens do not form a grid"):
        vit.analyze(_images(2))
    # reading token 0 of a text model leaves 7 of its 8 tokens
    text = tf_clrp.create_analyzer("attention_rollout", _text(), class_token=True)
    with pytest.raises(ModelStructureError, match="7 tokens do not map onto"):
        text.analyze(_ids(2))


def _small_attention_model(**mha_options) -> keras.Model:
    """Token vectors → (LN → MHA(**options) → Add) twice → mean → Dense."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 8))
    x = inputs
    for i in range(2):
        h = keras.layers.LayerNormalization(name=f"block{i}_ln1")(x)
        h = keras.layers.MultiHeadAttention(2, 4, name=f"block{i}_mha", **mha_options)(h, h)
        x = keras.layers.Add()([x, h])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_dropout_layers_read_the_softmax_node():
    """With dropout the layer computes einsum + Softmax (no fused op); inference ignores it."""
    model = _small_attention_model(dropout=0.3)
    x = np.random.default_rng(2).normal(size=(2, 6, 8)).astype(np.float32)
    analyzer = tf_clrp.create_analyzer("attention_rollout", model)
    assert all(site.weights is not None for site in analyzer.sites)
    ref = numpy_rollout(keras_attention(model, x)).mean(axis=1)
    maps = analyzer.analyze(x)
    np.testing.assert_allclose(maps.sum(-1), ref, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(maps, np.repeat(ref[..., None] / 8, 8, axis=-1), rtol=1e-5)


def test_causal_attention_is_masked():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((5, 8))
    x = inputs
    for i in range(2):
        h = keras.layers.LayerNormalization(name=f"block{i}_ln1")(x)
        h = keras.layers.MultiHeadAttention(2, 4, name=f"block{i}_mha")(h, h, use_causal_mask=True)
        x = keras.layers.Add()([x, h])
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    x = np.random.default_rng(3).normal(size=(2, 5, 8)).astype(np.float32)
    analyzer = tf_clrp.create_analyzer("attention_rollout", model)
    assert all(site.causal for site in analyzer.sites)
    ref = numpy_rollout(keras_attention(model, x, use_causal_mask=True)).mean(axis=1)
    np.testing.assert_allclose(analyzer.analyze(x).sum(-1), ref, rtol=1e-5, atol=1e-8)


def test_maps_do_not_depend_on_the_explained_class():
    model, x = _vit(), _images(2)
    analyzer = tf_clrp.create_analyzer("attention_rollout", model)
    np.testing.assert_array_equal(
        analyzer.analyze(x, neuron_selection=0), analyzer.analyze(x, neuron_selection=3)
    )


def test_rollout_leaves_the_model_untouched():
    model = _vit()
    layers = model._flatten_layers(include_self=True)
    before = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    tf_clrp.create_analyzer("attention_rollout", model).analyze(_images(2))
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == before
    assert model.get_config() == config
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_a_model_without_attention_is_refused():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    with pytest.raises(ModelStructureError, match="needs keras.layers.MultiHeadAttention"):
        tf_clrp.create_analyzer("attention_rollout", model)


def test_rule_options_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        tf_clrp.create_analyzer("attention_rollout", _vit(), layer_rules={})


def test_keras_hub_vit_rollout_reads_every_encoder_block():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(21)
    body = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    model = keras_hub.models.ViTImageClassifier(backbone=body, num_classes=5, preprocessor=None)
    x = np.random.default_rng(4).random((2, 32, 32, 3)).astype(np.float32)
    analyzer = tf_clrp.create_analyzer("attention_rollout", model)
    assert len(analyzer.sites) == 2
    maps = analyzer.analyze(x)
    assert maps.shape == x.shape and np.all(np.isfinite(maps))
    # class token row, 16 patches of 8×8×3 pixels: constant within a patch, mass < 1
    patches = maps.reshape(2, 4, 8, 4, 8, 3)
    assert np.allclose(patches, patches[:, :, :1, :, :1, :1])
    assert np.all((maps.reshape(2, -1).sum(1) > 0) & (maps.reshape(2, -1).sum(1) < 1))


def test_keras_hub_bert_rollout_reads_the_softmax_and_zeroes_padding():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(23)
    body = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    model = keras_hub.models.BertTextClassifier(backbone=body, num_classes=3, preprocessor=None)
    mask = np.ones((2, 8), np.int32)
    mask[1, 6:] = 0
    batch = {
        "token_ids": np.random.default_rng(5).integers(1, 50, (2, 8)),
        "segment_ids": np.zeros((2, 8), np.int32),
        "padding_mask": mask,
    }
    analyzer = tf_clrp.create_analyzer("attention_rollout", model, input_name="token_ids")
    assert len(analyzer.sites) == 2 and all(s.weights is not None for s in analyzer.sites)
    maps = analyzer.analyze(batch)
    assert maps.shape == (2, 8) and np.all(maps[1, 6:] == 0) and np.all(maps[:, :6] > 0)
    np.testing.assert_allclose(maps[0].sum(), 1.0, rtol=1e-5)


def test_boolean_attention_mask_even_a_blank_row_matches_keras():
    """An explicit attention_mask reaches the fused op as a boolean input; a query row that
    may attend to nothing gets Keras' own weights (finite, no NaN)."""
    keras.utils.set_random_seed(7)
    tokens = keras.Input((5, 8), name="tokens")
    mask = keras.Input((5, 5), dtype="bool", name="mask")
    x = tokens
    for i in range(2):
        h = keras.layers.LayerNormalization(name=f"block{i}_ln1")(x)
        h = keras.layers.MultiHeadAttention(2, 4, name=f"block{i}_mha")(h, h, attention_mask=mask)
        x = keras.layers.Add()([x, h])
    model = keras.Model([tokens, mask], keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    x = np.random.default_rng(8).normal(size=(2, 5, 8)).astype(np.float32)
    allowed = np.random.default_rng(9).random((2, 5, 5)) > 0.3
    allowed[:, :, 0] = True
    allowed[1, 2, :] = False  # query 2 of sample 1 may attend to nothing
    analyzer = tf_clrp.create_analyzer("attention_rollout", model, input_name="tokens")
    assert all(site.mask is not None for site in analyzer.sites)
    maps = analyzer.analyze({"tokens": x, "mask": allowed})
    probe = keras.Model(model.inputs, [model.get_layer(f"block{i}_ln1").output for i in range(2)])
    weights = [
        np.asarray(
            model.get_layer(f"block{i}_mha")(
                h, h, attention_mask=allowed, return_attention_scores=True
            )[1],
            np.float64,
        )
        for i, h in enumerate(probe([x, allowed]))
    ]
    # The model's own (fused) forward gives a blank row uniform weights; the Softmax layer
    # that return_attention_scores goes through zeroes it instead. Rollout follows the model.
    for w in weights:
        np.testing.assert_array_equal(w[1, :, 2], 0.0)
        w[1, :, 2] = 1.0 / 5
    assert np.all(np.isfinite(maps))
    np.testing.assert_allclose(
        maps.sum(-1), numpy_rollout(weights).mean(axis=1), rtol=1e-5, atol=1e-8
    )
