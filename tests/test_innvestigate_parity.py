"""Numerical parity of tf_clrp with iNNvestigate 2.1.2.

Reference outputs come from ``tests/references/generate_innvestigate.py`` (run in a
separate TF 2.14 venv, see that file); semantics are documented in
``tests/references/INNVESTIGATE_NOTES.md``.

To stay fast, the ``max_activation`` variants of the "conv" and "avgpool" models are
marked ``slow`` (neuron selection is model-independent; "dense" and "cnn" cover it).
Run everything with ``pytest tests/test_innvestigate_parity.py -m "slow or not slow"``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import pytest

REF_DIR = Path(__file__).resolve().parent / "references"
NPZ_PATH = REF_DIR / "innvestigate_refs.npz"

if not NPZ_PATH.exists():
    pytest.skip(f"missing {NPZ_PATH}", allow_module_level=True)

REFS = np.load(NPZ_PATH)
META: dict[str, Any] = json.loads(str(REFS["meta"]))
ENTRIES: list[dict[str, Any]] = META["entries"]
MODEL_NAMES: list[str] = list(META["models"])
#: Models whose max_activation entries run by default (the others are marked slow).
FAST_MAX_ACTIVATION_MODELS = ("dense", "cnn")


def _load_ref_models() -> ModuleType:
    """Import tests/references/ref_models.py without making tests a package."""
    spec = importlib.util.spec_from_file_location("_inn_ref_models", REF_DIR / "ref_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref_models = _load_ref_models()


def _stored_weights(model_name: str) -> dict[str, list[np.ndarray]]:
    layers = META["models"][model_name]["weighted_layers"]
    return {name: [REFS[f"w/{model_name}/{name}/{i}"] for i in range(2)] for name in layers}


def _build(model_name: str) -> Any:
    model = ref_models.build(model_name, keras)
    ref_models.set_weights(model, _stored_weights(model_name))
    return model


def _kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    """JSON turned tuples (e.g. ``input_layer_rule=(-1, 1)``) into lists; undo that."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def _entry_id(entry: dict[str, Any]) -> str:
    kw = ",".join(f"{k}={json.dumps(v).replace(' ', '')}" for k, v in entry["kwargs"].items())
    sel = entry["neuron_selection"]
    sel_s = "max" if sel == "max_activation" else f"idx{json.dumps(sel).replace(' ', '')}"
    return f"{entry['model']}-{entry['name']}({kw})-{sel_s}"


def _params(stochastic: bool) -> list[Any]:
    params = []
    for entry in ENTRIES:
        if bool(entry.get("stochastic")) != stochastic:
            continue
        marks = []
        if (
            entry["neuron_selection"] == "max_activation"
            and entry["model"] not in FAST_MAX_ACTIVATION_MODELS
        ):
            marks.append(pytest.mark.slow)
        if entry["status"] != "ok":
            marks.append(pytest.mark.skip(reason=f"iNNvestigate failed: {entry['error']}"))
        params.append(pytest.param(entry, id=_entry_id(entry), marks=marks))
    return params


def _analyze(tf_clrp: ModuleType, model: Any, entry: dict[str, Any], kwargs: dict) -> np.ndarray:
    """Run tf_clrp like the reference: int/list selection, or default max_activation."""
    analyzer = tf_clrp.create_analyzer(entry["name"], model, **kwargs)
    x = REFS[f"x/{entry['model']}"]
    sel = entry["neuron_selection"]
    if sel == "max_activation":
        return np.asarray(analyzer.analyze(x))
    return np.asarray(analyzer.analyze(x, neuron_selection=sel))


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    """The reference models, rebuilt in Keras 3 with the stored weights (built once)."""
    return {name: _build(name) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def tf_clrp() -> ModuleType:
    """The engine under test (imported lazily so the forward tests run without it)."""
    import tf_clrp as module

    return module


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_forward_matches_reference(model_name: str, models: dict[str, Any]) -> None:
    """Keras 3 rebuild + stored weights reproduces the tf.keras 2.14 model outputs."""
    out = np.asarray(models[model_name](REFS[f"x/{model_name}"]))
    np.testing.assert_allclose(out, REFS[f"fwd/{model_name}"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_weights_regenerate_identically(model_name: str) -> None:
    """ref_models.make_weights gives the stored numbers in Keras 3 too (same layouts)."""
    model = ref_models.build(model_name, keras)
    fresh = ref_models.make_weights(model)
    stored = _stored_weights(model_name)
    assert list(fresh) == list(stored)
    for name, arrays in stored.items():
        for a, b in zip(fresh[name], arrays, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_reference_spec_reproduces_refs() -> None:
    """The Keras 3 executable spec (semantics_check_keras3.py) matches every reference."""
    spec = importlib.util.spec_from_file_location(
        "_inn_semantics_check", REF_DIR / "semantics_check_keras3.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bad = [(key, err) for key, err in module.check_all(NPZ_PATH) if err > 1e-4]
    assert not bad, bad[:5]


@pytest.mark.parametrize("entry", _params(stochastic=False))
def test_parity(entry: dict[str, Any], models: dict[str, Any], tf_clrp: ModuleType) -> None:
    """tf_clrp reproduces iNNvestigate's analysis for one analyzer/model/selection."""
    model = models[entry["model"]]
    x = REFS[f"x/{entry['model']}"]
    ref = REFS[entry["key"]]
    ours = _analyze(tf_clrp, model, entry, _kwargs(entry["kwargs"]))

    assert ours.shape == ref.shape
    scale = float(np.max(np.abs(ref)))
    atol = 1e-2 * scale + 1e-6
    if not np.allclose(ours, ref, rtol=1e-2, atol=atol):
        diff = np.abs(ours - ref)
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        pytest.fail(
            f"max |ours - ref| = {diff.max():.3e} at {worst} (ours {ours[worst]:.4e}, "
            f"ref {ref[worst]:.4e}); max |ref| = {scale:.3e}; "
            f"{int(np.sum(diff > atol + 1e-2 * np.abs(ref)))}/{ref.size} elements off"
        )
    # Analyzers must not modify the (shared) model.
    np.testing.assert_allclose(
        np.asarray(model(x)), REFS[f"fwd/{entry['model']}"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("entry", _params(stochastic=True))
def test_smoothgrad_expectation(
    entry: dict[str, Any], models: dict[str, Any], tf_clrp: ModuleType
) -> None:
    """SmoothGrad (random): both Monte-Carlo means agree within 5 standard errors."""
    test_kwargs = _kwargs(entry["test_kwargs"])
    ours = _analyze(tf_clrp, models[entry["model"]], entry, test_kwargs)
    ref = REFS[entry["key"]]
    # se = std of one mean over `se_samples` draws; rescale to both estimates.
    se = REFS[entry["se_key"]].astype(np.float64)
    var_ref = se**2 * entry["se_samples"] / entry["mc_samples"]
    var_ours = se**2 * entry["se_samples"] / test_kwargs["augment_by_n"]
    tol = 5.0 * np.sqrt(var_ref + var_ours) + 1e-3 * np.max(np.abs(ref))
    assert ours.shape == ref.shape
    bad = np.abs(ours - ref) > tol
    assert not bad.any(), (
        f"{int(bad.sum())}/{ref.size} elements outside 5 s.e.; "
        f"max |ours - ref| / tol = {float(np.max(np.abs(ours - ref) / tol)):.2f}"
    )
