"""AttnLRP's rules one at a time, through the real engine, against float64 numpy.

Each test builds a tiny Keras model around one operation, explains it with
``create_analyzer("attnlrp", model)`` (or ``"attnlrp.cp"``) seeded on one output unit
(R_out = y at that unit, 0 elsewhere), and checks the relevance at the input against an
independent float64 numpy evaluation of the rule's formula (the AttnLRP paper, arXiv
2402.05602, and LXT's ``lxt/explicit/functional.py``; the stabiliser is ε·sign(z), where
LXT adds +ε):

* where the rule conserves (products without ε, the identity, Add, bias-free ε with a tiny
  ε, LayerNorm without β, RMSNorm, CP-LRP's A·V), Σ R_in = Σ R_out to 1e-5 relative;
* where it does not (a bias or β absorbs its share; the softmax rule's bias term), Σ R_in
  equals the numpy value of the non-conserving sum, and the whole R_in the numpy R_in, to
  1e-5.

The planted-mistake tests at the end patch a rule (a product that gives each factor the full
relevance, the softmax rule without −p·ΣR) and check that these tests then fail.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tf_clrp
from tf_clrp import rules_attention

RNG = np.random.default_rng(2402)
TOL = 1e-5
#: composites.attnlrp's defaults: ε of linear layers / LayerNorm / CP-LRP's A·V, of products.
EPS, PRODUCT_EPS = 1e-6, 1e-8
#: A tiny ε (the ``epsilon`` option) for the conservation checks of ε rules.
TINY_EPS = 1e-10
#: The z rule (``rules.Norm``) on parameter-free sums.
ADD_EPS = 1e-9


def _stab(z: np.ndarray, eps: float) -> np.ndarray:
    """z + ε·sign(z), sign(0) = +1 (the engine's stabiliser)."""
    return z + np.where(z >= 0, eps, -eps)


def _seed(y: np.ndarray, index: int) -> np.ndarray:
    """R_out: y at flat unit ``index`` of every sample, 0 elsewhere (float64)."""
    flat = y.reshape(len(y), -1).astype(np.float64)
    r = np.zeros_like(flat)
    r[:, index] = flat[:, index]
    return r.reshape(y.shape)


def _totals(r: np.ndarray) -> np.ndarray:
    return np.asarray(r, np.float64).reshape(len(r), -1).sum(1)


def assert_conserves(r_in: np.ndarray, r_out: np.ndarray, tol: float = TOL) -> None:
    """Σ R_in = Σ R_out per sample, to ``tol`` relative."""
    got, want = _totals(r_in), _totals(r_out)
    gap = np.abs(got - want) / np.abs(want)
    assert np.all(gap <= tol), f"Σ R_in {got} vs Σ R_out {want} (relative gap {gap.max():.3g})"


def assert_total(r_in: np.ndarray, expected_total: np.ndarray, tol: float = TOL) -> None:
    """Σ R_in per sample equals the numpy value of the (non-conserving) sum."""
    got = _totals(r_in)
    gap = np.abs(got - expected_total) / np.maximum(np.abs(expected_total), 1e-12)
    assert np.all(gap <= tol), f"Σ R_in {got} vs {expected_total} (relative gap {gap.max():.3g})"


def assert_map(r_in: np.ndarray, expected: np.ndarray, tol: float = TOL) -> None:
    """R_in equals the numpy R_in: max error ≤ tol · max |R_in|."""
    scale = np.abs(expected).max()
    err = np.abs(np.asarray(r_in, np.float64) - expected).max()
    assert scale > 0 and err <= tol * scale, f"max |error| {err:.3g} vs max |R| {scale:.3g}"


def _explain(
    model: keras.Model,
    x: np.ndarray | dict[str, np.ndarray],
    index: int,
    name: str = "attnlrp",
    input_name: str | None = None,
    **options: float,
) -> np.ndarray:
    if input_name is not None:
        options["input_name"] = input_name
    analyzer = tf_clrp.create_analyzer(name, model, **options)
    return np.asarray(analyzer.analyze(x, neuron_selection=index), np.float64)


def _softmax(x: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    x = x if keep is None else np.where(keep, x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_rule(x: np.ndarray, p: np.ndarray, r: np.ndarray, keep=None) -> np.ndarray:
    """AttnLRP Prop. 3.1 / LXT's softmax_fn: x ⊙ (R − p ΣR), excluded scores count as 0."""
    x = x if keep is None else np.where(keep, x, 0.0)
    return x * (r - p * r.sum(-1, keepdims=True))


def _softmax_total(x: np.ndarray, p: np.ndarray, r: np.ndarray, keep=None) -> np.ndarray:
    """Σ R_in of the softmax rule written as the sum: Σ x⊙R − Σ_rows (Σ x⊙p)·ΣR."""
    x = x if keep is None else np.where(keep, x, 0.0)
    per_row = (x * r).sum(-1) - (x * p).sum(-1) * r.sum(-1)
    return per_row.reshape(len(x), -1).sum(1)


def _epsilon_linear(x: np.ndarray, w: np.ndarray, z: np.ndarray, r: np.ndarray, eps: float):
    """LXT's linear_epsilon_fn for z = x @ w + b: x ⊙ (R / (z + ε)) Wᵀ."""
    return x * ((r / _stab(z, eps)) @ w.T)


def _layer_norm_rule(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, r: np.ndarray, eps: float, rms: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(R_in, y) of LXT's layer_norm_grad_fn (1/σ detached; variance ε 1e-3) or, ``rms``, of
    γ ⊙ x/rms by the ε rule with 1/rms held constant."""
    centred = x if rms else x - x.mean(-1, keepdims=True)
    inverse = 1.0 / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-3)
    y = gamma * centred * inverse + beta
    s = r / _stab(y, eps) * gamma * inverse  # Jᵀ(R / (y + ε)) before the centring
    return x * (s if rms else s - s.mean(-1, keepdims=True)), y


def _sum_rule(a: np.ndarray, b: np.ndarray, r: np.ndarray, eps: float) -> tuple[np.ndarray, ...]:
    """LXT's add2_tensors_fn: each operand a_i R / (a + b + ε)."""
    z = _stab(a + b, eps)
    return a * r / z, b * r / z


# ----------------------------------------------------------------------------- softmax
def check_softmax(masked: bool = False) -> None:
    """Softmax over the last axis (optionally with a boolean mask input), then Flatten (so
    the softmax is not the output activation that explanations strip)."""
    x_in = keras.Input((3, 5), name="x")
    if masked:
        m_in = keras.Input((3, 5), dtype="bool", name="mask")
        p = layers.Softmax(axis=-1)(x_in, mask=m_in)
        model = keras.Model([x_in, m_in], layers.Flatten()(p))
    else:
        model = keras.Model(x_in, layers.Flatten()(layers.Softmax(axis=-1)(x_in)))
    x = RNG.normal(0, 2, (3, 3, 5)).astype("float32")
    keep = RNG.random((3, 3, 5)) > 0.3
    keep[..., 2] = True  # every row keeps the seeded column
    index = 7  # row 1, column 2
    x64 = x.astype(np.float64)
    p = _softmax(x64, keep if masked else None)
    r_out = _seed(p, index)
    if masked:
        got = _explain(model, {"x": x, "mask": keep}, index, input_name="x")
    else:
        got = _explain(model, x, index)
    k = keep if masked else None
    assert_total(got, _softmax_total(x64, p, r_out, k))
    assert_map(got, _softmax_rule(x64, p, r_out, k))
    # the rule does not conserve: −(Σ p x)·ΣR is its bias term
    assert np.all(np.abs(_totals(got) - _totals(r_out)) > 1e-3 * np.abs(_totals(r_out)))


def test_softmax_rule() -> None:
    check_softmax()


@pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning")
def test_masked_softmax_rule() -> None:
    """Masked scores count as 0: they receive no relevance."""
    check_softmax(masked=True)


# ----------------------------------------------------------------------------- products
def _uniform_product(
    a: np.ndarray, b: np.ndarray, r: np.ndarray, eps: float = PRODUCT_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """LXT's matmul_fn for z = a @ b: each factor x ⊙ ∂z/∂xᵀ (R / (2z + ε))."""
    s = r / _stab(2 * (a @ b), eps)
    return a * (s @ np.swapaxes(b, -1, -2)), b * (np.swapaxes(a, -1, -2) @ s)


def check_query_key_product() -> None:
    """Q·Kᵀ with a ``Dot`` layer of two activations: each factor half (AttnLRP Prop. 3.3)."""
    q_in, k_in = keras.Input((4, 3), name="q"), keras.Input((5, 3), name="k")
    model = keras.Model([q_in, k_in], layers.Flatten()(layers.Dot(axes=2)([q_in, k_in])))
    q = RNG.normal(0, 1, (3, 4, 3)).astype("float32")
    k = RNG.normal(0, 1, (3, 5, 3)).astype("float32")
    index = 11
    q64, k64 = q.astype(np.float64), k.astype(np.float64)
    r_out = _seed(q64 @ np.swapaxes(k64, 1, 2), index)
    feed = {"q": q, "k": k}
    r_q = _explain(model, feed, index, input_name="q")
    r_k = _explain(model, feed, index, input_name="k")
    expected_q, expected_k = _uniform_product(q64, np.swapaxes(k64, 1, 2), r_out)
    assert_map(r_q, expected_q)
    assert_map(r_k, np.swapaxes(expected_k, 1, 2))
    assert_conserves(r_q, 0.5 * r_out)  # each factor half
    assert_conserves(r_k, 0.5 * r_out)


def test_uniform_product_on_query_key() -> None:
    check_query_key_product()


def _attention_values_model() -> keras.Model:
    """scores s → Softmax → A·V with a ``Dot`` layer (A first), then Flatten."""
    s_in, v_in = keras.Input((4, 5), name="s"), keras.Input((5, 3), name="v")
    weights = layers.Softmax(axis=-1)(s_in)
    return keras.Model([s_in, v_in], layers.Flatten()(layers.Dot(axes=(2, 1))([weights, v_in])))


def _attention_values_data(index: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    s = RNG.normal(0, 1.5, (3, 4, 5)).astype("float32")
    v = RNG.normal(0, 1, (3, 5, 3)).astype("float32")
    p = _softmax(s.astype(np.float64))
    return {"s": s, "v": v}, p, _seed(p @ v.astype(np.float64), index)


def check_attention_values() -> None:
    """A·V by the uniform rule (half to A, half to V), then the softmax rule on A's half."""
    model = _attention_values_model()
    index = 5
    feed, p, r_out = _attention_values_data(index)
    s64, v64 = feed["s"].astype(np.float64), feed["v"].astype(np.float64)
    r_v = _explain(model, feed, index, input_name="v")
    r_s = _explain(model, feed, index, input_name="s")
    r_a, expected_v = _uniform_product(p, v64, r_out)
    assert_map(r_v, expected_v)
    assert_conserves(r_v, 0.5 * r_out)
    np.testing.assert_allclose(_totals(r_a), 0.5 * _totals(r_out), rtol=TOL)  # the numpy half
    assert_total(r_s, _softmax_total(s64, p, r_a))
    assert_map(r_s, _softmax_rule(s64, p, r_a))


def test_uniform_product_on_attention_values() -> None:
    check_attention_values()


def check_gate() -> None:
    """A gating ``Multiply`` of two activations: x ⊙ g, each factor half (LXT's mul2)."""
    x_in, g_in = keras.Input((6,), name="x"), keras.Input((6,), name="g")
    model = keras.Model([x_in, g_in], layers.Multiply()([x_in, g_in]))
    x = RNG.normal(0, 1, (3, 6)).astype("float32")
    g = RNG.uniform(0.2, 1, (3, 6)).astype("float32")
    index = 4
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    z = x64 * g64
    r_out = _seed(z, index)
    half = r_out * z / _stab(2 * z, PRODUCT_EPS)
    feed = {"x": x, "g": g}
    r_x = _explain(model, feed, index, input_name="x")
    r_g = _explain(model, feed, index, input_name="g")
    assert_map(r_x, half)
    assert_map(r_g, half)
    assert_conserves(r_x + r_g, r_out)


def test_uniform_product_on_a_gate() -> None:
    check_gate()


# ----------------------------------------------------------------------------- normalisation
def _norm_model(kind: str) -> tuple[keras.Model, keras.layers.Layer]:
    x_in = keras.Input((6,), name="x")
    if kind == "rms":
        layer = layers.RMSNormalization(epsilon=1e-3)
    else:
        layer = layers.LayerNormalization(epsilon=1e-3, center=kind == "layer_beta")
    model = keras.Model(x_in, layer(x_in))
    for var in layer.weights:  # non-trivial γ (and β)
        is_scale = var.name in ("gamma", "scale")
        var.assign(RNG.normal(1.0 if is_scale else 0.0, 0.4, var.shape).astype("float32"))
    return model, layer


@pytest.mark.parametrize("kind", ["layer", "layer_beta", "rms"])
def test_layer_norm_identity(kind: str) -> None:
    """1/σ held constant, the ε rule through γ ⊙ (x − mean)/σ + β (RMSNorm: γ ⊙ x/rms):
    conserves without β; with β, Σ R_in = Σ_k R_k (y_k − β_k)/(y_k + ε)."""
    model, layer = _norm_model(kind)
    x = RNG.normal(0.5, 1.5, (4, 6)).astype("float32")
    index = 3
    x64 = x.astype(np.float64)
    weights = {v.name: np.asarray(v, np.float64) for v in layer.weights}
    gamma = weights.get("gamma", weights.get("scale"))
    beta = weights.get("beta", np.zeros(6))
    _, y = _layer_norm_rule(x64, gamma, beta, np.zeros_like(x64), EPS, kind == "rms")
    r_out = _seed(y, index)
    expected, _ = _layer_norm_rule(x64, gamma, beta, r_out, EPS, kind == "rms")
    got = _explain(model, x, index)
    assert_map(got, expected)
    if kind == "layer_beta":
        assert_total(got, _totals(r_out * (y - beta) / _stab(y, EPS)))
        assert np.all(np.abs(_totals(got) - _totals(r_out)) > 1e-3 * np.abs(_totals(r_out)))
    else:  # conserves up to ε/|y| (ε absorbs): exact with a tiny ε
        assert_total(got, _totals(r_out * y / _stab(y, EPS)))
        assert_conserves(_explain(model, x, index, epsilon=TINY_EPS), r_out)


# ----------------------------------------------------------------------------- linear layers
def _linear_model(kind: str, bias: bool) -> keras.Model:
    if kind == "dense":
        x_in = keras.Input((5,), name="x")
        layer = layers.Dense(4, use_bias=bias)
    else:
        x_in = keras.Input((3, 5), name="x")
        layer = layers.EinsumDense("abc,cd->abd", (3, 4), bias_axes="d" if bias else None)
    model = keras.Model(x_in, layer(x_in))
    for var in layer.weights:
        var.assign(RNG.normal(0, 0.7, var.shape).astype("float32"))
    return model


@pytest.mark.parametrize("kind", ["dense", "einsum_dense"])
@pytest.mark.parametrize("bias", [False, True])
def test_epsilon_rule_on_linear_layers(kind: str, bias: bool) -> None:
    """R_in = x ⊙ W (R / (z + ε)), ε = 1e-6, the bias in z: conserves without a bias;
    with one, Σ R_in = Σ_k R_k (z_k − b_k)/(z_k + ε)."""
    model = _linear_model(kind, bias)
    x = RNG.normal(0, 1, (4, *model.input_shape[1:])).astype("float32")
    index = 6 if kind == "einsum_dense" else 2
    layer = model.layers[-1]
    w = np.asarray(layer.kernel, np.float64)
    b = np.asarray(layer.bias, np.float64) if bias else np.zeros(w.shape[-1])
    x64 = x.astype(np.float64)
    z = x64 @ w + b
    r_out = _seed(z, index)
    expected = _epsilon_linear(x64, w, z, r_out, EPS)
    got = _explain(model, x, index)
    assert_map(got, expected)
    if bias:
        assert_total(got, _totals(r_out * (z - b) / _stab(z, EPS)))
    else:  # conserves up to ε/|z| (ε absorbs): exact with a tiny ε
        assert_total(got, _totals(r_out * z / _stab(z, EPS)))
        assert_conserves(_explain(model, x, index, epsilon=TINY_EPS), r_out)


# ----------------------------------------------------------------------------- identity, Add
@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh"])
def test_identity_rule_on_activations(activation: str) -> None:
    """Elementwise non-linearities pass relevance unchanged: R_in = R_out."""
    x_in = keras.Input((6,), name="x")
    model = keras.Model(x_in, layers.Activation(activation)(x_in))
    x = RNG.normal(0, 1.5, (3, 6)).astype("float32")
    index = 1
    r_out = _seed(np.asarray(model(x), np.float64), index)
    got = _explain(model, x, index)
    assert_map(got, r_out)
    assert_conserves(got, r_out)


def test_residual_add() -> None:
    """Add by the z rule: each operand a_i R / (a + b + ε); the two shares sum to R."""
    a_in, b_in = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    model = keras.Model([a_in, b_in], layers.Add()([a_in, b_in]))
    a = RNG.normal(0, 1, (3, 6)).astype("float32")
    b = RNG.normal(0, 1, (3, 6)).astype("float32")
    index = 2
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    z = a64 + b64
    r_out = _seed(z, index)
    feed = {"a": a, "b": b}
    r_a = _explain(model, feed, index, input_name="a")
    r_b = _explain(model, feed, index, input_name="b")
    expected_a, expected_b = _sum_rule(a64, b64, r_out, ADD_EPS)
    assert_map(r_a, expected_a)
    assert_map(r_b, expected_b)
    assert_conserves(r_a + r_b, r_out)


# ----------------------------------------------------------------------------- CP-LRP
def test_cp_lrp_constant_weights() -> None:
    """CP-LRP: the attention weights are a constant, so A·V gives all its relevance to V by
    the ε rule (V ⊙ Aᵀ(R / (z + ε)), conserving) and the scores get none."""
    model = _attention_values_model()
    index = 8
    feed, p, r_out = _attention_values_data(index)
    v64 = feed["v"].astype(np.float64)
    r_v = _explain(model, feed, index, name="attnlrp.cp", input_name="v")
    r_s = _explain(model, feed, index, name="attnlrp.cp", input_name="s")
    expected = v64 * (np.swapaxes(p, 1, 2) @ (r_out / _stab(p @ v64, EPS)))
    assert_map(r_v, expected)
    assert_conserves(r_v, r_out)
    np.testing.assert_array_equal(r_s, 0.0)


# ----------------------------------------------------------------------------- the references
def test_numpy_references_are_lxts_rules() -> None:
    """The numpy formulas above are LXT's explicit rules (``lxt/explicit/functional.py``, run
    in float64 torch; tiny ε, as LXT adds +ε where the engine adds ε·sign(z))."""
    torch = pytest.importorskip("torch")
    lf = pytest.importorskip("lxt.explicit.functional")
    rng = np.random.default_rng(3)

    def lxt(fn: Callable, inputs: list[np.ndarray], r: np.ndarray) -> list[np.ndarray]:
        tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in inputs]
        fn(*tensors).backward(torch.tensor(r))
        return [t.grad.numpy() for t in tensors]

    def close(got: np.ndarray, want: np.ndarray) -> None:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())

    x, r = rng.normal(0, 2, (3, 4, 5)), rng.normal(0, 1, (3, 4, 5))
    (got,) = lxt(lambda t: lf.softmax(t, -1), [x], r)
    close(got, _softmax_rule(x, _softmax(x), r))

    a, b = rng.normal(0, 1, (3, 4, 6)), rng.normal(0, 1, (3, 6, 5))
    close_pair = lxt(lambda s, t: lf.matmul(s, t, epsilon=1e-14), [a, b], r)
    for got, want in zip(close_pair, _uniform_product(a, b, r, 1e-14), strict=True):
        close(got, want)

    w, bias = rng.normal(0, 1, (6, 5)), rng.normal(0, 1, 5)
    x2 = rng.normal(0, 1, (3, 4, 6))
    weight = torch.tensor(w.T)
    (got,) = lxt(lambda t: lf.linear_epsilon(t, weight, torch.tensor(bias), 1e-14), [x2], r)
    close(got, _epsilon_linear(x2, w, x2 @ w + bias, r, 1e-14))

    gamma, beta = rng.normal(1, 0.4, 5), rng.normal(0, 0.4, 5)
    fn = lf.layer_norm_grad_fn.apply
    args = (torch.tensor(gamma), torch.tensor(beta), 1e-3, 1e-14)
    (got,) = lxt(lambda t: fn(t, *args), [x], r)
    close(got, _layer_norm_rule(x, gamma, beta, r, 1e-14, rms=False)[0])
    (got,) = lxt(lambda t: lf.rms_norm_identity(t, torch.tensor(gamma), 1e-3), [x], r)
    close(got, _layer_norm_rule(x, gamma, np.zeros(5), r, 1e-14, rms=True)[0])

    c = rng.normal(0, 1, (3, 4, 5))
    for got, want in zip(
        lxt(lambda s, t: lf.add2(s, t, epsilon=1e-14), [x, c], r),
        _sum_rule(x, c, r, 1e-14),
        strict=True,
    ):
        close(got, want)


# ----------------------------------------------------------------------------- planted mistakes
def _full_share(self, site, kept, relevance):
    """A wrong product rule: every factor gets the full relevance (no 1/n)."""
    factors = list(site.inputs)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(factors)
        z = site.forward(factors, None)
    grads = tape.gradient(z, factors, output_gradients=relevance / (kept + 1e-8))
    return [x * g for x, g in zip(factors, grads)]


def _softmax_without_bias_term(self, site, kept, relevance):
    """A wrong softmax rule: x ⊙ R (the −p·ΣR term dropped)."""
    p, keep = kept
    x = site.inputs[0] if keep is None else tf.where(keep, site.inputs[0], 0.0)
    return [x * relevance] + [tf.zeros_like(t) for t in site.inputs[1:]]


@pytest.mark.parametrize(
    ("rule", "method", "wrong", "check"),
    [
        (rules_attention.UniformProduct, "backward", _full_share, check_query_key_product),
        (rules_attention.UniformProduct, "backward", _full_share, check_gate),
        (rules_attention.UniformProduct, "backward", _full_share, check_attention_values),
        (rules_attention.SoftmaxRule, "backward", _softmax_without_bias_term, check_softmax),
        (
            rules_attention.SoftmaxRule,
            "backward",
            _softmax_without_bias_term,
            check_attention_values,
        ),
    ],
)
def test_planted_mistakes_fail(
    monkeypatch: pytest.MonkeyPatch, rule: type, method: str, wrong: Callable, check: Callable
) -> None:
    """The checks above can fail: a wrong rule patched into the engine breaks them."""
    monkeypatch.setattr(rule, method, wrong)
    with pytest.raises(AssertionError):
        check()
