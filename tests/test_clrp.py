"""CLRP / SGLRP properties: non-negativity, conservation of parts, contrasts, hidden units."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mlp, small_cnn

import tf_clrp
import tf_clrp.datasets
from tf_clrp.bounds import input_bounds

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return small_cnn(bias=False, softmax=True)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return RNG.uniform(0, 1, (4, 8, 8, 3)).astype("float32")


def _logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    last = model.layers[-1]
    return keras.Model(model.inputs, last.input)(x).numpy() @ last.kernel.numpy()


def _reaches_input(model: keras.Model, x: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """1 where class k's z⁺ denominator is positive: only then does its seed pass the last
    layer (z⁺ drops the relevance of a unit without positive contributions)."""
    last = model.layers[-1]
    h = keras.Model(model.inputs, last.input)(x).numpy()
    return (h @ np.maximum(sign * last.kernel.numpy(), 0) > 0).astype(float)


@pytest.mark.parametrize("contrast", ["others", "others_uniform", "negated", 3])
def test_parts_conserve_their_seed(model, x, contrast) -> None:
    analyzer = tf_clrp.create_analyzer("clrp", model, contrast=contrast)
    parts = analyzer.analyze(x, neuron_selection=1, return_parts=True)
    z = np.abs(_logits(model, x))
    passes = _reaches_input(model, x)
    assert passes[:, 1].all()
    target_sum = parts.target.reshape(4, -1).sum(axis=1)
    dual_sum = parts.dual.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(target_sum, z[:, 1], rtol=1e-3)
    others = (z * passes).sum(axis=1) - z[:, 1]
    uniform = z[:, 1] / 4 * (passes.sum(axis=1) - 1)
    negated = z[:, 1] * _reaches_input(model, x, sign=-1.0)[:, 1]
    expected_dual = {
        "others": others,
        "others_uniform": uniform,
        "negated": negated,
        3: z[:, 3] * passes[:, 3],
    }[contrast]
    np.testing.assert_allclose(dual_sum, expected_dual, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("contrast", ["others", "negated", [3, 0, 2, 4]])
def test_bfloat16_passes_in_the_contrast_basis_keep_every_part_close(model, x, contrast) -> None:
    """Reduced precision runs the passes for v = s_t/m_t − s_d/m_d and s_t, and rebuilds the
    dual: every part must still match float32 (the dual within bfloat16 error of its own
    scale, the contrast within bfloat16 error of *its* scale)."""
    exact = tf_clrp.create_analyzer("clrp", model).analyze(
        x, neuron_selection=1, contrast=contrast, return_parts=True
    )
    for precision in ("mixed", "bfloat16"):
        low = tf_clrp.create_analyzer("clrp", model, precision=precision).analyze(
            x, neuron_selection=1, contrast=contrast, return_parts=True
        )
        for part in ("target", "dual", "difference"):
            a, b = getattr(exact, part), getattr(low, part)
            scale = np.abs(a).reshape(4, -1).max(axis=1) + 1e-12
            err = np.abs(a - b).reshape(4, -1).max(axis=1) / scale
            assert err.max() < 2e-2, (precision, part, err)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_contrast_with_the_target_itself_is_refused(model, x, precision) -> None:
    """The dual would be the target itself (a silent all-zero map): an error naming it."""
    analyzer = tf_clrp.create_analyzer("clrp", model, contrast=2, precision=precision)
    with pytest.raises(tf_clrp.SelectionError, match="contrast=2 is the target .* sample 0"):
        analyzer.analyze(x, neuron_selection=2)
    with pytest.raises(tf_clrp.SelectionError, match="sample 2"):
        analyzer.analyze(x, neuron_selection=[0, 1, 2, 3], contrast=[1, 2, 2, 4])
    # "max_activation" is resolved first: a rival equal to the arg-max is refused too
    winners = _logits(model, x).argmax(axis=1)
    with pytest.raises(tf_clrp.SelectionError, match="target unit itself"):
        analyzer.analyze(x, contrast=winners.astype(int))
    assert analyzer.analyze(x, contrast=(winners + 1) % 5).max() > 0


def test_swapping_target_and_rival_swaps_the_signed_difference(model, x) -> None:
    analyzer = tf_clrp.create_analyzer("clrp", model)
    jk = analyzer.analyze(x, neuron_selection=0, contrast=4, return_parts=True)
    kj = analyzer.analyze(x, neuron_selection=4, contrast=0, return_parts=True)
    np.testing.assert_allclose(jk.difference, -kj.difference, atol=1e-6)


def test_per_sample_targets_and_contrasts(model, x) -> None:
    analyzer = tf_clrp.create_analyzer("clrp", model)
    targets, rivals = [0, 1, 2, 3], [1, 2, 3, 4]
    batch = analyzer.analyze(x, neuron_selection=targets, contrast=rivals)
    for i in range(4):
        single = analyzer.analyze(x[i : i + 1], neuron_selection=targets[i], contrast=rivals[i])
        np.testing.assert_allclose(batch[i : i + 1], single, rtol=1e-5, atol=1e-8)


def test_others_dual_is_the_sum_of_the_other_classes_lrp(model, x) -> None:
    parts = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=2, return_parts=True)
    lrp = tf_clrp.create_analyzer("clrp", model)
    summed = sum(
        lrp.analyze(x, neuron_selection=2, contrast=k, return_parts=True).dual
        for k in range(5)
        if k != 2
    )
    np.testing.assert_allclose(parts.dual, summed, rtol=1e-4, atol=1e-7)


def test_target_part_equals_the_lrp_z_plus_analyzer(model, x) -> None:
    """Consistency of two analyzers (the paper's rules themselves: test_clrp_reference.py)."""
    low, high = np.zeros(3), np.ones(3)
    clrp = tf_clrp.create_analyzer("clrp", model, input_layer_rule=(low, high))
    lrp = tf_clrp.create_analyzer("lrp.z_plus", model, input_layer_rule=(low, high))
    target = clrp.analyze(x, neuron_selection=1, return_parts=True).target
    plain = lrp.analyze(x, neuron_selection=1)
    z = _logits(model, x)[:, 1]
    np.testing.assert_allclose(
        target, plain * np.sign(z)[:, None, None, None], rtol=1e-4, atol=1e-7
    )


def test_default_bounds_are_per_sample(model, x) -> None:
    analyzer = tf_clrp.create_analyzer("clrp", model)
    together = analyzer.analyze(x, neuron_selection=1)
    alone = np.concatenate([analyzer.analyze(x[i : i + 1], neuron_selection=1) for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-8)


def test_clrp_with_another_composite(model, x) -> None:
    parts = tf_clrp.create_analyzer(
        "clrp", model, composite=tf_clrp.composites.epsilon_plus()
    ).analyze(x, neuron_selection=1, return_parts=True)
    assert np.isfinite(parts.contrastive).all() and parts.contrastive.min() >= 0


def test_sglrp_seeds_follow_the_softmax_gradient(model, x) -> None:
    parts = tf_clrp.create_analyzer("sglrp", model).analyze(
        x, neuron_selection=1, return_parts=True
    )
    z = _logits(model, x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    passes = _reaches_input(model, x)
    np.testing.assert_allclose(
        parts.target.reshape(4, -1).sum(axis=1), p[:, 1] * (1 - p[:, 1]), rtol=2e-3
    )
    dual_seed = (p[:, 1:2] * p * passes).sum(axis=1) - p[:, 1] ** 2
    np.testing.assert_allclose(parts.dual.reshape(4, -1).sum(axis=1), dual_seed, rtol=2e-3)


def test_hidden_unit_contrast() -> None:
    model = mlp(bias=False)
    x = RNG.uniform(0, 1, (3, 6)).astype("float32")
    hidden = model.layers[2].name
    analyzer = tf_clrp.create_analyzer(
        "clrp", model, layer_name=hidden, contrast=1, input_layer_rule=(0.0, 1.0)
    )
    parts = analyzer.analyze(x, neuron_selection=4, return_parts=True)
    activation = keras.Model(model.inputs, model.get_layer(hidden).output)(x).numpy()
    np.testing.assert_allclose(parts.target.sum(axis=1), activation[:, 4], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(parts.dual.sum(axis=1), activation[:, 1], rtol=1e-3, atol=1e-6)


def test_bad_contrasts_are_named() -> None:
    model = small_cnn()
    with pytest.raises(tf_clrp.SelectionError, match="contrast"):
        tf_clrp.create_analyzer("clrp", model, contrast="everyone")
    with pytest.raises(tf_clrp.SelectionError, match="out of range"):
        tf_clrp.create_analyzer("clrp", model, contrast=9)
    analyzer = tf_clrp.create_analyzer("clrp", model)
    with pytest.raises(tf_clrp.SelectionError, match="entries"):
        analyzer.analyze(np.zeros((2, 8, 8, 3), "float32"), contrast=[1, 2, 3])
    hidden = tf_clrp.create_analyzer("clrp", model, layer_name=model.layers[4].name)
    with pytest.raises(tf_clrp.SelectionError, match="negated"):
        hidden.analyze(np.zeros((1, 8, 8, 3), "float32"), contrast="negated")


@pytest.mark.parametrize("name", ["raw", "unit", "symmetric", "torch", "caffe", "effnet_lite"])
def test_bounds_helper(name: str) -> None:
    low, high = input_bounds(name)
    assert np.all(low < high)
    if name == "torch":
        np.testing.assert_allclose(low.min(), -2.1179, atol=1e-4)
        np.testing.assert_allclose(high.max(), 2.64, atol=1e-3)
    with pytest.raises(ValueError, match="known"):
        input_bounds("imagenet-ish")


# ----------------------------------------------------------------------------- refusals
def test_all_units_as_the_target_are_refused(model, x) -> None:
    """Seeding every unit leaves no dual: the map would silently be plain LRP."""
    for method in ("clrp", "sglrp"):
        analyzer = tf_clrp.create_analyzer(method, model)
        with pytest.raises(tf_clrp.SelectionError, match="'all' has no dual"):
            analyzer.analyze(x, neuron_selection="all")
        with pytest.raises(tf_clrp.SelectionError, match="'all' has no dual"):
            tf_clrp.create_analyzer(method, model, neuron_selection_mode="all")


def test_a_single_logit_needs_the_negated_dual(x) -> None:
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    single = keras.Model(inp, keras.layers.Dense(1)(h))
    for contrast in ("others", "others_uniform"):
        with pytest.raises(tf_clrp.SelectionError, match="at least two output units"):
            tf_clrp.create_analyzer("clrp", single, contrast=contrast)
    with pytest.raises(tf_clrp.SelectionError, match="at least two output units"):
        tf_clrp.create_analyzer("sglrp", single)
    parts = tf_clrp.create_analyzer("clrp", single, contrast="negated").analyze(
        x, neuron_selection=0, return_parts=True
    )
    assert np.abs(parts.difference).max() > 0


SYMMETRIC_HEAD_RULES = {
    "epsilon": tf_clrp.rules.Epsilon(0.1),
    "z": tf_clrp.rules.Z(),
    "w_square": tf_clrp.rules.WSquare(),
    "flat": tf_clrp.rules.Flat(),
    "gamma": tf_clrp.rules.Gamma(0.25),
}


@pytest.mark.parametrize("name", sorted(SYMMETRIC_HEAD_RULES))
def test_negated_dual_under_a_weight_symmetric_head_rule_is_refused(model, x, name) -> None:
    """Such a rule propagates the negated unit like the target: a silent all-zero map."""
    head = model.layers[-1].name
    rule = SYMMETRIC_HEAD_RULES[name]
    with pytest.raises(tf_clrp.SelectionError, match=f"{head}.*normalises to the target"):
        tf_clrp.create_analyzer("clrp", model, contrast="negated", layer_rules={head: rule})
    analyzer = tf_clrp.create_analyzer("clrp", model, layer_rules={head: rule})
    with pytest.raises(tf_clrp.SelectionError, match="normalises to the target"):
        analyzer.analyze(x, neuron_selection=1, contrast="negated")
    # the same composite with z⁺ on the head (the paper's choice) is fine
    epsilon_plus = tf_clrp.composites.epsilon_plus()
    with pytest.raises(tf_clrp.SelectionError, match="normalises to the target"):
        tf_clrp.create_analyzer("clrp", model, contrast="negated", composite=epsilon_plus)
    fixed = tf_clrp.create_analyzer(
        "clrp",
        model,
        contrast="negated",
        composite=epsilon_plus,
        layer_rules={head: tf_clrp.rules.ZPlus()},
    )
    assert fixed.analyze(x, neuron_selection=1).max() > 0


def _dense_site(kernel: np.ndarray, bias: np.ndarray, a: np.ndarray) -> tf_clrp.rules.Site:
    return tf_clrp.rules.Site(
        inputs=[tf.constant(a)],
        forward=lambda xs, k: tf.matmul(xs[0], k),
        kernel=tf.constant(kernel),
        bias=tf.constant(bias),
        name="probe",
        low=tf.constant(np.full_like(a, -3.0)),
        high=tf.constant(np.full_like(a, 3.0)),
    )


DECLARED_RULES = [
    tf_clrp.rules.Z(),
    tf_clrp.rules.Epsilon(0.1),
    tf_clrp.rules.ZPlus(),
    tf_clrp.rules.ZPlus(bias=True),
    tf_clrp.rules.ZPlusFast(),
    tf_clrp.rules.AlphaBeta(2, 1),
    tf_clrp.rules.AlphaBeta(1, 0),
    tf_clrp.rules.Gamma(0.25),
    tf_clrp.rules.WSquare(),
    tf_clrp.rules.Flat(),
    tf_clrp.rules.ZBox(-3.0, 3.0),
    tf_clrp.rules.Gradient(),
]


@pytest.mark.parametrize("rule", DECLARED_RULES, ids=lambda r: type(r).__name__)
def test_declared_negation_invariance_is_what_the_rule_does(rule) -> None:
    """``negation_invariant`` (declared per rule class) against the rule's own numbers."""
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, (3, 6)).astype("float32")
    kernel = rng.normal(0, 1, (6, 4)).astype("float32")
    bias = rng.normal(0, 0.3, 4).astype("float32")
    r = rng.uniform(0.1, 1, (3, 4)).astype("float32")
    plain = rule.relevance(_dense_site(kernel, bias, a), tf.constant(r))[0].numpy()
    negated = rule.relevance(_dense_site(-kernel, -bias, a), tf.constant(r))[0].numpy()
    same_up_to_sign = np.allclose(plain, negated, rtol=1e-4, atol=1e-6) or np.allclose(
        plain, -negated, rtol=1e-4, atol=1e-6
    )
    assert same_up_to_sign == rule.negation_invariant
    assert rule.linear_in_relevance
    doubled = rule.relevance(_dense_site(kernel, bias, a), tf.constant(2 * r - 0.5))[0]
    np.testing.assert_allclose(
        doubled.numpy(),
        2 * plain - 0.5 * rule.relevance(_dense_site(kernel, bias, a), tf.ones_like(r))[0].numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


class _AbsZPlus(tf_clrp.rules.Rule):
    """A user rule that is not linear in the relevance (and does not declare anything)."""

    def relevance(self, site, relevance):
        return tf_clrp.rules.ZPlus().relevance(site, tf.abs(relevance))


class _CompressedZPlus(tf_clrp.rules.ZPlus):
    """A user subclass of a built-in rule with a backward that is not linear in R: it must
    not inherit ZPlus's ``linear_in_relevance`` declaration."""

    def relevance(self, site, relevance):
        return super().relevance(site, tf.sign(relevance) * tf.sqrt(tf.abs(relevance)))


NON_LINEAR_COMPOSITES = {
    "deconvnet": tf_clrp.composites.Composite(
        {"dense": tf_clrp.rules.ZPlus(), "convolution": tf_clrp.rules.ZPlus()},
        first_layer=tf_clrp.rules.ZBox(0.0, 1.0),
        activation="deconvnet",
    ),
    "guided": tf_clrp.composites.Composite(
        {"dense": tf_clrp.rules.ZPlus(), "convolution": tf_clrp.rules.ZPlus()},
        first_layer=tf_clrp.rules.ZBox(0.0, 1.0),
        activation="guided",
    ),
    "user_rule": tf_clrp.composites.zbox_zplus(0.0, 1.0).with_layer_rules({"Dense": _AbsZPlus()}),
    "subclassed_rule": tf_clrp.composites.zbox_zplus(0.0, 1.0).with_layer_rules(
        {"Conv2D": _CompressedZPlus()}
    ),
}


class _EpsilonSubclassed(tf_clrp.rules.Epsilon):
    """Overrides the backward without re-declaring anything."""

    def relevance(self, site, relevance):
        return super().relevance(site, tf.maximum(relevance, 0.0))


class _EpsilonRedeclared(_EpsilonSubclassed):
    linear_in_relevance = False
    negation_invariant = True


class _EpsilonConfigured(tf_clrp.rules.Epsilon):
    """Only changes the defaults: the backward (and its declarations) stay Epsilon's."""

    def __init__(self) -> None:
        super().__init__(epsilon=0.5)


@pytest.mark.parametrize(
    ("rule", "linear", "invariant"),
    [
        (tf_clrp.rules.Epsilon(), True, True),
        (tf_clrp.rules.ZPlus(), True, False),
        (_CompressedZPlus(), False, False),
        (_EpsilonSubclassed(), False, False),
        (_EpsilonRedeclared(), False, True),
        (_EpsilonConfigured(), True, True),
        (tf_clrp.rules.AlphaBeta(1, 0), True, False),
        (_AbsZPlus(), False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, tf_clrp.rules.Rule) else str(v),
)
def test_a_declaration_counts_only_for_the_class_that_makes_it(rule, linear, invariant) -> None:
    """A subclass overriding the backward without re-declaring loses the inherited claims."""
    assert tf_clrp.rules.declares(rule, "linear_in_relevance") is linear
    assert tf_clrp.rules.declares(rule, "negation_invariant") is invariant


def test_the_refusal_names_the_rule_by_its_parameters(model) -> None:
    """Rules print as their class and numeric parameters, not closures and addresses."""
    head = model.layers[-1].name
    with pytest.raises(tf_clrp.SelectionError) as info:
        tf_clrp.create_analyzer(
            "clrp", model, contrast="negated", layer_rules={head: tf_clrp.rules.Epsilon(1e-6)}
        )
    message = str(info.value)
    assert "Epsilon(epsilon=1e-06, bias=True) on the output" in message
    assert "0x" not in message and "function" not in message and len(message) < 500
    assert repr(tf_clrp.rules.Gamma(0.5)) == "Gamma(gamma=0.5, bias=True, epsilon=1e-06)"
    assert repr(tf_clrp.rules.AlphaBeta(2, 1)) == "AlphaBeta(alpha=2.0, beta=1.0, bias=True)"


@pytest.mark.parametrize("precision", ["mixed", "bfloat16"])
@pytest.mark.parametrize("name", sorted(NON_LINEAR_COMPOSITES))
def test_reduced_precision_with_a_non_linear_backward_runs_the_dual_itself(
    model, x, name, precision
) -> None:
    """The dual cannot be rebuilt by linearity then: it gets its own pass."""
    composite = NON_LINEAR_COMPOSITES[name]
    exact = tf_clrp.create_analyzer("clrp", model, composite=composite).analyze(
        x, neuron_selection=1, return_parts=True
    )
    low = tf_clrp.create_analyzer("clrp", model, composite=composite, precision=precision)
    assert not low.dual_by_linearity
    parts = low.analyze(x, neuron_selection=1, return_parts=True)
    for part in ("target", "dual"):
        a, b = getattr(exact, part), getattr(parts, part)
        err = np.abs(a - b).reshape(4, -1).max(axis=1) / np.abs(a).reshape(4, -1).max(axis=1)
        assert err.max() < 2e-2, (part, err)


def test_clrp_paper_is_a_deprecated_alias_of_zbox_zplus(model, x) -> None:
    """The default composite's maps are unchanged by the rename."""
    with pytest.warns(DeprecationWarning, match="zbox_zplus"):
        old = tf_clrp.composites.clrp_paper()
    default = tf_clrp.create_analyzer("clrp", model).analyze(x, neuron_selection=1)
    for composite in (old, tf_clrp.composites.zbox_zplus()):
        np.testing.assert_array_equal(
            tf_clrp.create_analyzer("clrp", model, composite=composite).analyze(
                x, neuron_selection=1
            ),
            default,
        )


def test_a_sample_without_spread_in_any_channel_is_refused(model, x) -> None:
    """Per-sample z^B bounds collapse (low == high): every contribution 0, a garbage map."""
    first = model.layers[1].name
    flat = x.copy()
    flat[2] = 0.7  # a constant image
    with pytest.raises(
        tf_clrp.InputError, match=rf"sample\(s\) \[2\].*first layer '{first}'.*input_layer_rule"
    ):
        tf_clrp.create_analyzer("clrp", model).analyze(flat, neuron_selection=1)
    bounded = tf_clrp.create_analyzer("clrp", model, input_layer_rule=(0.0, 1.0))
    assert np.isfinite(bounded.analyze(flat, neuron_selection=1)).all()


def test_a_flat_dense_input_needs_data_bounds() -> None:
    """Each feature of a flat input is its own channel: per-sample bounds always collapse."""
    net = mlp()
    data = RNG.uniform(0.1, 1, (2, net.input_shape[-1])).astype("float32")
    with pytest.raises(tf_clrp.InputError, match=r"sample\(s\) \[0, 1\].*input_layer_rule"):
        tf_clrp.create_analyzer("clrp", net).analyze(data, neuron_selection=0)
    parts = tf_clrp.create_analyzer("clrp", net, input_layer_rule=(0.0, 1.0)).analyze(
        data, neuron_selection=0, return_parts=True
    )
    assert np.isfinite(parts.target).all() and np.abs(parts.target).max() > 0


def test_a_constant_channel_warns_and_gets_no_relevance(model, x) -> None:
    """Some channels collapsed: the map stays usable, those channels get exactly 0."""
    partial = x.copy()
    partial[0, :, :, 1] = 0.4
    with pytest.warns(UserWarning, match=r"sample\(s\) \[0\].*channels \[1\]"):
        parts = tf_clrp.create_analyzer("clrp", model).analyze(
            partial, neuron_selection=1, return_parts=True
        )
    assert np.isfinite(parts.target).all()
    assert np.abs(parts.target[0, :, :, 1]).max() < 1e-6
    # the other channels keep the target's mass (conservation of the z^B rule)
    assert np.abs(parts.target[0, :, :, [0, 2]]).max() > 0


def test_explain_dataset_indexes_a_per_sample_contrast_by_dataset_sample(model, tmp_path) -> None:
    """One contrast per dataset sample (in analyze_kwargs or the analyzer) is sliced with
    each batch, like neuron_selection; checked against one call per sample."""
    data = np.random.default_rng(8).uniform(0, 1, (5, 8, 8, 3)).astype("float32")
    targets = np.array([1, 0, 2, 4, 3])
    contrasts = np.array([2, 3, 0, 1, 4])
    clrp = tf_clrp.create_analyzer("clrp", model)
    expected = np.concatenate(
        [
            clrp.analyze(data[i : i + 1], int(targets[i]), contrast=int(contrasts[i]))
            for i in range(5)
        ]
    )
    explain = tf_clrp.datasets.explain_dataset
    given = explain(
        clrp,
        data,
        tmp_path / "kwargs",
        neuron_selection=targets,
        batch_size=2,
        shard_size=3,
        progress=False,
        analyze_kwargs={"contrast": contrasts},
    )
    np.testing.assert_allclose(given.maps, expected, rtol=1e-5, atol=1e-7)
    own = explain(
        tf_clrp.create_analyzer("clrp", model, contrast=contrasts),
        data,
        tmp_path / "own",
        neuron_selection=targets,
        batch_size=2,
        shard_size=3,
        progress=False,
    )
    np.testing.assert_allclose(own.maps, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(tf_clrp.SelectionError, match=r"contrast has 4 entries.*sample 4"):
        explain(
            clrp,
            data,
            tmp_path / "short",
            neuron_selection=targets,
            batch_size=2,
            progress=False,
            analyze_kwargs={"contrast": contrasts[:4]},
        )
