"""Per-image time of tf_clrp analyzers vs the Keras forward, measured in the same run.

Usage:
    python benchmarks/speed.py --model vgg16 --batch 8 --size 224 --repeats 3
    python benchmarks/speed.py --model resnet50 --methods lrp.z_plus,clrp

Prints per-image seconds, the ratio to the model's own forward pass (``model(x)`` compiled
with tf.function, measured in the same process) and peak RSS. Not a test: numbers depend on
the machine; see BENCHMARKS.md for recorded results.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_clrp  # noqa: E402

DEFAULT_METHODS = ("gradient", "lrp.z_plus", "lrp.epsilon_plus", "lrp.sequential_preset_a",
                   "clrp", "sglrp")


def build_model(name: str, size: int) -> keras.Model:
    """A keras.applications model with random weights and logits output."""
    if name == "efficientnet_lite0":
        from tf_clrp.zoo import efficientnet_lite0
        return efficientnet_lite0()
    constructors = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50,
                    "mobilenet_v2": keras.applications.MobileNetV2}
    return constructors[name](weights=None, input_shape=(size, size, 3),
                              classifier_activation=None)


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    args = parser.parse_args()

    model = build_model(args.model, args.size)
    shape = (args.batch, *model.input_shape[1:])
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
    forward = tf.function(lambda t: model(t, training=False))
    xt = tf.constant(x)
    t_forward = best_time(lambda: forward(xt).numpy(), args.repeats)
    print(f"model={args.model} batch={args.batch} input={shape[1:]} "
          f"threads={tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}")
    print(f"{'method':28s} {'s/image':>9s} {'x forward':>10s}")
    print(f"{'keras forward':28s} {t_forward / args.batch:9.4f} {1.0:10.2f}")
    for method in args.methods.split(","):
        analyzer = tf_clrp.create_analyzer(method, model)
        t = best_time(lambda a=analyzer: a.analyze(x, neuron_selection=1), args.repeats)
        print(f"{method:28s} {t / args.batch:9.4f} {t / t_forward:10.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
