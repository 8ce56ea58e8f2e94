"""Executable spec: re-derive iNNvestigate 2.1.2 outputs in Keras 3 (eager TF), no iNNvestigate.

An independent, minimal re-implementation of the semantics written up in
``INNVESTIGATE_NOTES.md``, for the chain-shaped reference models only (Dense, Conv2D,
MaxPooling2D, AveragePooling2D, Flatten). It checks every deterministic entry of
``innvestigate_refs.npz`` and is the quickest way to see exactly which per-layer formula
iNNvestigate uses. Run with the project's Python (Keras 3)::

    python tests/references/semantics_check_keras3.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
NPZ_PATH = HERE / "innvestigate_refs.npz"
STAB = 1e-7  # keras.backend.epsilon(): safe_divide's and the default Epsilon rule's value

Rule = Callable[[Any, tf.Tensor, tf.Tensor], tf.Tensor]  # (layer, x, R_out) -> R_in


def _ref_models() -> Any:
    spec = importlib.util.spec_from_file_location("_spec_ref_models", HERE / "ref_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def safe_div(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """iNNvestigate's safe_divide: only exact zeros are stabilised."""
    return a / (b + STAB * tf.cast(tf.equal(b, 0), b.dtype))


def pos(v: tf.Tensor) -> tf.Tensor:
    return v * tf.cast(v > 0, v.dtype)


def neg(v: tf.Tensor) -> tf.Tensor:
    return v * tf.cast(v < 0, v.dtype)


def linear(layer: Any, x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | None) -> tf.Tensor:
    """The kernel layer without activation, with substitute weights."""
    if isinstance(layer, keras.layers.Dense):
        z = x @ w
    else:
        z = tf.nn.conv2d(x, w, layer.strides, layer.padding.upper())
    return z if b is None else z + b


def vjp(fn: Callable[..., tf.Tensor], xs: list[tf.Tensor], s: tf.Tensor) -> list[tf.Tensor]:
    """Gradients of fn(*xs) w.r.t. xs, weighted by s (the 'W^T s' of every rule)."""
    xs = [tf.convert_to_tensor(v) for v in xs]
    with tf.GradientTape() as tape:
        for v in xs:
            tape.watch(v)
        z = fn(*xs)
    return tape.gradient(z, xs, output_gradients=s)


def _wb(layer: Any) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.convert_to_tensor(layer.kernel), tf.convert_to_tensor(layer.bias)


def rule_z(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
    w, b = _wb(layer)
    s = safe_div(r, linear(layer, x, w, b))
    return x * vjp(lambda v: linear(layer, v, w, b), [x], s)[0]


def rule_epsilon(eps: float) -> Rule:
    def rule(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
        w, b = _wb(layer)
        z = linear(layer, x, w, b)
        s = r / (z + eps * (2.0 * tf.cast(z >= 0, z.dtype) - 1.0))  # sign(0) = +1
        return x * vjp(lambda v: linear(layer, v, w, b), [x], s)[0]

    return rule


def rule_alpha_beta(alpha: float, beta: float, bias: bool = True) -> Rule:
    def rule(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
        w, b = _wb(layer)
        bp, bn = (pos(b), neg(b)) if bias else (None, None)
        xp, xn = pos(x), neg(x)

        def part(w1: tf.Tensor, b1: Any, w2: tf.Tensor, b2: Any) -> tf.Tensor:
            fn = lambda u, v: linear(layer, u, w1, b1) + linear(layer, v, w2, b2)
            g1, g2 = vjp(fn, [xp, xn], safe_div(r, fn(xp, xn)))  # full bias b in both
            return xp * g1 + xn * g2

        act = part(pos(w), bp, neg(w), bn)
        return act if not beta else alpha * act - beta * part(neg(w), bn, pos(w), bp)

    return rule


def rule_z_plus_fast(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
    wp = pos(_wb(layer)[0])
    s = safe_div(r, linear(layer, x, wp, None))
    return x * vjp(lambda v: linear(layer, v, wp, None), [x], s)[0]


def _x_free(transform: Callable[[tf.Tensor], tf.Tensor]) -> Rule:
    def rule(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
        w = transform(_wb(layer)[0])
        s = safe_div(r, linear(layer, tf.ones_like(x), w, None))
        return vjp(lambda v: linear(layer, v, w, None), [x], s)[0]

    return rule


rule_w_square = _x_free(tf.square)
rule_flat = _x_free(tf.ones_like)


def rule_bounded(low: float, high: float) -> Rule:
    def rule(layer: Any, x: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
        w = _wb(layer)[0]
        lo, hi = tf.fill(tf.shape(x), float(low)), tf.fill(tf.shape(x), float(high))

        def fn(u: tf.Tensor, v: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
            return linear(layer, u, w, None) - (
                linear(layer, v, pos(w), None) + linear(layer, t, neg(w), None)
            )

        g1, g2, g3 = vjp(fn, [x, lo, hi], safe_div(r, fn(x, lo, hi)))
        return x * g1 + lo * g2 + hi * g3  # g2, g3 already carry the minus sign

    return rule


NAMED_RULES: dict[str, Rule] = {
    "Z": rule_z,
    "Epsilon": rule_epsilon(STAB),
    "WSquare": rule_w_square,
    "Flat": rule_flat,
    "ZPlus": rule_alpha_beta(1, 0, bias=False),
    "ZPlusFast": rule_z_plus_fast,
}


def lrp_rule_chooser(name: str, kw: dict[str, Any]) -> Callable[[Any, bool], Rule]:
    """(layer, is_input_layer) -> rule, for every lrp.* / deep_taylor* analyzer."""
    dense_eps = rule_epsilon(kw.get("epsilon", 0.1))
    table: dict[str, Callable[[Any], Rule]] = {
        "lrp.z": lambda _: rule_z,
        "lrp.epsilon": lambda _: rule_epsilon(kw.get("epsilon", STAB)),
        "lrp.w_square": lambda _: rule_w_square,
        "lrp.flat": lambda _: rule_flat,
        "lrp.alpha_beta": lambda _: rule_alpha_beta(kw["alpha"], kw["beta"]),
        "lrp.alpha_2_beta_1": lambda _: rule_alpha_beta(2, 1),
        "lrp.alpha_2_beta_1_IB": lambda _: rule_alpha_beta(2, 1, bias=False),
        "lrp.alpha_1_beta_0": lambda _: rule_alpha_beta(1, 0),
        "lrp.alpha_1_beta_0_IB": lambda _: rule_alpha_beta(1, 0, bias=False),
        "lrp.z_plus": lambda _: rule_alpha_beta(1, 0, bias=False),
        "lrp.z_plus_fast": lambda _: rule_z_plus_fast,
        "deep_taylor": lambda _: rule_alpha_beta(1, 0, bias=False),
        "deep_taylor.bounded": lambda _: rule_alpha_beta(1, 0, bias=False),
    }
    for preset, conv_rule in (("a", rule_alpha_beta(1, 0)), ("b", rule_alpha_beta(2, 1))):
        for suffix in ("", "_flat"):
            table[f"lrp.sequential_preset_{preset}{suffix}"] = lambda layer, c=conv_rule: (
                dense_eps if isinstance(layer, keras.layers.Dense) else c
            )
    first = kw.get("input_layer_rule")
    if name.endswith("_flat"):
        first = "Flat"
    if name == "deep_taylor.bounded":
        first = (kw["low"], kw["high"])
    if isinstance(first, list | tuple):
        first = rule_bounded(*first)
    elif isinstance(first, str):
        first = NAMED_RULES[first]
    return lambda layer, is_first: first if (is_first and first) else table[name](layer)


def explain(model: Any, x: np.ndarray, name: str, kw: dict[str, Any], sel: Any) -> np.ndarray:
    """iNNvestigate's analysis of ``model`` (a chain of supported layers) at ``x``."""
    if name == "input_t_gradient":
        return x * explain(model, x, "gradient", kw, sel)
    if name == "integrated_gradients":
        steps = kw.get("steps", 64)
        if isinstance(sel, str):  # argmax on the clean input, fixed along the path
            sel = np.argmax(np.asarray(model(x)), axis=1)
        grads = [explain(model, x * k / steps, "gradient", {}, sel) for k in range(steps)]
        return np.mean(grads, axis=0) * x  # left Riemann sum, reference 0

    layers = model.layers[1:]
    acts = [tf.constant(x)]
    for layer in layers:
        acts.append(layer(acts[-1]))
    out = acts[-1]
    deep_taylor = name.startswith("deep_taylor")
    if deep_taylor:
        out = tf.nn.relu(out)
    if isinstance(sel, str):  # "max_activation"
        idx = np.argmax(out, 1)
    else:
        idx = np.broadcast_to(np.asarray(sel), (len(x),))
    onehot = tf.one_hot(idx, out.shape[-1], dtype=out.dtype)
    r = onehot if name == "gradient" else onehot * out  # seed: 1 only for the gradient family

    lrp = name.startswith("lrp") or deep_taylor
    choose = lrp_rule_chooser(name, kw) if lrp else None
    for i in reversed(range(len(layers))):
        layer, a = layers[i], acts[i]
        kernel = isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)
        relu = kernel and layer.activation.__name__ == "relu"
        if lrp and kernel:
            r = choose(layer, i == 0)(layer, a, r)
        elif lrp and not deep_taylor and isinstance(layer, keras.layers.AveragePooling2D):
            r = a * vjp(layer, [a], safe_div(r, layer(a)))[0]
        elif name == "guided_backprop" and relu:
            r = vjp(layer, [a], tf.nn.relu(r))[0]
        elif name == "deconvnet" and relu:
            w, b = _wb(layer)
            r = vjp(lambda v, ly=layer, w=w, b=b: linear(ly, v, w, b), [a], tf.nn.relu(r))[0]
        else:  # plain gradient: MaxPool (TF argmax routing), Flatten, deep_taylor pooling, ...
            r = vjp(layer, [a], r)[0]
    return np.asarray(r)


def check_all(npz_path: Path = NPZ_PATH) -> list[tuple[str, float]]:
    """Relative max error of ``explain`` vs every deterministic reference entry."""
    rm = _ref_models()
    refs = np.load(npz_path)
    meta = json.loads(str(refs["meta"]))
    models = {}
    for model_name, info in meta["models"].items():
        model = rm.build(model_name, keras)
        rm.set_weights(
            model,
            {
                n: [refs[f"w/{model_name}/{n}/{i}"] for i in range(2)]
                for n in info["weighted_layers"]
            },
        )
        models[model_name] = model
    results = []
    for e in meta["entries"]:
        if e["status"] != "ok" or e.get("stochastic"):
            continue
        ref = refs[e["key"]]
        ours = explain(
            models[e["model"]],
            refs[f"x/{e['model']}"],
            e["name"],
            e["kwargs"],
            e["neuron_selection"],
        )
        err = float(np.max(np.abs(ours - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
        sel = e["neuron_selection"]
        results.append((f"{e['model']} {e['name']} {json.dumps(e['kwargs'])} sel={sel}", err))
    return results


def main() -> int:
    """Print the worst mismatches; exit 1 if any entry is off by more than 1e-4 relative."""
    results = check_all()
    bad = [(k, v) for k, v in results if v > 1e-4]
    for key, err in sorted(results, key=lambda kv: -kv[1])[:5]:
        print(f"{err:.2e}  {key}")
    print(f"{len(results)} entries checked, {len(bad)} off by > 1e-4 (relative to max |ref|)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
