"""Insertion/deletion AUC and the model-parameter randomisation test, against independent
references: scikit-image's SSIM, rank correlations computed here by brute force, a slow
step-by-step insertion/deletion loop, and closed-form gradients of linear models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import randomize
from skimage.metrics import structural_similarity

from tf_clrp.metrics import insertion_deletion, model_randomization, ssim
from tf_clrp.metrics._common import spearman
from tf_clrp.metrics.randomization import weighted_layers


# ----------------------------------------------------------------------------- SSIM, Spearman
@pytest.mark.parametrize("shape", [(7, 7), (12, 9), (30, 41)])
def test_ssim_matches_scikit_image(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    a = rng.uniform(size=shape)
    b = np.clip(a + rng.normal(0, 0.2, shape), 0, 1)
    for other in (b, rng.uniform(size=shape), a):
        expected = structural_similarity(a, other, data_range=1.0)
        assert ssim(a, other) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def brute_force_ranks(v: np.ndarray) -> np.ndarray:
    """Average rank (0-based) of each value: #smaller + (#equal − 1)/2."""
    v = np.asarray(v, np.float64).ravel()
    return np.array([(v < e).sum() + ((v == e).sum() - 1) / 2 for e in v])


def brute_force_spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(brute_force_ranks(a), brute_force_ranks(b))[0, 1])


def test_spearman_matches_brute_force_ranks_with_ties() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 60).astype(float)  # many ties
    b = a + rng.integers(0, 3, 60)
    assert spearman(a, b) == pytest.approx(brute_force_spearman(a, b), abs=1e-12)
    c, d = rng.normal(size=80), rng.normal(size=80)
    assert spearman(c, d) == pytest.approx(brute_force_spearman(c, d), abs=1e-12)


# ----------------------------------------------------------------------------- randomisation
@keras.saving.register_keras_serializable(package="tf_clrp_tests")
class KnownInit(keras.initializers.Initializer):
    """Deterministic 'random' weights: normal draws of numpy seed ``which``."""

    def __init__(self, which: int = 0) -> None:
        self.which = which

    def __call__(self, shape, dtype=None):
        values = np.random.default_rng(100 + self.which).normal(size=shape)
        return keras.ops.convert_to_tensor(values.astype("float32"))

    def get_config(self) -> dict:
        return {"which": self.which}


def linear_model() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(5, kernel_initializer=KnownInit(1), name="d1")(h)
    model = keras.Model(inp, keras.layers.Dense(3, kernel_initializer=KnownInit(2), name="d2")(h))
    randomize(model)  # the "trained" weights
    return model


def gradient_map(w1: np.ndarray, w2: np.ndarray, target: int) -> np.ndarray:
    return np.abs((w1 @ w2[:, target]).reshape(8, 8))


def unit(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_gradient_of_a_linear_model_in_closed_form(mode: str) -> None:
    model = linear_model()
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    result = model_randomization(model, x, "gradient", targets=[0, 2], mode=mode)
    assert result.steps == [["d2"], ["d1"]]
    w1, w2 = model.get_layer("d1").kernel.numpy(), model.get_layer("d2").kernel.numpy()
    k1, k2 = KnownInit(1)(w1.shape).numpy(), KnownInit(2)(w2.shape).numpy()
    after = {"cascading": [(w1, k2), (k1, k2)], "independent": [(w1, k2), (k1, w2)]}[mode]
    for step, (a, b) in enumerate(after):
        for i, target in enumerate((0, 2)):
            original = gradient_map(w1, w2, target)
            randomised = gradient_map(a, b, target)
            assert result.spearman[step, i] == pytest.approx(
                brute_force_spearman(original, randomised), abs=1e-5
            )
            assert result.ssim[step, i] == pytest.approx(
                structural_similarity(unit(original), unit(randomised), data_range=1.0), abs=1e-4
            )
    for a, b in zip(before, model.get_weights()):
        assert a.tobytes() == b.tobytes()


def nested_cnn() -> keras.Model:
    base = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Conv2D(5, 3, activation="relu", name="c2"),
        ],
        name="base",
    )
    inp = keras.Input((10, 10, 3))
    h = keras.layers.GlobalAveragePooling2D()(base(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="head")(h))
    randomize(model)
    return model


def test_weight_independent_map_scores_one_and_user_model_is_untouched() -> None:
    model = nested_cnn()
    before = [w.numpy().tobytes() for w in model.weights]
    x = np.random.default_rng(1).normal(size=(3, 10, 10, 3)).astype(np.float32)
    assert weighted_layers(model) == ["head", "base/c2", "base/bn", "base/c1"]
    for mode in ("cascading", "independent"):
        result = model_randomization(model, x, lambda m, xs, t: xs, mode=mode)
        np.testing.assert_allclose(result.spearman, 1.0, atol=1e-12)
        np.testing.assert_allclose(result.ssim, 1.0, atol=1e-12)
    sensitive = model_randomization(model, x, "gradient")
    assert sensitive.mean_spearman[-1] < 0.9
    assert [w.numpy().tobytes() for w in model.weights] == before


def test_randomisation_errors() -> None:
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="mode"):
        model_randomization(linear_model(), x, "gradient", mode="top")
    with pytest.raises(ValueError, match="no layer named"):
        model_randomization(linear_model(), x, "gradient", layers=["nope"])


# ----------------------------------------------------------------------------- insertion/deletion
def probability_model() -> keras.Model:
    inp = keras.Input((6, 5, 2))
    h = keras.layers.Conv2D(3, 3, activation="relu", padding="same")(inp)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h))
    randomize(model)
    return model


def reference_curve(
    model: keras.Model,
    x: np.ndarray,
    saliency: np.ndarray,
    target: int,
    per_step: int,
    substrate: np.ndarray,
    deletion: bool,
) -> np.ndarray:
    """One image, one step and one Keras call at a time."""
    h, w = saliency.shape
    flat = saliency.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))  # descending, ties row-major
    n_steps = -(-flat.size // per_step)
    curve = []
    for k in range(n_steps + 1):
        changed = np.zeros(flat.size, bool)
        changed[order[: min(k * per_step, flat.size)]] = True
        changed = changed.reshape(h, w)[..., None]
        image = np.where(changed, substrate, x) if deletion else np.where(changed, x, substrate)
        curve.append(float(np.asarray(model(image[None].astype(np.float32)))[0, target]))
    return np.array(curve)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_insertion_deletion_match_the_slow_reference(mode: str) -> None:
    model = probability_model()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 5, 2)).astype(np.float32)
    maps = np.round(rng.normal(size=(3, 6, 5, 2)), 1)  # rounding makes ties
    substrate = rng.normal(size=x.shape).astype(np.float32)
    result = insertion_deletion(
        model,
        x,
        maps,
        mode=mode,
        targets=[0, 1, 3],
        pixels_per_step=4,
        substrate=lambda imgs, r: substrate,
        batch_size=5,
    )
    for i, target in enumerate((0, 1, 3)):
        curve = reference_curve(
            model, x[i], maps[i].sum(-1), target, 4, substrate[i], mode == "deletion"
        )
        np.testing.assert_allclose(result.curves[i], curve, rtol=1e-5, atol=1e-7)
        auc = np.trapezoid(curve, dx=1.0 / (len(curve) - 1))
        assert result.auc[i] == pytest.approx(auc, rel=1e-6)
    assert result.fractions[-1] == 1.0 and len(result.fractions) == 9


def test_deletion_of_a_linear_score_in_closed_form() -> None:
    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False)(keras.layers.Flatten()(inp)))
    w = np.arange(1.0, 17.0).reshape(16, 1).astype(np.float32)
    model.set_weights([w])
    x = np.ones((1, 4, 4, 1), np.float32)
    contribution = w.reshape(1, 4, 4)  # x·w per pixel, the ideal map
    result = insertion_deletion(
        model, x, contribution, mode="deletion", pixels_per_step=1, logits=True
    )
    remaining = 136.0 - np.concatenate([[0.0], np.cumsum(np.arange(16.0, 0.0, -1.0))])
    np.testing.assert_allclose(result.curves[0], remaining, rtol=1e-6)
    assert result.auc[0] == pytest.approx((remaining.sum() - 68.0) / 16.0)
    worst = insertion_deletion(
        model, x, -contribution, mode="deletion", pixels_per_step=1, logits=True
    )
    assert worst.auc[0] > result.auc[0]


def test_randomization_reaches_layers_walked_inside_attention() -> None:
    """Default steps of a ViT name MultiHeadAttention's projections (``block0_mha/query``):
    each is re-initialised (the top step changes the logits' map; the model is untouched)."""
    import transformer_models

    from tf_clrp.metrics import model_randomization
    from tf_clrp.metrics.randomization import weighted_layers

    model = transformer_models.randomize(transformer_models.build_vit(), 5)
    before = [w.numpy().copy() for w in model.weights]
    names = weighted_layers(model)
    assert "block0_mha/query" in names
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype(np.float32)
    result = model_randomization(
        model, x, "gradient", layers=[["block1_mha/query", "block1_mha/key"]]
    )
    assert np.isfinite(result.spearman).all() and (result.spearman < 0.999).any()
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
