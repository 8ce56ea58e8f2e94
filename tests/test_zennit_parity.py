"""Parity of tf_clrp's LRP rules and composites with Zennit (PyTorch) reference outputs.

The references live in ``tests/references/zennit_refs.npz``; regenerate them with
``/work/venvs/torch/bin/python tests/references/generate_zennit.py`` (torch is a test-time oracle
only, never imported here).  Semantics of every Zennit rule: ``tests/references/ZENNIT_NOTES.md``.

Convention: the initial relevance is ``one_hot(target) * logits`` (stored as ``{model}__seed``),
passed to ``analyze`` as an explicit float array.  Tolerance: per sample,
``max|R - ref| <= 1e-3 * max|ref|``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import pytest

REFS = Path(__file__).parent / "references" / "zennit_refs.npz"
MODELS = ("mlp", "cnn", "cnn_bn")
RTOL = 1e-3


@pytest.fixture(scope="module")
def refs() -> dict[str, np.ndarray]:
    """All arrays of the reference file."""
    with np.load(REFS) as data:
        return {key: data[key] for key in data.files}


def build_keras_model(name: str, refs: dict[str, np.ndarray]) -> keras.Model:
    """Rebuild the torch model ``name`` in Keras 3 (NHWC) and load the stored weights."""
    p = f"{name}__"
    if name == "mlp":
        inp = keras.Input(shape=refs[p + "x"].shape[1:], name="x")
        h = inp
        n_dense = sum(1 for k in refs if k.startswith(p + "dense") and k.endswith("__kernel"))
        dense_layers = []
        for i in range(n_dense):
            units = refs[f"{p}dense{i}__kernel"].shape[1]
            act = "relu" if i < n_dense - 1 else None  # fused activations: exercises the canonizer
            layer = keras.layers.Dense(units, activation=act, name=f"dense{i}")
            h = layer(h)
            dense_layers.append(layer)
        model = keras.Model(inp, h, name=name)
        for i, layer in enumerate(dense_layers):
            layer.set_weights([refs[f"{p}dense{i}__kernel"], refs[f"{p}dense{i}__bias"]])
        return model

    k0, k1 = refs[p + "conv0__kernel"], refs[p + "conv1__kernel"]
    inp = keras.Input(shape=refs[p + "x"].shape[1:], name="x")
    conv0 = keras.layers.Conv2D(k0.shape[-1], k0.shape[:2], padding="same", name="conv0")
    h = conv0(inp)
    bn = None
    if name == "cnn_bn":
        bn = keras.layers.BatchNormalization(epsilon=float(refs[p + "bn0__epsilon"]), name="bn0")
        h = bn(h)
    h = keras.layers.ReLU(name="relu0")(h)
    h = keras.layers.MaxPooling2D(2, name="maxpool0")(h)
    conv1 = keras.layers.Conv2D(k1.shape[-1], k1.shape[:2], padding="same", name="conv1")
    h = conv1(h)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.AveragePooling2D(h.shape[1], name="avgpool")(h)  # to 1x1
    h = keras.layers.Flatten(name="flatten")(h)
    dense = keras.layers.Dense(refs[p + "dense0__kernel"].shape[1], name="dense0")
    out = dense(h)
    model = keras.Model(inp, out, name=name)
    conv0.set_weights([k0, refs[p + "conv0__bias"]])
    conv1.set_weights([k1, refs[p + "conv1__bias"]])
    dense.set_weights([refs[p + "dense0__kernel"], refs[p + "dense0__bias"]])
    if bn is not None:
        bn.set_weights(
            [refs[p + f"bn0__{k}"] for k in ("gamma", "beta", "moving_mean", "moving_variance")]
        )
    return model


def assert_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Per sample: max|got - ref| <= RTOL * max|ref| (all samples reported on failure)."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values"
    axes = tuple(range(1, ref.ndim))
    err = np.abs(got - ref).max(axis=axes)
    scale = np.abs(ref).max(axis=axes)
    rel = err / np.maximum(scale, 1e-12)
    worst = np.array2string(rel, precision=2)
    assert (rel <= RTOL).all(), f"{what}: per-sample max rel err {worst} (tolerance {RTOL})"


# --------------------------------------------------------------------------- works without engine


def test_reference_file_is_complete(refs: dict[str, np.ndarray]) -> None:
    """Every (model, config) reference exists, is finite, x-shaped and non-trivial."""
    for model in MODELS:
        x = refs[f"{model}__x"]
        assert refs[f"{model}__seed"].shape == refs[f"{model}__logits"].shape
        for config in refs["meta__configs"]:
            ref = refs[f"{model}__{config}"]
            assert ref.shape == x.shape and ref.dtype == np.float32
            assert np.isfinite(ref).all() and np.abs(ref).max() > 0


@pytest.mark.parametrize("model_name", MODELS)
def test_keras_rebuild_reproduces_torch_logits(
    refs: dict[str, np.ndarray], model_name: str
) -> None:
    """The Keras 3 rebuild computes the same logits as the torch original."""
    model = build_keras_model(model_name, refs)
    logits = np.asarray(model(refs[f"{model_name}__x"], training=False))
    np.testing.assert_allclose(logits, refs[f"{model_name}__logits"], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- parity (needs engine)

SpecFn = Callable[[ModuleType, str, float, float], dict[str, Any]]


def _accepts(cls: type, param: str) -> bool:
    try:
        return param in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _rule(fn: Callable[[ModuleType], Any]) -> SpecFn:
    """Spec: one rule on every Dense/Conv."""

    def spec(tfc: ModuleType, model: str, low: float, high: float) -> dict[str, Any]:
        return {"rule": fn(tfc.rules)}

    return spec


def _wsquare_with_bias(tfc: ModuleType, model: str, low: float, high: float) -> dict[str, Any]:
    if not _accepts(tfc.rules.WSquare, "bias"):
        pytest.skip("Zennit's WSquare has b**2 in the denominator; rules.WSquare lacks bias=")
    return {"rule": tfc.rules.WSquare(bias=True)}


def _zbox_first(tfc: ModuleType, model: str, low: float, high: float) -> dict[str, Any]:
    r, c = tfc.rules, tfc.composites
    eps = {"dense": r.Epsilon(0.25), "convolution": r.Epsilon(0.25)}
    return {"composite": c.Composite(eps, first_layer=r.ZBox(low, high))}


def _composite(name: str) -> SpecFn:
    """Zennit's named composites spelled out with tf_clrp's low-level API (Zennit defaults)."""

    def spec(tfc: ModuleType, model: str, low: float, high: float) -> dict[str, Any]:
        r, c = tfc.rules, tfc.composites
        eps = r.Epsilon(1e-6)
        zplus_b = r.AlphaBeta(1.0, 0.0, bias=True)  # Zennit's ZPlus keeps b+ in the denominator
        if name == "epsilon_plus":
            return {"composite": c.Composite({"dense": eps, "convolution": zplus_b})}
        if name == "epsilon_plus_flat":
            table = {"dense": eps, "convolution": zplus_b}
            return {"composite": c.Composite(table, first_layer=r.Flat())}
        if name == "epsilon_alpha2_beta1":
            table = {"dense": eps, "convolution": r.AlphaBeta(2.0, 1.0, bias=True)}
            return {"composite": c.Composite(table)}
        if name == "epsilon_gamma_box":
            table = {"dense": eps, "convolution": r.Gamma(0.25)}
            # Zennit's first_map matches convolutions only: an MLP gets no ZBox at all
            first = None if model == "mlp" else r.ZBox(low, high)
            return {"composite": c.Composite(table, first_layer=first)}
        raise KeyError(name)

    return spec


SPECS: dict[str, SpecFn] = {
    "z": _rule(lambda r: r.Z()),
    "epsilon_0.25": _rule(lambda r: r.Epsilon(0.25)),
    "zplus": _rule(lambda r: r.AlphaBeta(1.0, 0.0, bias=True)),
    "zplus_nobias": _rule(lambda r: r.ZPlus()),
    "alpha1beta0": _rule(lambda r: r.AlphaBeta(1.0, 0.0)),
    "alpha2beta1": _rule(lambda r: r.AlphaBeta(2.0, 1.0)),
    "alpha2beta1_nobias": _rule(lambda r: r.AlphaBeta(2.0, 1.0, bias=False)),
    "gamma_0.25": _rule(lambda r: r.Gamma(0.25)),
    "wsquare": _wsquare_with_bias,
    "wsquare_nobias": _rule(lambda r: r.WSquare()),
    "flat": _rule(lambda r: r.Flat()),
    "zbox_first_epsilon_0.25": _zbox_first,
    "epsilon_plus": _composite("epsilon_plus"),
    "epsilon_plus_flat": _composite("epsilon_plus_flat"),
    "epsilon_gamma_box": _composite("epsilon_gamma_box"),
    "epsilon_alpha2_beta1": _composite("epsilon_alpha2_beta1"),
}

PRESETS: dict[str, tuple[str, bool]] = {  # zennit config -> (tf_clrp name, takes low/high)
    "epsilon_plus": ("lrp.epsilon_plus", False),
    "epsilon_plus_flat": ("lrp.epsilon_plus_flat", False),
    "epsilon_gamma_box": ("lrp.epsilon_gamma_box", True),
    "epsilon_alpha2_beta1": ("lrp.epsilon_alpha_2_beta_1", False),
}


@pytest.fixture(scope="module")
def tfc() -> ModuleType:
    """The engine (imported lazily so the rebuild tests above run without it)."""
    import tf_clrp

    return tf_clrp


@pytest.fixture(scope="module")
def keras_models(refs: dict[str, np.ndarray]) -> dict[str, keras.Model]:
    """One Keras rebuild per model, shared by all parity cases."""
    return {name: build_keras_model(name, refs) for name in MODELS}


def test_specs_cover_all_references(refs: dict[str, np.ndarray]) -> None:
    """Every stored Zennit configuration has a tf_clrp spelling in this file."""
    assert set(refs["meta__configs"].tolist()) == set(SPECS)


@pytest.mark.parametrize("config", list(SPECS))
@pytest.mark.parametrize("model_name", MODELS)
def test_rule_parity_with_zennit(
    tfc: ModuleType,
    refs: dict[str, np.ndarray],
    keras_models: dict[str, keras.Model],
    model_name: str,
    config: str,
) -> None:
    """Low-level rules/composites reproduce Zennit with the explicit seed one_hot*logits."""
    kwargs = SPECS[config](tfc, model_name, float(refs["low"]), float(refs["high"]))
    analyzer = tfc.create_analyzer("lrp", keras_models[model_name], **kwargs)
    got = analyzer.analyze(refs[f"{model_name}__x"], neuron_selection=refs[f"{model_name}__seed"])
    assert_close(np.asarray(got), refs[f"{model_name}__{config}"], f"{model_name}/{config}")


@pytest.mark.parametrize("config", list(PRESETS))
@pytest.mark.parametrize("model_name", MODELS)
def test_named_preset_parity_with_zennit(
    tfc: ModuleType,
    refs: dict[str, np.ndarray],
    keras_models: dict[str, keras.Model],
    model_name: str,
    config: str,
) -> None:
    """tf_clrp's Zennit-named presets, with their defaults, equal Zennit's composites."""
    name, boxed = PRESETS[config]
    kwargs: dict[str, Any] = {}
    if boxed:
        kwargs = {"low": float(refs["low"]), "high": float(refs["high"])}
    analyzer = tfc.create_analyzer(name, keras_models[model_name], **kwargs)
    got = analyzer.analyze(refs[f"{model_name}__x"], neuron_selection=refs[f"{model_name}__seed"])
    assert_close(np.asarray(got), refs[f"{model_name}__{config}"], f"{model_name}/{name}")


@pytest.mark.parametrize("config", ["epsilon_0.25", "zplus_nobias", "epsilon_gamma_box"])
@pytest.mark.parametrize("model_name", MODELS)
def test_int_neuron_selection_seeds_the_logit(
    tfc: ModuleType,
    refs: dict[str, np.ndarray],
    keras_models: dict[str, keras.Model],
    model_name: str,
    config: str,
) -> None:
    """neuron_selection=<one int per sample> equals the seed one_hot(target) * logits."""
    kwargs = SPECS[config](tfc, model_name, float(refs["low"]), float(refs["high"]))
    analyzer = tfc.create_analyzer("lrp", keras_models[model_name], **kwargs)
    targets = [int(t) for t in refs[f"{model_name}__targets"]]
    got = analyzer.analyze(refs[f"{model_name}__x"], neuron_selection=targets)
    assert_close(np.asarray(got), refs[f"{model_name}__{config}"], f"{model_name}/{config}/int")
