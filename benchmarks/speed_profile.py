"""Where tf_clrp's LRP time goes: A/B timing variants on one model (profiling aid).

Usage::

    python benchmarks/speed_profile.py --model vgg16 --batch 8 --size 224 \
        --json benchmarks/results/speed_profile_vgg16.json

Variants (each best-of-N after warm-up, same process, same input):

* ``keras forward`` / ``keras input-gradient``: ``model(x)`` and ``tape.gradient`` of the
  selected logit w.r.t. x on the plain Keras model (the cost floor of any backward method);
* ``tf_clrp gradient``, ``lrp.epsilon`` (the rule's denominator is the layer output: no
  extra convolution), ``lrp.z_plus`` and ``clrp`` as shipped, and ``NAME@PRECISION`` rows with
  ``precision="mixed"`` / ``"bfloat16"``;
* ``... [unfused]``: the same with ``BasicRule.fused_parameters`` patched to return None,
  so every rule takes the general per-term path (its denominator still comes from the
  forward pass) instead of one transposed product with the summed kernel K';
* ``... [dense unfused]``: only Dense layers unfused;
* ``lrp.z_plus [XLA]``: the explain step compiled with ``jit_compile=True``;
* ``conv fwd`` / ``conv bwd-input`` of one mid-size VGG layer: raw op cost ratio (and the
  same conv in bfloat16, the hardware has AVX512_BF16);
* ``--trace``: one call of each listed method under ``tf.profiler``; the time of every TF
  op is summed by op type (Conv2D: forward and denominators, Conv2DBackpropInput: the
  rules' backward products, ConcatV2/Maximum: building [kernel, modified kernel], ...).

The patches are local to this process; tf_clrp's files are not modified.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed_common as sc  # noqa: E402

sc.set_thread_env(sc.THREADS)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_clrp  # noqa: E402
from tf_clrp import rules  # noqa: E402

TARGET_CLASS = 1


@contextlib.contextmanager
def fused_parameters_patched(mode: str) -> Iterator[None]:
    """``mode``: "all" disables fused denominators, "dense" only for 2-D (Dense) kernels."""
    original = rules.BasicRule.fused_parameters

    def patched(
        self: rules.BasicRule,
        kernel: tf.Tensor,
        bias: tf.Tensor | None,
        nonnegative: tuple[bool, ...],
    ) -> Any:
        if mode == "all" or len(kernel.shape) == 2:
            return None
        return original(self, kernel, bias, nonnegative)

    rules.BasicRule.fused_parameters = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        rules.BasicRule.fused_parameters = original  # type: ignore[method-assign]


@contextlib.contextmanager
def xla_compiled() -> Iterator[None]:
    """Propagation's explain step compiled by XLA (``jit_compile=True``)."""
    from tf_clrp.analyzers.propagation import Propagation

    original = Propagation.__dict__["_compile"]  # the staticmethod object itself

    def compile_xla(fn: Any, use_tf_function: bool, signature: list[tf.TensorSpec]) -> Any:
        return tf.function(fn, input_signature=signature, autograph=False, jit_compile=True)

    Propagation._compile = staticmethod(compile_xla)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Propagation._compile = original  # type: ignore[method-assign]  # staticmethod


def _patch(patch: str | None) -> contextlib.AbstractContextManager[None]:
    if patch in ("all", "dense"):
        return fused_parameters_patched(patch)
    if patch == "xla":
        return xla_compiled()
    return contextlib.nullcontext()


def _analyzer_fn(
    name: str, model: keras.Model, x: np.ndarray, patch: str | None
) -> Callable[[], Any]:
    """Creates the analyzer (under the patch: the mirror is planned at creation, the
    kernels at tracing, so the warm-up call is made under the patch as well)."""
    name, _, precision = name.partition("@")
    with _patch(patch):
        analyzer = tf_clrp.create_analyzer(name, model, precision=precision or "float32")
        analyzer.analyze(x[:1], neuron_selection=TARGET_CLASS)  # traces under the patch
    return lambda: analyzer.analyze(x, neuron_selection=TARGET_CLASS)


def conv_ops(batch: int, size: int, repeats: int) -> list[tuple[str, sc.Timing]]:
    """Forward conv vs its input-gradient for VGG16's conv3 block shape (256 -> 256, 3x3)."""
    s = max(size // 4, 4)
    x = tf.random.uniform((batch, s, s, 256))
    w = tf.random.normal((3, 3, 256, 256))
    w2 = tf.concat([w, tf.nn.relu(w)], axis=3)
    g = tf.random.uniform((batch, s, s, 256))
    fwd = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
    fwd2 = tf.function(lambda: tf.nn.conv2d(x, w2, 1, "SAME"))
    xb, wb = tf.cast(x, tf.bfloat16), tf.cast(w, tf.bfloat16)
    fwd_bf16 = tf.function(lambda: tf.nn.conv2d(xb, wb, 1, "SAME"))
    bwd = tf.function(
        lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=g, strides=[1, 1, 1, 1], padding="SAME"
        )
    )
    return [
        (name, sc.measure(lambda f=f: f().numpy(), repeats))
        for name, f in (
            ("conv fwd (3x3, 256->256)", fwd),
            ("conv fwd, 2x out channels", fwd2),
            ("conv fwd, bfloat16", fwd_bf16),
            ("conv bwd-input (same)", bwd),
        )
    ]


def op_breakdown(fn: Callable[[], Any], top: int = 12) -> list[dict[str, Any]]:
    """Runs ``fn`` once under the TF profiler; op time (ms) summed per op type."""
    import glob
    import tempfile
    from collections import Counter

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="tf_clrp_trace_")
    tf.profiler.experimental.start(logdir)
    try:
        fn()
    finally:
        tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    with open(path, "rb") as fh:
        space.ParseFromString(fh.read())
    totals: Counter[str] = Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # op events are recorded on the executor's threads
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:
                    continue
                totals[name.rsplit(":", 1)[1]] += event.duration_ps
    grand = sum(totals.values()) or 1
    return [
        {"op": op, "ms": round(ps / 1e9, 1), "share": round(ps / grand, 3)}
        for op, ps in totals.most_common(top)
    ]


def run(
    model_name: str, batch: int, size: int, repeats: int, trace: list[str]
) -> tuple[list[sc.Record], dict[str, Any]]:
    """All variants; ratios are to the Keras forward of the same batch."""
    keras.utils.set_random_seed(0)
    ctor = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50}
    model = ctor[model_name](weights=None, input_shape=(size, size, 3), classifier_activation=None)
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    xt = tf.constant(x)
    forward_fn = tf.function(lambda t: model(t, training=False))

    @tf.function
    def input_gradient(t: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = model(t, training=False)[:, TARGET_CLASS]
        return tape.gradient(y, t)

    forward = sc.measure(lambda: forward_fn(xt).numpy(), repeats)
    rec = [sc.make_record("profile", model_name, "keras forward", batch, size, forward, forward)]
    sc.print_records(rec)

    def add(name: str, fn: Callable[[], Any]) -> None:
        rec.append(
            sc.make_record(
                "profile", model_name, name, batch, size, sc.measure(fn, repeats), forward
            )
        )
        sc.print_records(rec[-1:])

    add("keras input-gradient", lambda: input_gradient(xt).numpy())
    for name in (
        "gradient",
        "lrp.epsilon",
        "lrp.z_plus",
        "lrp.z_plus@bfloat16",
        "clrp",
        "clrp@mixed",
        "clrp@bfloat16",
    ):
        add(name, _analyzer_fn(name, model, x, None))
    for name in ("lrp.z_plus", "clrp"):
        add(f"{name} [unfused]", _analyzer_fn(name, model, x, "all"))
        add(f"{name} [dense unfused]", _analyzer_fn(name, model, x, "dense"))
    add("lrp.z_plus [XLA]", _analyzer_fn("lrp.z_plus", model, x, "xla"))
    ops = conv_ops(batch, size, repeats)
    for name, timing in ops:  # ratios to the plain conv
        rec.append(
            sc.make_record("profile", "-", name, batch, max(size // 4, 4), timing, ops[0][1])
        )
        sc.print_records(rec[-1:])
    breakdowns = {}
    for name in trace:
        fn = (
            (lambda: forward_fn(xt).numpy())
            if name == "forward"
            else _analyzer_fn(name, model, x, None)
        )
        breakdowns[name] = op_breakdown(fn)
        print(f"op time of one {name} call (top op types):")
        for row in breakdowns[name]:
            print(f"  {row['op']:36s} {row['ms']:9.1f} ms {row['share']:6.1%}")
    return rec, breakdowns


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--trace",
        default="forward,lrp.z_plus,clrp,clrp@bfloat16",
        help="methods to run once under tf.profiler ('' for none)",
    )
    sc.add_timing_args(parser, budget=False)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sc.print_header()
    records, breakdowns = run(
        args.model, args.batch, args.size, args.repeats, [m for m in args.trace.split(",") if m]
    )
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    sc.save_records(args.json, records, versions, command=sys.argv, op_breakdown=breakdowns)


if __name__ == "__main__":
    main()
