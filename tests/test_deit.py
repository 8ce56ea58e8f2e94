"""keras_hub's DeiT walked inside, and the walk of layer calls whose outputs hold None.

DeiT's encoder blocks return ``(x, None)`` (a slot for attention weights), which Keras
refuses in a symbolic node's outputs; the walker records such calls with their tensor
outputs only (``_compat.none_outputs_allowed``). The AttnLRP and CP-LRP maps of keras_hub's
``DeiTImageClassifier`` (tiny config, random weights) are checked against a float64 numpy
re-implementation of the rules written here from the paper's formulas and keras_hub's DeiT
source (``keras_hub/src/models/deit``): patches → Conv2D (ε) → [class token, distillation
token, patches] + positions (ε-add, the positions absorb their share) → pre-LN blocks
(LayerNorm with 1/σ constant, attention with the softmax rule and the uniform ε rule on
Q·Kᵀ and A·V, residual ε-adds, Dense with GELU: identity on GELU) → LayerNorm → the class
token's row → Dense. keras_hub's classifier reads the class token only (``pooling="token"``:
``x[:, 0]``); the distillation token is a token of the sequence, not a second head.
"""

from __future__ import annotations

import threading

import coverage_any_model as any_model  # benchmarks/, on pytest's pythonpath
import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from tf_clrp import _compat, create_analyzer, rules
from tf_clrp.errors import ModelStructureError, TfClrpError

keras_hub = pytest.importorskip("keras_hub")

LINEAR_EPSILON = 1e-6  # ε of Dense/Conv/LayerNorm rules and of CP-LRP's A·V
ADD_EPSILON = 1e-8  # residual and position adds
PRODUCT_EPSILON = 1e-8  # Q·Kᵀ, A·V (AttnLRP)
R_MIN = 0.999
TOTAL_RTOL = 1e-4


def _deit() -> keras.Model:
    """The tiny DeiT of the coverage matrix (``coverage_any_model.deit``)."""
    return any_model.deit().model


def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(24).random((n, 32, 32, 3), dtype=np.float32)


# ------------------------------------------------------------------ float64 numpy reference
def _f64(v) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(v), np.float64)


class NumpyDeiT:
    """AttnLRP (or CP-LRP) of keras_hub's DeiTImageClassifier in float64 numpy.

    ``mistake`` plants a plausible error to show the comparison catches it: "no_distillation"
    drops the distillation token from the sequence (a ViT's layout), "softmax_no_bias_term"
    leaves out the −p·ΣR term of the softmax rule.
    """

    def __init__(self, model: keras.Model, cp: bool = False, mistake: str = "") -> None:
        backbone = model.backbone
        embed = backbone.get_layer("deit_patching_and_embedding")
        encoder = backbone.get_layer("deit_encoder")
        self.patch = embed.patch_size
        self.conv_kernel = _f64(embed.patch_embedding.kernel)
        self.conv_bias = _f64(embed.patch_embedding.bias)
        self.tokens = np.concatenate([_f64(embed.class_token), _f64(embed.distillation_token)], 1)
        self.position = _f64(embed.position_embedding)
        self.blocks = [self._block(b) for b in encoder.encoder_layers]
        self.final_ln = self._ln(encoder.layer_norm)
        self.head = (_f64(model.output_dense.kernel), _f64(model.output_dense.bias))
        self.cp, self.mistake = cp, mistake

    @staticmethod
    def _ln(layer) -> tuple[np.ndarray, np.ndarray, float]:
        return _f64(layer.gamma), _f64(layer.beta), float(layer.epsilon)

    def _block(self, block) -> dict:
        mha = block.mha

        def dense(layer):
            return _f64(layer.kernel), _f64(layer.bias)

        return {
            "ln1": self._ln(block.layer_norm_1),
            "ln2": self._ln(block.layer_norm_2),
            "q": dense(mha.query_dense),
            "k": dense(mha.key_dense),
            "v": dense(mha.value_dense),
            "o": dense(mha.output_dense),
            "mlp": dense(block.mlp.dense),
            "out": dense(block.output_layer.dense),
        }

    # each returns (output, backward: R_out -> R_in)
    @staticmethod
    def linear(x, kernel, bias):
        z = x @ kernel + bias
        return z, lambda r: x * ((r / (z + LINEAR_EPSILON)) @ kernel.T)

    @staticmethod
    def add(a, b):
        z = a + b
        return z, lambda r: (a * r / (z + ADD_EPSILON), b * r / (z + ADD_EPSILON))

    @staticmethod
    def product(a, b):
        """a @ b: the ε rule on the doubled output, half of the relevance to each factor."""
        z = a @ b

        def back(r):
            s = r / (2.0 * z + PRODUCT_EPSILON)
            return a * (s @ np.swapaxes(b, -1, -2)), b * (np.swapaxes(a, -1, -2) @ s)

        return z, back

    def softmax(self, s):
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        if self.mistake == "softmax_no_bias_term":
            return p, lambda r: s * r
        return p, lambda r: s * (r - p * r.sum(-1, keepdims=True))

    @staticmethod
    def layer_norm(x, params):
        gamma, beta, eps = params
        mean = x.mean(-1, keepdims=True)
        std = np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
        y = (x - mean) / std * gamma + beta

        def back(r):  # ε rule on x -> (x − mean x)·γ/σ with σ constant, β in y
            s = r / (y + LINEAR_EPSILON) * gamma / std
            return x * (s - s.mean(-1, keepdims=True))

        return y, back

    def attention(self, x, w):
        b, t, d = x.shape
        heads, key_dim = w["q"][0].shape[1:]
        steps = []

        def project(part):
            kernel, bias = w[part]
            y, back = self.linear(x, kernel.reshape(d, -1), bias.reshape(-1))
            steps.append(back)
            return y.reshape(b, t, heads, key_dim).transpose(0, 2, 1, 3)

        q, k, v = project("q"), project("k"), project("v")
        q = q / np.sqrt(key_dim)  # identity
        scores, back_scores = self.product(q, np.swapaxes(k, -1, -2))
        p, back_softmax = self.softmax(scores)
        self.attention_weights.append(p)
        if self.cp:  # CP-LRP: A a constant, the ε rule gives all relevance to V

            def back_av(r):
                s = r / (o + LINEAR_EPSILON)
                return None, v * (np.swapaxes(p, -1, -2) @ s)

            o = p @ v
        else:
            o, back_av = self.product(p, v)
        merged = o.transpose(0, 2, 1, 3).reshape(b, t, -1)
        kernel, bias = w["o"]
        out, back_out = self.linear(merged, kernel.reshape(-1, d), bias)

        def back(r):
            r = back_out(r).reshape(b, t, heads, key_dim).transpose(0, 2, 1, 3)
            r_p, r_v = back_av(r)
            per_head = [np.zeros_like(r_v), np.zeros_like(r_v), r_v]
            if not self.cp:
                r_q, r_kt = back_scores(back_softmax(r_p))
                per_head[:2] = r_q, np.swapaxes(r_kt, -1, -2)
            return sum(
                step(rel.transpose(0, 2, 1, 3).reshape(b, t, -1))
                for rel, step in zip(per_head, steps)
            )

        return out, back

    def relevance(self, x: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, input relevance with the logit of ``classes`` as seed)."""
        x = np.asarray(x, np.float64)
        self.attention_weights: list[np.ndarray] = []
        n, hh, ww, c = x.shape
        ph, pw = self.patch
        patches = x.reshape(n, hh // ph, ph, ww // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(n, (hh // ph) * (ww // pw), ph * pw * c)
        kernel = self.conv_kernel.reshape(-1, self.conv_kernel.shape[-1])
        h, back_patch = self.linear(patches, kernel, self.conv_bias)
        tokens, position = self.tokens, self.position
        if self.mistake == "no_distillation":
            tokens, position = tokens[:, :1], position[:, [0, *range(2, position.shape[1])]]
        n_tokens = tokens.shape[1]
        h = np.concatenate([np.broadcast_to(tokens, (n, *tokens.shape[1:])), h], 1)
        h, back_pos = self.add(h, np.broadcast_to(position, h.shape))
        backs = []
        for w in self.blocks:
            ln1, back_ln1 = self.layer_norm(h, w["ln1"])
            a, back_att = self.attention(ln1, w)
            h1, back_add1 = self.add(a, h)
            ln2, back_ln2 = self.layer_norm(h1, w["ln2"])
            m1, back_m1 = self.linear(ln2, *w["mlp"])
            g = 0.5 * m1 * (1.0 + erf(m1 / np.sqrt(2.0)))  # exact GELU: identity rule
            m2, back_m2 = self.linear(g, *w["out"])
            h, back_add2 = self.add(m2, h1)
            backs.append((back_ln1, back_att, back_add1, back_ln2, back_m1, back_m2, back_add2))
        y, back_final = self.layer_norm(h, self.final_ln)
        logits, back_head = self.linear(y[:, 0], *self.head)

        seed = np.zeros_like(logits)
        seed[np.arange(n), classes] = logits[np.arange(n), classes]
        r = np.zeros_like(y)
        r[:, 0] = back_head(seed)
        r = back_final(r)
        for back_ln1, back_att, back_add1, back_ln2, back_m1, back_m2, back_add2 in backs[::-1]:
            r_m2, r_h1 = back_add2(r)
            r_h1 = r_h1 + back_ln2(back_m1(back_m2(r_m2)))
            r_a, r_h = back_add1(r_h1)
            r = r_h + back_ln1(back_att(r_a))
        r, _ = back_pos(r)
        r = back_patch(r[:, n_tokens:])  # the tokens are constants: their share is dropped
        r = r.reshape(n, hh // ph, ww // pw, ph, pw, c).transpose(0, 1, 3, 2, 4, 5)
        return logits, r.reshape(x.shape)


def _disagreement(maps: np.ndarray, reference: np.ndarray, total_of_mass: bool = False) -> str:
    """ "" if every sample has Pearson r ≥ R_MIN and a total within TOTAL_RTOL of the
    reference's total (``total_of_mass``: of its Σ|R|), else why not."""
    maps = np.asarray(maps, np.float64).reshape(len(reference), -1)
    reference = reference.reshape(len(reference), -1)
    for i, (m, r) in enumerate(zip(maps, reference)):
        if not np.all(np.isfinite(m)):
            return f"sample {i}: non-finite values"
        corr = np.corrcoef(m, r)[0, 1]
        if corr < R_MIN:
            return f"sample {i}: Pearson r = {corr:.6f} < {R_MIN}"
        scale = np.abs(r).sum() if total_of_mass else abs(r.sum())
        if abs(m.sum() - r.sum()) > TOTAL_RTOL * scale:
            return f"sample {i}: Σ map {m.sum():.7g} vs reference {r.sum():.7g}"
    return ""


@pytest.fixture(scope="module")
def deit() -> keras.Model:
    return _deit()


def test_reference_logits_equal_keras(deit):
    x = _images()
    logits, _ = NumpyDeiT(deit).relevance(x, np.zeros(len(x), int))
    want = deit(x).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name,cp", [("attnlrp", False), ("attnlrp.cp", True)])
def test_attnlrp_on_deit_matches_the_numpy_reference(deit, name, cp):
    """Measured: Pearson r ≥ 1 − 5e-8; totals within 6e-5 of the reference's (AttnLRP).
    CP-LRP's total for sample 3 nearly cancels (0.025 of Σ|R| = 15), so float32 round-off
    (4.5e-5, as on the other samples) is 2e-3 of it: its totals are held to 1e-4 of Σ|R|."""
    x = _images()
    classes = np.array([0, 1, 3, 4])
    maps = create_analyzer(name, deit).analyze(x, neuron_selection=classes)
    _, reference = NumpyDeiT(deit, cp=cp).relevance(x, classes)
    assert maps.shape == x.shape
    problem = _disagreement(maps, reference, total_of_mass=cp)
    assert not problem, f"{name}: {problem}"
    assert np.abs(maps).max() > 0


@pytest.mark.parametrize("mistake", ["no_distillation", "softmax_no_bias_term"])
def test_a_planted_mistake_in_the_reference_is_caught(deit, mistake):
    """The comparison can fail: a reference with one plausible mistake disagrees."""
    x = _images()
    classes = np.array([0, 1, 3, 4])
    maps = create_analyzer("attnlrp", deit).analyze(x, neuron_selection=classes)
    _, wrong = NumpyDeiT(deit, mistake=mistake).relevance(x, classes)
    assert _disagreement(maps, wrong)


@pytest.mark.parametrize("name", ["clrp", "sglrp"])
def test_contrastive_maps_on_deit_are_finite(deit, name):
    maps = create_analyzer(name, deit).analyze(_images(), neuron_selection=np.array([0, 1, 3, 4]))
    assert np.isfinite(maps).all() and np.abs(maps).max() > 0


def test_attention_rollout_on_deit_reads_the_class_token_row(deit):
    """Rollout of the reference's attention weights: the class token's row, the class and
    distillation tokens' columns dropped, each patch spread over its 8×8×3 pixels."""
    x = _images()
    maps = create_analyzer("attention_rollout", deit).analyze(x, neuron_selection=0)
    reference = NumpyDeiT(deit)
    reference.relevance(x, np.zeros(len(x), int))
    rolled = None
    for p in reference.attention_weights:
        a = p.mean(1) + np.eye(p.shape[-1])
        a /= a.sum(-1, keepdims=True)
        rolled = a if rolled is None else a @ rolled
    row = rolled[:, 0, 2:].reshape(len(x), 4, 4) / (8 * 8 * 3)
    want = np.repeat(np.repeat(row, 8, axis=1), 8, axis=2)[..., None].repeat(3, axis=3)
    np.testing.assert_allclose(maps, want, rtol=1e-5, atol=1e-7)


def test_deit_is_unchanged_by_the_analyzers():
    model = _deit()
    layers = model._flatten_layers(include_self=True)
    nodes = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    config = model.get_config()
    weights = [w.copy() for w in model.get_weights()]
    x = _images(1)
    before = model(x).numpy()
    for name in ("attnlrp", "attnlrp.cp", "clrp", "sglrp"):
        create_analyzer(name, model)
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == nodes
    assert model.get_config() == config
    for a, b in zip(model.get_weights(), weights, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(model(x).numpy(), before)
    # Keras itself still refuses None outputs outside the walk
    with pytest.raises(ValueError, match="All operation outputs must be tensors"):
        _WithNone(3)(keras.Input((4,)))


# ------------------------------------------------------------------ the walker, unit tests
class _WithNone(keras.layers.Layer):
    """A block with None among its outputs: ``(dense(x), None)`` like DeiT's encoder blocks,
    or ``(None, dense(x), x)`` (a None first, then two tensors that must not trade places)."""

    def __init__(self, units: int, none_first: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.none_first = none_first
        self.returns_none = True

    def build(self, input_shape) -> None:
        self.dense = keras.layers.Dense(self.units, activation="relu", name="dense")
        self.dense.build(input_shape)

    def call(self, x):
        y = self.dense(x)
        first = None if self.returns_none else y  # returns_none=False: a tensor in its place
        return (first, y, x) if self.none_first else (y, first)


class _Stack(keras.layers.Layer):
    """Two ``_WithNone`` blocks; returns (x, an empty constant), like DeiT's encoder."""

    def build(self, input_shape) -> None:
        self.blocks = [
            _WithNone(input_shape[-1], none_first=i == 1, name=f"block_{i}") for i in range(2)
        ]
        for block in self.blocks:
            block.build(input_shape)

    def call(self, x):
        x, _ = self.blocks[0](x)
        _, y, skip = self.blocks[1](x)
        return keras.ops.concatenate([y, skip], axis=-1), keras.ops.zeros((0, 3))


def _stacked(reads_constant: bool = False) -> keras.Model:
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, name="first")(inp)
    h, empty = _Stack(name="stack")(h)
    if reads_constant:
        h = keras.layers.Concatenate(name="reader")([h, keras.ops.sum(empty) + 0.0 * h])
    out = keras.layers.Dense(3, name="last")(h)
    model = keras.Model(inp, out)
    for w in model.weights:  # non-zero biases
        w.assign(np.random.default_rng(3).normal(0, 0.5, w.shape).astype("float32"))
    return model


def _plain_twin(model: keras.Model) -> keras.Model:
    """The same function without the tuple-returning layers."""
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, name="first")(inp)
    h = keras.layers.Dense(6, activation="relu", name="dense_0")(h)
    h = keras.layers.Concatenate()([keras.layers.Dense(6, activation="relu", name="dense_1")(h), h])
    out = keras.layers.Dense(3, name="last")(h)
    twin = keras.Model(inp, out)
    stack = model.get_layer("stack")
    sources = [model.get_layer("first"), *(b.dense for b in stack.blocks), model.get_layer("last")]
    targets = [twin.get_layer("first"), *(twin.get_layer(f"dense_{i}") for i in range(2))]
    for source, target in zip(sources, [*targets, twin.get_layer("last")], strict=True):
        target.set_weights(source.get_weights())
    return twin


def test_a_layer_returning_none_is_walked_inside():
    model = _stacked()
    x = np.random.default_rng(4).normal(size=(7, 5)).astype("float32")
    analyzer = create_analyzer("lrp.epsilon", model)
    names = [n.name for n in analyzer.graph.nodes]
    assert "stack/block_0/dense" in names and "stack/block_1/dense" in names, names
    assert not any(n.untraced for n in analyzer.graph.nodes)
    twin = _plain_twin(model)
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)
    got = analyzer.analyze(x, neuron_selection=1)
    want = create_analyzer("lrp.epsilon", twin).analyze(x, neuron_selection=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.abs(got).max() > 0
    # the Keras nodes of the walk are gone from the user's layers
    stack = model.get_layer("stack")
    assert all(len(b._inbound_nodes) == 0 for b in stack.blocks)


def test_a_none_or_constant_output_the_model_reads_is_refused_naming_the_layer():
    model = _stacked(reads_constant=True)
    with pytest.raises(TfClrpError) as caught:
        create_analyzer("lrp.epsilon", model)
    message = str(caught.value)
    assert "'stack'" in message and "output 1" in message and "reads it" in message, message


class _NoneWhenSymbolic(keras.layers.Layer):
    """Returns a tensor as its second output when Keras builds the model, None when its call
    runs on symbolic tensors (the walker's trace)."""

    def call(self, x):
        return x * 2.0, None if isinstance(x, keras.KerasTensor) else x + 1.0


def test_a_none_where_the_model_reads_a_tensor_is_refused_naming_the_layer():
    inp = keras.Input((4,))
    a, b = _NoneWhenSymbolic(name="odd")(inp)
    out = keras.layers.Dense(2, name="last")(keras.layers.Concatenate(name="join")([a, b]))
    model = keras.Model(inp, out)
    with pytest.raises(TfClrpError, match=r"'odd'.*output 1 is None.*'join' reads it"):
        create_analyzer("lrp.epsilon", model)


def test_a_layer_returning_none_collapsed_to_one_node_runs_its_tensor_outputs():
    """With a rule of its own (``layer_rules``) a block is one node again: it runs its call
    and keeps the tensor output; a later call that returns a tensor where the trace saw None
    is refused, naming the layer (never a tensor dropped or shifted in silence)."""
    model = _stacked()
    x = np.random.default_rng(6).normal(size=(2, 5)).astype("float32")
    analyzer = create_analyzer("lrp.epsilon", model, layer_rules={"block_1": rules.Gradient()})
    whole = analyzer.mirror.graph.find("block_1")
    assert whole.kind == "_WithNone" and len(whole.outputs) == 2
    np.testing.assert_allclose(
        analyzer.mirror(tf.constant(x), []).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6
    )
    assert np.isfinite(analyzer.analyze(x, neuron_selection=0)).all()
    fresh = create_analyzer("lrp.epsilon", model, layer_rules={"block_1": rules.Gradient()})
    model.get_layer("stack").blocks[1].returns_none = False  # now (y, y, x), not (None, y, x)
    with pytest.raises(
        ModelStructureError,
        match=r"'block_1'.*\(tensor, tensor, tensor\).*\(None, tensor, tensor\)",
    ):
        fresh.analyze(x, neuron_selection=0)


def test_gradient_through_the_walked_none_layer_equals_autodiff():
    model = _stacked()
    x = np.random.default_rng(5).normal(size=(3, 5)).astype("float32")
    got = create_analyzer("gradient", model).analyze(x, neuron_selection=2)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt)[:, 2]
    np.testing.assert_allclose(got, tape.gradient(score, xt).numpy(), rtol=1e-5, atol=1e-7)


def test_other_threads_keep_keras_refusal_of_none_outputs_during_a_trace():
    """The swapped Node class is process-wide while a trace runs; a model built in another
    thread meanwhile must still get Keras' refusal, not a silently accepted None output."""
    outcome: dict[str, str] = {}

    def build_elsewhere() -> None:
        try:
            _WithNone(3)(keras.Input((4,)))
            outcome["result"] = "accepted"
        except ValueError as error:
            outcome["result"] = str(error)

    with _compat.none_outputs_allowed():
        worker = threading.Thread(target=build_elsewhere)
        worker.start()
        worker.join()
        # this thread (the trace's) still records the tensor leaves only
        out = _WithNone(3)(keras.Input((4,)))
        assert out[1] is None
    assert "All operation outputs must be tensors" in outcome["result"], outcome
