"""Parity of tf_clrp's z+ LRP and CLRP with the CLRP authors' own PyTorch code.

References: ``tests/references/authors_clrp_refs.npz``, produced by
``tests/references/generate_authors_clrp.py`` from a checkout of JindongGu/Contrastive-LRP on a
narrow VGG16-layout network (64x64x3 input, 13 convs, 5 max-pools, 3 Dense).  What the authors'
code computes is written up in ``tests/references/AUTHORS_CLRP_NOTES.md``.

Maps are channel-resolved NHWC.  ``lrp``/``dual_type1``/``dual_type2`` are the raw relevance maps
the authors' ``clrp()`` returns; ``clrp_typeK = max(0, lrp/sum(lrp) - dual/sum(dual))`` per sample
(their ``visualize()`` before its display-only division by the max).  Criterion, per sample:
max |difference| <= 1e-4 of the reference's max |value| (raw maps: their scale counts too) and
Pearson correlation >= 0.999.  With bfloat16 products ("mixed", "bfloat16") the bound is 3e-2
(bfloat16 keeps 8 bits; measured <= 2.0e-2).  Measured in float32: <= 2.2e-5.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import keras
import numpy as np
import pytest

REFS = Path(__file__).parent / "references" / "authors_clrp_refs.npz"
MIN_PEARSON = 0.999
#: max |got − ref| / max |ref| per sample: float32, and with bfloat16 products.
MAX_DIFFERENCE = 1e-4
MAX_DIFFERENCE_BFLOAT16 = 3e-2
POOL_AFTER_CONV = {1, 3, 6, 9, 12}  # VGG16: max-pool after conv 2, 4, 7, 10, 13
CONTRASTS = {"type1": "others", "type2": "negated"}


@pytest.fixture(scope="module")
def refs() -> dict[str, np.ndarray]:
    """All arrays of the reference file."""
    with np.load(REFS) as data:
        return {key: data[key] for key in data.files}


def build_keras_vgg(refs: dict[str, np.ndarray]) -> keras.Model:
    """Keras 3 twin of the narrow VGG16 (fused ReLUs, HWC flatten, kernels pre-permuted)."""
    layers = keras.layers
    n_conv = sum(1 for k in refs if k.startswith("conv") and k.endswith("__kernel"))
    n_dense = sum(1 for k in refs if k.startswith("dense") and k.endswith("__kernel"))
    inp = keras.Input(shape=refs["x"].shape[1:], name="x")
    h = inp
    weighted: list[tuple[keras.layers.Layer, str]] = []
    for i in range(n_conv):
        kernel = refs[f"conv{i}__kernel"]
        conv = layers.Conv2D(
            kernel.shape[-1], kernel.shape[:2], padding="same", activation="relu", name=f"conv{i}"
        )
        h = conv(h)
        weighted.append((conv, f"conv{i}"))
        if i in POOL_AFTER_CONV:
            h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    for i in range(n_dense):
        last = i == n_dense - 1
        dense = layers.Dense(
            refs[f"dense{i}__kernel"].shape[1], activation=None if last else "relu", name=f"fc{i}"
        )
        h = dense(h)
        weighted.append((dense, f"dense{i}"))
        if not last:
            h = layers.Dropout(0.5, name=f"dropout{i}")(h)
    model = keras.Model(inp, h, name="small_vgg16")
    for layer, key in weighted:
        layer.set_weights([refs[f"{key}__kernel"], refs[f"{key}__bias"]])
    return model


def normalised(a: np.ndarray) -> np.ndarray:
    """Per sample a / sum(a) over H, W, C (float64)."""
    a = a.astype(np.float64)
    return a / a.sum(axis=tuple(range(1, a.ndim)), keepdims=True)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two flattened maps."""
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def assert_maps_match(
    got: np.ndarray, ref: np.ndarray, what: str, max_difference: float = MAX_DIFFERENCE
) -> None:
    """Per sample: max |got − ref| <= max_difference · max |ref|, and Pearson >= MIN_PEARSON."""
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values"
    stats = [
        (pearson(g, r), float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)))
        for g, r in zip(got, ref, strict=True)
    ]
    table = ", ".join(f"r={p:.6f} maxdiff={d:.1e}" for p, d in stats)
    assert all(d <= max_difference for _, d in stats), f"{what}: {table}"
    assert all(p >= MIN_PEARSON for p, _ in stats), f"{what}: {table}"


# --------------------------------------------------------------------------- works without engine


def test_keras_rebuild_reproduces_authors_logits(refs: dict[str, np.ndarray]) -> None:
    """Conv HWIO kernels and the CHW->HWC-permuted first Dense give the torch logits."""
    model = build_keras_vgg(refs)
    logits = np.asarray(model(refs["x"], training=False))
    np.testing.assert_allclose(logits, refs["logits"], atol=1e-4, rtol=0)


def test_reference_maps_are_self_consistent(refs: dict[str, np.ndarray]) -> None:
    """Stored CLRP maps follow from the raw maps; z+ conserved the |logit| seeds."""
    rows = np.arange(len(refs["targets"]))
    z_t = np.abs(refs["logits"][rows, refs["targets"]])
    np.testing.assert_allclose(refs["lrp"].sum(axis=(1, 2, 3)), z_t, rtol=1e-3)
    np.testing.assert_allclose(refs["dual_type2"].sum(axis=(1, 2, 3)), z_t, rtol=1e-3)
    assert (refs["lrp"] >= 0).all()  # z^B on [low, high] inputs and z+ elsewhere: non-negative
    assert refs["x"].min() >= refs["low"] and refs["x"].max() <= refs["high"]
    for kind in CONTRASTS:
        diff = normalised(refs["lrp"]) - normalised(refs[f"dual_{kind}"])
        np.testing.assert_allclose(refs[f"clrp_{kind}"], np.maximum(diff, 0), atol=1e-9)
        assert all(pearson(a, b) < 0.999 for a, b in zip(refs["lrp"], refs[f"clrp_{kind}"]))


# --------------------------------------------------------------------------- parity (needs engine)


@pytest.fixture(scope="module")
def tfc() -> ModuleType:
    """The engine (imported lazily so the tests above run without it)."""
    import tf_clrp

    return tf_clrp


@pytest.fixture(scope="module")
def model(refs: dict[str, np.ndarray]) -> keras.Model:
    """Shared Keras rebuild."""
    return build_keras_vgg(refs)


def _bounds(refs: dict[str, np.ndarray]) -> tuple[float, float]:
    return float(refs["low"]), float(refs["high"])


def test_zplus_lrp_matches_authors(
    tfc: ModuleType, refs: dict[str, np.ndarray], model: keras.Model
) -> None:
    """lrp.z_plus with z^B input layer, seeded |z_j| on j (the authors' seed), equals their LRP."""
    rows = np.arange(len(refs["targets"]))
    seed = np.zeros_like(refs["logits"])
    seed[rows, refs["targets"]] = np.abs(refs["logits"][rows, refs["targets"]])
    analyzer = tfc.create_analyzer("lrp.z_plus", model, input_layer_rule=_bounds(refs))
    got = analyzer.analyze(refs["x"], neuron_selection=seed)
    assert_maps_match(got, refs["lrp"], "lrp.z_plus")


@pytest.mark.parametrize("kind", list(CONTRASTS))
def test_clrp_matches_authors(
    tfc: ModuleType, refs: dict[str, np.ndarray], model: keras.Model, kind: str
) -> None:
    """CLRP (contrast others = type1, negated = type2) with an int target equals their map."""
    analyzer = tfc.create_analyzer(
        "clrp", model, contrast=CONTRASTS[kind], input_layer_rule=_bounds(refs)
    )
    got = np.concatenate(
        [
            np.asarray(analyzer.analyze(refs["x"][i : i + 1], neuron_selection=int(j)))
            for i, j in enumerate(refs["targets"])
        ]
    )
    assert_maps_match(got, refs[f"clrp_{kind}"], f"clrp/{CONTRASTS[kind]}")


@pytest.mark.parametrize("kind", list(CONTRASTS))
def test_clrp_parts_match_authors(
    tfc: ModuleType, refs: dict[str, np.ndarray], model: keras.Model, kind: str
) -> None:
    """return_parts: target, dual and the unclipped difference match the authors' pieces."""
    analyzer = tfc.create_analyzer(
        "clrp", model, contrast=CONTRASTS[kind], input_layer_rule=_bounds(refs)
    )
    targets = [int(j) for j in refs["targets"]]
    parts = analyzer.analyze(refs["x"], neuron_selection=targets, return_parts=True)
    dual = refs[f"dual_{kind}"]
    what = f"clrp/{CONTRASTS[kind]}"
    assert_maps_match(parts.target, refs["lrp"], f"{what}/target")
    assert_maps_match(parts.dual, dual, f"{what}/dual")
    for got, want in ((parts.target, refs["lrp"]), (parts.dual, dual)):  # in scale
        np.testing.assert_allclose(got.sum(axis=(1, 2, 3)), want.sum(axis=(1, 2, 3)), rtol=1e-5)
    difference = normalised(refs["lrp"]) - normalised(dual)
    assert_maps_match(parts.difference, difference, f"{what}/difference")
    assert_maps_match(parts.contrastive, refs[f"clrp_{kind}"], f"{what}/contrastive")


@pytest.mark.parametrize("precision", ["mixed", "bfloat16"])
@pytest.mark.parametrize("kind", list(CONTRASTS))
def test_reduced_precision_clrp_still_matches_authors(
    tfc: ModuleType, refs: dict[str, np.ndarray], model: keras.Model, kind: str, precision: str
) -> None:
    """bfloat16 denominators/products (contrast basis) stay within the parity bound."""
    analyzer = tfc.create_analyzer(
        "clrp", model, contrast=CONTRASTS[kind], input_layer_rule=_bounds(refs), precision=precision
    )
    targets = [int(j) for j in refs["targets"]]
    parts = analyzer.analyze(refs["x"], neuron_selection=targets, return_parts=True)
    what = f"clrp/{CONTRASTS[kind]}@{precision}"
    assert_maps_match(
        parts.contrastive, refs[f"clrp_{kind}"], f"{what}/contrastive", MAX_DIFFERENCE_BFLOAT16
    )
    assert_maps_match(parts.dual, refs[f"dual_{kind}"], f"{what}/dual", MAX_DIFFERENCE_BFLOAT16)
