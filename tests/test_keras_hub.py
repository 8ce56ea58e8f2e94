"""keras_hub transformers (tiny configs, random weights, built offline).

gradient == autodiff of the model on each; every engine analyzer either explains the model
(its mirrored forward equals the model's output, maps finite and non-zero) or refuses with an
error naming the layer or op.
"""

from __future__ import annotations

import warnings

import coverage_any_model as any_model  # benchmarks/, on pytest's pythonpath
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_clrp import create_analyzer, list_analyzers
from tf_clrp.errors import TfClrpError

keras_hub = pytest.importorskip("keras_hub")

#: Engine analyzers (the model-agnostic ones take no graph: occlusion, prediction difference,
#: RISE).
ENGINE_ANALYZERS = [
    n for n in list_analyzers() if n not in ("occlusion", "prediction_difference", "rise")
]
#: Options an analyzer cannot be created without.
REQUIRED = {"deep_taylor.bounded": {"low": -1.0, "high": 1.0}, "lrp": {"rule": None}}


def _vit() -> keras.Model:
    return any_model.vit().model


def _deit() -> keras.Model:
    return any_model.deit().model


def _bert() -> keras.Model:
    return any_model.bert().model


def _images(n: int = 5) -> np.ndarray:
    """Not 2 or 3 images: layers that read the batch size are traced at those sizes
    (``tracing.TRACE_BATCH_SIZES``), so other sizes test the run-time rewrite."""
    return np.random.default_rng(24).random((n, 32, 32, 3), dtype=np.float32)


def _text() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(25)
    mask = np.ones((2, 8), np.int32)
    mask[0, 5:] = 0
    return {
        "token_ids": rng.integers(1, 50, (2, 8)).astype(np.int32) * mask,
        "segment_ids": np.zeros((2, 8), np.int32),
        "padding_mask": mask,
    }


@pytest.mark.parametrize("make", [_vit, _deit], ids=["vit", "deit"])
def test_gradient_equals_autodiff_on_image_transformers(make):
    model = make()
    x = _images()
    got = create_analyzer("gradient", model).analyze(x, neuron_selection=3)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt)[:, 3]
    want = tape.gradient(score, xt).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    assert np.abs(got).max() > 0


def test_input_times_gradient_on_bert_tokens_equals_autodiff():
    """Reference: the gradient of the token-embedding table, whose IndexedSlices hold one
    row per position (the gradient at the embedding output), times the embeddings."""
    model = _bert()
    batch = _text()
    got = create_analyzer("input_t_gradient", model, input_name="token_ids").analyze(
        batch, neuron_selection=0
    )
    table = model.backbone.token_embedding.embeddings
    with tf.GradientTape() as tape:
        score = model({k: tf.constant(v) for k, v in batch.items()})[:, 0]
    slices = tape.gradient(score, table)
    grad = tf.reshape(slices.values, (2, 8, -1)).numpy()
    ids = tf.reshape(slices.indices, (2, 8)).numpy()
    np.testing.assert_array_equal(ids, batch["token_ids"])
    embedded = tf.gather(table, batch["token_ids"]).numpy()
    want = (embedded * grad).sum(-1) * batch["padding_mask"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    assert got.shape == (2, 8) and np.all(got[0, 5:] == 0.0) and np.abs(got).max() > 0


def _mirrored_output(analyzer, x, feeds=()):
    return analyzer.mirror(tf.constant(x), [tf.constant(f) for f in feeds]).numpy()


@pytest.mark.parametrize(
    "make",
    # DeiT's default-suite checks are in test_deit.py (AttnLRP against float64 numpy)
    [_vit, pytest.param(_deit, marks=pytest.mark.slow), _bert],
    ids=["vit", "deit", "bert"],
)
def test_every_analyzer_works_or_names_what_it_refuses(make):
    from tf_clrp import inputs

    model = make()
    is_text = make is _bert
    options = {"input_name": "token_ids"} if is_text else {}
    batch = _text() if is_text else _images(1)
    worked, refused = [], []
    for name in ENGINE_ANALYZERS:
        kwargs = {**options, **REQUIRED.get(name, {})}
        if name == "lrp":
            kwargs["rule"] = __import__("tf_clrp").rules.Epsilon()
        try:
            analyzer = create_analyzer(name, model, **kwargs)
        except TfClrpError as error:
            message = str(error)  # names the op/layer (path), or the unsupported inputs
            assert (
                "layer '" in message
                or "several inputs" in message
                or "a CAM is undefined" in message
            ), message
            refused.append(name)
            continue
        split = inputs.split_batch(batch, analyzer.graph)
        x = (
            inputs.embed(analyzer.graph, split.explained)
            if analyzer.graph.embedding
            else split.explained
        )
        if hasattr(analyzer, "mirror"):  # CAMs run the traced graph, not a mirrored model
            expected = model(batch).numpy()
            mirrored = _mirrored_output(analyzer, x, split.feeds)
            if getattr(analyzer.mirror.graph, "virtual_outputs", None) == "negated":
                # CLRP's negated twins follow the real units: [z, -z]
                np.testing.assert_array_equal(
                    mirrored[:, expected.shape[1] :], -mirrored[:, : expected.shape[1]]
                )
                mirrored = mirrored[:, : expected.shape[1]]
            np.testing.assert_allclose(
                mirrored, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            maps = analyzer.analyze(batch, neuron_selection=1)
        if any(
            "does not depend on the feature map of layer '" in str(w.message) for w in caught
        ):  # a CAM on a grid the output does not depend on: warned
            refused.append(name)
            continue
        assert np.isfinite(maps).all() and np.abs(maps).max() > 0, name
        worked.append(name)
    assert {"gradient", "input_t_gradient", "integrated_gradients", "smoothgrad"} <= set(worked)
    assert "lrp.epsilon" in refused  # ε has no rule for attention products; AttnLRP has
    # DeiT's encoder blocks return (x, None): walked inside like the others
    assert {"attnlrp", "attnlrp.cp", "clrp", "sglrp"} <= set(worked), worked


@pytest.mark.parametrize("make", [_vit, _deit, _bert], ids=["vit", "deit", "bert"])
def test_explaining_keras_hub_models_leaves_them_untouched(make):
    model = make()
    layers = model._flatten_layers(include_self=True)
    before = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    options = {"input_name": "token_ids"} if make is _bert else {}
    create_analyzer("gradient", model, **options)
    with pytest.raises(TfClrpError):
        create_analyzer("lrp.epsilon", model, **options)
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == before
    assert model.get_config() == config
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "make,patching",
    [(_vit, "vit_patching_and_embedding"), (_deit, "deit_patching_and_embedding")],
    ids=["vit", "deit"],
)
def test_patch_embedding_is_walked_inside_at_any_batch_size(make, patching):
    """The patching layers tile their class token to ``ops.shape(x)[0]`` and reshape to
    (batch, -1, dim): walked inside, their graph runs at batch sizes it was not traced at."""
    model = make()
    analyzer = create_analyzer("gradient", model)
    names = [n.name for n in analyzer.graph.nodes]
    inside = [n for n in names if f"/{patching}/" in n]
    assert any(n.endswith("/patch_embedding") for n in inside), names
    assert any("/concatenate" in n for n in inside), inside  # class token(s) prepended
    for n in (1, 4):
        x = _images(n)
        np.testing.assert_allclose(
            _mirrored_output(analyzer, x),
            model(x).numpy(),
            rtol=1e-5,
            atol=1e-5 * np.abs(model(x).numpy()).max(),
        )


def test_lrp_on_vit_refuses_the_attention_product_not_the_patching():
    with pytest.raises(
        TfClrpError,
        match=r"/mha/dot_product_attention(_\d+)?' "
        r"\(DotProductAttention, group 'bilinear'\)",
    ):
        create_analyzer("lrp.epsilon", _vit())


def test_lrp_on_bert_refuses_the_attention_product_not_the_embeddings():
    """keras_hub's PositionEmbedding depends on its input's shape only (a constant for
    relevance); the first op without a rule is the attention score einsum."""
    model = _bert()
    graph = create_analyzer("gradient", model, input_name="token_ids").graph
    position = graph.find("position_embedding")
    assert position.group == "embedding" and "shapes only" in position.untraced
    with pytest.raises(
        TfClrpError,
        match=r"self_attention_layer/einsum(_\d+)?' "
        r"\(Einsum, group 'bilinear'\)",
    ):
        create_analyzer("lrp.epsilon", model, input_name="token_ids")


def test_changed_class_token_after_creation_is_refused():
    """The tiled class token is a constant of the traced graph: changing the weight it
    came from must not give maps of the old model."""
    model = _vit()
    x = _images(1)
    analyzer = create_analyzer("guided_backprop", model)
    analyzer.analyze(x, neuron_selection=0)
    token = next(w for w in model.weights if w.path.endswith("class_token"))
    token.assign(token.numpy() + 1.0)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match="class_token.*vit_patching_and_embedding.*create the analyzer",
    ):
        analyzer.analyze(x, neuron_selection=0)
    fresh = create_analyzer("guided_backprop", model)
    np.testing.assert_allclose(
        _mirrored_output(fresh, x),
        model(x).numpy(),
        rtol=1e-5,
        atol=1e-5 * np.abs(model(x).numpy()).max(),
    )


def test_a_rule_for_the_whole_attention_layer_collapses_it():
    """The error messages' advice, ``layer_rules={'MultiHeadAttention': <Rule>}``: every node
    walked inside the layer (its projections included) becomes the one layer call again (the
    projections once lost that mark in the canonizers: a partial collapse, a KeyError)."""
    model = _vit()
    x = _images(2)
    analyzer = create_analyzer(
        "lrp.epsilon",
        model,
        layer_rules={"MultiHeadAttention": __import__("tf_clrp").rules.Gradient()},
    )
    inside = [n.name for n in analyzer.mirror.graph.nodes if "/mha" in n.name]
    assert inside and all(n.endswith("/mha") for n in inside), inside
    want = model(x).numpy()
    np.testing.assert_allclose(
        _mirrored_output(analyzer, x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max()
    )
    assert np.isfinite(analyzer.analyze(x, neuron_selection=1)).all()
