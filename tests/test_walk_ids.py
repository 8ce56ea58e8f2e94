"""The walker keys tensors by ``id``: a traced layer call whose graph (with an input the
call ignores) was freed before the walk ended let a later tensor take that input's id, and
``alias`` wired the later tensor's reader to the ignored input's producer (a silently wrong
graph: the forward and every map changed, depending on the allocator). The liveness test
fails deterministically without the fix; the forward test fails when ids are reused (most
runs with the garbage collected before each trace)."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tf_clrp
from tf_clrp import graph, tracing


class _IgnoresSecond(keras.layers.Layer):
    """Walked (no group of its own); its call reads ``x`` only."""

    def build(self, x_shape, y_shape) -> None:
        self.dense = layers.Dense(6, name="d")
        self.dense.build(x_shape)

    def call(self, x, y):
        return self.dense(x)


class _Block(keras.layers.Layer):
    def build(self, input_shape) -> None:
        self.dense = layers.Dense(6, name="d1")
        self.dense.build(input_shape)

    def call(self, x):
        return keras.ops.tanh(self.dense(x)) * 0.5 + x


def _model(blocks: int = 8) -> keras.Model:
    rng = np.random.default_rng(0)
    x_in = keras.Input((6,))
    h = x_in
    for _ in range(blocks):
        h = _Block()(_IgnoresSecond()(layers.Dense(6)(h), layers.Dense(6)(h)))
    model = keras.Model(x_in, layers.Dense(3)(h))
    for v in model.weights:
        v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return model


@pytest.fixture
def collecting_traces(monkeypatch):
    """Collects young garbage before each trace (so freed ids are reused as soon as possible) and
    records weak references to every traced graph's inputs."""
    seen: list[weakref.ref] = []
    trace_call = tracing.trace_call

    def traced(*args, **kwargs):
        gc.collect(0)  # young cycles only: the graphs freed since the last trace (cheap)
        result = trace_call(*args, **kwargs)
        if isinstance(result, tracing.TracedCall):
            seen.extend(weakref.ref(t) for t in result.inputs)
        return result

    monkeypatch.setattr(graph.tracing, "trace_call", traced)
    return seen


def test_traced_inputs_live_until_the_walk_ends(collecting_traces, monkeypatch):
    alive_at_end: list[bool] = []
    walk = graph._walk

    def walk_then_check(*args, **kwargs):
        walk(*args, **kwargs)
        if args[2] == "":  # the outermost walk: every traced input must still exist
            gc.collect()
            alive_at_end.extend(ref() is not None for ref in collecting_traces)

    monkeypatch.setattr(graph, "_walk", walk_then_check)
    graph.trace_model(_model())
    assert alive_at_end and all(alive_at_end), alive_at_end.count(False)


def test_walked_graph_computes_the_model(collecting_traces):
    model = _model()
    x = np.random.default_rng(1).normal(size=(2, 6)).astype("float32")
    for _ in range(2):
        walked = graph.trace_model(model)
        values = graph.execute(walked.nodes, {walked.input_id: tf.constant(x)})
        np.testing.assert_allclose(
            values[walked.output_id].numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5
        )
    assert any("/tanh" in n.name for n in walked.nodes)  # the blocks were walked inside
    got = tf_clrp.create_analyzer("gradient", model).analyze(x, neuron_selection=0)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt)[:, 0]
    want = tape.gradient(score, xt).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3 * np.abs(want).max())
