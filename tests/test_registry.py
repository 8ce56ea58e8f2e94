"""The registry's declared entries are true: defaults, accepted options, the docs' table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest

import tf_clrp
from tf_clrp.registry import ANALYZERS, ENTRIES, FAMILIES, create_analyzer, entry

ROOT = Path(__file__).resolve().parents[1]


def _cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(h))


def _signature_default(entry_, option: str) -> object:
    """The builder's own default for ``option`` (the first ``__init__`` in the MRO naming it)."""
    from tf_clrp.registry import _resolve

    builder = _resolve(entry_.builds)
    functions = (
        [c.__init__ for c in builder.__mro__ if "__init__" in vars(c)]
        if inspect.isclass(builder)
        else [builder]
    )
    for function in functions:
        parameter = inspect.signature(function).parameters.get(option)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            return parameter.default
    return "<no default in the builder>"


# options whose declared default the builder sets elsewhere (documented in the entry)
_SET_IN_BODY = {
    ("grad_cam", "fold_batch_norm"),
    ("grad_cam_plus_plus", "fold_batch_norm"),
    ("layer_cam", "fold_batch_norm"),
    ("guided_grad_cam", "fold_batch_norm"),
}


@pytest.mark.parametrize("name", sorted(ANALYZERS))
def test_declared_defaults_are_the_builders(name: str) -> None:
    declared = entry(name)
    for option, default in declared.options.items():
        if (name, option) in _SET_IN_BODY or option in declared.fixed:
            continue
        assert _signature_default(declared, option) == default, (name, option)
    assert declared.family in FAMILIES
    assert declared.makes in ("analyzer", "rule", "composite")


def test_shared_defaults_are_the_engines() -> None:
    from tf_clrp.analyzers.base import Analyzer
    from tf_clrp.analyzers.propagation import Propagation
    from tf_clrp.registry import ENGINE_OPTIONS, _lrp

    for option, default in ENGINE_OPTIONS.items():
        owner = Propagation if option in ("use_tf_function", "neuron_selection_unit") else Analyzer
        assert inspect.signature(owner.__init__).parameters[option].default == default, option
    for option in ("input_layer_rule", "layer_rules"):
        assert inspect.signature(_lrp).parameters[option].default is None


def _bounded(name: str) -> dict[str, float]:
    return {"low": -2.0, "high": 2.0} if entry(name).input_bounds == "low_high" else {}


@pytest.mark.parametrize("name", [e.name for e in ENTRIES if e.name != "lrp"])
def test_every_declared_default_is_taken_and_changes_nothing(name: str) -> None:
    """Passing every declared default explicitly gives the map of passing none."""
    declared = entry(name)
    if declared.family == "attention":  # needs attention layers: the reference ViT
        import transformer_models

        model = transformer_models.randomize(transformer_models.build_vit(), 3)
        x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    else:
        model = _cnn()
        x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype(np.float32)
    options = {k: v for k, v in declared.defaults.items() if k != "n_masks"}
    small = {"n_masks": 64} if name == "rise" else {}
    options.update(small, **_bounded(name))
    explicit = create_analyzer(name, model, **options).analyze(x, neuron_selection=[1, 2])
    implicit = create_analyzer(name, model, **small, **_bounded(name)).analyze(
        x, neuron_selection=[1, 2]
    )
    np.testing.assert_array_equal(explicit, implicit)


def test_undeclared_options_are_refused_with_the_declared_list() -> None:
    with pytest.raises(TypeError, match=r"'low'.*it accepts: .*layer_rules"):
        create_analyzer("deep_taylor", _cnn(), low=0.0, high=1.0)  # was silently ignored
    with pytest.raises(TypeError, match="input_layer_rule"):
        create_analyzer("integrated_gradients", _cnn(), input_layer_rule=(0.0, 1.0))
    with pytest.raises(ValueError, match="Did you mean 'lrp.epsilon'"):
        create_analyzer("lrp.epsilom", _cnn())


def test_a_preset_is_one_entry() -> None:
    """A new entry built from declared data reproduces the hand-written composite's map."""
    from tf_clrp import composites, rules
    from tf_clrp.registry import _lrp_preset

    preset = _lrp_preset("lrp.test_preset", "tf_clrp.composites:epsilon_plus", {"epsilon": 1e-6})
    model = _cnn()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype(np.float32)
    built = preset.build(model, epsilon=0.3).analyze(x, neuron_selection=0)
    by_hand = create_analyzer("lrp", model, composite=composites.epsilon_plus(0.3)).analyze(
        x, neuron_selection=0
    )
    np.testing.assert_array_equal(built, by_hand)
    other = create_analyzer("lrp", model, rule=rules.Epsilon(0.3)).analyze(x, neuron_selection=0)
    assert not np.allclose(built, other)


def _documented_names() -> set[str]:
    """The names in the first column of docs/analyzers.md's table (``a(_b)`` is a and a_b)."""
    text = (ROOT / "docs" / "analyzers.md").read_text(encoding="utf-8")
    section = text.split("## The names", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    names: set[str] = set()
    for row in table[2:]:
        for cell in re.findall(r"`([^`]+)`", row.split("|")[1]):
            base, _, optional = cell.partition("(")
            names.add(base)
            if optional:
                names.add(base + optional.rstrip(")"))
    return names


def test_docs_table_lists_exactly_the_registry() -> None:
    assert _documented_names() == set(tf_clrp.list_analyzers())
