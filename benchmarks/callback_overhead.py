"""Overhead of ``HeatmapCallback`` per call, compared with one training epoch.

Usage:
    python benchmarks/callback_overhead.py                       # small CNN, 28x28x1
    python benchmarks/callback_overhead.py --samples 4000 --epochs 4 --images 8
    python benchmarks/callback_overhead.py --methods gradient,clrp --eager

Trains the same small CNN (random data, fixed seed) once without and once with the callback
(every epoch, TensorBoard off) and prints: seconds per epoch without the callback, the
callback's first call (analyzer creation, tf.function tracing, first figure), its later calls
(mean), and the later calls as a fraction of an epoch. It also checks that the final weights
of both runs are bitwise equal. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def _model(shape: tuple[int, int, int], classes: int):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints a small table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="training samples")
    parser.add_argument("--size", type=int, default=28, help="image side (1 channel)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4, help="explained samples")
    parser.add_argument("--methods", default="gradient,lrp.epsilon_plus,clrp")
    parser.add_argument("--eager", action="store_true", help="analyzers without tf.function")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from tf_clrp.callbacks import HeatmapCallback

    rng = np.random.default_rng(0)
    shape = (args.size, args.size, 1)
    x = rng.random((args.samples, *shape), dtype=np.float32)
    y = (
        x[:, : args.size // 2].mean(axis=(1, 2, 3)) > x[:, args.size // 2 :].mean(axis=(1, 2, 3))
    ).astype(np.int64)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    class EpochTimer(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter() - self.start)

    def run(extra: list) -> tuple[object, list[float]]:
        model = _model(shape, 2)
        timer = EpochTimer()
        model.fit(
            x,
            y,
            epochs=args.epochs,
            batch_size=args.batch_size,
            verbose=0,
            callbacks=[timer, *extra],
        )
        return model, timer.times

    plain, epoch_times = run([])
    with tempfile.TemporaryDirectory() as log_dir:
        callback = HeatmapCallback(
            x[: args.images],
            methods=methods,
            log_dir=log_dir,
            tensorboard=False,
            use_tf_function=not args.eager,
        )
        with_cb, _ = run([callback])
    calls = [seconds for *_, seconds in callback.timings]
    identical = all(
        a.tobytes() == b.tobytes() for a, b in zip(plain.get_weights(), with_cb.get_weights())
    )
    epoch = float(np.median(epoch_times[1:] or epoch_times))
    later = float(np.mean(calls[1:])) if len(calls) > 1 else float("nan")
    print(
        f"model: small CNN {shape}, {plain.count_params()} parameters; {args.samples} "
        f"samples, batch {args.batch_size}; {args.images} explained images; methods "
        f"{', '.join(methods)} ({'eager' if args.eager else 'tf.function'}); "
        f"{os.cpu_count()} CPU(s)"
    )
    print(f"{'training epoch (median, no callback)':<44}{epoch:8.3f} s")
    print(f"{'callback, first call (create + trace)':<44}{calls[0]:8.3f} s")
    print(f"{'callback, later calls (mean)':<44}{later:8.3f} s   = {later / epoch:.0%} of an epoch")
    print(f"{'weights bitwise equal with / without':<44}{str(identical):>8}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
