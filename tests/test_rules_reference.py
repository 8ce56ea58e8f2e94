"""Every rule against a naive, explicit-matrix re-implementation.

A linear layer (Dense, or Conv2D written as its Jacobian matrix) is z = a·M + b. The naive
reference evaluates R_j = Σ_k c_jk / stab(Σ_j c_jk + b'_k) · R_k with numpy loops over the
matrix, written independently of the fast kernel (which uses vector-Jacobian products).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import mlp

import tf_clrp
from tf_clrp import rules

RNG = np.random.default_rng(1)


def stab(z: np.ndarray, eps: float) -> np.ndarray:
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def naive_rule(
    name: str,
    a: np.ndarray,
    m: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    low: float = -1.0,
    high: float = 1.0,
    eps: float = 1e-7,
    gamma: float = 0.25,
    alpha: float = 2.0,
    beta: float = 1.0,
    use_bias: bool = True,
    full_bias: bool = False,
) -> np.ndarray:
    """R at the input of z = a @ m + b for one sample (a: (n,), m: (n, k), r: (k,))."""
    ap, an = np.maximum(a, 0), np.minimum(a, 0)
    mp, mn = np.maximum(m, 0), np.minimum(m, 0)
    bp, bn = np.maximum(b, 0), np.minimum(b, 0)

    def spread(c: np.ndarray, bias: np.ndarray, e: float = eps, plain: bool = False) -> np.ndarray:
        z = c.sum(axis=0) + bias
        den = z + e if plain else stab(z, e)
        return (c / den[None, :] * r[None, :]).sum(axis=1)

    zero = np.zeros_like(b)
    if name == "z":
        return spread(a[:, None] * m, b)
    if name == "epsilon":
        return spread(a[:, None] * m, b if use_bias else zero, eps)
    if name == "z_plus":
        return spread(ap[:, None] * mp + an[:, None] * mn, zero, 1e-9, plain=True)
    if name == "alpha_beta":
        pos = ap[:, None] * mp + an[:, None] * mn
        neg = ap[:, None] * mn + an[:, None] * mp
        if full_bias:  # iNNvestigate: the whole bias in both denominators
            bp = bn = b
        return alpha * spread(pos, bp if use_bias else zero) - beta * spread(
            neg, bn if use_bias else zero
        )
    if name == "gamma":  # boost the contributions of each unit's own sign (Zennit)
        z = a @ m + b
        up = ap[:, None] * (m + gamma * mp) + an[:, None] * (m + gamma * mn)
        down = ap[:, None] * (m + gamma * mn) + an[:, None] * (m + gamma * mp)
        r_up, r_down = r * (z > 0), r * (z < 0)
        zu, zd = up.sum(0) + b + gamma * bp, down.sum(0) + b + gamma * bn
        return (up / stab(zu, 1e-6)[None, :] * r_up[None, :]).sum(axis=1) + (
            down / stab(zd, 1e-6)[None, :] * r_down[None, :]
        ).sum(axis=1)
    if name == "w_square":
        return spread(m**2 + 0 * a[:, None], zero, 1e-9)
    if name == "flat":
        return spread((m != 0).astype(m.dtype), zero, 1e-9)  # 1 per existing connection
    if name == "z_box":
        return spread(a[:, None] * m - low * mp - high * mn, zero, 1e-9)
    raise ValueError(name)


RULES = {
    "z": (rules.Z(), {}),
    "epsilon": (rules.Epsilon(0.1), {"eps": 0.1}),
    "epsilon_no_bias": (rules.Epsilon(0.1, bias=False), {"eps": 0.1, "use_bias": False}),
    "z_plus": (rules.ZPlus(), {}),
    "alpha_beta": (rules.AlphaBeta(2.0, 1.0), {}),
    "alpha_beta_ib": (rules.AlphaBeta(2.0, 1.0, bias=False), {"use_bias": False}),
    "alpha_1_beta_0": (rules.AlphaBeta(1.0, 0.0), {"alpha": 1.0, "beta": 0.0}),
    "alpha_beta_full": (rules.AlphaBeta(2.0, 1.0, bias="full"), {"full_bias": True}),
    "gamma": (rules.Gamma(0.25), {}),
    "w_square": (rules.WSquare(), {}),
    "flat": (rules.Flat(), {}),
    "z_box": (rules.ZBox(-1.0, 1.0), {}),
}


def _naive_name(key: str) -> str:
    return {
        "epsilon_no_bias": "epsilon",
        "alpha_beta_ib": "alpha_beta",
        "alpha_1_beta_0": "alpha_beta",
        "alpha_beta_full": "alpha_beta",
    }.get(key, key)


def _conv_matrix(layer: keras.layers.Conv2D, shape: tuple[int, ...]) -> np.ndarray:
    """The conv's linear map (bias-free) as a matrix, from unit impulses."""
    n = int(np.prod(shape))
    basis = np.eye(n, dtype="float32").reshape((n, *shape))
    kernel = layer.kernel.numpy()
    out = keras.ops.conv(basis, kernel, strides=layer.strides, padding=layer.padding)
    return np.asarray(out).reshape(n, -1)


@pytest.mark.parametrize("key", sorted(RULES))
def test_dense_rule_matches_naive(key: str) -> None:
    rule, params = RULES[key]
    inp = keras.Input((5,))
    model = keras.Model(inp, keras.layers.Dense(4)(inp))
    model.layers[-1].bias.assign(RNG.normal(0, 0.5, 4).astype("float32"))
    x = RNG.uniform(-1, 1, (3, 5)).astype("float32")
    seed = RNG.normal(0, 1, (3, 4)).astype("float32")
    ours = tf_clrp.create_analyzer("lrp", model, rule=rule).analyze(x, neuron_selection=seed)
    w, b = (v.numpy() for v in model.layers[-1].weights)
    ref = np.stack([naive_rule(_naive_name(key), x[i], w, b, seed[i], **params) for i in range(3)])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", sorted(RULES))
def test_conv_rule_matches_naive(key: str) -> None:
    rule, params = RULES[key]
    inp = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 3, strides=2, padding="same")
    model = keras.Model(inp, conv(inp))
    conv.bias.assign(RNG.normal(0, 0.5, 3).astype("float32"))
    x = RNG.uniform(-1, 1, (2, 5, 5, 2)).astype("float32")
    seed = RNG.normal(0, 1, (2, 3, 3, 3)).astype("float32")
    ours = tf_clrp.create_analyzer("lrp", model, rule=rule).analyze(x, neuron_selection=seed)
    m = _conv_matrix(conv, (5, 5, 2))
    b = np.tile(conv.bias.numpy(), 9)
    ref = np.stack(
        [
            naive_rule(_naive_name(key), x[i].ravel(), m, b, seed[i].ravel(), **params)
            for i in range(2)
        ]
    ).reshape(x.shape)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def naive_chain(
    model: keras.Model, x: np.ndarray, target: int, name: str, **params: float
) -> np.ndarray:
    """LRP through a Dense-ReLU chain, layer by layer, for one sample."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    activations = [x]
    for layer in dense:
        z = activations[-1] @ layer.kernel.numpy() + layer.bias.numpy()
        activations.append(np.maximum(z, 0) if layer is not dense[-1] else z)
    r = np.zeros_like(activations[-1])
    r[target] = activations[-1][target]
    for layer, a in zip(dense[::-1], activations[-2::-1]):
        r = naive_rule(name, a, layer.kernel.numpy(), layer.bias.numpy(), r, **params)
    return r


@pytest.mark.parametrize(
    "analyzer,name,params",
    [
        ("lrp.z", "z", {}),
        ("lrp.epsilon", "epsilon", {}),
        ("lrp.z_plus", "z_plus", {}),
        ("lrp.alpha_2_beta_1", "alpha_beta", {"full_bias": True}),
        ("lrp.w_square", "w_square", {}),
        ("lrp.flat", "flat", {}),
        ("lrp.gamma", "gamma", {}),
    ],
)
def test_chain_matches_naive(analyzer: str, name: str, params: dict) -> None:
    model = mlp()
    x = RNG.uniform(-1, 1, (4, 6)).astype("float32")
    ours = tf_clrp.create_analyzer(analyzer, model).analyze(x, neuron_selection=2)
    ref = np.stack([naive_chain(model, x[i], 2, name, **params) for i in range(4)])
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-5)
