"""Reduced-precision CLRP on the real EfficientNet-Lite0, for every named contrast."""

from __future__ import annotations

import numpy as np
import pytest

import tf_clrp
from tf_clrp.zoo import PREPROCESSING_BOUNDS, efficientnet_lite0, load_photo, preprocess_input

CAT, ESPRESSO = 285, 967
#: Measured (2 photos): Pearson r >= 0.999999, max |difference| <= 3.3e-3 of the max.
MIN_PEARSON = 0.9999
MAX_DIFFERENCE = 1e-2


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return preprocess_input(np.stack([load_photo("chelsea"), load_photo("coffee")]))


@pytest.mark.slow
@pytest.mark.parametrize("contrast", ["others", "others_uniform", "negated"])
def test_reduced_precision_parts_match_float32(model, photos, contrast) -> None:
    def parts(precision: str):
        analyzer = tf_clrp.create_analyzer(
            "clrp",
            model,
            contrast=contrast,
            input_layer_rule=PREPROCESSING_BOUNDS,
            precision=precision,
        )
        assert analyzer.dual_by_linearity
        return analyzer.analyze(photos, neuron_selection=[CAT, ESPRESSO], return_parts=True)

    exact = parts("float32")
    for precision in ("mixed", "bfloat16"):
        low = parts(precision)
        for part in ("contrastive", "difference", "dual"):
            for i in range(2):
                a, b = getattr(exact, part)[i], getattr(low, part)[i]
                r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
                err = np.abs(a - b).max() / np.abs(a).max()
                assert r >= MIN_PEARSON and err <= MAX_DIFFERENCE, (precision, part, i, r, err)
