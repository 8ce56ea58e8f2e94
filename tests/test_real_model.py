"""LRP and CLRP on the real ImageNet EfficientNet-Lite0 with bundled photos."""

from __future__ import annotations

import numpy as np
import pytest

import tf_clrp
from tf_clrp.metrics import PointingGame
from tf_clrp.zoo import (
    PREPROCESSING_BOUNDS,
    efficientnet_lite0,
    load_photo,
    make_mosaic,
    preprocess_input,
)

CAT, ESPRESSO = 285, 967


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def mosaic() -> tuple[np.ndarray, list]:
    photos = [load_photo(name, size=112) for name in ("chelsea", "coffee", "motorcycle", "camera")]
    image, boxes = make_mosaic(photos, grid=(2, 2), tile=112)
    return preprocess_input(image[None]), boxes


def test_z_plus_on_the_real_model_is_positive_and_never_creates_relevance(model) -> None:
    x = preprocess_input(np.stack([load_photo("chelsea"), load_photo("coffee")]))
    relevance = tf_clrp.create_analyzer("lrp.z_plus", model).analyze(
        x, neuron_selection=[CAT, ESPRESSO]
    )
    logits = model(x).numpy()[[0, 1], [CAT, ESPRESSO]]
    sums = relevance.reshape(2, -1).sum(axis=1)
    # z⁺ splits each unit's relevance over its positive contributions (or drops it when there
    # are none): relevance is non-negative and its total never exceeds the seed.
    assert relevance.min() >= 0.0
    assert np.all(sums > 0) and np.all(sums <= logits * (1 + 1e-4))


def test_clrp_points_at_the_right_tile_of_a_mosaic(model, mosaic) -> None:
    x, boxes = mosaic
    clrp = tf_clrp.create_analyzer("clrp", model, input_layer_rule=PREPROCESSING_BOUNDS)
    lrp = tf_clrp.create_analyzer("lrp.z_plus", model, input_layer_rule=PREPROCESSING_BOUNDS)
    maps = {c: clrp.analyze(x, neuron_selection=c) for c in (CAT, ESPRESSO)}
    plain = {c: lrp.analyze(x, neuron_selection=c) for c in (CAT, ESPRESSO)}
    game = PointingGame()
    game.update(np.concatenate([maps[CAT], maps[ESPRESSO]]), [boxes[0], boxes[1]], [0, 1])
    assert game.result().mean == 1.0

    # class-discriminative: the CLRP maps of the two classes differ much more than LRP's
    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.sum(-1).ravel(), b.sum(-1).ravel())[0, 1])

    assert correlation(maps[CAT], maps[ESPRESSO]) < correlation(plain[CAT], plain[ESPRESSO])
    # most of each CLRP map lies on its own photo (a quarter of the mosaic)
    for c, (y0, x0, y1, x1) in ((CAT, boxes[0]), (ESPRESSO, boxes[1])):
        m = maps[c][0].sum(-1)
        assert m[y0:y1, x0:x1].sum() > 0.5 * m.sum()
