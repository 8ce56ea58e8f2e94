"""Per-image time of tf_clrp analyzers vs the Keras forward, measured in the same run.

Usage:
    python benchmarks/speed.py --model vgg16 --batch 8 --size 224 --repeats 3
    python benchmarks/speed.py --model resnet50 --methods lrp.z_plus,clrp
    python benchmarks/speed.py --model vgg16 --batch 1,4,8,16 --methods lrp.z_plus,clrp \
        --json benchmarks/results/speed_tf_clrp_batch.json

Prints per-image seconds, the ratio to the model's own forward pass (``model(x)`` compiled
with tf.function, measured in the same process, same batch and size), the peak RSS during
each measurement and the process's CPU use (CPU seconds / wall seconds). ``--batch`` and
``--size`` take comma-separated lists (scaling sweeps). Models have random weights (speed
does not depend on them). TF runs with ``--threads`` intra-op threads (default 2) and one
inter-op thread. Not a test: numbers depend on the machine and its load; see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed_common as sc  # noqa: E402

sc.set_thread_env()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_clrp  # noqa: E402

DEFAULT_METHODS = (
    "gradient",
    "lrp.z_plus",
    "lrp.z_plus@mixed",
    "lrp.z_plus@bfloat16",
    "lrp.epsilon_plus",
    "lrp.sequential_preset_a",
    "clrp",
    "clrp@mixed",
    "clrp@bfloat16",
    "sglrp",
    "sglrp@bfloat16",
)
TARGET_CLASS = 1


def build_model(name: str, size: int) -> keras.Model:
    """A model with random weights and logits output (EfficientNet-Lite0 is 224² only)."""
    keras.utils.set_random_seed(0)
    if name == "efficientnet_lite0":
        from tf_clrp.zoo import efficientnet_lite0

        return efficientnet_lite0(weights=None)
    constructors = {
        "vgg16": keras.applications.VGG16,
        "resnet50": keras.applications.ResNet50,
        "mobilenet_v2": keras.applications.MobileNetV2,
    }
    return constructors[name](weights=None, input_shape=(size, size, 3), classifier_activation=None)


def set_threads(threads: int) -> None:
    """TF intra-op threads (compute) and one inter-op thread; call before any TF op runs."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run(
    model_name: str,
    batches: list[int],
    sizes: list[int],
    methods: list[str],
    repeats: int,
    min_repeats: int,
    budget: float,
) -> list[sc.Record]:
    """Forward and each method for every (size, batch); one Record per measurement."""
    records: list[sc.Record] = []
    for size in sizes:
        model = build_model(model_name, size)
        shape = model.input_shape[1:]
        rng = np.random.default_rng(0)
        inputs = {b: rng.uniform(-1, 1, (b, *shape)).astype("float32") for b in batches}
        forward_fn = tf.function(lambda t, m=model: m(t, training=False))
        forwards = {}
        for b in batches:
            xt = tf.constant(inputs[b])
            forwards[b] = sc.measure(
                lambda xt=xt, f=forward_fn: f(xt).numpy(), repeats, min_repeats, budget
            )
            records.append(
                sc.make_record(
                    "tf_clrp",
                    model_name,
                    "forward",
                    b,
                    shape[0],
                    forwards[b],
                    forwards[b],
                    "Keras model(x), tf.function",
                )
            )
            sc.print_records(records[-1:])
        for method in methods:
            start = time.perf_counter()
            name, _, precision = method.partition("@")
            analyzer = tf_clrp.create_analyzer(name, model, precision=precision or "float32")
            setup = time.perf_counter() - start
            for b in batches:
                x = inputs[b]
                timing = sc.measure(
                    lambda a=analyzer, x=x: a.analyze(x, neuron_selection=TARGET_CLASS),
                    repeats,
                    min_repeats,
                    budget,
                )
                timing.setup_s = setup if b == batches[0] else 0.0
                note = (
                    "both maps (target and dual) in one call" if method in ("clrp", "sglrp") else ""
                )
                records.append(
                    sc.make_record(
                        "tf_clrp", model_name, method, b, shape[0], timing, forwards[b], note
                    )
                )
                sc.print_records(records[-1:])
            del analyzer
            gc.collect()
        del model
        keras.backend.clear_session()
        gc.collect()
    return records


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="vgg16", help="vgg16, resnet50, efficientnet_lite0 or mobilenet_v2"
    )
    parser.add_argument("--batch", default="8", help="batch size(s), comma-separated")
    parser.add_argument("--size", default="224", help="image size(s), comma-separated")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="analyzer names; NAME@PRECISION (mixed, bfloat16) sets precision=",
    )
    sc.add_timing_args(parser)
    args = parser.parse_args()

    set_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    print(
        f"model={args.model} batch={args.batch} size={args.size} threads={args.threads} "
        f"tf={tf.__version__} keras={keras.__version__}",
        flush=True,
    )
    sc.print_header()
    records = run(
        args.model,
        _ints(args.batch),
        _ints(args.size),
        methods,
        args.repeats,
        args.min_repeats,
        args.budget,
    )
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_clrp": tf_clrp.__version__,
        "numpy": np.__version__,
    }
    sc.save_records(args.json, records, versions, command=sys.argv)


if __name__ == "__main__":
    main()
