"""Tests of tf_clrp.metrics on synthetic cases with known answers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_clrp.analyzers.model_agnostic import log_probs, sliding_windows
from tf_clrp.metrics import (
    Occlusion,
    PointingGame,
    PredictionDifference,
    center_baseline,
    discriminativeness_report,
    explain_func,
    map_correlation,
    max_points,
    patch_scores,
    pointing_game,
    rank_agreement,
    region_perturbation,
    relevance_mass_in_region,
    unit_ablation,
    unit_relevance,
)
from tf_clrp.metrics._common import box_to_mask
from tf_clrp.metrics._keras import CanonicalModel, score_function
from tf_clrp.metrics.perturbation import replacement_images

FAST = settings(max_examples=25, deadline=None)


def peaked(shape: tuple[int, int], point: tuple[int, int]) -> np.ndarray:
    m = np.zeros((1, *shape))
    m[0, point[0], point[1]] = 1.0
    return m


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def assert_unchanged(model: keras.Model, before: list[np.ndarray]) -> None:
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(after, before):
        assert a.dtype == b.dtype and np.array_equal(a, b)


# ----------------------------------------------------------------------------- pointing game


BOX = (100, 100, 120, 120)  # rows/cols 100..119 inside


def test_pointing_hit_inside_box():
    game = PointingGame()
    assert game.update(peaked((224, 224), (110, 110)), [BOX], [0])[0] == 1.0


@pytest.mark.parametrize(
    ("point", "hit"),
    [
        ((100, 85), True),  # exactly 15 px left of the box
        ((100, 84), False),  # 16 px
        ((91, 88), True),  # 9² + 12² = 15²: diagonal, exactly at tolerance
        ((90, 88), False),  # 10² + 12² > 15²
        ((134, 119), True),  # 15 px below the last row (119)
        ((135, 119), False),
        ((0, 0), False),
    ],
)
def test_pointing_tolerance_boundary(point, hit):
    outcome = PointingGame(tolerance=15).update(peaked((224, 224), point), [BOX], [3])
    assert outcome[0] == float(hit)


def test_pointing_tolerance_scaling():
    shape = (448, 448)  # tolerance 15 · 448/224 = 30 px
    m = peaked(shape, (100, 75))  # 25 px from the box
    assert PointingGame(scale_tolerance=True).update(m, [BOX], [0])[0] == 1.0
    assert PointingGame(scale_tolerance=False).update(m, [BOX], [0])[0] == 0.0
    m = peaked(shape, (100, 69))  # 31 px
    assert PointingGame(scale_tolerance=True).update(m, [BOX], [0])[0] == 0.0


def test_pointing_per_class_mean_with_unequal_counts():
    game = PointingGame()
    inside, outside = peaked((224, 224), (110, 110)), peaked((224, 224), (10, 10))
    game.update(np.concatenate([inside, inside]), [BOX, BOX], [0, 0])
    game.update(np.concatenate([inside, outside]), [BOX, BOX], [0, 1])
    res = game.result()
    assert res.per_class == {0: 1.0, 1: 0.0}
    assert res.mean == 0.5  # not the pooled 3/4
    assert res.n == 4 and res.hits == {0: 3} and res.misses == {1: 1}


def test_pointing_center_baseline():
    res = center_baseline([(100, 100, 130, 130), (0, 0, 20, 20)], [0, 1], (224, 224))
    assert res.per_class == {0: 1.0, 1: 0.0}
    game = PointingGame(baseline="center")  # map values are ignored
    assert game.update(peaked((224, 224), (0, 0)), [(112, 112, 113, 113)], [0])[0] == 1.0


def test_pointing_constant_maps_and_ties():
    flat = np.zeros((1, 224, 224, 3))
    gt = [(0, 0, 5, 5)]  # contains the arg-max (0, 0) of a constant map
    assert PointingGame().update(flat, gt, [0])[0] == 0.0
    assert PointingGame(constant_maps="argmax").update(flat, gt, [0])[0] == 1.0
    game = PointingGame(constant_maps="skip")
    assert np.isnan(game.update(flat, gt, [0])[0]) and game.result().n == 0
    tie = np.zeros((1, 10, 10))
    tie[0, 3, 7] = tie[0, 5, 2] = 1.0
    assert max_points(tie).tolist() == [[3, 7]]  # first in row-major order
    with pytest.raises(ValueError):
        PointingGame().update(np.full((1, 4, 4), np.nan), [(0, 0, 1, 1)], [0])


def test_pointing_masks_lists_of_boxes_and_channels():
    m = np.zeros((2, 64, 64, 3))
    m[0, 50, 50, 1] = 2.0
    m[1, 5, 5, 0] = 2.0
    mask = np.zeros((64, 64), dtype=bool)
    mask[48:52, 48:52] = True
    gts = [mask, [(0, 0, 1, 1), (40, 40, 45, 45)]]
    res = pointing_game(m, gts, [0, 1], tolerance=2, scale_tolerance=False)
    assert res.per_class == {0: 1.0, 1: 0.0}


@FAST
@given(
    py=st.integers(0, 31),
    px=st.integers(0, 31),
    box=st.tuples(st.integers(0, 31), st.integers(0, 31), st.integers(1, 8), st.integers(1, 8)),
    tol=st.floats(0, 20),
)
def test_pointing_matches_brute_force(py, px, box, tol):
    y0, x0, bh, bw = box
    region = (y0, x0, y0 + bh, x0 + bw)
    mask = box_to_mask(region, (32, 32))
    ys, xs = np.nonzero(mask)
    expected = bool(np.any(np.hypot(ys - py, xs - px) <= tol + 1e-9))
    out = PointingGame(tolerance=tol, scale_tolerance=False).update(
        peaked((32, 32), (py, px)), [region], [0]
    )
    assert out[0] == float(expected)


# ----------------------------------------------------------------------------- perturbation


def linear_setup(seed: int = 0, shape=(2, 16, 16, 2)):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 1.0, size=shape[1:])
    x = rng.uniform(0.1, 1.0, size=shape).astype(np.float32)

    def f(batch: np.ndarray) -> np.ndarray:
        return (batch.astype(np.float64) * w).sum(axis=(1, 2, 3))[:, None]

    return f, x, w * x


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_linear_model_perfect_ranking_and_aopc_order(seed):
    f, x, rel = linear_setup(seed)
    kw = dict(patch_size=4, perturbation="zero", steps=16)
    morf = region_perturbation(f, x, rel, order="morf", **kw)
    lerf = region_perturbation(f, x, rel, order="lerf", **kw)
    rand = region_perturbation(f, x, rel, order="random", seed=3, **kw)
    # with every patch removed all curves end at f(0) = 0; in between MoRF is lowest
    assert np.allclose(morf.curves[:, -1], 0.0, atol=1e-9)
    assert np.all(morf.curves <= rand.curves + 1e-9)
    assert np.all(rand.curves <= lerf.curves + 1e-9)
    assert np.all(morf.aopc >= rand.aopc - 1e-12) and np.all(rand.aopc >= lerf.aopc - 1e-12)
    # positive contributions: monotone curve; the drops are the sorted patch relevances
    drops = -np.diff(morf.curves, axis=1)
    assert np.all(drops >= 0) and np.all(np.diff(drops, axis=1) <= 1e-9)
    expected = -np.sort(-patch_scores(rel, 4), axis=1)
    assert np.allclose(drops, expected, rtol=1e-6)
    # AOPC = 1/(L+1) Σ_{k=0..L} (f(x0) - f(xk))
    manual = (morf.curves[:, :1] - morf.curves).sum(axis=1) / 17
    assert np.allclose(morf.aopc, manual) and morf.mean_aopc == pytest.approx(manual.mean())


def test_perturbation_hand_example():
    # one 1x4 image, patches of 2: contributions [1+2, 3+4] = [3, 7]
    x = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32).reshape(1, 1, 4, 1)
    f = lambda b: b.sum(axis=(1, 2, 3))[:, None]
    res = region_perturbation(f, x, x, targets=0, patch_size=2, perturbation="zero")
    assert res.curves.tolist() == [[10.0, 3.0, 0.0]]
    assert res.patch_order.tolist() == [[1, 0]]
    assert res.aopc[0] == pytest.approx((0 + 7 + 10) / 3)


def test_perturbation_batching_and_progress_do_not_change_results():
    f, x, rel = linear_setup(1, shape=(3, 12, 10, 1))  # 12x10 → partial edge patches
    calls = []
    a = region_perturbation(
        f, x, rel, patch_size=4, batch_size=1, progress=lambda d, t: calls.append((d, t))
    )
    b = region_perturbation(f, x, rel, patch_size=4, batch_size=1000)
    assert np.allclose(a.curves, b.curves)
    assert a.curves.shape == (3, 3 * 3 + 1)  # ceil(12/4) * ceil(10/4) patches
    assert calls[-1][0] == calls[-1][1] == 27


class Recorder:
    """Linear scorer that keeps every batch it is called with."""

    def __init__(self):
        self.batches: list[np.ndarray] = []

    def __call__(self, b: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(b))
        return b.sum(axis=(1, 2, 3))[:, None].astype(np.float64)


@pytest.mark.parametrize("mode", ["zero", "mean", "blur", "noise", "callable"])
def test_perturbation_modes_pixel_values(mode):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32)
    rel = np.zeros((1, 8, 8))
    rel[0, 4:8, 0:4] = 1.0  # patch (1, 0) first, then row-major ties
    rec = Recorder()
    pert = (lambda imgs, g: np.full_like(imgs, 7.0)) if mode == "callable" else mode
    region_perturbation(rec, x, rel, patch_size=4, steps=2, perturbation=pert, batch_size=1)
    x1, x2 = rec.batches[1][0], rec.batches[2][0]
    first, second = (slice(4, 8), slice(0, 4)), (slice(0, 4), slice(0, 4))
    untouched = np.ones((8, 8), dtype=bool)
    untouched[4:8, 0:4] = False
    assert np.array_equal(x1[untouched], x[0][untouched])
    patch = x1[first]
    if mode == "zero":
        assert np.all(patch == 0)
    elif mode == "mean":
        assert np.allclose(patch, x[0].mean(axis=(0, 1)))
    elif mode == "blur":
        import cv2

        ref = cv2.GaussianBlur(x[0], (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101)
        assert np.allclose(patch, ref[first], atol=1e-6)
        assert patch.std() < x[0][first].std()
    elif mode == "noise":
        assert patch.min() >= x.min() and patch.max() <= x.max()
        assert not np.allclose(patch, x[0][first])
    else:
        assert np.all(patch == 7.0)
    assert np.array_equal(x2[first], patch)  # cumulative: step 2 keeps the first patch
    assert not np.array_equal(x2[second], x[0][second])


def test_replacement_images_blur_keeps_constant_and_noise_is_seeded():
    const = np.full((1, 9, 9, 2), 0.25, dtype=np.float32)
    rng = np.random.default_rng(0)
    assert np.allclose(replacement_images(const, "blur", rng, blur_sigma=3.0), 0.25)
    a = replacement_images(const, "noise", np.random.default_rng(5), noise_range=(-1, 1))
    b = replacement_images(const, "noise", np.random.default_rng(5), noise_range=(-1, 1))
    assert np.array_equal(a, b) and a.min() >= -1 and a.max() <= 1


def test_perturbation_accepts_keras_model_and_uses_logits():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 1))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    before = weights_of(model)
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype(np.float32)
    res = region_perturbation(model, x, np.abs(x), targets=[0, 2], patch_size=2, steps=3)
    k, b = model.get_weights()
    logits = x.reshape(2, -1) @ k + b
    assert np.allclose(res.curves[:, 0], logits[[0, 1], [0, 2]], atol=1e-5)
    assert_unchanged(model, before)


@pytest.mark.parametrize("head", ["dense_softmax", "activation", "softmax_layer", "sigmoid"])
def test_score_function_strips_final_activation(head):
    keras.utils.set_random_seed(0)
    inp = keras.Input((3,))
    units = 1 if head == "sigmoid" else 2
    act = "sigmoid" if head == "sigmoid" else "softmax"
    dense = keras.layers.Dense(
        units, activation=act if head in ("dense_softmax", "sigmoid") else None
    )
    z = dense(inp)
    if head == "activation":
        z = keras.layers.Activation("softmax")(z)
    elif head == "softmax_layer":
        z = keras.layers.Softmax()(z)
    model = keras.Model(inp, z)
    before = weights_of(model)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    k, b = dense.get_weights()
    assert np.allclose(score_function(model)(x), x @ k + b, atol=1e-5)
    probs = score_function(model, logits=False)(x)
    assert np.allclose(probs, keras.ops.convert_to_numpy(model(x)))
    assert_unchanged(model, before)


def test_score_function_strips_softmax_inside_nested_model_and_compiles_once():
    keras.utils.set_random_seed(0)
    head_in = keras.Input((6,))
    head = keras.Model(
        head_in, keras.layers.Dense(3, activation="softmax", name="cls")(head_in), name="head"
    )
    inp = keras.Input((3, 2))
    model = keras.Model(inp, head(keras.layers.Flatten()(inp)))
    before = weights_of(model)
    k, b = head.get_layer("cls").get_weights()
    net = CanonicalModel(model)
    for n in (1, 4, 2):
        x = np.random.default_rng(n).normal(size=(n, 3, 2)).astype(np.float32)
        assert np.allclose(net(x), x.reshape(n, -1) @ k + b, atol=1e-5)
    assert net._forward.experimental_get_tracing_count() == 1
    assert np.allclose(score_function(model)(x), x.reshape(len(x), -1) @ k + b, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((2, 6), np.float32))
    assert_unchanged(model, before)


def test_score_function_calls_subclassed_models_as_they_are():
    class Scaled(keras.Model):
        def call(self, x):
            return 2.0 * x

    x = np.ones((2, 3), np.float32)
    assert np.array_equal(score_function(Scaled())(x), 2.0 * x)


# ----------------------------------------------------------------------------- discriminativeness


@FAST
@given(st.integers(0, 2**31 - 1))
def test_correlation_identity_and_negation(seed):
    m = np.random.default_rng(seed).normal(size=(2, 6, 5, 3))
    assert np.allclose(map_correlation(m, m), 1.0)
    assert np.allclose(map_correlation(m, -m), -1.0)
    assert np.allclose(map_correlation(m, 3 * m + 1), 1.0)


def test_correlation_constant_map_is_nan():
    m = np.random.default_rng(0).normal(size=(1, 4, 4))
    assert np.isnan(map_correlation(m, np.zeros_like(m))[0])


def test_mass_in_region():
    m = np.zeros((3, 10, 10))
    m[0, 2:4, 2:4] = 1.0  # all inside the box
    m[1, 2, 2], m[1, 8, 8] = 1.0, 1.0  # half inside
    m[2, 2, 2], m[2, 8, 8] = 1.0, -5.0  # negative relevance outside is ignored
    box = (2, 2, 5, 5)
    assert np.allclose(relevance_mass_in_region(m, [box] * 3), [1.0, 0.5, 1.0])
    mask = box_to_mask(box, (10, 10))
    assert np.allclose(relevance_mass_in_region(m, np.stack([mask] * 3)), [1.0, 0.5, 1.0])
    assert np.isnan(relevance_mass_in_region(-np.abs(m[:1]), [box])[0])


def test_discriminativeness_report_two_classes():
    a = np.zeros((1, 10, 10, 3))
    b = np.zeros((1, 10, 10, 3))
    a[0, 1:3, 1:3] = 1.0
    b[0, 6:9, 6:9] = 1.0
    rep = discriminativeness_report(
        {"cat": a, "dog": b}, {"cat": [(0, 0, 4, 4)], "dog": [(5, 5, 10, 10)]}
    )
    assert rep.own_mass["cat"][0] == 1.0 and rep.own_mass["dog"][0] == 1.0
    assert rep.other_mass["cat"][0] == 0.0 and rep.mass[("dog", "cat")][0] == 0.0
    assert rep.correlation[("cat", "dog")][0] < 0
    assert rep.summary()["own_mass"] == 1.0


# ----------------------------------------------------------------------------- unit ablation


def tiny_dense() -> keras.Model:
    inp = keras.Input((2,))
    h = keras.layers.Dense(3, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(2, activation="softmax", name="out")(h)
    model = keras.Model(inp, out)
    model.get_layer("hidden").set_weights(
        [np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]], "float32"), np.array([0, 0, 0.5], "float32")]
    )
    model.get_layer("out").set_weights(
        [np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], "float32"), np.zeros(2, "float32")]
    )
    return model


def test_unit_ablation_by_hand_and_model_untouched():
    model = tiny_dense()
    before = weights_of(model)
    nodes = len(model.get_layer("hidden")._inbound_nodes)
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    probs = keras.ops.convert_to_numpy(model(x))
    # h = relu([1, 2, -1 + 2 + 0.5]) = [1, 2, 1.5]; logits = [1 + 1.5, 2 - 1.5] = [2.5, 0.5]
    effect = unit_ablation(model, x, "hidden", batch_size=2)
    expected = np.array([[[-1.0, 0.0]], [[0.0, -2.0]], [[-1.5, 1.5]]])
    assert effect.shape == (3, 1, 2)
    assert np.allclose(effect, expected, atol=1e-6)
    assert np.allclose(unit_ablation(model, x, "hidden", units=[2]), expected[2:], atol=1e-6)
    assert_unchanged(model, before)
    assert len(model.get_layer("hidden")._inbound_nodes) == nodes
    assert model.get_layer("out").activation.__name__ == "softmax"
    assert np.array_equal(keras.ops.convert_to_numpy(model(x)), probs)


def test_unit_ablation_dag_with_skip_connection():
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,))
    h1 = keras.layers.Dense(5, activation="relu", name="h1")(inp)
    h2 = keras.layers.Dense(5, activation="relu", name="h2")(h1)
    merged = keras.layers.Dropout(0.5)(keras.layers.Add()([h1, h2]))
    out = keras.layers.Dense(3, activation="softmax", name="out")(merged)
    model = keras.Model(inp, out)
    before = weights_of(model)
    x = np.random.default_rng(2).normal(size=(7, 4)).astype(np.float32)
    effect = unit_ablation(model, x, "h2", batch_size=4)
    (w1, b1), (w2, b2), (wo, bo) = (model.get_layer(n).get_weights() for n in ("h1", "h2", "out"))
    a1 = np.maximum(x @ w1 + b1, 0)
    a2 = np.maximum(a1 @ w2 + b2, 0)
    clean = (a1 + a2) @ wo + bo
    for u in range(5):
        z = a2.copy()
        z[:, u] = 0
        assert np.allclose(effect[u], (a1 + z) @ wo + bo - clean, atol=1e-5)
    assert_unchanged(model, before)


def test_unit_ablation_conv_channels():
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, name="dense"),
        ]
    )
    x = np.random.default_rng(3).normal(size=(3, 6, 6, 1)).astype(np.float32)
    pooled = keras.ops.convert_to_numpy(keras.ops.mean(model.get_layer("conv")(x), axis=(1, 2)))
    w = model.get_layer("dense").get_weights()[0]
    effect = unit_ablation(model, x, "conv")
    assert np.allclose(effect, -pooled.T[:, :, None] * w[:, None, :], atol=1e-5)


def test_unit_ablation_errors():
    model = tiny_dense()
    x = np.ones((1, 2), dtype=np.float32)
    with pytest.raises(ValueError):
        unit_ablation(model, x, "out")
    with pytest.raises(ValueError):
        unit_ablation(model, x, "nope")
    shared = keras.layers.Dense(2, name="shared")
    inp = keras.Input((2,))
    m2 = keras.Model(inp, keras.layers.Dense(1)(shared(shared(inp))))
    with pytest.raises(ValueError, match="shared"):
        unit_ablation(m2, x, "shared")


def body(name: str = "body") -> keras.Model:
    sub_in = keras.Input((4,))
    return keras.Model(
        sub_in, keras.layers.Dense(5, activation="relu", name="inner")(sub_in), name=name
    )


def test_unit_ablation_layer_inside_nested_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((4,))
    out = keras.layers.Dense(3, activation="softmax", name="out")(body()(inp))
    model = keras.Model(inp, out)
    before = weights_of(model)
    x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
    w1, b1 = model.get_layer("body").get_layer("inner").get_weights()
    wo = model.get_layer("out").get_weights()[0]
    a = np.maximum(x @ w1 + b1, 0)
    expected = -a.T[:, :, None] * wo[:, None, :]  # (units, N, classes)
    for name in ("inner", "body/inner"):
        assert np.allclose(unit_ablation(model, x, name, batch_size=3), expected, atol=1e-5)
    assert_unchanged(model, before)
    # a sub-model called twice shares its layers: ambiguous
    shared = body("shared_body")
    inp = keras.Input((4,))
    twice = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Add()([shared(inp), shared(inp)])))
    with pytest.raises(ValueError, match="shared"):
        unit_ablation(twice, x, "inner")


def test_rank_agreement_and_unit_relevance():
    rel = np.array([3.0, 1.0, 2.0])
    assert rank_agreement(-rel, rel) == pytest.approx(1.0)
    assert rank_agreement(rel, rel) == pytest.approx(-1.0)
    per_sample = rank_agreement(np.stack([-rel, rel], 1), np.stack([rel, rel], 1))
    assert np.allclose(per_sample, [1.0, -1.0])
    layer_rel = np.arange(2 * 2 * 2 * 3, dtype=float).reshape(2, 2, 2, 3)
    assert np.allclose(unit_relevance(layer_rel), layer_rel.sum(axis=(1, 2)).T)


# ----------------------------------------------------------------------------- occlusion / PDA


def linear_keras(shape=(8, 8, 1), classes=2, seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape)
    out = keras.layers.Dense(classes, activation="softmax", name="lin")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


def window_contributions(w_map: np.ndarray, x: np.ndarray, ref: np.ndarray, win: int) -> np.ndarray:
    contrib = (w_map * (x - ref)).sum(axis=-1)  # (N, H, W)
    n, h, w = contrib.shape
    return contrib.reshape(n, h // win, win, w // win, win).sum(axis=(2, 4))


def test_occlusion_linear_model_equals_window_contribution():
    model = linear_keras((8, 8, 2), classes=3)
    before = weights_of(model)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype(np.float32)
    kernel = model.get_layer("lin").get_weights()[0].reshape(8, 8, 2, 3)
    occ = Occlusion(model, window=4, stride=4, baseline=0.5, batch_size=5)
    r = occ.analyze(x, neuron_selection=[1, 2])
    assert r.shape == x.shape and r.dtype == np.float32
    for n, c in enumerate([1, 2]):
        expected = window_contributions(kernel[..., c], x[n : n + 1], 0.5, 4)[0]
        got = r[n].sum(axis=-1).reshape(2, 4, 2, 4).sum(axis=(1, 3))
        assert np.allclose(got, expected, atol=1e-4)
        # spread evenly: every element of a window holds Δ / (16 · 2)
        assert np.allclose(r[n, :4, :4], expected[0, 0] / 32, atol=1e-5)
    assert_unchanged(model, before)


def test_occlusion_overlapping_windows_cover_everything():
    model = linear_keras((7, 9, 1))
    x = np.random.default_rng(1).normal(size=(1, 7, 9, 1)).astype(np.float32)
    starts, size = sliding_windows((7, 9), 4, 3)
    assert size == (4, 4) and {tuple(s) for s in starts} >= {(3, 5), (0, 0)}
    r = Occlusion(model, window=4, stride=3).analyze(x)
    assert np.all(np.isfinite(r))
    # per pixel: mean over covering windows of Δ_w / |w|, Δ_w from the linear model
    kernel = model.get_layer("lin").get_weights()[0].reshape(7, 9, 1, 2)
    c = int(np.argmax(x.reshape(1, -1) @ model.get_layer("lin").get_weights()[0]))
    contrib = (kernel[..., c] * x[0]).sum(-1)
    acc, cnt = np.zeros((7, 9)), np.zeros((7, 9))
    for y, xx in starts:
        acc[y : y + 4, xx : xx + 4] += contrib[y : y + 4, xx : xx + 4].sum() / 16
        cnt[y : y + 4, xx : xx + 4] += 1
    assert np.allclose(r[0, ..., 0], acc / cnt, atol=1e-5)


def test_pda_marginal_converges_to_linear_answer():
    model = linear_keras((8, 8, 1), classes=2, seed=4)
    before = weights_of(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, 8, 1)).astype(np.float32)
    ref = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    kernel = model.get_layer("lin").get_weights()[0].reshape(8, 8, 1, 2)
    pda = PredictionDifference(
        model, window=4, stride=4, n_samples=600, reference=ref, evidence="logit", batch_size=1200
    )
    r = pda.analyze(x, neuron_selection=0)
    got = r[0].sum(axis=-1).reshape(2, 4, 2, 4).sum(axis=(1, 3))
    expected = window_contributions(kernel[..., 0], x, ref.mean(axis=0), 4)[0]
    spread = np.abs(window_contributions(kernel[..., 0], ref, ref.mean(axis=0), 4)).max()
    assert np.allclose(got, expected, atol=0.15 * spread)
    assert_unchanged(model, before)


def test_pda_log_odds_zero_when_reference_is_the_input_and_stable_log_probs():
    model = linear_keras((4, 4, 1), classes=3)
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 1)).astype(np.float32)
    pda = PredictionDifference(model, window=2, stride=2, n_samples=3, reference=x)
    assert np.allclose(pda.analyze(x), 0.0, atol=1e-6)
    z = np.array([[1.0, 2.0, -1.0], [800.0, 0.0, -800.0]])
    lp, l1p = log_probs(z, np.array([1, 0]))
    p = np.exp(z[0] - z[0].max()) / np.exp(z[0] - z[0].max()).sum()
    assert lp[0] == pytest.approx(np.log(p[1])) and l1p[0] == pytest.approx(np.log(1 - p[1]))
    assert lp[1] == pytest.approx(0.0) and l1p[1] == pytest.approx(-800.0)


def test_pda_conditional_uses_the_frame():
    # reference images are constant → patches are perfectly correlated: the conditional
    # sampler fills the window with the frame's value, the marginal one does not
    model = linear_keras((8, 8, 1), classes=2, seed=5)
    rng = np.random.default_rng(1)
    ref = (np.ones((20, 8, 8, 1)) * rng.normal(size=(20, 1, 1, 1))).astype(np.float32)
    x = np.full((1, 8, 8, 1), 0.7, dtype=np.float32)
    common = dict(window=2, stride=2, n_samples=4, reference=ref, evidence="logit")
    cond = PredictionDifference(model, sampling="conditional", frame=1, **common).analyze(x, 0)
    marg = PredictionDifference(model, sampling="marginal", **common).analyze(x, 0)
    assert cond.shape == x.shape
    assert np.abs(cond).max() < 0.05 * np.abs(marg).max()


def test_pda_marginal_needs_two_images():
    model = linear_keras((4, 4, 1))
    with pytest.raises(ValueError):
        PredictionDifference(model).analyze(np.zeros((1, 4, 4, 1), np.float32))
    r = PredictionDifference(model, window=2, n_samples=2).analyze(
        np.random.default_rng(0).normal(size=(2, 4, 4, 1))
    )
    assert r.shape == (2, 4, 4, 1) and np.all(np.isfinite(r))


@pytest.mark.parametrize(
    ("name", "cls", "options"),
    [
        ("occlusion", Occlusion, dict(window=4, stride=2, baseline=0.25)),
        ("prediction_difference", PredictionDifference, dict(window=4, stride=4, n_samples=3)),
    ],
)
def test_create_analyzer_model_agnostic(name, cls, options):
    import tf_clrp

    assert name in tf_clrp.list_analyzers()
    model = linear_keras((8, 8, 1), classes=3, seed=6)
    x = np.random.default_rng(6).normal(size=(3, 8, 8, 1)).astype(np.float32)
    analyzer = tf_clrp.create_analyzer(name, model, **options)
    assert isinstance(analyzer, cls)
    assert np.array_equal(
        analyzer.analyze(x, neuron_selection=[0, 2, 1]),
        cls(model, **options).analyze(x, neuron_selection=[0, 2, 1]),
    )
    with pytest.raises(TypeError, match="window") as err:
        tf_clrp.create_analyzer(name, model, windw=4)
    assert "windw" in str(err.value)
    with pytest.raises(TypeError, match="fold_batch_norm"):  # engine options are not taken
        tf_clrp.create_analyzer(name, model, fold_batch_norm=False)


# ----------------------------------------------------------------------------- quantus adapter


def test_quantus_explain_func(monkeypatch):
    import tf_clrp

    seen = {}

    class Fake:
        def analyze(self, x, neuron_selection):
            seen["x_shape"], seen["sel"] = x.shape, neuron_selection
            return np.ones_like(x)

    def create(method, model, **kwargs):
        seen["method"], seen["kwargs"] = method, kwargs
        return Fake()

    monkeypatch.setattr(tf_clrp, "create_analyzer", create, raising=False)
    model = linear_keras((5, 6, 3))
    out = explain_func(
        model=model,
        inputs=np.zeros((2, 3, 5, 6)),
        targets=np.array([1, 0]),
        method="lrp.z",
        device="cpu",
        epsilon=0.1,
    )
    assert seen["method"] == "lrp.z" and seen["kwargs"] == {"epsilon": 0.1}
    assert seen["x_shape"] == (2, 5, 6, 3) and list(seen["sel"]) == [1, 0]
    assert out.shape == (2, 3, 5, 6) and out.dtype == np.float32
